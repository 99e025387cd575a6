#!/usr/bin/env bash
# Everything a session lent a GPU should run, in one device call (about 10 minutes at most):
#
#   run(command="bash tools/gpu_session.sh", timeout_s=600)
#
# 1. tests/test_flash.py on the GPU (chapter 9's kernels compiled for it, against SDPA);
# 2. tools/flash_gpu.py: correctness in float16/bfloat16/float32, then the benchmark of issue 13
#    (--quick: d = 64, T up to 4096), stopped by a time budget;
# 3. the attention suite (tools/gpu_bench.sh) with whatever time is left.
# Everything lands in one archive, $OUT/gpu_session.tgz (the device tool returns at most 8 files,
# two folders deep): unpack it into the repository root, check results/<card>/, commit.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONHASHSEED=0
PY="${PY:-python3}"
WORK=/tmp/gpu_session
rm -rf "$WORK" && mkdir -p "$WORK/results"
LIMIT="${SESSION_LIMIT:-570}"   # seconds for the three steps together; the call's limit is 600
start=$SECONDS
left() { echo $((LIMIT - (SECONDS - start))); }
{
    date -u +%FT%TZ
    nvidia-smi -L
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    echo "== 1. tests/test_flash.py on the GPU"
    timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_flash.py
    echo "== 2. tools/flash_gpu.py ($(left) s left)"
    timeout $(( $(left) - 60 )) "$PY" tools/flash_gpu.py --out "$WORK/results" --quick --budget $(( $(left) - 150 ))
    echo "== 3. the suite ($(left) s left)"
    if [ "$(left)" -gt 120 ]; then
        OUT="$WORK" BENCH_BUDGET=$(( $(left) - 60 )) timeout $(( $(left) - 10 )) bash tools/gpu_bench.sh
    else
        echo "skipped: too little time left"
    fi
    echo "== done after $((SECONDS - start)) s"
} 2>&1 | tee "$WORK/session.log"
tar czf "$OUT/gpu_session.tgz" -C "$WORK" .
cp "$WORK/session.log" "$OUT/"
ls -l "$OUT"
