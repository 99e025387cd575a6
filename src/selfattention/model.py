"""A tiny causal transformer, built from the library's own pieces (chapter 10).

In the spirit of nanoGPT, one small class per idea::

    idx (B, T) token ids
      -> TokenEmbedding (+ LearnedPositionalEmbedding)        x (B, T, d_model)
      -> Block x num_layers:
            x = x + MultiHeadSelfAttention(LayerNorm(x), is_causal=True)
            x = x + MLP(LayerNorm(x))
      -> LayerNorm -> Linear head                              logits (B, T, vocab_size)

The attention is ``multihead.MultiHeadSelfAttention``; training calls it with
``need_weights=False`` (torch's fused SDPA), reading the maps calls it with ``need_weights=True``
(the library's own SDPA, which also returns the (B, H, T, T) weights). Generation can use one
``kvcache.KVCache`` per layer and ``MultiHeadSelfAttention.step``, the mechanism of chapter 6, and gives
the same tokens as recomputing the whole prefix at every step.

Positions come from a learned table added to the tokens (``pos="learned"``, GPT-2) or from
rotating the queries and keys of every layer (``pos="rope"``, ``positional.apply_rope``, as
Llama). ``generate`` decodes greedily or samples (``sampling``: temperature, top-k, top-p).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ._validate import require_int, shape_str
from .kvcache import KVCache
from .multihead import MultiHeadSelfAttention
from .positional import LearnedPositionalEmbedding
from .sampling import check_sampling, sample_next

__all__ = ["MLP", "Block", "ModelConfig", "TinyTransformer", "ablate_heads", "generate"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a :class:`TinyTransformer`.

    Attributes:
        vocab_size: number of token ids (ids are 0 .. vocab_size - 1).
        max_len: the longest sequence the model reads: the learned position table's size, or,
            with ``pos="rope"`` (no table), a configured limit that also sizes the KV caches
            of :meth:`TinyTransformer.new_caches`.
        d_model: width of every token vector.
        num_heads: heads per attention layer; must divide d_model.
        num_layers: number of blocks.
        d_ff: hidden width of the MLP (default 4 * d_model, as in GPT-2).
        pos: "learned" (a table of position vectors added to the tokens) or "rope" (queries and
            keys rotated by their positions in every layer).
    """

    vocab_size: int
    max_len: int
    d_model: int = 64
    num_heads: int = 2
    num_layers: int = 2
    d_ff: int | None = None
    pos: str = "learned"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "num_heads", "num_layers"):
            require_int(name, getattr(self, name))
        if self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads must divide d_model: got d_model={self.d_model}, "
                f"num_heads={self.num_heads}."
            )
        if self.d_ff is not None:
            require_int("d_ff", self.d_ff)
        if self.pos not in ("learned", "rope"):
            raise ValueError(f'pos must be "learned" or "rope", got pos={self.pos!r}.')

    @property
    def hidden(self) -> int:
        """The MLP's hidden width."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Linear, (B, T, d) -> (B, T, d).

    Attention moves information *between* positions; the MLP transforms it *within* each
    position (the same weights at every position).
    """

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)  # (B, T, d_model) -> (B, T, d_ff)
        self.down = nn.Linear(d_ff, d_model)  # (B, T, d_ff) -> (B, T, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x)))


