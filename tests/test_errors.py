"""Bad input: every rejected case raises ValueError or TypeError whose message names the argument
and gives the shapes (or types/dtypes) it got and expected. One case per message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import (
    assert_message,
    one_thread,  # noqa: F401 (autouse: one thread per module)
)

from selfattention import loops, masks, vectorized
from selfattention._validate import check_mask_shape
from selfattention.kvcache import KVCache, decode_step
from selfattention.multihead import (
    MultiHeadSelfAttention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from selfattention.tiled import tiled_attention

a = np.zeros
t = torch.zeros
L23 = [[0.0] * 3] * 2  # a (2, 3) list of lists
MHA = MultiHeadSelfAttention(8, 2)
_full_cache = KVCache(1, 2, 2, 4)
_full_cache.append(t(1, 2, 2, 4), t(1, 2, 2, 4))

# id: (callable, exception type, substrings that must all appear in the message)
CASES = {
    # ---- loops
    "loops Q not a list": (
        lambda: loops.attention("abc", L23, L23),
        TypeError,
        ["Q must be a list of rows", "got str"],
    ),
    "loops row not a list": (
        lambda: loops.attention([1.0, 2.0], L23, L23),
        TypeError,
        ["Q[0] must be a list of floats", "got float", "(n, d_k)"],
    ),
    "loops empty sequence": (lambda: loops.attention([], L23, L23), ValueError, ["Q is empty (0 rows)"]),
    "loops ragged rows": (
        lambda: loops.attention([[1.0], [1.0, 2.0]], L23, L23),
        ValueError,
        ["Q must be rectangular", "row lengths [1, 2] (in row order)"],
    ),
    "loops ragged rows, longer first": (
        lambda: loops.attention([[1.0, 2.0], [1.0]], L23, L23),
        ValueError,
        ["Q must be rectangular", "row lengths [2, 1] (in row order)"],
    ),
    "loops Q/K d_k": (
        lambda: loops.attention([[0.0] * 2], L23, L23),
        ValueError,
        ["Q and K", "Q has shape (1, 2)", "K has shape (2, 3)"],
    ),
    "loops K/V rows": (
        lambda: loops.attention(L23, L23, [[0.0]] * 3),
        ValueError,
        ["K and V", "K has shape (2, 3)", "V has shape (3, 1)"],
    ),
    "loops dot lengths": (
        lambda: loops.dot([1.0], [1.0, 2.0]),
        ValueError,
        ["a and b", "len(a)=1", "len(b)=2"],
    ),
    "loops softmax empty": (lambda: loops.softmax([]), ValueError, ["scores is empty"]),
    "loops softmax nan": (
        lambda: loops.softmax([0.0, float("nan")]),
        ValueError,
        ["scores must be finite or -inf", "nan"],
    ),
    "loops softmax +inf": (
        lambda: loops.softmax([float("inf")]),
        ValueError,
        ["scores must be finite or -inf", "inf"],
    ),
    "loops matmul inner": (
        lambda: loops.matmul(L23, L23),
        ValueError,
        ["A and B", "A has shape (2, 3)", "B has shape (2, 3)"],
    ),
    # ---- vectorized (NumPy)
    "numpy given a tensor": (
        lambda: vectorized.attention(t(2, 3), a((2, 3)), a((2, 3))),
        TypeError,
        ["Q must be a NumPy array", "torch.Tensor of shape (2, 3)", "Q.numpy()"],
    ),
    "numpy non-array": (
        lambda: vectorized.attention("Q", a((2, 3)), a((2, 3))),
        TypeError,
        ["Q must be a NumPy array", "got str"],
    ),
    "numpy non-float dtype": (
        lambda: vectorized.attention(a((2, 3), dtype=bool), a((2, 3)), a((2, 3))),
        TypeError,
        ["Q must hold floating-point numbers", "bool"],
    ),
    "numpy Q ndim": (
        lambda: vectorized.attention(a(3), a((2, 3)), a((2, 3))),
        ValueError,
        ["Q must have shape (..., T, d_k)", "got shape (3)"],
    ),
    "numpy K ndim": (
        lambda: vectorized.attention(a((2, 3)), a(3), a((2, 3))),
        ValueError,
        ["K must have shape (..., S, d_k)", "got shape (3)"],
    ),
    "numpy V ndim": (
        lambda: vectorized.attention(a((2, 3)), a((2, 3)), a(3)),
        ValueError,
        ["V must have shape (..., S, d_v)", "got shape (3)"],
    ),
    "numpy empty T": (
        lambda: vectorized.attention(a((0, 3)), a((2, 3)), a((2, 3))),
        ValueError,
        ["Q has an empty query sequence T", "(0, 3)"],
    ),
    "numpy empty S": (
        lambda: vectorized.attention(a((2, 3)), a((0, 3)), a((0, 3))),
        ValueError,
        ["K has an empty key sequence S", "(0, 3)"],
    ),
    "numpy d_k mismatch": (
        lambda: vectorized.attention(a((2, 3)), a((4, 5)), a((4, 1))),
        ValueError,
        ["Q and K", "Q has shape (2, 3) (d_k=3)", "K has shape (4, 5) (d_k=5)"],
    ),
    "numpy S mismatch": (
        lambda: vectorized.attention(a((2, 3)), a((4, 3)), a((5, 1))),
        ValueError,
        ["K and V", "K has shape (4, 3) (S=4)", "V has shape (5, 1) (S=5)"],
    ),
    "numpy batch mismatch": (
        lambda: vectorized.attention(a((2, 2, 3)), a((3, 4, 3)), a((3, 4, 1))),
        ValueError,
        ["batch dimensions of Q (2, 2, 3), K (3, 4, 3) and V (3, 4, 1)"],
    ),
    "numpy mask shape": (
        lambda: vectorized.attention(a((2, 3)), a((4, 3)), a((4, 1)), mask=a((4, 2), bool)),
        ValueError,
        ["mask must broadcast", "(..., T, S) = (2, 4)", "got shape (4, 2)"],
    ),
    "numpy mask dtype": (
        lambda: vectorized.attention(a((2, 3)), a((4, 3)), a((4, 1)), mask=a((2, 4), int)),
        TypeError,
        ["mask must be boolean", "got dtype int64"],
    ),
    "numpy mask type": (
        lambda: vectorized.attention(a((2, 3)), a((4, 3)), a((4, 1)), mask=t(2, 4)),
        TypeError,
        ["mask must be a NumPy array", "got Tensor"],
    ),
    "numpy softmax axis": (
        lambda: vectorized.softmax(a((2, 3)), axis=2),
        ValueError,
        ["axis=2 is out of range", "x of shape (2, 3)"],
    ),
    "numpy softmax empty": (
        lambda: vectorized.softmax(a((2, 0))),
        ValueError,
        ["x has an empty axis -1", "(2, 0)"],
    ),
    "numpy X ndim": (
        lambda: vectorized.self_attention(a(8), a((8, 4)), a((8, 4)), a((8, 4))),
        ValueError,
        ["X must have shape (..., T, d_model)", "got shape (8)"],
    ),
    "numpy W shape": (
        lambda: vectorized.self_attention(a((5, 8)), a((8, 4)), a((7, 4)), a((8, 4))),
        ValueError,
        ["W_k must have shape (d_model, d) = (8, d)", "X of shape (5, 8)", "got shape (7, 4)"],
    ),
    # ---- multihead (torch)
    "torch non-tensor": (
        lambda: scaled_dot_product_attention(a((2, 3)), t(2, 3), t(2, 3)),
        TypeError,
        ["q must be a torch.Tensor", "NumPy array of shape (2, 3)", "torch.from_numpy"],
    ),
    "torch non-float": (
        lambda: scaled_dot_product_attention(t(2, 3), t(2, 3, dtype=torch.long), t(2, 3)),
        TypeError,
        ["k must have a floating dtype", "torch.int64"],
    ),
    "torch dtype mismatch": (
        lambda: scaled_dot_product_attention(t(2, 3), t(2, 3, dtype=torch.float64), t(2, 3)),
        TypeError,
        ["q, k and v must share one dtype", "k torch.float64", "q torch.float32"],
    ),
    "torch d_k mismatch": (
        lambda: scaled_dot_product_attention(t(2, 3), t(4, 5), t(4, 1)),
        ValueError,
        ["q and k", "q has shape (2, 3) (d_k=3)", "k has shape (4, 5) (d_k=5)"],
    ),
    "torch S mismatch": (
        lambda: scaled_dot_product_attention(t(2, 3), t(4, 3), t(5, 1)),
        ValueError,
        ["k and v", "k has shape (4, 3) (S=4)", "v has shape (5, 1) (S=5)"],
    ),
    "torch empty": (
        lambda: scaled_dot_product_attention(t(1, 0, 3), t(1, 2, 3), t(1, 2, 3)),
        ValueError,
        ["q has an empty query sequence T", "(1, 0, 3)"],
    ),
    "torch mask shape": (
        lambda: scaled_dot_product_attention(t(2, 3), t(4, 3), t(4, 1), attn_mask=t(3, 4, dtype=torch.bool)),
        ValueError,
        ["attn_mask must broadcast", "(..., T, S) = (2, 4)", "got shape (3, 4)"],
    ),
    "torch mask dtype": (
        lambda: scaled_dot_product_attention(t(2, 3), t(4, 3), t(4, 1), attn_mask=t(2, 4, dtype=torch.long)),
        TypeError,
        ["attn_mask must be torch.bool", "torch.float32", "got torch.int64"],
    ),
    "torch mask type": (
        lambda: scaled_dot_product_attention(t(2, 3), t(4, 3), t(4, 1), attn_mask=a((2, 4), bool)),
        TypeError,
        ["attn_mask must be a torch.Tensor", "NumPy array of shape (2, 4)"],
    ),
    "torch mask with is_causal": (
        lambda: scaled_dot_product_attention(
            t(2, 3), t(2, 3), t(2, 3), attn_mask=t(2, 2, dtype=torch.bool), is_causal=True
        ),
        ValueError,
        ["attn_mask and is_causal=True cannot be combined"],
    ),
    "split_heads divide": (
        lambda: split_heads(t(2, 5, 8), 3),
        ValueError,
        ["num_heads=3 must divide d_model=8", "x has shape (2, 5, 8)"],
    ),
    "heads do not divide": (
        lambda: MultiHeadSelfAttention(10, 4),
        ValueError,
        ["num_heads must be >= 1 and divide d_model", "d_model=10", "num_heads=4", "2.5"],
    ),
    "heads zero": (
        lambda: MultiHeadSelfAttention(8, 0),
        ValueError,
        ["num_heads must be an int >= 1", "got 0"],
    ),
    "module x type": (
        lambda: MHA(a((1, 2, 8))),
        TypeError,
        ["x must be a torch.Tensor", "NumPy array of shape (1, 2, 8)"],
    ),
    "module x shape": (
        lambda: MHA(t(2, 5, 6)),
        ValueError,
        ["x must have shape (B, T, d_model) = (B, T, 8)", "got shape (2, 5, 6)"],
    ),
    "module x ndim": (lambda: MHA(t(5, 8)), ValueError, ["x must have shape (B, T, d_model)", "(5, 8)"]),
    "module empty": (lambda: MHA(t(2, 0, 8)), ValueError, ["x has an empty sequence", "(2, 0, 8)"]),
    "module padding shape": (
        lambda: MHA(t(2, 5, 8), padding_mask=t(2, 4, dtype=torch.bool)),
        ValueError,
        ["padding_mask must have shape (B, T) = (2, 5)", "got shape (2, 4)"],
    ),
    "module padding dtype": (
        lambda: MHA(t(2, 5, 8), padding_mask=t(2, 5)),
        TypeError,
        ["padding_mask must have dtype torch.bool", "got torch.float32"],
    ),
    "module padding type": (
        lambda: MHA(t(2, 5, 8), padding_mask=[[True] * 5] * 2),
        TypeError,
        ["padding_mask must be a torch.Tensor", "got list"],
    ),
    "from_torch type": (
        lambda: MultiHeadSelfAttention.from_torch(torch.nn.Linear(2, 2)),
        TypeError,
        ["mha must be an nn.MultiheadAttention", "got Linear"],
    ),
    "from_torch kdim": (
        lambda: MultiHeadSelfAttention.from_torch(torch.nn.MultiheadAttention(8, 2, kdim=4)),
        ValueError,
        ["mha must use kdim = vdim = embed_dim"],
    ),
    "from_torch bias_kv": (
        lambda: MultiHeadSelfAttention.from_torch(torch.nn.MultiheadAttention(8, 2, add_bias_kv=True)),
        ValueError,
        ["no bias_k/bias_v"],
    ),
    # ---- masks
    "causal T < 1": (lambda: masks.causal_mask(0), ValueError, ["T must be an int >= 1", "got 0"]),
    "causal S < 1": (lambda: masks.causal_mask(3, 0), ValueError, ["S must be an int >= 1", "got 0"]),
    "causal T type": (lambda: masks.causal_mask(2.0), TypeError, ["T must be an int", "got 2.0 (a float)"]),
    "causal align": (
        lambda: masks.causal_mask(2, align="left"),
        ValueError,
        ["align must be one of ('top_left', 'bottom_right')", "got 'left'"],
    ),
    "padding T": (lambda: masks.padding_mask([1], 0), ValueError, ["T must be an int >= 1", "got 0"]),
    "padding lengths ndim": (
        lambda: masks.padding_mask([[1, 2]], 3),
        ValueError,
        ["lengths must be one-dimensional", "shape (B,)", "got shape (1, 2)"],
    ),
    "padding lengths range": (
        lambda: masks.padding_mask([1, 4], 3),
        ValueError,
        ["every length must lie in [0, T] = [0, 3]", "got lengths [1, 4]"],
    ),
    "sliding window": (
        lambda: masks.sliding_window_mask(4, 0),
        ValueError,
        ["window must be an int >= 1", "got 0"],
    ),
    "to_additive dtype": (
        lambda: masks.to_additive(t(2, 2)),
        TypeError,
        ["mask must have dtype torch.bool", "got torch.float32"],
    ),
    "to_additive type": (
        lambda: masks.to_additive(a((2, 2), bool)),
        TypeError,
        ["mask must be a torch.Tensor", "got ndarray"],
    ),
    # ---- tiled
    "tiled non-tensor": (
        lambda: tiled_attention(t(2, 3), a((2, 3)), t(2, 3)),
        TypeError,
        ["k must be a torch.Tensor", "NumPy array of shape (2, 3)"],
    ),
    "tiled block 0": (
        lambda: tiled_attention(t(2, 3), t(2, 3), t(2, 3), block_size=0),
        ValueError,
        ["block_size must be an int >= 1", "got 0"],
    ),
    "tiled block float": (
        lambda: tiled_attention(t(2, 3), t(2, 3), t(2, 3), block_size=2.0),
        TypeError,
        ["block_size must be an int >= 1", "got 2.0"],
    ),
    "tiled d_k mismatch": (
        lambda: tiled_attention(t(2, 3), t(4, 5), t(4, 1)),
        ValueError,
        ["q and k", "q has shape (2, 3)", "k has shape (4, 5)"],
    ),
    "tiled empty": (
        lambda: tiled_attention(t(0, 3), t(2, 3), t(2, 3)),
        ValueError,
        ["q has an empty query sequence T", "(0, 3)"],
    ),
    "tiled leading dims": (
        lambda: tiled_attention(t(2, 4, 3), t(1, 5, 3), t(1, 5, 3)),
        ValueError,
        ["q, k and v must have the same leading dimensions", "(2, 4, 3)", "(1, 5, 3)"],
    ),
    "tiled dtype": (
        lambda: tiled_attention(t(2, 3), t(2, 3), t(2, 3, dtype=torch.float64)),
        TypeError,
        ["q, k and v must share one dtype", "torch.float64"],
    ),
    # ---- KV cache
    "cache size": (lambda: KVCache(1, 2, 0, 4), ValueError, ["max_len must be an int >= 1", "got 0"]),
    "cache append type": (
        lambda: KVCache(1, 2, 3, 4).append(a((1, 2, 1, 4)), t(1, 2, 1, 4)),
        TypeError,
        ["k must be a torch.Tensor", "NumPy array of shape (1, 2, 1, 4)"],
    ),
    "cache append shape": (
        lambda: KVCache(1, 2, 3, 4).append(t(1, 3, 1, 4), t(1, 3, 1, 4)),
        ValueError,
        ["k must have shape (B, H, T_new, d_head) = (1, 2, T_new, 4)", "got shape (1, 3, 1, 4)"],
    ),
    "cache append k/v": (
        lambda: KVCache(1, 2, 3, 4).append(t(1, 2, 1, 4), t(1, 2, 2, 4)),
        ValueError,
        ["k and v must have the same shape", "(1, 2, 1, 4) and (1, 2, 2, 4)"],
    ),
    "cache overflow": (
        lambda: _full_cache.append(t(1, 2, 1, 4), t(1, 2, 1, 4)),
        ValueError,
        ["holds 2 of max_len=2", "cannot take 1 more"],
    ),
    "decode x_new shape": (
        lambda: decode_step(MHA, t(1, 2, 6), KVCache.for_module(MHA, 1, 4)),
        ValueError,
        ["x_new must have shape (B, T_new, d_model) = (B, T_new, 8)", "got shape (1, 2, 6)"],
    ),
    "decode x_new empty": (
        lambda: decode_step(MHA, t(1, 0, 8), KVCache.for_module(MHA, 1, 4)),
        ValueError,
        ["x_new", "T_new >= 1", "got shape (1, 0, 8)"],
    ),
    "decode x_new type": (
        lambda: decode_step(MHA, [[0.0] * 8], KVCache.for_module(MHA, 1, 4)),
        TypeError,
        ["x_new must be a torch.Tensor", "got list"],
    ),
    "decode padding shape": (
        lambda: decode_step(
            MHA, t(1, 2, 8), KVCache.for_module(MHA, 1, 4), padding_mask=t(1, 3, dtype=torch.bool)
        ),
        ValueError,
        ["padding_mask must have shape (B, cache.length + T_new) = (1, 2)", "got shape (1, 3)"],
    ),
    "decode padding dtype": (
        lambda: decode_step(MHA, t(1, 2, 8), KVCache.for_module(MHA, 1, 4), padding_mask=t(1, 2)),
        TypeError,
        ["padding_mask must have dtype torch.bool", "got torch.float32"],
    ),
    # ---- the shared check used by every level
    "check_mask_shape": (
        lambda: check_mask_shape("m", (5,), (2, 4)),
        ValueError,
        ["m must broadcast", "(2, 4)", "got shape (5)"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_input_message(case):
    fn, exc, needles = CASES[case]
    with pytest.raises(exc) as excinfo:
        fn()
    assert type(excinfo.value) in (ValueError, TypeError)
    assert_message(excinfo, *needles)


def test_bad_padding_mask_leaves_the_cache_untouched():
    cache = KVCache.for_module(MHA, 1, 4)
    with pytest.raises(ValueError):
        decode_step(MHA, t(1, 2, 8), cache, padding_mask=t(1, 3, dtype=torch.bool))
    assert cache.length == 0


# ---------------------------------------------------------------------------------------------
# Issue 15: input that was accepted silently, or failed later with torch's or NumPy's own words.
# ---------------------------------------------------------------------------------------------

ISSUE_15 = {
    "heads float": (
        lambda: MultiHeadSelfAttention(8, 2.0),
        TypeError,
        ["num_heads must be an int", "2.0 (a float)"],
    ),
    "heads bool": (
        lambda: MultiHeadSelfAttention(8, True),
        TypeError,
        ["num_heads must be an int", "True (a bool)"],
    ),
    "d_model float": (
        lambda: MultiHeadSelfAttention(8.0, 2),
        TypeError,
        ["d_model must be an int", "8.0 (a float)"],
    ),
    "d_model str": (
        lambda: MultiHeadSelfAttention("8", 2),
        TypeError,
        ["d_model must be an int", "'8' (a str)"],
    ),
    "cache size float": (
        lambda: KVCache(1, 2, 2.5, 4),
        TypeError,
        ["max_len must be an int", "2.5 (a float)"],
    ),
    "cache size bool": (lambda: KVCache(True, 2, 2, 4), TypeError, ["batch must be an int", "True (a bool)"]),
    "float64 into a float32 layer": (
        lambda: MHA(t(1, 2, 8, dtype=torch.float64)),
        TypeError,
        ["x has dtype torch.float64", "torch.float32", "x.float()", "layer.double()"],
    ),
    "float64 into a float32 decode step": (
        lambda: decode_step(MHA, t(1, 1, 8, dtype=torch.float64), KVCache.for_module(MHA, 1, 4)),
        TypeError,
        ["x_new has dtype torch.float64", "torch.float32"],
    ),
    "split_heads rank": (
        lambda: split_heads(t(5, 8), 2),
        ValueError,
        ["x must have shape (B, T, d_model)", "got shape (5, 8)"],
    ),
    "split_heads heads float": (
        lambda: split_heads(t(1, 5, 8), 2.0),
        TypeError,
        ["num_heads must be an int", "2.0"],
    ),
    "merge_heads rank": (
        lambda: merge_heads(t(2, 5, 4)),
        ValueError,
        ["x must have shape (B, H, T, d_head)", "got shape (2, 5, 4)"],
    ),
    "loops d_k = 0": (
        lambda: loops.attention([[]], [[]], [[1.0]]),
        ValueError,
        ["d_k = 0", "Q has shape (1, 0)"],
    ),
    "numpy d_k = 0": (
        lambda: vectorized.attention(a((2, 0)), a((3, 0)), a((3, 1))),
        ValueError,
        ["Q has d_k = 0", "(2, 0)"],
    ),
    "torch d_k = 0": (
        lambda: scaled_dot_product_attention(t(2, 0), t(3, 0), t(3, 1)),
        ValueError,
        ["q has d_k = 0", "(2, 0)"],
    ),
    "numpy ragged list": (
        lambda: vectorized.attention([[1.0, 2.0], [3.0]], a((2, 2)), a((2, 1))),
        ValueError,
        ["Q is a ragged nested list", "same length"],
    ),
    "numpy list of strings": (
        lambda: vectorized.softmax([["a", "b"]]),
        TypeError,
        ["x must hold numbers", "'a'"],
    ),
    "loops string entry": (
        lambda: loops.attention([["a"]], [[1.0]], [[1.0]]),
        TypeError,
        ["Q[0][0] must be a number", "'a'"],
    ),
    "padding float lengths": (
        lambda: masks.padding_mask([2.5], 4),
        TypeError,
        ["lengths must hold integers", "2.5"],
    ),
    "padding bool lengths": (
        lambda: masks.padding_mask([True, False], 4),
        TypeError,
        ["lengths must hold integers", "booleans"],
    ),
    "padding bool tensor": (
        lambda: masks.padding_mask(torch.tensor([True, False]), 4),
        TypeError,
        ["lengths must hold integers", "booleans"],
    ),
    "padding float tensor": (
        lambda: masks.padding_mask(torch.tensor([2.0]), 4),
        TypeError,
        ["lengths must hold integers", "floats"],
    ),
    "padding string lengths": (
        lambda: masks.padding_mask(["a"], 4),
        TypeError,
        ["lengths must hold integers", "'a'"],
    ),
    "padding ragged lengths": (
        lambda: masks.padding_mask([[1], [1, 2]], 4),
        ValueError,
        ["lengths must be a flat list of integers"],
    ),
    "loops NaN": (
        lambda: loops.attention([[float("nan")]], [[1.0]], [[1.0]]),
        ValueError,
        ["Q[0][0] is nan", "finite"],
    ),
    "loops inf": (
        lambda: loops.attention([[1.0]], [[1.0]], [[float("inf")]]),
        ValueError,
        ["V[0][0] is inf", "finite"],
    ),
}


@pytest.mark.parametrize("case", list(ISSUE_15))
def test_issue_15_rejected_input(case):
    fn, exc, needles = ISSUE_15[case]
    with pytest.raises(exc) as excinfo:
        fn()
    assert type(excinfo.value) is exc
    assert_message(excinfo, *needles)


@pytest.mark.parametrize("n", [np.int64(4), np.int32(4), np.uint8(4)])
def test_numpy_integers_are_ints(n):
    """NumPy integers are accepted wherever an int is, and give the same result as the int."""
    assert torch.equal(masks.causal_mask(n), masks.causal_mask(4))
    assert torch.equal(masks.causal_mask(2, n), masks.causal_mask(2, 4))
    assert torch.equal(masks.padding_mask([2, 3], n), masks.padding_mask([2, 3], 4))
    assert torch.equal(masks.padding_mask(np.array([2, 3]), 4), masks.padding_mask([2, 3], 4))
    assert torch.equal(masks.sliding_window_mask(5, n), masks.sliding_window_mask(5, 4))
    q = torch.randn(1, 2, 6, 4)
    assert torch.equal(tiled_attention(q, q, q, block_size=n), tiled_attention(q, q, q, block_size=4))
    layer = MultiHeadSelfAttention(np.int64(8), n // 2)
    assert (layer.d_model, layer.num_heads, layer.d_head) == (8, 2, 4)
    assert type(layer.d_model) is int and type(layer.num_heads) is int
    assert KVCache(1, 2, n, 4).max_len == 4
    assert split_heads(torch.zeros(1, 3, 8), n).shape == (1, 4, 3, 2)


def test_empty_lengths_make_an_empty_batch():
    assert masks.padding_mask([], 3).shape == (0, 3)


@pytest.mark.parametrize("where", ["Q", "K", "V"])
def test_nan_propagates_at_the_numpy_and_torch_levels_as_in_torch(where):
    """One documented behaviour per level: loops reject NaN (tested above); NumPy and torch pass it
    through, NaN landing exactly where torch's own SDPA puts it."""
    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    {"Q": Q, "K": K, "V": V}[where][1, 0] = np.nan
    want = torch.nn.functional.scaled_dot_product_attention(*(torch.from_numpy(x) for x in (Q, K, V))).numpy()
    got_np, _ = vectorized.attention(Q, K, V)
    got_torch, _ = scaled_dot_product_attention(*(torch.from_numpy(x) for x in (Q, K, V)))
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got_np), np.isnan(want))
    np.testing.assert_array_equal(np.isnan(got_torch.numpy()), np.isnan(want))
    got_tiled = tiled_attention(*(torch.from_numpy(x) for x in (Q, K, V)), block_size=2)
    np.testing.assert_array_equal(np.isnan(got_tiled.numpy()), np.isnan(want))


def test_nan_in_a_token_propagates_through_the_layer_as_in_torch():
    """The torch level's layer: a NaN feature of token 1 reaches every output row through its key
    and value, exactly where nn.MultiheadAttention puts NaN."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)
    layer = MultiHeadSelfAttention.from_torch(mha)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x[0, 1, 0] = float("nan")
    want = mha(x, x, x, need_weights=False)[0]
    got = layer(x)[0]
    assert torch.isnan(want[0]).all() and not torch.isnan(want[1]).any()
    assert torch.equal(torch.isnan(got), torch.isnan(want))
