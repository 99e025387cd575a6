"""Level 1 (pure Python loops) against level 2 (NumPy) and against torch's SDPA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _helpers import (
    PROPERTY,
    Case,
    assert_close,
    case_strategy,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    torch_sdpa,
)
from hypothesis import given

from selfattention import data, loops, vectorized


def test_loops_module_uses_no_numpy_or_torch():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(loops))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"numpy", "torch"}


def test_softmax_values():
    w = loops.softmax([1.0, 2.0, 3.0])
    e = [math.exp(x) for x in (1.0, 2.0, 3.0)]
    assert w == pytest.approx([x / sum(e) for x in e], abs=1e-15)
    assert sum(w) == pytest.approx(1.0, abs=1e-15)
    assert loops.softmax([5.0]) == [1.0]


def test_softmax_minus_inf_and_fully_masked_row():
    assert loops.softmax([0.0, -math.inf]) == [1.0, 0.0]
    assert loops.softmax([-math.inf, -math.inf]) == [0.0, 0.0]  # zeros, as torch's SDPA


def test_dot_and_matmul():
    assert loops.dot([1.0, 2.0], [3.0, 4.0]) == 11.0
    A = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    B = [[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]
    np.testing.assert_array_equal(loops.matmul(A, B), np.array(A) @ np.array(B))


def test_count_multiply_adds():
    assert loops.count_multiply_adds(6, 6, 4, 4) == 6 * 6 * 4 + 6 * 6 * 4
    assert loops.count_multiply_adds(1, 5, 2, 3) == 5 * 2 + 5 * 3


def test_running_example_loops_equal_numpy():
    X = data.embeddings()
    W_q, W_k, W_v = data.example_projections()
    for causal in (False, True):
        out_l, w_l = loops.self_attention(X.tolist(), W_q.tolist(), W_k.tolist(), W_v.tolist(),
                                          causal=causal)
        out_v, w_v = vectorized.self_attention(X, W_q, W_k, W_v, causal=causal)
        assert_close(out_l, out_v, np.float64)
        assert_close(w_l, w_v, np.float64)


def test_worked_example_by_hand():
    # Two tokens, d_k = 1: scores are q*k/1, softmax of [1*1, 1*0] = [e/(e+1), 1/(e+1)].
    out, w = loops.attention([[1.0]], [[1.0], [0.0]], [[10.0], [20.0]])
    p = math.e / (math.e + 1)
    assert w[0] == pytest.approx([p, 1 - p], abs=1e-15)
    assert out[0][0] == pytest.approx(10 * p + 20 * (1 - p), abs=1e-12)


@PROPERTY
@given(case=case_strategy(mask_kinds=("none", "causal"), max_lead=0))
def test_loops_equal_numpy_and_torch(case: Case):
    """Loops (Python floats) vs NumPy vs torch's SDPA, unbatched, causal or not, scale overrides."""
    out_l, w_l = loops.attention(case.Q.tolist(), case.K.tolist(), case.V.tolist(),
                                 causal=case.causal, scale=case.scale)
    out_v, w_v = vectorized.attention(case.Q, case.K, case.V, causal=case.causal, scale=case.scale)
    assert_close(out_l, out_v, case.dtype, "loops vs vectorized")
    assert_close(w_l, w_v, case.dtype, "loops weights vs vectorized")
    ref = torch_sdpa(case.q, case.k, case.v, **case.torch_kw)
    assert_close(out_l, ref, case.dtype, "loops vs torch SDPA")


def test_loops_causal_top_left_when_T_differs_from_S():
    rng = np.random.default_rng(0)
    Q, K, V = rng.standard_normal((2, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    out, w = loops.attention(Q.tolist(), K.tolist(), V.tolist(), causal=True)
    assert w[0][1:] == [0.0] * 4 and w[1][2:] == [0.0] * 3  # top-left: query i sees keys <= i
    ref = torch_sdpa(torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V), is_causal=True)
    assert_close(out, ref, np.float64)
