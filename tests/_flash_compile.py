"""Compile chapter 9's Triton kernels for an NVIDIA GPU without one; run by test_flash_compile.py.

Run as a script with ``TRITON_INTERPRET=0`` (so that triton keeps its compiler) and the library on
``PYTHONPATH``. Prints one JSON line per kernel variant: its name, the options and either the
shared memory it needs or the compiler's error. Nothing is launched: there is no GPU here.
"""

from __future__ import annotations

import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from selfattention import flash_kernels as K

TARGET = GPUTarget("cuda", 90, 32)  # H100 and H200 (sm_90), warps of 32 threads
TENSORS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV", "LSE", "Dvec"}
FP32_POINTERS = {"LSE", "Dvec"}  # the logsumexp and D are float32 whatever the inputs' dtype
FLOAT_ARGS = {"qk_scale", "scale"}


def signature(kernel, dtype: str, constexprs: dict) -> dict:
    """Triton's type of each argument, read from the kernel's parameter names."""
    sig = {}
    for p in kernel.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif p.name in FLOAT_ARGS:
            sig[p.name] = "fp32"
        elif p.name in TENSORS:
            sig[p.name] = "*fp32" if p.name in FP32_POINTERS else f"*{dtype}"
        else:  # strides and sizes (H, T, S)
            sig[p.name] = "i32"
    return sig


def compile_one(kernel, dtype: str, constexprs: dict, num_warps: int, num_stages: int) -> dict:
    names = {p.name for p in kernel.params if p.is_constexpr}
    constexprs = {k: v for k, v in constexprs.items() if k in names}
    row = {"kernel": kernel.fn.__name__, "dtype": dtype, **constexprs, "num_warps": num_warps}
    try:
        src = ASTSource(fn=kernel, signature=signature(kernel, dtype, constexprs), constexprs=constexprs)
        options = {"num_warps": num_warps, "num_stages": num_stages}
        compiled = triton.compile(src, target=TARGET, options=options)
        row["shared_bytes"] = compiled.metadata.shared
    except Exception as exc:  # reported, not raised: the test names every failing variant
        row["error"] = f"{type(exc).__name__}: {str(exc)[-400:]}"
    return row


def main() -> None:
    assert not K.INTERPRETED, "run with TRITON_INTERPRET=0"
    # (dtype, DOT_PRECISION as flash.py passes it, HEAD_DIM, IS_CAUSAL): each dtype and precision,
    # both masks, head sizes from 16 to 64. Blocks and warps: the first autotuning config of each.
    # (About 45 s on a 2-core machine with an empty Triton cache.)
    variants = [
        ("fp16", "tf32", 64, True),
        ("bf16", "tf32", 16, False),
        ("fp32", "ieee", 32, True),
    ]
    fwd, bwd = K.GPU_CONFIGS[0], K.BWD_GPU_CONFIGS[0]
    for dtype, precision, d, causal in variants:
        common = {"IS_CAUSAL": causal, "HEAD_DIM": d, "DOT_PRECISION": precision}
        jobs = [(K._fwd_kernel, fwd)]
        if dtype != "bf16":  # the backward kernels once per precision is enough
            jobs += [(K._bwd_dkdv_kernel, bwd), (K._bwd_dq_kernel, bwd)]
        for kernel, cfg in jobs:
            blocks = {"BLOCK_M": cfg["BLOCK_M"], "BLOCK_N": cfg["BLOCK_N"]}
            row = compile_one(kernel, dtype, {**common, **blocks}, cfg["num_warps"], cfg["num_stages"])
            print(json.dumps(row))
            sys.stdout.flush()
    print(json.dumps(compile_one(K._bwd_preprocess_kernel, "fp16", {"HEAD_DIM": 64, "BLOCK_M": 64}, 4, 1)))


if __name__ == "__main__":
    main()
