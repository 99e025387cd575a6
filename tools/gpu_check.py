"""Correctness of the library on a CUDA device: run once where a GPU is present.

    python tools/gpu_check.py [--out results/gpu-check.json]

(with the library installed, ``pip install -e .``; from a bare checkout, ``PYTHONPATH=src``).

Compares the course's attention paths with torch's SDPA on the GPU in float32, float16 and
bfloat16 (causal and not, T != S, bool masks, fully masked rows), checks the KV cache against
recomputation, and the future-token test for every causal path. Prints one line per comparison
and exits non-zero if any difference exceeds its tolerance. Needs no package beyond torch.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from selfattention import devices, kvcache, masks, multihead, tiled

# Outputs are O(1); the tolerances are about 170 units in the last place (at 1) for float32 and
# about 4 for float16 and bfloat16, whose few mantissa bits leave little room between them.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    dev = devices.pick_device()
    print(f"gpu_check: device {devices.describe_device(dev)}, torch {torch.__version__}")
    if dev.type != "cuda":
        print("gpu_check: no CUDA device; nothing to check")
        return 0
    torch.manual_seed(0)
    rows, failed = [], 0

    def record(name, dtype, diff):
        nonlocal failed
        ok = diff <= TOL[dtype]
        failed += not ok
        rows.append({"check": name, "dtype": str(dtype).replace("torch.", ""), "max_abs_diff": diff,
                     "tolerance": TOL[dtype], "ok": ok})
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<48} {str(dtype):<15} {diff:.3e} (tol {TOL[dtype]:.0e})")

    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for B, H, T, S, d in ((2, 4, 37, 37, 64), (1, 8, 5, 300, 64), (1, 2, 257, 129, 32)):
            q = torch.randn(B, H, T, d, device=dev, dtype=dtype)
            k = torch.randn(B, H, S, d, device=dev, dtype=dtype)
            v = torch.randn(B, H, S, d, device=dev, dtype=dtype)
            for causal in (False, True):
                ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                     is_causal=causal)
                out, _ = multihead.scaled_dot_product_attention(q, k, v, is_causal=causal)
                record(f"course SDPA T={T} S={S} causal={causal}", dtype,
                       (out.float() - ref).abs().max().item())
                for bs in (16, 128):
                    t = tiled.tiled_attention(q, k, v, block_size=bs, is_causal=causal)
                    record(f"tiled(block={bs}) T={T} S={S} causal={causal}", dtype,
                           (t.float() - ref).abs().max().item())
            mask = torch.rand(B, 1, T, S, device=dev) > 0.5
            mask[..., 0, :] = False  # a fully masked row: zeros in torch and in the library
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
            out, _ = multihead.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            record(f"course SDPA bool mask T={T} S={S}", dtype, (out.float() - ref).abs().max().item())

        # Multi-head layer against nn.MultiheadAttention, and KV-cache decoding.
        mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).to(dev, dtype)
        ours = multihead.MultiHeadSelfAttention.from_torch(mha)
        x = torch.randn(2, 20, 64, device=dev, dtype=dtype)
        lengths = torch.tensor([20, 13], device=dev)
        pad = masks.padding_mask(lengths, 20)
        with torch.no_grad():
            ref, _ = mha(x, x, x, key_padding_mask=~pad, need_weights=False)
            out, _ = ours(x, padding_mask=pad)
            record("MultiHeadSelfAttention vs nn.MultiheadAttention", dtype,
                   (out.float() - ref.float())[pad].abs().max().item())
            full, _ = ours(x, is_causal=True)
            cache = kvcache.KVCache.for_module(ours, 2, 20)
            steps = torch.cat([kvcache.decode_step(ours, x[:, i:i + 1], cache)[0]
                               for i in range(20)], dim=1)
            record("KV-cache decoding vs recomputation", dtype,
                   (steps.float() - full.float()).abs().max().item())
            # Future-token test: change tokens after t=9, outputs at <= 9 must not move at all.
            x2 = x.clone()
            x2[:, 10:] = torch.randn_like(x2[:, 10:])
            o1, _ = ours(x, is_causal=True)
            o2, _ = ours(x2, is_causal=True)
            record("future-token test (MultiHeadSelfAttention)", dtype,
                   (o1[:, :10].float() - o2[:, :10].float()).abs().max().item())
            qq = torch.randn(1, 2, 64, 32, device=dev, dtype=dtype)
            qq2 = qq.clone()
            qq2[:, :, 40:] += 1.0
            a = tiled.tiled_attention(qq, qq, qq, block_size=16, is_causal=True)
            b = tiled.tiled_attention(qq2, qq2, qq2, block_size=16, is_causal=True)
            record("future-token test (tiled)", dtype, (a[:, :, :40].float()
                                                       - b[:, :, :40].float()).abs().max().item())

    print(f"gpu_check: {len(rows) - failed} passed, {failed} failed")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"device": devices.describe_device(dev), "torch": torch.__version__,
                       "rows": rows}, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
