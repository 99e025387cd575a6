"""Level 3: batched multi-head attention in PyTorch.

Shapes follow the book: x (B, T, d_model); per-head q, k, v (B, H, T, d_head) with
d_head = d_model / num_heads; weights (B, H, T, S).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import (
    check_mask_shape,
    check_qkv_tensors,
    require_input_dtype,
    require_int,
    require_ndim_exact,
    require_padding_mask,
    require_tensor,
    shape_str,
)
from .masks import causal_mask
from .positional import apply_rope
from .vectorized import softmax_block_rows


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    enable_gqa: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with the semantics of ``torch.nn.functional.scaled_dot_product_attention``,
    returning the weights as well.

    Args:
        q: (..., T, d_k). k: (..., S, d_k). v: (..., S, d_v). Leading dimensions broadcast.
        attn_mask: optional, broadcastable to (..., T, S). Boolean: True = attend. Floating: added
            to the scores. Must not be combined with ``is_causal`` (as in torch).
        is_causal: query i sees keys j <= i, aligned top-left exactly as torch aligns it
            (for T != S use ``masks.causal_mask(T, S, align="bottom_right")`` when decoding).
        scale: multiply the scores by this; default 1/sqrt(d_k).
        dropout_p: attention dropout, in [0, 1). Each weight is zeroed with probability p and the
            survivors are divided by 1 - p (inverted dropout, as torch), so the expected output
            is the output without dropout. Applied whenever p > 0, as in torch's function: a
            layer passes p only in training.
        enable_gqa: let k and v have fewer heads than q (grouped-query attention): q is
            (..., H, T, d_k), k and v (..., H_kv, S, .) with H_kv dividing H; key/value head g
            serves query heads g * H/H_kv .. (g+1) * H/H_kv - 1, as torch (>= 2.5) does.
        generator: the ``torch.Generator`` that draws the dropout mask (seed it to repeat a draw).
    Returns:
        (out, weights): out (..., T, d_v), weights (..., T, S), after dropout when p > 0.
        Fully masked rows give zero weights and a zero output, as torch's SDPA does (from torch
        2.5 on; a plain softmax, and SDPA before 2.5, give NaN). NaN or inf in q, k or v gives
        NaN in every row that attends to it; rows that mask it may get NaN too (0 times inf),
        depending on the implementation and SDPA's backend.
    Raises:
        TypeError: an input is not a floating tensor, dtypes differ, or the mask is neither bool
            nor of q's dtype.
        ValueError: shapes disagree (the message gives them), an empty sequence, a mask that does
            not broadcast to (..., T, S), or a mask together with ``is_causal``, ``dropout_p``
            outside [0, 1), or (with ``enable_gqa``) head counts that do not divide.
    """
    check_dropout_p(dropout_p)
    if enable_gqa:
        for name, t in (("q", q), ("k", k), ("v", v)):
            require_tensor(name, t)  # repeat_kv reads their shapes
        k, v = repeat_kv(q, k, v)  # (..., H_kv, S, .) -> (..., H, S, .)
    check_qkv_tensors(q, k, v)
    if attn_mask is not None and is_causal:
        raise ValueError(
            "attn_mask and is_causal=True cannot be combined (torch forbids it too): fold the "
            "causal mask into attn_mask with masks.causal_mask(T, S) & attn_mask."
        )
    T, d_k = q.shape[-2], q.shape[-1]
    S = k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(d_k)

    # (..., T, d_k) @ (..., d_k, S) -> (..., T, S). Scale q (T*d_k numbers), not the scores.
    scores = torch.matmul(q * scale, k.transpose(-2, -1))
    allowed = None
    if attn_mask is not None:
        require_tensor("attn_mask", attn_mask, floating=False)
        check_mask_shape("attn_mask", tuple(attn_mask.shape), tuple(scores.shape))
        if attn_mask.dtype == torch.bool:
            allowed = attn_mask
        elif attn_mask.dtype == q.dtype:
            scores.add_(attn_mask)
        else:
            raise TypeError(
                f"attn_mask must be torch.bool (True = attend) or q's dtype {q.dtype} (added to "
                f"the scores), got {attn_mask.dtype}."
            )
    elif is_causal:
        allowed = causal_mask(T, S, device=q.device)  # top-left, exactly as torch aligns it
    if allowed is not None:
        scores.masked_fill_(~allowed, float("-inf"))
    weights = _softmax_(scores)
    if dropout_p > 0:
        keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= dropout_p
        weights = weights * keep / (1.0 - dropout_p)  # inverted: the expectation is unchanged
    return torch.matmul(weights, v), weights


