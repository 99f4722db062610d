"""Net2 refinement keeps hand corrections fixed: ``refine(fixed_mask=..., fixed_values=...)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_grainseg.errors import InputError
from napari_grainseg.models.net2 import Net2, Net2Config
from napari_grainseg.segmentation.refine import refine
from napari_grainseg.synthetic import generate
from napari_grainseg.training.net1 import boundary_target


@pytest.fixture(scope="module")
def random_net2() -> Net2:
    torch.manual_seed(0)
    return Net2(Net2Config()).eval()


@pytest.fixture(scope="module")
def sample():
    return generate(seed=7, shape=(96, 128), preset="tem")


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_step_never_undoes_a_fixed_pixel(sample, random_net2, scale):
    prob = boundary_target(sample.boundaries, 3).astype(np.float32)
    fixed = np.zeros(prob.shape, bool)
    values = np.zeros(prob.shape, np.float32)
    fixed[40:44, 10:90] = True  # a hand-drawn boundary line across grains
    values[40:44, 10:90] = 1.0
    fixed[60:70, 100:110] = True  # an erased region (a merge)
    free = list(refine(sample.image, prob, model=random_net2, device="cpu", max_steps=3, scale=scale))
    # without the clamp an untrained Net2 moves these pixels: the test can fail
    assert not all(np.array_equal(s.state[fixed], values[fixed]) for s in free)
    steps = list(
        refine(
            sample.image,
            prob,
            model=random_net2,
            device="cpu",
            max_steps=3,
            scale=scale,
            fixed_mask=fixed,
            fixed_values=values,
        )
    )
    assert len(steps) == 3
    for step in steps:
        np.testing.assert_array_equal(step.state[fixed], values[fixed])
    # elsewhere the network still works (the states differ from the input)
    assert not np.array_equal(steps[-1].state[~fixed], prob[~fixed])


def test_fixed_mask_needs_values_of_the_image_shape(sample, random_net2):
    prob = boundary_target(sample.boundaries, 3)
    with pytest.raises(InputError, match="fixed_mask"):
        next(
            refine(
                sample.image,
                prob,
                model=random_net2,
                device="cpu",
                fixed_mask=np.ones((4, 4), bool),
                fixed_values=np.ones((4, 4), np.float32),
            )
        )
