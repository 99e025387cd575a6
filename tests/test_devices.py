"""Device choice: cuda, then mps, then the cpu; errors when a preferred device is absent."""

from __future__ import annotations

import platform

import pytest
import torch
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)

from selfattention import devices


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


def test_cpu_fallback(no_accelerator):
    assert devices.pick_device() == torch.device("cpu")
    assert devices.pick_device("cpu") == torch.device("cpu")


def test_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.pick_device().type == "mps"
    assert devices.pick_device("mps").type == "mps"


def test_prefer_unavailable_raises(no_accelerator):
    with pytest.raises(ValueError, match=r"prefer='cuda' but CUDA is not available"):
        devices.pick_device("cuda")
    with pytest.raises(ValueError, match=r"prefer='cuda:1' but CUDA"):
        devices.pick_device("cuda:1")
    with pytest.raises(ValueError, match=r"prefer='mps' but MPS is not available"):
        devices.pick_device("mps")
    with pytest.raises(ValueError, match=r"prefer='gpu' is not a device name"):
        devices.pick_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_prefer_cuda_raises_here_without_monkeypatching():
    with pytest.raises(ValueError, match="CUDA is not available"):
        devices.pick_device(prefer="cuda")


def test_mps_available_is_a_bool():
    assert isinstance(devices._mps_available(), bool)


def test_describe_cpu(no_accelerator):
    expected = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    assert devices.describe_device() == expected
    assert devices.describe_device("cpu") == expected


def test_describe_cuda_and_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")
    assert devices.describe_device("cuda") == "cuda:0 (Fake GPU 0)"
    assert devices.describe_device("cuda:1") == "cuda:1 (Fake GPU 1)"
    assert devices.describe_device("mps") == "mps (Apple GPU)"


def test_synchronize(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(("cuda", d)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    devices.synchronize("cpu")
    assert calls == []
    devices.synchronize("cuda")
    devices.synchronize(torch.device("mps"))
    assert calls == [("cuda", torch.device("cuda")), ("mps", None)]
