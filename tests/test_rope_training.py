"""The tiny transformer trains with RoPE (chapter 10's claim, measured here rather than on the page)."""

from __future__ import annotations

import torch
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)

from selfattention import train as tr
from selfattention.model import ModelConfig, TinyTransformer


def test_rope_model_learns_the_reversal():
    """Chapter 10's claim: with RoPE, one layer cannot find the mirror position from offsets alone,
    two layers learn the 8-digit reversal to the held-out accuracy of learned positions (>= 99%).
    About 20 s of CPU time: the chapter states the result and this test measures it."""
    task = tr.ReversalTask(length=8)
    train, test = task.make_split(20_000, 2_000, seed=0)
    exact = {}
    for layers, steps in ((1, 150), (2, 600)):
        torch.manual_seed(0)
        m = TinyTransformer(ModelConfig(vocab_size=task.vocab_size, max_len=task.seq_len - 1, d_model=32,
                                        num_heads=2, num_layers=layers, pos="rope"))
        tr.train(m, train, task, steps=steps, batch_size=128, lr=5e-3, warmup=20, seed=0, log=None,
                 progress=False)
        exact[layers] = tr.evaluate(m, test, task)["exact"]
    assert exact[1] < 0.1 and exact[2] >= 0.99, exact
