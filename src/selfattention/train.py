"""The toy task, the training loop, evaluation, and saving of chapter 10's tiny transformer.

The task: reverse a sequence of digits. A sequence of ``length`` digits ``d1 .. dn`` is followed
by a separator and then the same digits backwards::

    d1 d2 ... dn SEP dn ... d2 d1        (2 * length + 1 tokens)

The model reads it as a language model (predict every next token) but is only *scored* on the
answer: the ``length`` digits after SEP. The first half is random and cannot be predicted, so the
loss there is masked out (target ``IGNORE``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._validate import require_int, shape_str
from .model import ModelConfig, TinyTransformer, generate

__all__ = [
    "IGNORE",
    "ReversalTask",
    "TrainResult",
    "answer_targets",
    "evaluate",
    "interactive_session",
    "lm_loss",
    "load_model",
    "save_model",
    "shift",
    "train",
]

#: Target id ignored by the loss (``nn.functional.cross_entropy``'s default ``ignore_index``).
IGNORE = -100


@dataclass(frozen=True)
class ReversalTask:
    """Reverse ``length`` digits drawn from 0 .. num_digits - 1; the separator is id num_digits.

    Attributes:
        length: digits per sequence (n).
        num_digits: the digit alphabet's size (ids 0 .. num_digits - 1).
    """

    length: int = 6
    num_digits: int = 10

    def __post_init__(self) -> None:
        require_int("length", self.length)
        require_int("num_digits", self.num_digits, minimum=2)

    @property
    def sep(self) -> int:
        """Id of the separator token."""
        return self.num_digits

    @property
    def vocab_size(self) -> int:
        return self.num_digits + 1

    @property
    def seq_len(self) -> int:
        """Tokens in a full example: n digits, SEP, n digits."""
        return 2 * self.length + 1

    @property
    def num_sequences(self) -> int:
        """How many different inputs exist (num_digits ** length)."""
        return self.num_digits**self.length

    def token_names(self) -> list[str]:
        """Printable name of every id: the digits, then ``"|"`` for SEP."""
        return [str(i) for i in range(self.num_digits)] + ["|"]

    def decode(self, ids) -> str:
        """A row of ids as text, e.g. ``"3 1 4 | 4 1 3"``."""
        names = self.token_names()
        return " ".join(names[int(i)] for i in ids)

    def examples(self, digits: torch.Tensor) -> torch.Tensor:
        """digits (N, length) -> full sequences (N, seq_len): digits, SEP, digits reversed."""
        digits = torch.as_tensor(digits, dtype=torch.long)
        if digits.ndim != 2 or digits.shape[1] != self.length:
            raise ValueError(
                f"digits must have shape (N, length) = (N, {self.length}), got shape "
                f"{shape_str(digits.shape)}."
            )
        sep = torch.full((digits.shape[0], 1), self.sep, dtype=torch.long)
        return torch.cat([digits, sep, digits.flip(1)], dim=1)

    def prompts(self, data: torch.Tensor) -> torch.Tensor:
        """Full sequences (N, seq_len) -> the prompts (N, length + 1): the digits and SEP."""
        return data[:, : self.length + 1]

    def make_split(self, n_train: int, n_test: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Disjoint training and held-out sets of distinct sequences.

        ``n_train + n_test`` different digit strings are drawn without replacement out of the
        ``num_digits ** length`` possible ones, then cut in two, so no held-out sequence ever
        appears in training.

        Returns:
            (train, test): LongTensors (n_train, seq_len) and (n_test, seq_len).
        Raises:
            ValueError: a size < 1, or more sequences asked for than exist.
        """
        if n_train < 1 or n_test < 1:
            raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}.")
        if n_train + n_test > self.num_sequences:
            raise ValueError(
                f"n_train + n_test = {n_train + n_test} distinct sequences asked for, but only "
                f"{self.num_sequences} exist for length={self.length}, num_digits={self.num_digits}."
            )
        rng = np.random.default_rng(seed)
        codes = rng.choice(self.num_sequences, size=n_train + n_test, replace=False)
        powers = self.num_digits ** np.arange(self.length - 1, -1, -1)
        digits = (codes[:, None] // powers[None, :]) % self.num_digits  # (N, length)
        data = self.examples(torch.from_numpy(digits))
        return data[:n_train], data[n_train:]


def shift(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal language modelling pairs: seq (B, L) -> inputs (B, L-1), targets (B, L-1).

    The model at position t reads tokens 0..t and must predict token t+1, so the targets are
    the sequence shifted left by one: ``inputs = seq[:, :-1]``, ``targets = seq[:, 1:]``.
    """
    if seq.ndim != 2 or seq.shape[1] < 2:
        raise ValueError(f"seq must have shape (B, L) with L >= 2, got shape {shape_str(seq.shape)}.")
    return seq[:, :-1], seq[:, 1:]


def answer_targets(seq: torch.Tensor, length: int) -> torch.Tensor:
    """Targets that score only the answer: seq (B, 2n+1) -> targets (B, 2n).

    ``targets[:, t] = seq[:, t+1]`` for t >= n (the positions from SEP on, which predict the
    reversed digits) and ``IGNORE`` for t < n (predicting the next random input digit, or the
    separator, is not the task).
    """
    if seq.ndim != 2 or seq.shape[1] != 2 * length + 1:
        raise ValueError(
            f"seq must have shape (B, 2 * length + 1) = (B, {2 * length + 1}), got shape "
            f"{shape_str(seq.shape)}."
        )
    targets = seq[:, 1:].clone()  # (B, 2n)
    targets[:, :length] = IGNORE
    return targets


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose target is not ``IGNORE``.

    logits (B, T, V), targets (B, T) -> a scalar.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and targets (B, T): got logits {shape_str(logits.shape)} "
            f"and targets {shape_str(targets.shape)}."
        )
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


@dataclass
class TrainResult:
    """What :func:`train` did: the loss of every step, the logged lines, the wall-clock time."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        """Mean loss of the last 50 steps (one step alone is noisy)."""
        tail = self.losses[-50:]
        return float(sum(tail) / len(tail))


def interactive_session() -> bool:
    """True in a kernel that a person drives from Jupyter (JupyterLab, Notebook).

    The Jupyter server names the notebook of every kernel it starts in the environment variable
    ``JPY_SESSION_NAME``; batch runners (nbclient, nbval, Jupyter Book) do not. A progress bar is
    shown only then, so executed notebooks store deterministic text instead of a bar.
    """
    return bool(os.environ.get("JPY_SESSION_NAME"))


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to lr / 10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: TinyTransformer,
    data: torch.Tensor,
    task: ReversalTask,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 3e-3,
    warmup: int = 100,
    weight_decay: float = 0.01,
    seed: int = 0,
    log_every: int = 0,
    progress: bool | str = "auto",
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``model`` on the reversal ``task`` with AdamW, reproducibly.

    Each step draws ``batch_size`` sequences (with a generator seeded by ``seed``) from ``data``,
    runs the model with the fused attention (``need_weights=False``) and minimises
    :func:`lm_loss` on :func:`answer_targets`.

    Args:
        model: the model to train (in place; left in eval mode).
        data: (N, task.seq_len) training sequences.
        task: the task, for the answer mask.
        steps, batch_size, lr, warmup, weight_decay: the optimisation (warm-up then cosine).
        seed: seeds the batch sampler.
        log_every: every that many steps (and at the last), log one line
            ``"step   200/1500  loss 0.123"``; 0 for never. These lines are deterministic text
            (kept in ``TrainResult.log`` as well).
        progress: show a ``tqdm.auto`` progress bar; ``"auto"`` (the default) shows it only in
            an :func:`interactive_session`, because a bar's text (speeds, times) changes from
            run to run and must not be stored in an executed notebook.
        log: where the lines go (default ``print``; None to only keep them).
    Returns:
        A :class:`TrainResult`.
    Raises:
        ValueError: data is not (N, task.seq_len), or steps / batch_size < 1.
    """
    if data.ndim != 2 or data.shape[1] != task.seq_len or data.shape[0] < 1:
        raise ValueError(
            f"data must have shape (N, seq_len) = (N, {task.seq_len}) with N >= 1, got shape "
            f"{shape_str(data.shape)}."
        )
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}.")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    result = TrainResult()
    bar = None
    if progress == "auto":
        progress = interactive_session()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="training", leave=False)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        batch = data[torch.randint(0, data.shape[0], (batch_size,), generator=gen)]  # (b, 2n+1)
        inputs = batch[:, :-1]  # (b, 2n)
        targets = answer_targets(batch, task.length)  # (b, 2n), IGNORE before SEP
        logits, _ = model(inputs)  # (b, 2n, V)
        loss = lm_loss(logits, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        result.steps.append(step + 1)
        result.losses.append(value)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            line = f"step {step + 1:5d}/{steps}  loss {value:.3f}"
            result.log.append(line)
            if log is not None:
                log(line)
    result.seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    return result


@torch.no_grad()
def evaluate(
    model: TinyTransformer, data: torch.Tensor, task: ReversalTask, use_cache: bool = True
) -> dict:
    """Greedy-decode the answer of every sequence from its prompt alone and score it.

    Returns:
        A dict with ``exact`` (fraction of sequences whose whole answer is right), ``digit``
        (fraction of answer digits right), ``predictions`` (N, length) and ``answers``
        (N, length).
    """
    was_training = model.training
    model.eval()
    out = generate(model, task.prompts(data), task.length, use_cache=use_cache)
    model.train(was_training)
    pred = out[:, task.length + 1 :]  # (N, n)
    answer = data[:, task.length + 1 :]  # (N, n)
    right = pred == answer
    return {
        "exact": float(right.all(dim=1).float().mean()),
        "digit": float(right.float().mean()),
        "predictions": pred,
        "answers": answer,
    }


def save_model(model: TinyTransformer, path: str | Path) -> None:
    """Save the config and the weights (a ``state_dict``) to ``path`` with ``torch.save``."""
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, path)


def load_model(path: str | Path) -> TinyTransformer:
    """Rebuild a model saved by :func:`save_model` (safe loading: ``weights_only=True``)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyTransformer(ModelConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model
