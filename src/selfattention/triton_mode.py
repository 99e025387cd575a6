"""Choosing how Triton runs: natively on an NVIDIA GPU, or in its interpreter on CPU tensors.

Triton reads ``TRITON_INTERPRET`` once per ``@triton.jit`` function, when the function is
decorated, and its own helpers (``tl.cdiv``, ``tl.zeros``, ``tl.sum``...) are decorated when triton
is first imported. So the choice has to be made before anything imports triton (``torch.compile``
and ``import torch._dynamo`` both do). :func:`import_triton` makes it, imports triton and says which
mode is in use; every module of the course that holds kernels imports triton through it.
"""

from __future__ import annotations

import os
import platform
import sys
from types import ModuleType

_NOTE_PRINTED = False

INSTALL_HINT = (
    "Triton runs on Linux (x86-64 or aarch64) only: `pip install triton` there (a CUDA build of "
    "torch brings it already). On macOS or Windows, open the chapter in Colab or a Linux machine "
    "(WSL2 works on Windows); the rest of the course runs without Triton."
)


def _has_nvidia_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.version.cuda is not None)


def _interpreter_was_chosen_at_import(triton: ModuleType) -> bool:
    """True when the already imported triton decorated its helpers for the interpreter."""
    from triton.language import standard

    return type(standard.cdiv).__name__ == "InterpretedFunction"


def choose_mode() -> None:
    """Set ``TRITON_INTERPRET=1`` when there is no NVIDIA GPU and triton is not imported yet.

    Cheap (it does not import triton): ``tests/conftest.py`` calls it before any test module can
    import triton by another road.
    """
    if "triton" not in sys.modules and not _has_nvidia_gpu() and not _compile_only():
        os.environ["TRITON_INTERPRET"] = "1"


def _compile_only() -> bool:
    """``TRITON_INTERPRET=0`` set by hand on a machine without a GPU: keep Triton's compiler.

    Kernels can then be compiled for a GPU (``tests/test_flash_compile.py`` compiles them for
    sm_90 this way), though not run.
    """
    return os.environ.get("TRITON_INTERPRET") == "0"


def import_triton() -> tuple[ModuleType, ModuleType, bool]:
    """Import triton in the right mode and return ``(triton, triton.language, interpreted)``.

    With an NVIDIA GPU, kernels are compiled for it (unless ``TRITON_INTERPRET=1`` was set by
    hand). Without one, ``TRITON_INTERPRET=1`` is set before the first import, so the same kernels
    run in Triton's interpreter on CPU tensors, and a one-line note says so.

    Raises:
        ImportError: triton is not installed (it is not available on macOS or Windows).
        RuntimeError: triton was imported before this module could choose the interpreter (e.g.
            by ``torch.compile`` or ``import torch._dynamo`` earlier in the same process).
    """
    global _NOTE_PRINTED
    choose_mode()
    try:
        import triton
        import triton.language as tl
    except ImportError as err:  # pragma: no cover - depends on the platform
        raise ImportError(
            f"selfattention.flash needs the `triton` package, which is not installed here "
            f"({platform.system()} {platform.machine()}). {INSTALL_HINT}"
        ) from err
    interpreted = _interpreter_was_chosen_at_import(triton)
    if not interpreted and not _has_nvidia_gpu() and not _compile_only():
        raise RuntimeError(
            "triton was imported before selfattention.flash could switch it to its CPU interpreter "
            "(torch.compile and `import torch._dynamo` import triton). There is no NVIDIA GPU here, "
            "so the kernels can only run in the interpreter: import selfattention.flash first (e.g. "
            "as the first import of the notebook or script), or start Python with "
            "TRITON_INTERPRET=1 set, then restart the kernel."
        )
    if interpreted and not _NOTE_PRINTED:
        _NOTE_PRINTED = True
        print(
            "Note: no NVIDIA GPU, so Triton kernels run in its interpreter on the CPU "
            "(correct, but slow: never a speed measurement)."
        )
    return triton, tl, interpreted
