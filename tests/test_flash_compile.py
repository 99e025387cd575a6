"""Chapter 9's kernels compile for an NVIDIA GPU (sm_90, the H100 and H200), here without one.

Triton's interpreter runs a kernel as Python, so it accepts code that Triton's compiler rejects:
a kernel that read a plain-float module global (``LOG2E = 1.44...``) passed every interpreter
test and failed to compile on any GPU. ``_flash_compile.py`` compiles each kernel with Triton's
own compiler and ptxas (shipped with triton) in a subprocess with ``TRITON_INTERPRET=0``, since
this process's triton is in interpreter mode. Nothing is launched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not available on this platform (Linux only)")

HERE = Path(__file__).resolve().parent
SM90_SHARED_BYTES = 227 * 1024  # the most shared memory one block may use on an H100 / H200


def test_every_kernel_compiles_for_sm90():
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.run(
        [sys.executable, str(HERE / "_flash_compile.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"_fwd_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel", "_bwd_preprocess_kernel"}
    failed = [r for r in rows if "error" in r]
    assert not failed, "\n".join(f"{r['kernel']} {r['dtype']}: {r['error']}" for r in failed)
    too_big = [r for r in rows if r["shared_bytes"] > SM90_SHARED_BYTES]
    assert not too_big, too_big