class Block(nn.Module):
    """One pre-LayerNorm transformer block: attention then MLP, each added to a residual stream.

    The residual stream ``x`` carries every token's vector from layer to layer; each sub-layer
    reads a normalised copy (LayerNorm) and *adds* its result, so a layer can leave a token
    unchanged by adding nothing, and gradients flow straight through the additions.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, rope: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, num_heads, rope=rope)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff)

    def forward(
        self, x: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model) -> (x (B, T, d_model), weights (B, H, T, T) or None)."""
        a, weights = self.attn(self.ln1(x), is_causal=True, need_weights=need_weights)
        x = x + a  # (B, T, d_model)
        x = x + self.mlp(self.ln2(x))  # (B, T, d_model)
        return x, weights

    def step(
        self, x_new: torch.Tensor, cache: KVCache, need_weights: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same block for T_new new positions, attending to the cached ones.

        x_new (B, T_new, d_model) -> (x (B, T_new, d_model), weights (B, H, T_new, S) or None),
        where S = cache.length after the step. Equals the last T_new rows of ``forward`` on the
        whole sequence. With ``need_weights=False`` torch's fused attention runs (faster) and
        the weights are None.
        """
        a, weights = self.attn.step(self.ln1(x_new), cache, need_weights=need_weights)
        x = x_new + a
        x = x + self.mlp(self.ln2(x))
        return x, weights


class TinyTransformer(nn.Module):
    """A decoder-only (causal) transformer: token ids in, next-token logits out.

    Args:
        config: a :class:`ModelConfig`.

    The parameters are initialised by PyTorch's defaults: seed with ``torch.manual_seed`` before
    building the model to make it reproducible.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}.")
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)  # id -> (d_model,)
        rope = c.pos == "rope"
        if not rope:
            self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)  # position -> (d_model,)
        self.blocks = nn.ModuleList(
            [Block(c.d_model, c.num_heads, c.hidden, rope=rope) for _ in range(c.num_layers)]
        )
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)  # (B, T, d_model) -> (B, T, vocab_size)

    def _check_idx(self, idx: torch.Tensor, offset: int = 0, name: str = "idx") -> None:
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(idx).__name__}.")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(
                f"{name} must hold integer token ids (torch.long), got dtype {idx.dtype}."
            )
        c = self.config
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(
                f"{name} must have shape (B, T) with T >= 1, got shape {shape_str(idx.shape)}."
            )
        if offset + idx.shape[1] > c.max_len:
            last = offset + idx.shape[1] - 1
            needed = f"{name} has shape {shape_str(idx.shape)}: positions {offset} .. {last}"
            if c.pos == "rope":
                # No table to run out of: max_len is the configured limit (and the caches' size).
                raise ValueError(
                    f"{needed} are needed, over the model's max_len={c.max_len}. With "
                    'pos="rope" there is no position table: max_len is the longest sequence the '
                    "model is configured to read, and the length of the KV caches new_caches "
                    "makes. To read longer sequences, build a ModelConfig with a larger max_len: "
                    "no weight depends on it, so the same state_dict loads."
                )
            raise ValueError(
                f"{needed} are needed but the model knows max_len={c.max_len} positions."
            )
        if idx.numel() and (idx.min() < 0 or idx.max() >= c.vocab_size):
            raise ValueError(
                f"{name} holds ids from {int(idx.min())} to {int(idx.max())}; they must lie in "
                f"0 .. vocab_size - 1 = 0 .. {c.vocab_size - 1}."
            )

    def embed(self, idx: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """idx (B, T) -> x (B, T, d_model): token embedding + embedding of positions offset..

        With ``pos="rope"`` the tokens carry no position here: each attention layer rotates its
        queries and keys instead.
        """
        if self.config.pos == "rope":
            return self.tok_emb(idx)
        return self.tok_emb(idx) + self.pos_emb(idx.shape[1], offset)  # (T, d) broadcasts over B

    def forward(
        self, idx: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits for every position.

        Args:
            idx: (B, T) integer token ids, T <= config.max_len.
            need_weights: also return the attention weights of every layer (slower: the
                library's SDPA runs instead of torch's fused one).
        Returns:
            (logits, weights): logits (B, T, vocab_size), where logits[:, t] scores the token
            *after* position t and depends on idx[:, :t+1] only; weights
            (num_layers, B, H, T, T) or None.
        Raises:
            TypeError: idx is not an integer tensor.
            ValueError: idx is not (B, T) with 1 <= T <= max_len, or holds an id outside the
                vocabulary.
        """
        self._check_idx(idx)
        x = self.embed(idx)  # (B, T, d_model)
        maps = []
        for block in self.blocks:
            x, w = block(x, need_weights=need_weights)
            maps.append(w)
        logits = self.head(self.ln_f(x))  # (B, T, vocab_size)
        return logits, (torch.stack(maps) if need_weights else None)

    def new_caches(self, batch: int, max_len: int | None = None) -> list[KVCache]:
        """One empty :class:`KVCache` per layer, for ``batch`` sequences of up to ``max_len``."""
        max_len = self.config.max_len if max_len is None else max_len
        return [KVCache.for_module(b.attn, batch, max_len) for b in self.blocks]

    def forward_cached(
        self, idx_new: torch.Tensor, caches: list[KVCache], need_weights: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for new tokens, reusing the keys and values cached for earlier ones.

        Args:
            idx_new: (B, T_new) ids of the positions after the ``caches[0].length`` already seen
                (the whole prompt on the first call: the "prefill").
            caches: from :meth:`new_caches`; each grows by T_new.
            need_weights: also return the attention weights of every layer. With False, torch's
                fused SDPA runs instead of the library's (as in ``forward``'s default): the same
                logits, faster, which is what :func:`generate` uses.
        Returns:
            (logits, weights): logits (B, T_new, vocab_size), equal to the last T_new rows of
            ``forward`` on the whole sequence; weights (num_layers, B, H, T_new, S), or None
            when ``need_weights=False``.
        Raises:
            TypeError: as :meth:`forward`.
            ValueError: as :meth:`forward`, or ``caches`` does not hold one cache per layer of
                matching batch size.
        """
        if len(caches) != len(self.blocks):
            raise ValueError(
                f"caches must hold one KVCache per layer ({len(self.blocks)}), got {len(caches)}."
            )
        offset = caches[0].length
        self._check_idx(idx_new, offset=offset, name="idx_new")
        if caches[0].keys.shape[0] != idx_new.shape[0]:
            raise ValueError(
                f"idx_new has shape {shape_str(idx_new.shape)} but the caches were made for "
                f"batch={caches[0].keys.shape[0]}."
            )
        x = self.embed(idx_new, offset)  # (B, T_new, d_model)
        maps = []
        for block, cache in zip(self.blocks, caches):
            x, w = block.step(x, cache, need_weights=need_weights)  # w (B, H, T_new, S) or None
            maps.append(w)
        return self.head(self.ln_f(x)), (torch.stack(maps) if need_weights else None)


@torch.no_grad()
def generate(
    model: TinyTransformer,
    prompt: torch.Tensor,
    max_new_tokens: int,
    use_cache: bool = True,
    return_logits: bool = False,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Append a next token ``max_new_tokens`` times: greedy by default, or sampled.

    Greedy (the default, all of temperature, top_k, top_p None) appends the most likely token.
    Given any of them, each token is drawn from softmax(logits / temperature) restricted to the
    top-k / top-p tokens (``sampling.sample_next``), with ``generator`` (seed it to repeat).

    Without the cache every step runs the model on the whole sequence so far (O(T^2) attention
    per step); with it the prompt is run once (prefill) and every later step feeds only the
    newest token, attending to the cached keys and values. Both run torch's fused attention
    (``need_weights=False``): no attention weights are built, so timing one against the other
    compares the cache with recomputation, not two attention kernels.

    Args:
        model: a :class:`TinyTransformer` (put in eval mode by the caller if it matters).
        prompt: (B, T_prompt) integer ids.
        max_new_tokens: how many tokens to add (>= 0).
        use_cache: decode with one KV cache per layer.
        return_logits: also return the logits that chose each new token (before temperature
            and filtering).
        temperature: finite, > 0; sampling temperature (1 when sampling and not given).
        top_k: >= 1; sample among the k most likely tokens (and any tied with the k-th).
        top_p: in (0, 1]; sample among the fewest tokens whose probability reaches top_p.
        generator: a ``torch.Generator`` for the draws.
    Returns:
        tokens (B, T_prompt + max_new_tokens); with ``return_logits`` a tuple
        (tokens, logits (B, max_new_tokens, vocab_size)).
    Raises:
        ValueError: max_new_tokens < 0, or T_prompt + max_new_tokens - 1 > model.config.max_len,
            temperature not a finite number > 0, top_k <= 0, top_p outside (0, 1] (and the
            errors of ``model.forward`` for a bad prompt).
        TypeError: temperature or top_p is not a real number, or top_k not an int.
    """
    check_sampling(temperature, top_k, top_p)
    require_int("max_new_tokens", max_new_tokens, minimum=0)
    model._check_idx(prompt, name="prompt")
    # The model reads every token but the last one it generates.
    total = prompt.shape[1] + max_new_tokens
    if total - 1 > model.config.max_len:
        raise ValueError(
            f"prompt has shape {shape_str(prompt.shape)}; with max_new_tokens={max_new_tokens} the "
            f"model would read {total - 1} tokens, over max_len={model.config.max_len}."
        )
    tokens = prompt
    chosen = []
    caches = model.new_caches(prompt.shape[0], max(total - 1, 1)) if use_cache else None
    for step in range(max_new_tokens):
        if use_cache:
            new = tokens if step == 0 else tokens[:, -1:]  # prefill, then one token per step
            # No weights: torch's fused attention, as the uncached branch's model(tokens) runs.
            logits, _ = model.forward_cached(new, caches, need_weights=False)
        else:
            logits, _ = model(tokens)  # the whole prefix, every step
        last = logits[:, -1]  # (B, vocab_size): scores of the next token
        chosen.append(last)
        nxt = sample_next(last, temperature, top_k, top_p, generator)  # (B,)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    if return_logits:
        if chosen:
            return tokens, torch.stack(chosen, 1)
        empty = torch.zeros(prompt.shape[0], 0, model.config.vocab_size)
        return tokens, empty
    return tokens


@contextmanager
def ablate_heads(model: TinyTransformer, heads: Iterable[tuple[int, int]]) -> Iterator[None]:
    """Inside the ``with`` block, the given (layer, head) pairs contribute nothing.

    A head's output is the slice [h * d_head, (h+1) * d_head) of the merged heads, just before
    the output projection W_o; a forward pre-hook on W_o sets that slice to zero, so the head's
    information never reaches the residual stream (in ``forward`` and in cached decoding alike).
    The hooks are removed on leaving the block.

    Raises:
        ValueError: a layer or head index out of range.
    """
    c = model.config
    heads = list(heads)
    for layer, head in heads:
        if not (0 <= layer < c.num_layers and 0 <= head < c.num_heads):
            raise ValueError(
                f"heads must be (layer, head) pairs with 0 <= layer < {c.num_layers} and "
                f"0 <= head < {c.num_heads}, got ({layer}, {head})."
            )
    handles = []
    for layer in sorted({layer for layer, _ in heads}):
        attn = model.blocks[layer].attn
        keep = torch.ones(c.d_model)
        for lay, h in heads:
            if lay == layer:
                keep[h * attn.d_head : (h + 1) * attn.d_head] = 0.0

        def zero_heads(module, args, keep=keep):
            return (args[0] * keep.to(args[0]),)  # (B, T, d_model), ablated slices set to 0

        handles.append(attn.W_o.register_forward_pre_hook(zero_heads))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
