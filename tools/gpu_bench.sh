#!/usr/bin/env bash
# Run the benchmark suite once on a CUDA machine and leave the results in $OUT/.
#
#   OUT=/some/dir bash tools/gpu_bench.sh            (from the repository root)
#
# Writes $OUT/results/<machine-tag>/{results.json,summary.md,*.png,run.log} (machine-tag is e.g.
# cuda-nvidia-h100-80gb-hbm3); copy that folder to results/ in the repository to commit it.
# Needs Python with torch (CUDA build). Works offline: it only tries pip when an import fails, and
# carries on without plots (matplotlib) or BLAS details (threadpoolctl) if pip cannot reach PyPI.
# Finishes in about 3-4 minutes: the suite stops starting new cases after BENCH_BUDGET seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
BUDGET="${BENCH_BUDGET:-200}"
DEVICE="${BENCH_DEVICE:-cuda}"   # BENCH_DEVICE=cpu BENCH_ARGS=--quick: a dry run of this script
EXTRA_ARGS="${BENCH_ARGS:-}"
if [ "$DEVICE" = cuda ]; then NEED='torch.cuda.is_available()'; else NEED='True'; fi
mkdir -p "$OUT"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # the library, without installing it
say() { echo "gpu_bench: $*"; }

say "start $(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi -L && \
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. An interpreter whose torch sees CUDA: $PY if given, the repository's .venv, then python3.
PYBIN=""
for cand in "${PY:-}" .venv/bin/python python3 python; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
    if "$cand" -c "import torch, sys; sys.exit(0 if $NEED else 1)" 2>/dev/null; then
        PYBIN="$cand"; break
    fi
done
if [ -z "$PYBIN" ]; then
    PYBIN="$(command -v python3 || command -v python)"
    say "no interpreter with a CUDA torch; trying: $PYBIN -m pip install torch (fails fast offline)"
    timeout 240 "$PYBIN" -m pip install --quiet --retries 0 --timeout 15 torch || true
    if ! "$PYBIN" -c "import torch, sys; sys.exit(0 if $NEED else 1)"; then
        say "ERROR: torch with CUDA is not importable by $PYBIN; nothing measured" | tee "$OUT/FAILED.txt"
        exit 1
    fi
fi
say "python: $PYBIN ($("$PYBIN" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'))"

# 2. The small pure-Python/NumPy dependencies, only where an import fails.
missing=$("$PYBIN" - <<'PY'
import importlib.util
print(" ".join(m for m in ("numpy", "matplotlib", "threadpoolctl")
               if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    say "missing: $missing; trying pip (fails fast offline)"
    timeout 120 "$PYBIN" -m pip install --quiet --retries 0 --timeout 15 $missing || true
fi
"$PYBIN" -c 'import numpy' || { say "ERROR: numpy is not importable" | tee "$OUT/FAILED.txt"; exit 1; }
PLOTS=""
"$PYBIN" -c 'import matplotlib' 2>/dev/null || { PLOTS="--no-plots"; say "matplotlib missing: no plots"; }

# 3. The suite.
TAG=$("$PYBIN" -c "from selfattention.bench import machine_tag; print(machine_tag('$DEVICE'))")
DEST="$OUT/results/$TAG"
mkdir -p "$DEST"
say "device: $("$PYBIN" -c "from selfattention.devices import describe_device; print(describe_device('$DEVICE'))") -> $DEST"
start=$SECONDS
timeout 330 "$PYBIN" tools/bench.py --device "$DEVICE" --budget "$BUDGET" --out "$DEST" $PLOTS $EXTRA_ARGS 2>&1 \
    | tee "$DEST/run.log"
rc=${PIPESTATUS[0]}
say "tools/bench.py exit $rc after $((SECONDS - start)) s"
ls -l "$DEST"
[ -f "$DEST/summary.md" ] && cat "$DEST/summary.md"
exit "$rc"
