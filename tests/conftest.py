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
    from napari_grainseg.samples import interconnect_tem_path

    return interconnect_tem_path()