def check_dropout_p(dropout_p: float) -> None:
    """Raise unless ``dropout_p`` is a real number in [0, 1) (p = 1 would drop every weight)."""
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {type(dropout_p).__name__}.")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got dropout_p={dropout_p}.")


def repeat_kv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """k, v (..., H_kv, S, .) -> (..., H, S, .): each key/value head repeated H / H_kv times.

    Query heads g * H/H_kv .. (g+1) * H/H_kv - 1 share key/value head g (``repeat_interleave``, the
    order of torch's ``enable_gqa``). Raises ValueError when the head counts do not divide.
    """
    if q.ndim < 3 or k.ndim < 3 or v.ndim < 3:
        raise ValueError(
            f"enable_gqa needs a head dimension: q (..., H, T, d_k), k and v (..., H_kv, S, .), got "
            f"q {shape_str(q.shape)}, k {shape_str(k.shape)}, v {shape_str(v.shape)}."
        )
    H, H_kv = q.shape[-3], k.shape[-3]
    if v.shape[-3] != H_kv or H_kv < 1 or H % H_kv:
        raise ValueError(
            f"with enable_gqa, k and v must have the same number of heads H_kv dividing q's H: got "
            f"H={H} (q {shape_str(q.shape)}), H_kv={H_kv} (k {shape_str(k.shape)}) and "
            f"{v.shape[-3]} (v {shape_str(v.shape)})."
        )
    group = H // H_kv
    return k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)


