"""Checks for chapter 10: the language-model shift, the answer-only targets, greedy decoding."""

from __future__ import annotations

import numpy as np
import torch

from ..train import IGNORE
from ._core import Case, CheckResult, Mistake, guard_in_place, in_place_mistake, run_check

#: The id the loss ignores (``nn.functional.cross_entropy``'s default ``ignore_index``).


def _seqs() -> list[torch.Tensor]:
    """A few reversal-task sequences (digits, SEP = 10, digits reversed), fixed."""
    r = np.random.default_rng(8008)
    out = []
    for B, n in ((2, 3), (3, 4)):
        d = torch.from_numpy(r.integers(0, 10, size=(B, n)))
        out.append(torch.cat([d, torch.full((B, 1), 10), d.flip(1)], dim=1).long())
    return out


def _pair(out):
    """A learner's (inputs, targets) as one (2, B, L-1) array, or unchanged when not a pair."""
    try:
        a, b = out
        return np.stack([np.asarray(a), np.asarray(b)])
    except Exception:
        return out


def lm_shift(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(seq) -> (inputs, targets)``: seq (B, L) -> two (B, L-1) tensors."""
    cases = [
        Case((s,), np.stack([s[:, :-1].numpy(), s[:, 1:].numpy()]), f"seq of shape {tuple(s.shape)}")
        for s in _seqs()
    ]
    mistakes = [
        Mistake(
            "no shift (targets = inputs = seq)",
            "the model at position t must predict the *next* token, so targets[t] = seq[t+1]: "
            "inputs = seq[:, :-1], targets = seq[:, 1:].",
            lambda s: np.stack([s.numpy(), s.numpy()]),
        ),
        Mistake(
            "the shift the wrong way round",
            "the inputs are the start of the sequence and the targets one step later: "
            "inputs = seq[:, :-1], targets = seq[:, 1:] (not the other way round).",
            lambda s: np.stack([s[:, 1:].numpy(), s[:, :-1].numpy()]),
        ),
        Mistake(
            "targets equal to the inputs",
            "a causal model that must predict its own input token learns to copy it; the target "
            "at position t is the token at t+1: targets = seq[:, 1:].",
            lambda s: np.stack([s[:, :-1].numpy(), s[:, :-1].numpy()]),
        ),
    ]
    return run_check(
        "lm_shift",
        fn,
        cases,
        "(seq)",
        mistakes,
        rtol=0,
        atol=0,
        postprocess=_pair,
        raise_on_fail=raise_on_fail,
    )


def _answer(s: torch.Tensor, n: int, start: int, shifted: bool = True, fill: int = IGNORE):
    t = (s[:, 1:] if shifted else s[:, :-1]).clone()
    t[:, :start] = fill
    return t


def answer_targets(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(seq, length) -> targets``: seq (B, 2n+1) -> (B, 2n), IGNORE before the answer."""
    seqs = _seqs()
    cases = [
        Case(
            (s, (s.shape[1] - 1) // 2),
            _answer(s, (s.shape[1] - 1) // 2, (s.shape[1] - 1) // 2),
            f"length {(s.shape[1] - 1) // 2}",
        )
        for s in seqs
    ]
    mistakes = [
        Mistake(
            "targets not shifted",
            "the target at position t is the token at t+1 (start from seq[:, 1:]), then hide "
            "the first `length` positions.",
            lambda s, n: _answer(s, n, n, shifted=False),
        ),
        Mistake(
            "the separator kept as a target",
            "position length-1 (the last input digit) predicts SEP: that is not part of the "
            "answer. Hide targets[:, :length], all of them.",
            lambda s, n: _answer(s, n, n - 1),
        ),
        Mistake(
            "the first answer digit hidden",
            "the position of SEP (index length) predicts the first reversed digit: keep it. "
            "Hide targets[:, :length] only.",
            lambda s, n: _answer(s, n, n + 1),
        ),
        Mistake(
            "the mask inverted",
            "hide the positions *before* the answer and keep the answer itself.",
            lambda s, n: torch.where(torch.arange(2 * n) < n, s[:, 1:], IGNORE),
        ),
        Mistake(
            "hidden targets set to 0",
            "0 is a real token (the digit 0): the loss would teach the model to predict it. Use "
            "IGNORE = -100, the id that cross_entropy skips.",
            lambda s, n: _answer(s, n, n, fill=0),
        ),
        in_place_mistake(
            "seq",
            "seq[:, 1:] is a view of the batch, so writing IGNORE into it changes seq itself: in "
            "a training loop the inputs (another view of the same batch) would then hold -100, "
            "which the embedding cannot look up. Start from seq[:, 1:].clone().",
        ),
    ]
    return run_check(
        "answer_targets",
        guard_in_place(fn, ("seq",)),
        cases,
        "(seq, length)",
        mistakes,
        rtol=0,
        atol=0,
        raise_on_fail=raise_on_fail,
    )


_V = 7


class _ToyModel:
    """A causal stand-in for a model: idx (B, T) -> logits (B, T, 7).

    The most likely token after position t is (3 * sum(idx[:, :t+1]) + t + 1) mod 7, so it depends
    on every earlier token and on the position, as a real model's prediction does.
    """

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx).long()
        T = idx.shape[1]
        nxt = (3 * idx.cumsum(1) + torch.arange(T) + 1) % _V  # (B, T)
        return torch.nn.functional.one_hot(nxt, _V).float() * 4.0 - 1.0  # (B, T, V)

    def __repr__(self) -> str:  # shown in a failing check's message
        return "toy_model"


toy_model = _ToyModel()


def _greedy(model_fn, prompt, n_new, pick=-1, feed_back=True):
    tokens = prompt.clone()
    for _ in range(n_new):
        seen = tokens if feed_back else prompt
        nxt = model_fn(seen)[:, pick].argmax(-1, keepdim=True)  # (B, 1)
        tokens = torch.cat([tokens, nxt], dim=1)
    return tokens


def greedy_generate(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(model_fn, prompt, n_new) -> tokens (B, T_prompt + n_new)``, greedy decoding.

    ``model_fn(idx)`` maps ids (B, T) to logits (B, T, V); the check passes a small causal toy.
    """
    r = np.random.default_rng(808)
    prompts = [torch.from_numpy(r.integers(0, _V, size=s)).long() for s in ((1, 3), (2, 4))]
    cases = [
        Case((toy_model, p, k), _greedy(toy_model, p, k), f"prompt {tuple(p.shape)}, n_new={k}")
        for p, k in zip(prompts, (4, 5))
    ]
    mistakes = [
        Mistake(
            "the first position's prediction used",
            "logits[:, t] predicts the token after position t: the next token comes from the "
            "*last* position, logits[:, -1].",
            lambda f, p, k: _greedy(f, p, k, pick=0),
        ),
        Mistake(
            "generated tokens not fed back",
            "each step must run the model on the prompt *and* everything generated so far; "
            "otherwise it predicts the same next token again and again.",
            lambda f, p, k: _greedy(f, p, k, feed_back=False),
        ),
        Mistake(
            "only the new tokens returned",
            "return the whole sequence, prompt included: shape (B, T_prompt + n_new).",
            lambda f, p, k: _greedy(f, p, k)[:, p.shape[1] :],
        ),
    ]
    return run_check(
        "greedy_generate",
        fn,
        cases,
        "(model_fn, prompt, n_new)",
        mistakes,
        rtol=0,
        atol=0,
        raise_on_fail=raise_on_fail,
    )
