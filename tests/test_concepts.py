"""Concept families (synthetic.concepts): training without a family, and a test set that shows it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_grainseg.errors import InputError
from napari_grainseg.evaluation.suite import EVAL_SETS
from napari_grainseg.synthetic import PARAMETERS, generate
from napari_grainseg.synthetic.concepts import CONCEPT_FAMILIES


def test_every_family_names_real_knobs_and_has_a_test_set_that_shows_it():
    assert set(CONCEPT_FAMILIES) == {"twins", "bends", "inclined", "noise", "shape"}
    for name, family in CONCEPT_FAMILIES.items():
        assert family.without and family.shown and set(family.without) | set(family.shown) <= set(PARAMETERS)
        test_set = EVAL_SETS[f"concept-{name}"]
        assert test_set.preset == "tem" and not test_set.in_default_run and test_set.size == 12
        sample = next(test_set.samples(1))
        for knob, value in family.shown.items():
            assert sample.params[knob] == value


def test_the_concept_test_sets_are_frozen():
    """A change to a family's knobs must not silently change its frozen test set (give it a new name)."""
    pinned = {
        "concept-twins": (8_001_000_000, {"twin_fraction": 0.6}),
        "concept-bends": (8_001_100_000, {"bend_contours": 0.6, "ramp": 0.6, "grain_gradient": 0.25}),
        "concept-inclined": (8_001_200_000, {"inclined_fraction": 0.9, "inclined_width": 8.0, "fringe_amplitude": 0.2}),
        "concept-noise": (8_001_300_000, {"dose": 20.0, "read_noise": 0.03}),
        "concept-shape": (8_001_400_000, {"elongation": 3.0, "log_sigma": 0.7, "smoothing": 8}),
    }
    for name, (seed, overrides) in pinned.items():
        s = EVAL_SETS[name]
        assert (s.first_seed, s.overrides, s.shape, s.size, s.preset) == (seed, overrides, (256, 256), 12, "tem")


def test_leaving_twins_out_removes_every_twin_and_showing_them_draws_many():
    twins = CONCEPT_FAMILIES["twins"]
    n_without = [generate(s, (128, 128), preset="train", **twins.without).twins.sum() for s in range(8)]
    n_shown = [generate(s, (128, 128), preset="tem", **twins.shown).twins.sum() for s in range(8)]
    assert sum(n_without) == 0
    assert sum(n > 0 for n in n_shown) >= 6


def test_leaving_noise_out_gives_a_noise_free_image():
    noise = CONCEPT_FAMILIES["noise"]

    def roughness(image):  # mean absolute second difference: high for pixel noise, low for smooth grains
        return float(np.abs(np.diff(image, 2, axis=1)).mean())

    quiet = generate(3, (128, 128), preset="tem", **noise.without).image
    noisy = generate(3, (128, 128), preset="tem", **noise.shown).image
    assert roughness(noisy) > 5 * roughness(quiet)


def test_training_samples_and_validation_use_the_overrides(tmp_path):
    from napari_grainseg.training.net1 import (
        VALIDATION_SEED_BASE,
        TrainConfig,
        _SyntheticSamples,
        make_example,
        training_seed,
        validation_set,
    )

    without = CONCEPT_FAMILIES["twins"].without
    config = TrainConfig(steps=1, batch_size=2, patch_shape=(64, 96), val_size=2, generator_overrides=without)
    features, target = _SyntheticSamples(config)[1]
    expected, expected_target, _ = make_example(training_seed(config, 1), (64, 96), "train", 3, without)
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(target, expected_target)
    plain, _, _ = make_example(training_seed(config, 1), (64, 96), "train", 3)
    assert not np.array_equal(features, plain)  # this draw has twins unless they are left out
    validation = validation_set(config)
    sample = generate(seed=VALIDATION_SEED_BASE, shape=(192, 384), preset="train", **without)
    np.testing.assert_array_equal(validation[0][2], sample.boundaries)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"steps": 3, "generator_overrides": without}))
    assert TrainConfig.from_json(path).generator_overrides == without


@pytest.mark.parametrize(
    "overrides, preset, message",
    [
        ({"twin_fractio": 0.0}, "train", "unknown generator parameter"),
        ({"twin_fraction": 3.0}, "train", "outside its range"),
        ({"twin_fraction": 0.0}, ("train", "upsampled-fine"), "cannot be combined"),
    ],
)
def test_bad_overrides_are_refused_before_training(overrides, preset, message):
    from napari_grainseg.training.net1 import TrainConfig

    with pytest.raises(InputError, match=message):
        TrainConfig(generator_overrides=overrides, preset=preset)
