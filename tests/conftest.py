"""Shared test setup: choose Triton's mode before any test module can import triton.

``import torch._dynamo`` and ``torch.compile`` import triton; once imported, triton cannot switch
to its CPU interpreter. Choosing first makes ``tests/test_flash.py`` independent of collection order.
"""

from __future__ import annotations


def pytest_configure(config) -> None:
    try:
        from selfattention import triton_mode
    except ImportError:  # the library is not importable here: its own tests will say so
        return
    triton_mode.choose_mode()
