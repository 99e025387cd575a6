# Self-Attention, from Loops to GPUs: the two commands a newcomer needs are
#   make test   library tests + every chapter re-run and compared with nbval (strict)
#   make book   the website, every notebook executed fresh, warnings are errors -> _build/html
# Every target creates .venv from pyproject.toml when it is missing (tools/bootstrap_venv.sh).
# Use another interpreter/environment with: make test PY=/path/to/env/bin/python

SHELL         := /bin/bash
.SHELLFLAGS   := -eu -o pipefail -c
.DEFAULT_GOAL := help

# PYTHON creates .venv; PY runs everything; JB is Jupyter Book's command next to PY.
PYTHON ?= python3
VENV   ?= .venv
PY     ?= $(VENV)/bin/python
JB     ?= $(dir $(PY))jupyter-book
PORT   ?= 8000
LAB_ARGS ?=

# Reproducible runs: a fixed hash seed. (No MPLBACKEND: notebooks need the inline backend.)
export PYTHONHASHSEED  := 0

NOTEBOOKS = $(shell find chapters -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort)
NBVAL_OPTS = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# Bootstrap only the default environment; a PY given by hand is used as it is.
ifeq ($(PY),$(VENV)/bin/python)
BOOTSTRAP := $(VENV)/.bootstrapped
else
BOOTSTRAP :=
endif

.PHONY: help venv book test notebooks lab serve clean distclean student grade browser-test bench

help:  ## list the targets
	@echo "Self-Attention, from Loops to GPUs"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.bootstrapped:
	@bash tools/bootstrap_venv.sh "$(VENV)" "$(PYTHON)"

venv: $(BOOTSTRAP)  ## create .venv from pyproject.toml (done by every target when missing)

book: $(BOOTSTRAP)  ## build the site into _build/html (fresh execution; any warning fails)
	@echo "make book: removing _build/html, _build/.doctrees, _build/jupyter_execute"
	rm -rf _build/html _build/.doctrees _build/jupyter_execute
	@start=$$SECONDS; \
	echo "make book: $(JB) build . --all -W -n --keep-going"; \
	if "$(JB)" build . --all -W -n --keep-going; then \
	    echo "make book: OK in $$((SECONDS - start)) s -> open _build/html/index.html (or: make serve)"; \
	else \
	    rc=$$?; echo "make book: FAILED (exit $$rc) after $$((SECONDS - start)) s: see the warnings/errors above" >&2; exit $$rc; \
	fi

test: $(BOOTSTRAP)  ## pytest over tests/ and strict nbval over chapters/**/*.ipynb
	@start=$$SECONDS; \
	echo "make test: $(PY) -m pytest tests --ignore=tests/browser $(NBVAL_OPTS) $(NOTEBOOKS)"; \
	set +e; "$(PY)" -m pytest tests --ignore=tests/browser $(NBVAL_OPTS) $(NOTEBOOKS); rc=$$?; set -e; \
	if [ $$rc -eq 5 ]; then \
	    echo "make test: WARNING: pytest collected no tests (exit 5), treated as success"; rc=0; \
	fi; \
	if [ $$rc -eq 0 ]; then echo "make test: OK in $$((SECONDS - start)) s"; \
	else echo "make test: FAILED (exit $$rc) after $$((SECONDS - start)) s" >&2; fi; \
	exit $$rc

notebooks: $(BOOTSTRAP)  ## re-execute every chapter in place (clean kernel), save outputs + widget state
	"$(PY)" tools/execute_notebooks.py $(NOTEBOOKS)

lab: $(BOOTSTRAP)  ## open JupyterLab on the repository: chapters/ and student/ (LAB_ARGS=... for more)
	"$(PY)" -m jupyterlab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" \
	    $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

serve: $(BOOTSTRAP)  ## serve the built site on http://127.0.0.1:$(PORT)
	@test -f _build/html/index.html || { echo "make serve: no site yet; run make book first" >&2; exit 1; }
	@echo "make serve: http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	"$(PY)" -m http.server --bind 127.0.0.1 --directory _build/html $(PORT)

# student/ and course/ hold learners' and instructors' work: clean never touches them.
clean:  ## remove build outputs and caches (keeps .venv, student/ and course/)
	rm -rf _build .pytest_cache .hypothesis results/tmp
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 \
	    | xargs -0 rm -rf

distclean: clean  ## also remove .venv
	rm -rf $(VENV)

# ---------------------------------------------------------------------------------------------
# Teaching and measuring targets (student, grade, browser-test, bench). Each has a
# "## description" comment, which `make help` lists, and depends on $(BOOTSTRAP).
# ---------------------------------------------------------------------------------------------

student: $(BOOTSTRAP)  ## student versions of every chapter (nbgrader) into student/; never overwrites your work
	"$(PY)" tools/classroom.py release

grade: $(BOOTSTRAP)  ## autograde course/submitted/ with nbgrader: feedback HTML, grades.csv and a report
	"$(PY)" tools/classroom.py grade $(foreach c,$(CHAPTERS),--chapter $(c))

# The browser tests need a built site, so `make test` leaves tests/browser out; they run here.
SITE ?= _build/html
browser-test: $(BOOTSTRAP)  ## test the built site (make book first) in headless Chromium: pages, math, widgets, links
	@test -f "$(SITE)/index.html" || { echo "make browser-test: no built site in $(SITE)/;" \
	    "run make book first (or: make browser-test SITE=path/to/html)" >&2; exit 1; }
	@start=$$SECONDS; \
	echo "make browser-test: $(PY) -m pytest tests/browser (site: $(SITE), screenshots: $(dir $(SITE))screenshots)"; \
	set +e; SELFATTENTION_SITE="$(abspath $(SITE))" "$(PY)" -m pytest tests/browser -p no:cacheprovider; \
	rc=$$?; set -e; \
	if [ $$rc -eq 0 ]; then echo "make browser-test: OK in $$((SECONDS - start)) s"; \
	else echo "make browser-test: FAILED (exit $$rc) after $$((SECONDS - start)) s" >&2; fi; \
	exit $$rc

# Times every implementation on this machine (under 5 minutes on 2 cores) and writes JSON, plots
# and summary.md with the target ratios into results/<machine-tag>/ (BENCH_OUT=... elsewhere).
BENCH_DEVICE ?= auto
bench: $(BOOTSTRAP)  ## time every attention implementation here -> results/<machine-tag>/ (< 5 min)
	@start=$$SECONDS; \
	"$(PY)" tools/bench.py --device $(BENCH_DEVICE) $(if $(BENCH_OUT),--out $(BENCH_OUT)); \
	if "$(PY)" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	    "$(PY)" tools/flash_gpu.py $(if $(BENCH_OUT),--out $(BENCH_OUT)); fi; \
	echo "make bench: done in $$((SECONDS - start)) s"
