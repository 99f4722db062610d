"""The dead-end closing of the exploratory grain-builder script (scripts/net2_grain_builders.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_grainseg.segmentation.grains import boundaries_to_labels

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "net2_grain_builders.py"


@pytest.fixture(scope="module")
def builders():
    spec = importlib.util.spec_from_file_location("net2_grain_builders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broken_line(gap_value: float):
    """A vertical boundary across a 96 px square with a 6 px gap (rows 45-50), and the Net1-like
    probability: 1 on the line, ``gap_value`` in the gap, 0 elsewhere."""
    boundary = np.zeros((96, 96), np.float32)
    boundary[:, 47:50] = 1.0
    probability = boundary.copy()
    boundary[45:51] = 0.0
    probability[45:51, 47:50] = gap_value
    return boundary, probability


def test_a_gap_along_a_faint_ridge_is_closed(builders):
    boundary, probability = broken_line(0.5)
    assert boundaries_to_labels(boundary).max() == 1  # the gap merges the two grains
    closed = builders.close_dead_ends(boundary, probability)
    assert closed[45:51, 46:51].any(axis=1).all()  # every gap row gets a path pixel
    assert not closed[:, :44].any() and not closed[:, 53:].any()  # nothing drawn elsewhere
    assert boundaries_to_labels(closed.astype(np.float32)).max() == 2


def test_a_gap_without_evidence_stays_open(builders):
    boundary, probability = broken_line(0.0)  # mean path cost about 0.8 > 0.6
    closed = builders.close_dead_ends(boundary, probability)
    np.testing.assert_array_equal(closed, boundary >= 0.5)


def test_a_spur_with_nothing_to_reach_is_left_alone(builders):
    boundary = np.zeros((96, 96), np.float32)
    boundary[:40, 47:50] = 1.0  # enters from the border and ends inside the grain
    closed = builders.close_dead_ends(boundary, np.full_like(boundary, 0.9))
    np.testing.assert_array_equal(closed, boundary >= 0.5)  # it would only be drawn back onto itself


def test_ends_at_the_image_border_are_not_gaps(builders):
    boundary = np.zeros((96, 96), np.float32)
    boundary[60:63, :] = 1.0
    boundary[:61, 29:32] = 1.0  # two boundaries leave the image 15 px apart;
    boundary[:61, 44:47] = 1.0  # joined only the long way round, through row 61
    closed = builders.close_dead_ends(boundary, np.full_like(boundary, 0.9))
    np.testing.assert_array_equal(closed, boundary >= 0.5)
