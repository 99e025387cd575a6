"""Pick the fastest device present and say which one ran."""

from __future__ import annotations

import platform

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to use: ``prefer`` if given, else CUDA, then Apple's MPS, then the CPU.

    Raises:
        ValueError: ``prefer`` is not a device name, or names one that is not available here.
    """
    if prefer is not None:
        try:
            dev = torch.device(prefer)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"prefer={prefer!r} is not a device name such as 'cuda' or 'cpu'.") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r} but CUDA is not available on this machine.")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"prefer={prefer!r} but MPS is not available on this machine.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def describe_device(device: torch.device | str | None = None) -> str:
    """A one-line description, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64, 2 threads)``."""
    device = pick_device() if device is None else torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
