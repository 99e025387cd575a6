"""The chapter 9 checks, ``check.triton_online_softmax`` and ``check.flash_tile``: right kernels
pass, and each classic mistake gets its name (tests/test_checks.py runs the registries below).

The kernels live in ``_flash_check_kernels.py``, which needs Triton; where it cannot be installed
(macOS, Windows) these checks are listed as unavailable and their tests skip.
"""

from __future__ import annotations

import pytest

try:
    from _flash_check_kernels import (  # noqa: F401 (CORRECT, MORE_CORRECT, MISTAKES: read by test_checks.py)
        CORRECT,
        MISTAKES,
        MORE_CORRECT,
        tile_allow_tf32_false,
        tile_q_unmasked,
        tile_right,
        tile_tf32,
        tl,
        triton,
        update_exp2,
    )

    UNAVAILABLE: dict[str, str] = {}
except ImportError as err:  # pragma: no cover - macOS / Windows
    if "triton" not in str(err):
        raise
    UNAVAILABLE = {name: f"Triton is unavailable: {err}" for name in ("triton_online_softmax", "flash_tile")}

needs_triton = pytest.mark.skipif(bool(UNAVAILABLE), reason="Triton is unavailable here")


@needs_triton
def test_tf32_is_read_from_the_source():
    from selfattention.checks.flash import dots_left_at_tf32

    assert dots_left_at_tf32(tile_tf32) and dots_left_at_tf32(update_exp2) is False
    assert not dots_left_at_tf32(tile_right)
    # allow_tf32=False is the older spelling of input_precision="ieee" (Triton maps one to the other)
    assert not dots_left_at_tf32(tile_allow_tf32_false)

    @triton.jit
    def plain_dot(a, b):
        return tl.dot(a, b)

    @triton.jit
    def tf32_allowed(a, b):
        return tl.dot(a, b, allow_tf32=True)

    @triton.jit
    def precision_by_position(a, b):
        return tl.dot(a, b, None, "ieee")

    @triton.jit
    def default_spelled_out(a, b):
        return tl.dot(a, b, input_precision=None, allow_tf32=None)

    assert dots_left_at_tf32(plain_dot) and dots_left_at_tf32(tf32_allowed)
    assert not dots_left_at_tf32(precision_by_position)
    assert dots_left_at_tf32(default_spelled_out)


@needs_triton
def test_an_unmasked_q_load_is_seen_by_watching_the_loads():
    """Rows of Q read past T feed only rows that the masked store drops: no output shows them,
    so the check watches the addresses read, and leaves the interpreter as it found it."""
    from triton.runtime import interpreter

    from selfattention import checks as check

    builder = interpreter.interpreter_builder
    assert "create_masked_load" not in vars(builder)
    result = check.flash_tile(tile_q_unmasked)
    assert result.mistake == "Q loaded without a mask at the ragged edge"
    assert "create_masked_load" not in vars(builder)  # the watch is gone again
    assert check.flash_tile(tile_right).passed


@needs_triton
def test_an_unwritten_kernel_stops_with_its_hint(capsys):
    from selfattention import checks as check

    @triton.jit
    def update_stub(m_i, l_i, acc, s, v):
        raise NotImplementedError("rescale l and acc by exp(m - m_new)")

    with pytest.raises(NotImplementedError, match=r"rescale l and acc by exp\(m - m_new\)"):
        check.triton_online_softmax(update_stub)