def _softmax_(scores: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax that overwrites ``scores``; rows of only -inf become zeros, not NaN.

    When autograd records ``scores`` (training), the same steps run out of place: backward needs
    the intermediate results that the in-place version would overwrite.
    """
    if scores.requires_grad:
        m = scores.detach().amax(dim=-1, keepdim=True)
        m = m.masked_fill(torch.isneginf(m), 0.0)
        e = (scores - m).exp()
        total = e.sum(dim=-1, keepdim=True)
        return e / total.masked_fill(total == 0, 1.0)
    if scores.device.type != "cpu" or not scores.is_contiguous() or scores.numel() == 0:
        # On a GPU: the steps in place over all rows, a few kernels and no second (T, S) array.
        m = scores.amax(dim=-1, keepdim=True)
        m.masked_fill_(torch.isneginf(m), 0.0)
        scores.sub_(m).exp_()
        total = scores.sum(dim=-1, keepdim=True)
        return scores.div_(total.masked_fill_(total == 0, 1.0))
    # On a CPU: blocks of rows small enough to stay in cache, each read from main memory once and
    # written back once. ``torch.softmax`` is one fused kernel, about twice as fast here as the
    # steps above as separate operations; every row is computed the same way in any block.
    rows = scores.view(-1, scores.shape[-1])  # (N * T, S), a view of scores
    for block in rows.split(softmax_block_rows(rows.shape[1] * rows.element_size())):
        dead = torch.isneginf(block.amax(dim=-1))  # rows of only -inf: torch.softmax gives NaN
        block.copy_(torch.softmax(block, dim=-1))
        if dead.any():  # rare; indexing only then is ~10x cheaper than a broadcast masked_fill_
            block[dead] = 0.0
    return scores


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, d_model) -> (B, H, T, d_head): head h gets features [h*d_head, (h+1)*d_head).

    ``view`` splits the last dimension into (H, d_head) in place; ``transpose`` then brings H in
    front of T so each head is a (T, d_head) matrix for batched matmul. A plain
    ``view(B, H, T, d_head)`` would be wrong: it would cut the memory of one sentence into H
    chunks of consecutive *tokens*, mixing positions and features.

    Raises:
        TypeError: x is not a tensor, or num_heads not an int.
        ValueError: x is not 3-D, num_heads < 1, or num_heads does not divide d_model.
    """
    require_tensor("x", x, floating=False)
    require_ndim_exact("x", x.shape, "(B, T, d_model)")
    num_heads = require_int("num_heads", num_heads)
    B, T, d_model = x.shape
    if d_model % num_heads:
        raise ValueError(
            f"num_heads={num_heads} must divide d_model={d_model} (x has shape "
            f"{shape_str(x.shape)})."
        )
    return x.view(B, T, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d_head) -> (B, T, H * d_head), the inverse of :func:`split_heads`.

    Raises:
        TypeError: x is not a tensor.
        ValueError: x is not 4-D.
    """
    require_tensor("x", x, floating=False)
    require_ndim_exact("x", x.shape, "(B, H, T, d_head)")
    B, H, T, d_head = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, H * d_head)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: project, split into heads, attend, merge, project.

    Args:
        d_model: width of the tokens.
        num_heads: number of heads H; must divide d_model (d_head = d_model / H).
        bias: whether the four projections have biases.
        num_kv_heads: key/value heads (grouped-query attention): None means ``num_heads`` (plain
            multi-head), 1 is multi-query; it must divide ``num_heads``. ``W_k`` and ``W_v``
            project to ``num_kv_heads * d_head`` features, and a KV cache stores that many heads.
        dropout_p: attention dropout in [0, 1), applied to the weights in training mode only.
        rope: rotate q and k by their positions (``positional.apply_rope``) after projecting.
    Raises:
        TypeError: ``d_model``, ``num_heads`` or ``num_kv_heads`` is not an int (NumPy integers
            are fine).
        ValueError: ``num_heads`` < 1 or does not divide ``d_model``; ``num_kv_heads`` <= 0 or
            does not divide ``num_heads``; ``dropout_p`` outside [0, 1).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        bias: bool = True,
        num_kv_heads: int | None = None,
        dropout_p: float = 0.0,
        rope: bool = False,
    ) -> None:
        super().__init__()
        d_model, num_heads = require_int("d_model", d_model), require_int("num_heads", num_heads)
        if num_heads < 1 or d_model < 1 or d_model % num_heads:
            raise ValueError(
                f"num_heads must be >= 1 and divide d_model: got d_model={d_model}, "
                f"num_heads={num_heads} (d_model / num_heads = {d_model / max(num_heads, 1):g})."
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.num_kv_heads = _check_num_kv_heads(num_kv_heads, num_heads)
        check_dropout_p(dropout_p)
        self.dropout_p = float(dropout_p)
        self.rope = bool(rope)
        d_kv = self.num_kv_heads * self.d_head
        # nn.Linear computes y = x W^T + b, so W_q.weight is (d_model, d_model) = W_Q transposed.
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_kv, bias=bias)  # (B, T, d_model) -> (B, T, H_kv * d_head)
        self.W_v = nn.Linear(d_model, d_kv, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def project(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d_model) -> q (B, H, T, d_head), k and v (B, H_kv, T, d_head).

        With ``rope`` the queries and keys are rotated by ``positions`` ((T,) or (B, T), default
        0 .. T-1) after the projection; the values never are.
        """
        q = split_heads(self.W_q(x), self.num_heads)
        k = split_heads(self.W_k(x), self.num_kv_heads)
        v = split_heads(self.W_v(x), self.num_kv_heads)
        if self.rope:
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        return q, k, v

    def _check_tokens(self, name: str, x, T_name: str) -> None:
        """Raise a learner-facing error unless ``x`` is a (B, T, d_model) tensor with T >= 1 and
        the weights' dtype (the input checks of :meth:`forward` and :meth:`step`)."""
        require_tensor(name, x)
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"{name} must have shape (B, {T_name}, d_model) = (B, {T_name}, {self.d_model}), "
                f"got shape {shape_str(x.shape)}."
            )
        if x.shape[1] == 0:
            raise ValueError(
                f"{name} has an empty sequence (need {T_name} >= 1), got shape {shape_str(x.shape)}."
            )
        require_input_dtype(name, x, self.W_q.weight.dtype)

    def _attend(self, q, k, v, mask, is_causal, need_weights, generator):
        """Attention of the projected heads, then merge and W_o: (B, T, d_model), weights."""
        p = self.dropout_p if self.training else 0.0
        gqa = self.num_kv_heads != self.num_heads
        if need_weights or (p > 0 and generator is not None):
            out, weights = scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p, enable_gqa=gqa,
                generator=generator,
            )
        else:
            # torch's fused kernel; with dropout it draws from torch's global generator.
            extra = {"enable_gqa": True} if gqa else {}  # enable_gqa needs torch >= 2.5
            out = nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p, **extra
            )
            weights = None
        return self.W_o(merge_heads(out)), (weights if need_weights else None)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over the tokens of each sentence.

        Args:
            x: (B, T, d_model).
            padding_mask: optional (B, T) bool, True = a real token (``masks.padding_mask``);
                padded keys are hidden from every query.
            is_causal: hide future tokens (query i sees keys j <= i).
            need_weights: return the (B, H, T, T) weights; with False the fused
                ``torch.nn.functional.scaled_dot_product_attention`` runs instead (faster) and
                None is returned in their place.
            generator: draws the dropout mask in training mode (then the library's SDPA runs).
        Returns:
            (out, weights): out (B, T, d_model); weights (B, H, T, T) or None.

        With ``rope``, token t of every sentence is rotated by position t. Packed or
        left-padded batches, whose positions differ per sentence, need ``project(x, positions)``
        with (B, T) positions, followed by the attention.
        Raises:
            TypeError: x is not a floating tensor, its dtype differs from the weights' (convert
                one of them: ``x.float()`` or ``layer.double()``), or padding_mask is not a bool
                tensor.
            ValueError: x is not (B, T, d_model) or padding_mask not (B, T).
        """
        self._check_tokens("x", x, "T")
        B, T, _ = x.shape
        mask = None
        if padding_mask is not None:
            require_padding_mask(padding_mask, (B, T), "(B, T)")
            mask = padding_mask[:, None, None, :]  # (B, 1, 1, T): hide padded keys
            if is_causal:
                mask = mask & causal_mask(T, device=x.device)
        q, k, v = self.project(x)  # q (B, H, T, d_head), k and v (B, H_kv, T, d_head)
        causal_flag = is_causal and mask is None
        return self._attend(q, k, v, mask, causal_flag, need_weights, generator)  # (B, T, d_model)

    def step(
        self,
        x_new: torch.Tensor,
        cache,
        padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Causal attention of new tokens against everything cached, updating the cache.

        Projects only the new tokens, stores their keys and values in ``cache`` (a
        ``kvcache.KVCache`` or ``kvcache.SlidingWindowCache`` made for this layer), and attends
        from the new queries to the keys the cache hands back, under the mask it hands back.

        Args:
            x_new: (B, T_new, d_model), the tokens after the ``cache.length`` already seen.
            cache: it grows by T_new positions (a sliding-window cache keeps the last W).
            padding_mask: optional (B, cache.length + T_new) bool over every position so far,
                True = a real token.
            need_weights: also return the weights (B, H, T_new, S) over the S keys used.
        Returns:
            (out, weights): out (B, T_new, d_model), equal to the last T_new rows of
            ``self(x_all, is_causal=True)`` (under the cache's window, if any).
        Raises:
            TypeError: x_new is not a floating tensor, its dtype differs from the weights', or
                padding_mask is not a bool tensor.
            ValueError: x_new is not (B, T_new, d_model) with T_new >= 1, padding_mask is not
                (B, cache.length + T_new), or the cache does not fit (the cache's message).
        """
        self._check_tokens("x_new", x_new, "T_new")
        B, T_new, _ = x_new.shape
        if padding_mask is not None:
            # Checked before the cache grows, so a bad mask leaves the cache as it was.
            require_padding_mask(padding_mask, (B, cache.length + T_new), "(B, cache.length + T_new)")
        positions = torch.arange(cache.length, cache.length + T_new, device=x_new.device)
        q, k, v = self.project(x_new, positions)  # q (B, H, T_new, d_head), k, v (B, H_kv, ...)
        k_all, v_all, mask, key_positions = cache.update(k, v)  # mask (T_new, S), True = attend
        if padding_mask is not None:
            mask = mask & padding_mask[:, key_positions][:, None, None, :]  # (B, 1, T_new, S)
        return self._attend(q, k_all, v_all, mask, False, need_weights, None)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadSelfAttention:
        """A copy of ``mha``'s weights in this class, so both give the same output.

        ``nn.MultiheadAttention`` keeps the three projections stacked row-wise in
        ``in_proj_weight`` (3E, E), in that order and in ``nn.Linear``'s (out, in) layout: the
        book's W_Q^T, W_K^T, W_V^T, which are exactly our ``W_q.weight``, ``W_k.weight``,
        ``W_v.weight``. Works whatever ``mha.batch_first`` is (it only changes how mha reads inputs).
        ``mha.dropout`` becomes ``dropout_p`` and the copy is in ``mha``'s mode (training or
        eval); with dropout, the two draw different masks in training mode, so compare them in
        eval mode.

        Raises:
            TypeError: ``mha`` is not an ``nn.MultiheadAttention``.
            ValueError: ``mha`` has separate key/value widths (kdim/vdim != embed_dim),
                bias_k/bias_v or add_zero_attn, which self-attention does not use.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be an nn.MultiheadAttention, got {type(mha).__name__}.")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError(
                "mha must use kdim = vdim = embed_dim, no bias_k/bias_v and no add_zero_attn."
            )
        bias = mha.in_proj_bias is not None  # torch's layer is always plain multi-head
        new = cls(mha.embed_dim, mha.num_heads, bias=bias, dropout_p=mha.dropout)
        new = new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        new.train(mha.training)  # dropout acts in training mode only: keep mha's choice
        with torch.no_grad():
            for lin, w in zip((new.W_q, new.W_k, new.W_v), mha.in_proj_weight.chunk(3)):
                lin.weight.copy_(w)
            new.W_o.weight.copy_(mha.out_proj.weight)
            if bias:
                for lin, b in zip((new.W_q, new.W_k, new.W_v), mha.in_proj_bias.chunk(3)):
                    lin.bias.copy_(b)
                new.W_o.bias.copy_(mha.out_proj.bias)
        return new

    def extra_repr(self) -> str:
        extra = ""
        if self.num_kv_heads != self.num_heads:
            extra += f", num_kv_heads={self.num_kv_heads}"
        if self.dropout_p:
            extra += f", dropout_p={self.dropout_p}"
        if self.rope:
            extra += ", rope=True"
        return f"d_model={self.d_model}, num_heads={self.num_heads}, d_head={self.d_head}{extra}"


def _check_num_kv_heads(num_kv_heads, num_heads: int) -> int:
    """num_kv_heads or, for None, num_heads; ValueError naming both numbers when it cannot work."""
    if num_kv_heads is None:
        return num_heads
    num_kv_heads = require_int("num_kv_heads", num_kv_heads, minimum=None)
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads must be >= 1 and divide num_heads (each key/value head serves "
            f"num_heads / num_kv_heads query heads): got num_heads={num_heads}, "
            f"num_kv_heads={num_kv_heads}."
        )
    return num_kv_heads
