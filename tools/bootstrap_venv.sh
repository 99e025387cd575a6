#!/usr/bin/env bash
# Create the course's virtual environment from the project's own files (pyproject.toml).
# Usage: tools/bootstrap_venv.sh VENV_DIR [PYTHON]. Called by the Makefile when VENV_DIR is missing.
set -euo pipefail
VENV="${1:-.venv}"
WANT="${2:-}"
STAMP="$VENV/.bootstrapped"
say() { echo "bootstrap: $*"; }
die() { echo; echo "bootstrap: ERROR: $*" >&2; echo >&2; exit 1; }

# An environment that already works (e.g. created by hand) only gets its stamp.
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'PY' 2>/dev/null
import sys, selfattention, jupyter_book, nbval, ipywidgets  # noqa: F401
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
then
    touch "$STAMP"; exit 0
fi

# 1. A Python 3.10 or newer.
PYTHON=""
for cand in $WANT python3 python3.13 python3.12 python3.11 python3.10 python; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
        PYTHON="$(command -v "$cand")"; break
    fi
done
[ -n "$PYTHON" ] || die "the course needs Python 3.10 or newer and none was found on PATH.
  Install one (python.org, your package manager, pyenv or conda), then run make again,
  or name it: make test PYTHON=/path/to/python3.11
  With conda/mamba instead: mamba env create -f environment.yml && conda activate selfattention
  && make test PY=\$(which python)"
say "using $PYTHON ($("$PYTHON" --version 2>&1))"

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON -m venv.
  On Debian/Ubuntu install the venv module first: sudo apt install python3-venv"
fi

# 3. The package index must be reachable (pip honours PIP_INDEX_URL and pip.conf).
say "checking that the package index can be reached"
if ! "$VENV/bin/python" -m pip --disable-pip-version-check --retries 1 --timeout 15 \
        index versions pip >/dev/null 2>&1; then
    die "cannot reach the Python package index (https://pypi.org, or PIP_INDEX_URL if set).
  Check the network or proxy (HTTPS_PROXY), or point pip at a mirror:
    PIP_INDEX_URL=https://your.mirror/simple make test
  Then run make again; $VENV is kept and will be completed."
fi

# 4. The course library and every tool, from pyproject.toml.
say "installing the course (pip install -e '.[dev]'); the first time takes a few minutes"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip ||
    die "upgrading pip in $VENV failed (see above)"
LOG="$VENV/bootstrap-pip.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[dev]' 2>&1 | tee "$LOG"; then
    if grep -qE "NewConnectionError|Connection refused|Name or service not known|Temporary failure in name resolution|Max retries exceeded|ProxyError|SSLError|from versions: none" "$LOG"; then
        die "pip could not download the course's packages: the package index cannot be reached
  (https://pypi.org, or PIP_INDEX_URL if set; see the connection errors above, log in $LOG).
  Check the network or proxy (HTTPS_PROXY), or point pip at a mirror:
    PIP_INDEX_URL=https://your.mirror/simple make test
  Then run make again."
    fi
    die "pip install -e '.[dev]' failed (see the messages above, log in $LOG). Remove $VENV and retry."
fi
touch "$STAMP"
say "done: $VENV is ready"
