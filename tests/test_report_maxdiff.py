"""The largest difference seen per comparison per dtype, on a fixed grid of problems.

Run ``pytest tests/test_report_maxdiff.py -s`` (or ``python tests/test_report_maxdiff.py``) to
print the table; set ``SELFATTENTION_MAXDIFF_JSON=path`` to also write it as JSON. The test fails
if any difference exceeds the dtype's tolerance (see ``_helpers`` for the rationale).
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict

import numpy as np
import torch
from _helpers import (
    TOL,
    Case,
    max_abs_diff,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    reference_weights,
    torch_sdpa,
)

from selfattention import loops, masks, vectorized
from selfattention.kvcache import KVCache, decode_step
from selfattention.multihead import MultiHeadSelfAttention, scaled_dot_product_attention
from selfattention.tiled import tiled_attention

LEADS = [(), (2,), (2, 3)]
LENGTHS = [(1, 1), (1, 5), (5, 1), (6, 6), (4, 9), (9, 4), (33, 33)]
MASKS = ["none", "bool", "float", "causal"]
SCALES = [None, 0.3]


def collect() -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = defaultdict(dict)

    def record(name, dtype, a, b):
        key = np.dtype(dtype).name
        table[name][key] = max(table[name].get(key, 0.0), max_abs_diff(a, b))

    for dtype in (np.float32, np.float64):
        for i, (lead, (T, S), mk, scale) in enumerate(itertools.product(LEADS, LENGTHS, MASKS, SCALES)):
            c = Case(lead, T, S, 8, 5, dtype, mk, scale, seed=i, full_row=(i % 2 == 0))
            ref = torch_sdpa(c.q, c.k, c.v, **c.torch_kw)
            out_v, w_v = vectorized.attention(c.Q, c.K, c.V, mask=c.mask, causal=c.causal, scale=scale)
            out_m, w_m = scaled_dot_product_attention(c.q, c.k, c.v, **c.torch_kw)
            record("vectorized vs torch SDPA", dtype, out_v, ref)
            record("multihead SDPA vs torch SDPA", dtype, out_m, ref)
            record("multihead SDPA vs vectorized", dtype, out_m, out_v)
            w_ref = reference_weights(c.q, c.k, **c.torch_kw)
            record("weights: multihead vs float64 reference", dtype, w_m, w_ref)
            record("weights: vectorized vs multihead", dtype, w_v, w_m)
            if mk in ("none", "causal"):
                for blk in (1, 3, 7, 16, 128):
                    out_t = tiled_attention(c.q, c.k, c.v, block_size=blk, is_causal=c.causal, scale=scale)
                    record("tiled vs torch SDPA", dtype, out_t, ref)
                    record("tiled vs multihead SDPA", dtype, out_t, out_m)
                if T <= 9:
                    Qf, Kf, Vf = (x.reshape(-1, *x.shape[-2:]) for x in (c.Q, c.K, c.V))
                    out_l = np.stack([loops.attention(q.tolist(), k.tolist(), v.tolist(), causal=c.causal,
                                                      scale=scale)[0] for q, k, v in zip(Qf, Kf, Vf)])
                    out_l = out_l.reshape(out_v.shape)
                    record("loops vs vectorized", dtype, out_l, out_v)
                    record("loops vs torch SDPA", dtype, out_l, ref)

        tdt = torch.float32 if dtype == np.float32 else torch.float64
        for j, (bf, bias, padded, causal) in enumerate(itertools.product([True, False], repeat=4)):
            torch.manual_seed(j)
            mha = torch.nn.MultiheadAttention(12, 3, bias=bias, batch_first=bf, dtype=tdt).eval()
            if bias:
                with torch.no_grad():
                    mha.in_proj_bias.normal_()
                    mha.out_proj.bias.normal_()
            mine = MultiHeadSelfAttention.from_torch(mha)
            x = torch.randn(3, 7, 12, dtype=tdt)
            pm = masks.padding_mask([7, 5, 1], 7) if padded else None
            xt = x if bf else x.transpose(0, 1)
            with torch.no_grad():
                ref, w_ref = mha(xt, xt, xt, key_padding_mask=None if pm is None else ~pm,
                                 attn_mask=~masks.causal_mask(7) if causal else None,
                                 average_attn_weights=False)
                ref = ref if bf else ref.transpose(0, 1)
                out, w = mine(x, padding_mask=pm, is_causal=causal)
                out_fast, _ = mine(x, padding_mask=pm, is_causal=causal, need_weights=False)
            record("MultiHeadSelfAttention vs nn.MultiheadAttention", dtype, out, ref)
            record("per-head weights vs nn.MultiheadAttention", dtype, w, w_ref)
            record("need_weights=False vs need_weights=True", dtype, out_fast, out)
            if causal:
                for chunks in ([1] * 7, [3, 2, 2]):
                    cache = KVCache.for_module(mine, 3, 7)
                    pos = 0
                    with torch.no_grad():
                        for n in chunks:
                            o, _ = decode_step(mine, x[:, pos : pos + n], cache,
                                               padding_mask=None if pm is None else pm[:, : pos + n])
                            record("KV-cache decoding vs full recomputation", dtype, o, out[:, pos : pos + n])
                            pos += n
    return dict(table)


def format_table(table) -> str:
    width = max(len(k) for k in table)
    atol32, atol64 = TOL[np.float32]["atol"], TOL[np.float64]["atol"]
    lines = [f"{'comparison':<{width}}  {'float32':>10}  {'float64':>10}",
             f"{'(tolerance atol)':<{width}}  {atol32:>10.0e}  {atol64:>10.0e}"]
    for name, row in table.items():
        lines.append(f"{name:<{width}}  {row.get('float32', float('nan')):>10.2e}  "
                     f"{row.get('float64', float('nan')):>10.2e}")
    return "\n".join(lines)


def test_report_max_differences():
    table = collect()
    print("\nLargest absolute difference seen, per comparison and dtype:\n" + format_table(table))
    path = os.environ.get("SELFATTENTION_MAXDIFF_JSON")
    if path:
        with open(path, "w") as f:
            json.dump(table, f, indent=2)
    for name, row in table.items():
        for dtype_name, diff in row.items():
            assert diff <= TOL[np.dtype(dtype_name).type]["atol"], (name, dtype_name, diff)


if __name__ == "__main__":
    print(format_table(collect()))
