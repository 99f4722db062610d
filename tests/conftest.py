"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def sample_path() -> Path:
    from napari_grainseg.io.samples import interconnect_tem_path

    return interconnect_tem_path()


@pytest.fixture(autouse=True)
def model_store(tmp_path, monkeypatch):
    """Each test's own (empty) model store: the napari docks never list or write the user's real models."""
    from napari_grainseg.models.store import STORE_ENV

    monkeypatch.setenv(STORE_ENV, str(tmp_path / "model-store"))
    return tmp_path / "model-store"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run torch on one thread in the test process: deterministic timing, no oversubscription of
    this 2-core machine (subprocess tests start their own interpreter and are unaffected)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
