"""Exercise checks: ``from selfattention import checks as check; check.softmax(my_softmax)``.

Each check runs your function on small cases. When it is right it says so in one line; when it is
wrong it says what is wrong, names the classic mistake when it recognises one, and shows the
input, the expected and the obtained values. Every check returns a :class:`CheckResult`
(truthy when passed) and accepts ``raise_on_fail=True`` to raise :class:`CheckError` instead.

Checks by chapter:

* Part I: :func:`scores_one_query`, :func:`weighted_sum` (chapter 1);
  :func:`dot`, :func:`softmax_list`, :func:`attention_row` (chapter 2, loops);
  :func:`softmax`, :func:`scores`, :func:`attention` (chapter 3, NumPy).
* Part II: :func:`projections`, :func:`shuffled_weights`, :func:`sinusoidal`,
  :func:`rope_attention` (chapter 4); :func:`split_heads`, :func:`merge_heads`,
  :func:`multihead_attention`, :func:`mha_parameter_count` (chapter 5);
  :func:`causal_mask`, :func:`masked_softmax`, :func:`fix_inverted_mask`, :func:`kv_step`
  (chapter 6).
* Part III: :func:`attention_flops`, :func:`online_softmax_update` (chapter 7);
  :func:`softmax_backward`, :func:`attention_block_backward` (chapter 8, the backward pass);
  :func:`triton_online_softmax`, :func:`flash_tile` (chapter 9, FlashAttention in Triton).
* Part IV: :func:`lm_shift`, :func:`answer_targets`, :func:`greedy_generate`,
  :func:`top_k_probs` (chapter 10, the tiny transformer); :func:`cross_attention`,
  :func:`sliding_window_mask`, :func:`linear_attention`, :func:`structured_penalty` (chapter 11).
"""

from ._core import CHECK_CALL_RE, CheckError, CheckResult, learner_facing
from .backward import attention_block_backward, softmax_backward
from .beyond import cross_attention, linear_attention, sliding_window_mask, structured_penalty
from .flash import flash_tile, triton_online_softmax
from .foundations import (
    attention,
    attention_row,
    dot,
    scores,
    scores_one_query,
    softmax,
    softmax_list,
    weighted_sum,
)
from .layer import (
    merge_heads,
    mha_parameter_count,
    multihead_attention,
    projections,
    shuffled_weights,
    sinusoidal,
    split_heads,
)
from .masking import causal_mask, fix_inverted_mask, kv_step, masked_softmax
from .model import answer_targets, greedy_generate, lm_shift
from .modern import rope_attention, top_k_probs
from .scale import attention_flops, online_softmax_update

__all__ = [
    "CHECK_CALL_RE",
    "CheckError",
    "CheckResult",
    "answer_targets",
    "attention",
    "attention_flops",
    "attention_row",
    "causal_mask",
    "dot",
    "fix_inverted_mask",
    "flash_tile",
    "greedy_generate",
    "kv_step",
    "lm_shift",
    "masked_softmax",
    "merge_heads",
    "mha_parameter_count",
    "multihead_attention",
    "online_softmax_update",
    "projections",
    "scores",
    "shuffled_weights",
    "sinusoidal",
    "softmax",
    "softmax_list",
    "split_heads",
    # chapter 8
    "attention_block_backward",
    "softmax_backward",
    "triton_online_softmax",
    # modern practice (chapters 4 and 10)
    "rope_attention",
    "top_k_probs",
    # chapter 1
    "scores_one_query",
    "weighted_sum",
    # chapter 11
    "cross_attention",
    "linear_attention",
    "sliding_window_mask",
    "structured_penalty",
]

# What a check raises (an unwritten exercise, raise_on_fail) shows the learner's cell, not the
# checker's frames: every public check, whichever module defines it, goes through learner_facing.
for _name in __all__:
    if _name[0].islower():  # the checks; not CHECK_CALL_RE, CheckError, CheckResult
        globals()[_name] = learner_facing(globals()[_name])
del _name
