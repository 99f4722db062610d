"""Net1: architecture, devices, weight files, training, tiled inference and the segment command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_grainseg.errors import InputError
from napari_grainseg.models.device import describe_device, select_device
from napari_grainseg.models.net1 import Net1, Net1Config, count_parameters
from napari_grainseg.models.weights import file_sha256, load_net1, read_weights_info, save_weights
from napari_grainseg.segmentation.inference import (
    RESCALED_GRAIN_SIZES_PX,
    TRAINED_GRAIN_RANGE_PX,
    predict_boundaries,
    predict_probability,
    scale_for_grain_size,
)
from napari_grainseg.synthetic import generate


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    model = Net1(Net1Config()).eval()
    # Give BatchNorm realistic statistics so activations are not degenerate.
    with torch.no_grad():
        model.train()
        for seed in range(3):
            from napari_grainseg.models.features import net1_features

            x = torch.from_numpy(net1_features(generate(seed, (128, 128)).image))[None]
            model(x)
        model.eval()
        # Spread the logits (std ~2) so probabilities vary across the image: a random
        # network is otherwise almost constant, which would make seam tests vacuous.
        logits = model(x)
        model.head.weight *= 2.0 / float(logits.std())
        model.head.bias -= float(model(x).mean())
    return model


@pytest.fixture(scope="module")
def weights_file(random_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "net1.pt"
    save_weights(random_model, path, {"model": "net1", "architecture": random_model.config.to_dict()})
    return path


def test_architecture_is_small_and_keeps_shape():
    model = Net1()
    assert 50_000 < count_parameters(model) <= 1_000_000
    out = model(torch.zeros(2, 4, 64, 96))
    assert out.shape == (2, 1, 64, 96)


def test_device_selection_falls_back_to_cpu_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert select_device("auto").type == "cpu"
    assert select_device("cpu").type == "cpu"
    assert describe_device(select_device("cpu")).startswith("cpu (")
    with pytest.raises(InputError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        select_device("tpu")


def test_weights_round_trip_fp16(random_model, weights_file):
    loaded = load_net1(weights_file, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    stored = torch.load(weights_file, weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    x = torch.rand(1, 4, 64, 64)
    with torch.inference_mode():
        a, b = torch.sigmoid(random_model(x)), torch.sigmoid(loaded(x))
    assert float((a - b).abs().max()) < 1e-2
    info = json.loads(weights_file.with_suffix(".json").read_text())
    assert len(info["weights_sha256"]) == 64


def test_corrupt_or_missing_weights_are_clear_errors(tmp_path, weights_file):
    with pytest.raises(InputError, match="not found"):
        load_net1(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    bad.with_suffix(".json").write_text(weights_file.with_suffix(".json").read_text())
    with pytest.raises(InputError, match="cannot load"):
        load_net1(bad)


@pytest.mark.parametrize("size, expected", [(24.0, 1.0), (TRAINED_GRAIN_RANGE_PX[1] * 2, None), (5.0, None)])
def test_grain_size_hint_rescales_only_outside_trained_range(size, expected):
    scale = scale_for_grain_size(size)
    if expected is not None:
        assert scale == expected
    else:
        target = RESCALED_GRAIN_SIZES_PX[0] if size < TRAINED_GRAIN_RANGE_PX[0] else RESCALED_GRAIN_SIZES_PX[1]
        assert size * scale == pytest.approx(target)
        assert TRAINED_GRAIN_RANGE_PX[0] <= size * scale <= TRAINED_GRAIN_RANGE_PX[1]
    with pytest.raises(InputError):
        scale_for_grain_size(0.0)


def test_tiled_prediction_matches_untiled_away_from_borders(random_model):
    image = generate(seed=3, shape=(300, 520), preset="tem").image
    whole, n_whole = predict_probability(image, random_model, "cpu", tile_size=2048)
    tiled, n_tiled = predict_probability(image, random_model, "cpu", tile_size=192, overlap=64)
    assert n_whole == 1 and n_tiled > 4
    assert whole.std() > 0.01  # a non-degenerate prediction
    inner = (slice(8, -8), slice(8, -8))
    assert float(np.abs(whole - tiled)[inner].max()) < 0.05
    assert float(np.abs(whole - tiled)[inner].mean()) < 0.005


def test_predict_boundaries_reports_scale_device_and_size(random_model):
    image = generate(seed=4, shape=(96, 200), preset="tem").image
    pred = predict_boundaries(image, random_model, device="cpu", grain_size_px=100.0)
    assert pred.probability.shape == image.shape and pred.probability.dtype == np.float32
    assert pred.scale == pytest.approx(RESCALED_GRAIN_SIZES_PX[1] / 100.0)
    assert pred.grain_size_source == "hint" and pred.device.startswith("cpu")
    assert 0.0 <= pred.probability.min() and pred.probability.max() <= 1.0


def test_training_few_steps_decreases_loss_and_resumes_identically(tmp_path):
    from napari_grainseg.training.net1 import TrainConfig, evaluate_validation, train_net1, validation_set

    config = TrainConfig(
        steps=24,
        batch_size=4,
        patch_shape=(64, 128),
        val_size=2,
        val_shape=(64, 128),
        val_every=24,
        checkpoint_every=8,
        num_workers=0,
        warmup_steps=2,
        lr=5e-3,
    )
    torch.manual_seed(config.seed)
    fresh = Net1(Net1Config(**config.architecture))
    before = evaluate_validation(fresh, validation_set(config), "cpu", config)["val_loss"]
    summary = train_net1(config, tmp_path / "a", device="cpu", progress=False)
    assert summary["finished"] and (tmp_path / "a" / "net1.pt").exists()
    after = evaluate_validation(load_net1(tmp_path / "a" / "net1.pt"), validation_set(config), "cpu", config)[
        "val_loss"
    ]
    assert after < before
    info = json.loads((tmp_path / "a" / "net1.json").read_text())
    assert info["train_config"]["steps"] == 24 and "git_revision" in info
    # Interrupted after the first step, then resumed: bit-identical weights.
    paused = train_net1(config, tmp_path / "b", device="cpu", progress=False, max_minutes=1e-9)
    assert not paused["finished"] and paused["step"] == 1
    train_net1(config, tmp_path / "b", device="cpu", progress=False)
    a = torch.load(tmp_path / "a" / "net1.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "net1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _segment(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_grainseg.cli", "segment", *args], capture_output=True, text=True, timeout=300
    )


def test_segment_writes_the_file_contract(tmp_path, weights_file):
    image = (generate(seed=5, shape=(96, 160), preset="tem").image * 65535).astype(np.uint16)
    src = tmp_path / "field.tif"
    tifffile.imwrite(src, image, imagej=True, resolution=(1 / 2.0, 1 / 2.0), metadata={"unit": "nm"})
    out = tmp_path / "out"
    result = _segment(
        str(src), "--out", str(out), "--weights", str(weights_file), "--device", "cpu", "--grain-size", "24"
    )
    assert result.returncode == 0, result.stderr
    assert "running on cpu" in result.stderr
    boundaries = tifffile.imread(out / "field_boundaries.tif")
    labels = tifffile.imread(out / "field_grains.tif")
    assert boundaries.shape == labels.shape == image.shape
    assert boundaries.dtype == np.uint8 and labels.dtype == np.uint32
    np.testing.assert_array_equal(boundaries == 1, labels == 0)
    summary = json.loads((out / "field_summary.json").read_text())
    assert summary["pixel_size_nm"] == pytest.approx(2.0)
    assert summary["device"].startswith("cpu")
    for suffix in ("grains.csv", "histogram.png", "overlay.png"):
        assert (out / f"field_{suffix}").exists()
    assert not (out / "field_histogram.svg").exists()  # SVG only with --svg


@pytest.mark.parametrize(
    "args, words",
    [
        (["missing.tif"], "not found"),
        (["--sample", "--net2-steps", "lots"], "net2-steps"),
        (["--sample", "--grain-size-nm", "50"], "pixel size"),
        (["--sample", "--device", "cuda"], "cuda"),
        (["--sample", "--pixel-size", "-1"], "pixel-size"),
        (["--sample", "--grains", "blobs"], "--grains"),
        ([], "no input"),
    ],
)
def test_segment_bad_input_exit_2(tmp_path, weights_file, args, words):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = _segment(*args, "--out", str(tmp_path / "o"), "--weights", str(weights_file))
    assert result.returncode == 2, result.stderr
    assert words.lower() in result.stderr.lower() and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_shipped_weights_load_and_beat_random_init(random_model):
    from napari_grainseg.evaluation.metrics import boundary_prf
    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    path = shipped_weights_dir() / "net1.pt"
    assert path.stat().st_size < 5 * 2**20  # fp16, well inside the 10 MB budget for all models
    shipped = load_net1(device="cpu")  # weights_only=True, map_location inside
    assert shipped.weights_info["weights_sha256"] == json.loads(path.with_suffix(".json").read_text())["weights_sha256"]
    sample = generate(seed=123_456_789, shape=(192, 256), preset="tem", mean_diameter=30.0)
    f1 = {}
    for name, model in (("shipped", shipped), ("random", random_model)):
        prob = predict_boundaries(sample.image, model, device="cpu", grain_size_px=30.0).probability
        labels = boundaries_to_labels(prob)
        f1[name] = boundary_prf(labels == 0, sample.boundaries, 2)["f1"]
    assert f1["shipped"] > 0.7 and f1["shipped"] > f1["random"] + 0.3, f1


def test_without_hint_the_scale_follows_the_grain_size():
    small = generate(seed=11, shape=(256, 256), preset="tem", mean_diameter=30.0).image
    large = generate(seed=12, shape=(512, 512), preset="tem", mean_diameter=120.0).image
    p_small = predict_boundaries(small, device="cpu")
    p_large = predict_boundaries(large, device="cpu")
    assert p_small.scale == 1.0 and p_small.grain_size_source == "estimate"
    assert 20 < p_small.grain_size_px < 45
    # 120 px grains are brought into the trained range (10-64 px) by downsampling.
    assert p_large.scale < 0.5
    assert TRAINED_GRAIN_RANGE_PX[0] <= p_large.grain_size_px * p_large.scale <= TRAINED_GRAIN_RANGE_PX[1]


def _tiny_config(**fields):
    """A Net1 training config of a few 64 x 64 samples (seconds on a CPU), with ``fields`` set."""
    from napari_grainseg.training.net1 import TrainConfig

    small = dict(steps=1, batch_size=2, patch_shape=(64, 64), val_size=1, val_shape=(64, 64), num_workers=0)
    return TrainConfig(**{**small, "val_every": 1, "checkpoint_every": 1, "warmup_steps": 1, **fields})


def _trained_briefly(out, weights_file, **fields) -> list:
    """The parameters of Net1 after two steps from ``weights_file`` with ``fields`` set (copies)."""
    from napari_grainseg.training.net1 import train_net1

    config = _tiny_config(steps=2, val_every=2, checkpoint_every=2, lr=1e-2, init_weights=str(weights_file), **fields)
    train_net1(config, out, device="cpu", progress=False)
    return [p.detach().clone() for p in load_net1(out / "net1.pt", for_training=True).parameters()]


def test_training_can_start_from_existing_weights(tmp_path, weights_file):
    from napari_grainseg.training.net1 import TrainConfig, train_net1

    config = _tiny_config(lr=1e-12, init_weights=str(weights_file))
    train_net1(config, tmp_path / "ft", device="cpu", progress=False)
    start = load_net1(weights_file, for_training=True)
    end = load_net1(tmp_path / "ft" / "net1.pt", for_training=True)
    for (name, a), b in zip(start.named_parameters(), end.parameters()):
        assert torch.allclose(a, b, atol=1e-3), name  # continued from the file, not re-initialised
    wrong = TrainConfig(
        steps=1,
        num_workers=0,
        init_weights=str(weights_file),
        architecture={"in_channels": 4, "base_channels": 4, "depth": 3},
    )
    with pytest.raises(InputError, match="architecture"):
        train_net1(wrong, tmp_path / "wrong", device="cpu", progress=False)


class _FixedLogits(torch.nn.Module):
    """A stand-in teacher: the same logits whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, features):
        return self.logits


def test_best_teacher_targets_take_each_sample_from_the_teacher_closer_to_its_truth():
    from napari_grainseg.training.net1 import best_teacher_targets, boundary_loss

    target = torch.zeros(3, 1, 16, 16)
    target[:, :, 8, :] = 1.0
    right = (target * 2 - 1) * 6.0  # logits that agree with the truth
    first = _FixedLogits(torch.stack([right[0], -right[1], right[2] * 0.5]))
    second = _FixedLogits(torch.stack([-right[0], right[1], right[2]]))
    soft, choice, probs = best_teacher_targets([first, second], torch.zeros(3, 4, 16, 16), target, 3.0, 1.0)
    assert choice.tolist() == [0, 1, 1]  # sample 2: both right, the second more confidently
    assert soft.shape == target.shape
    assert torch.allclose(soft, torch.sigmoid(right))
    assert len(probs) == 2 and torch.allclose(probs[1], torch.sigmoid(second.logits))
    logits = first.logits  # the per-sample losses are the batch loss split by sample
    assert torch.allclose(
        boundary_loss(logits, target, 3.0, 1.0, per_sample=True).mean(), boundary_loss(logits, target, 3.0, 1.0)
    )


class _RowRamp(torch.nn.Module):
    """A teacher that sees position, not the image: logits rise down the rows (not symmetric)."""

    def forward(self, features):
        n, _, h, w = features.shape
        ramp = torch.linspace(-3.0, 3.0, h).view(1, 1, h, 1)
        return ramp.expand(n, 1, h, w).clone()


def test_orientation_average_maps_each_copy_back_before_averaging():
    from napari_grainseg.segmentation.inference import DIHEDRAL
    from napari_grainseg.training.net1 import orientation_average

    x = torch.zeros(2, 4, 16, 32)
    ramp = torch.sigmoid(torch.linspace(-3.0, 3.0, 16)).view(1, 1, 16, 1).expand(2, 1, 16, 32)
    assert torch.allclose(orientation_average(_RowRamp(), x, 1), ramp)
    # identity and a half turn: the ramp and its reverse average to 0.5 everywhere (sigmoid(-a) = 1 - sigmoid(a))
    assert torch.allclose(orientation_average(_RowRamp(), x, 2), torch.full_like(ramp, 0.5))
    # with both flips and the half turn: still a ramp and its reverse, twice
    assert torch.allclose(orientation_average(_RowRamp(), x, 4), torch.full_like(ramp, 0.5))
    # one list of the square's symmetries for training and test-time augmentation; its prefixes are groups
    assert DIHEDRAL[:4] == ((0, False), (2, False), (0, True), (2, True))  # identity, half turn, both flips
    assert sorted(DIHEDRAL) == sorted((k, f) for k in range(4) for f in (False, True))


def test_eight_orientations_are_the_products_test_time_augmentation(random_model):
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.segmentation.inference import run_net1
    from napari_grainseg.training.net1 import orientation_average

    features = net1_features(generate(5, (64, 96)).image)  # not square: the quarter turns swap H and W
    expected = run_net1(random_model, features, "cpu", tta=True)
    got = orientation_average(random_model, torch.from_numpy(features)[None], 8)[0, 0].numpy()
    assert got.shape == (64, 96)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, run_net1(random_model, features, "cpu"), atol=1e-3)


def test_best_teacher_targets_average_only_the_chosen_teachers_orientations():
    from napari_grainseg.training.net1 import best_teacher_targets

    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 12:, :] = 1.0  # truth in the bottom rows: the rising ramp is closer to it
    falling = _FixedLogits(torch.linspace(3.0, -3.0, 16).view(1, 1, 16, 1).expand(2, 1, 16, 16).clone())
    soft, choice, probs = best_teacher_targets([falling, _RowRamp()], torch.zeros(2, 4, 16, 16), target, 3.0, 1.0, 2)
    assert choice.tolist() == [1, 1]  # chosen on the sample as it is ...
    assert torch.allclose(soft, torch.full_like(soft, 0.5))  # ... then averaged with its half-turned copy
    assert torch.allclose(probs[1], torch.sigmoid(_RowRamp()(torch.zeros(2, 4, 16, 16))))  # as it is


def test_teacher_orientations_change_the_training_only_when_above_one(tmp_path, weights_file):
    from napari_grainseg.training.config import TrainConfig as Config

    teachers = (str(weights_file),)

    def run(name, **fields):
        return _trained_briefly(tmp_path / name, weights_file, teachers=teachers, **fields)

    plain = run("plain")
    assert all(torch.equal(a, b) for a, b in zip(plain, run("one", teacher_orientations=1)))
    assert any(not torch.equal(a, b) for a, b in zip(plain, run("eight", teacher_orientations=8)))
    for bad in (3, 0, 8.0, True):
        with pytest.raises(InputError, match="teacher_orientations must be"):
            Config(teacher_orientations=bad, teachers=teachers)
    with pytest.raises(InputError, match="needs teachers"):
        Config(teacher_orientations=4)
    with pytest.raises(InputError, match="distill_weight > 0"):  # the averaged map would go unused
        Config(teacher_orientations=4, teachers=teachers, distill_weight=0.0)


def test_distillation_from_teachers_changes_the_training_only_through_its_weight(tmp_path, weights_file):
    from napari_grainseg.training.config import TrainConfig as Config
    from napari_grainseg.training.net1 import train_net1

    def run(name, **distill):
        return _trained_briefly(tmp_path / name, weights_file, **distill)

    plain = run("plain")
    off = run("off", teachers=(str(weights_file),), distill_weight=0.0)
    on = run("on", teachers=(str(weights_file),), distill_weight=1.0)
    assert all(torch.equal(a, b) for a, b in zip(plain, off))
    assert any(not torch.equal(a, b) for a, b in zip(plain, on))
    assert read_weights_info(tmp_path / "on" / "net1.pt")["teachers_sha256"] == [file_sha256(weights_file)]
    # a resumed run must distil from the same teacher bytes, not just the same path
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(weights_file.read_bytes())
    teacher.with_suffix(".json").write_bytes(weights_file.with_suffix(".json").read_bytes())
    paused = _tiny_config(steps=3, lr=1e-2, init_weights=str(weights_file), teachers=(str(teacher),))
    assert not train_net1(paused, tmp_path / "p", device="cpu", progress=False, max_minutes=1e-9)["finished"]
    torch.manual_seed(5)
    save_weights(Net1(Net1Config()), teacher, {"model": "net1", "architecture": Net1Config().to_dict()})
    with pytest.raises(InputError, match="different config or data"):
        train_net1(paused, tmp_path / "p", device="cpu", progress=False)
    with pytest.raises(InputError, match="teachers must be a list"):
        Config(teachers="a.pt")
    with pytest.raises(InputError, match="distill_weight"):
        Config(distill_weight=-1.0)
    with pytest.raises(InputError, match="not found|missing|no such"):
        train_net1(
            Config(steps=1, num_workers=0, teachers=(str(tmp_path / "absent.pt"),)), tmp_path / "x", progress=False
        )


def test_folded_batchnorm_gives_the_same_probabilities(random_model, weights_file):
    """Inference folds BatchNorm into the convolutions: no BatchNorm layer left, same output."""
    from torch import nn

    from napari_grainseg.models.features import net1_features
    from napari_grainseg.models.weights import load_net1

    folded = load_net1(weights_file)
    unfolded = load_net1(weights_file, for_training=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in unfolded.modules()) == 14
    x = torch.from_numpy(net1_features(generate(7, (128, 160)).image))[None]
    with torch.inference_mode():
        a, b = torch.sigmoid(folded(x)), torch.sigmoid(unfolded(x))
    assert float(b.std()) > 0.05  # a map with structure, not a constant
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_training_config_rejects_an_unknown_architecture_field():
    from napari_grainseg.training.net1 import TrainConfig

    with pytest.raises(InputError, match="training config: architecture .*unexpected keyword"):
        TrainConfig(architecture={"in_channels": 4, "base_channels": 8, "depth": 4, "foo": 1})


@pytest.mark.parametrize(
    "kind, data, field",
    [
        ("net1", {"lr": "x"}, "lr"),
        ("net1", {"steps": 10.5}, "steps"),
        ("net1", {"preset": 3}, "preset"),
        ("net1", {"init_weights": 1}, "init_weights"),
        ("net2", {"ema_decay": "x"}, "ema_decay"),
        ("net2", {"keep_best": 1}, "keep_best"),
        ("net2", {"gap_length": [3]}, "gap_length"),
        ("net2", {"presets": ["tem", 3]}, "presets"),
        ("net2", {"patch_shape": [128.0, 256]}, "patch_shape"),
        ("net2", {"architecture": [8]}, "architecture"),
    ],
)
def test_training_config_file_with_a_wrong_type_is_refused_when_read(tmp_path, kind, data, field):
    """A string for a number, a float for a count, a number for a flag or a shape of floats is
    a one-line error naming the field when the file is read (not accepted silently, not a
    TypeError later)."""
    from napari_grainseg.training.net1 import TrainConfig
    from napari_grainseg.training.net2 import Net2TrainConfig

    cls = TrainConfig if kind == "net1" else Net2TrainConfig
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"{field} must be"):
        cls.from_json(path)
    ok = (
        {"lr": 0.01, "steps": 10, "preset": ["tem", "train"], "init_weights": None}
        if kind == "net1"
        else {"ema_decay": 0, "keep_best": False, "gap_length": [3, 9], "presets": ["tem"], "patch_shape": [64, 64]}
    )
    path.write_text(json.dumps(ok))  # the same fields with values of the right type (an int for a float) load
    config = cls.from_json(path)
    assert all(getattr(config, k) == (tuple(v) if isinstance(v, list) else v) for k, v in ok.items())


def test_training_config_mixes_presets_by_sample_index():
    from napari_grainseg.training.net1 import TrainConfig, _SyntheticSamples, make_example, training_seed

    config = TrainConfig(steps=1, batch_size=3, patch_shape=(64, 64), preset=("train", "train", "tem"))
    assert [config.sample_preset(i) for i in range(6)] == ["train", "train", "tem"] * 2
    assert TrainConfig(preset="paper").sample_preset(5) == "paper"
    features, target = _SyntheticSamples(config)[2]  # the third sample is drawn from the tem preset
    expected, expected_target, _ = make_example(training_seed(config, 2), (64, 64), "tem", config.target_width)
    np.testing.assert_array_equal(features, expected)
    np.testing.assert_array_equal(target, expected_target)
    for bad in (("train", "bogus"), ()):
        with pytest.raises(InputError, match="preset must name synthetic presets"):
            TrainConfig(preset=bad)


def test_widening_keeps_the_function_and_adds_trainable_capacity(random_model):
    import copy

    from napari_grainseg.models.net1 import widen_net1

    narrow = copy.deepcopy(random_model)  # train-mode passes update BatchNorm statistics
    wide = widen_net1(narrow, 12, seed=3)
    assert wide.config.base_channels == 12 and count_parameters(wide) > 2 * count_parameters(narrow)
    x = torch.from_numpy(np.stack([net1_features_of(s) for s in (5, 6)]))
    for mode in ("eval", "train"):  # BatchNorm with running and with batch statistics
        narrow.train(mode == "train")
        wide.train(mode == "train")
        with torch.no_grad():
            a, b = wide(x).numpy(), narrow(x).numpy()
            # float32 rounding of the sums (train-mode logits of this scaled head reach ~3e3)
            np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())
    # The new channels learn: one gradient step changes the output.
    wide.train()
    loss = wide(x).square().mean()
    loss.backward()
    grads = [p.grad for name, p in wide.named_parameters() if name == "head.weight"][0][0, 8:]
    assert float(grads.abs().sum()) > 0  # the head reads the new channels after one step
    with pytest.raises(ValueError, match="narrow"):
        widen_net1(wide, 8)


def test_training_widens_narrower_init_weights(tmp_path, weights_file):
    from napari_grainseg.training.net1 import TrainConfig, train_net1

    config = TrainConfig(
        steps=1,
        batch_size=2,
        patch_shape=(64, 64),
        val_size=1,
        val_shape=(64, 64),
        val_every=1,
        checkpoint_every=1,
        num_workers=0,
        warmup_steps=1,
        lr=1e-12,
        init_weights=str(weights_file),
        architecture={"in_channels": 4, "base_channels": 12, "depth": 4},
    )
    train_net1(config, tmp_path / "wide", device="cpu", progress=False)
    narrow = load_net1(weights_file, for_training=True)
    wide = load_net1(tmp_path / "wide" / "net1.pt", for_training=True)
    assert wide.config.base_channels == 12
    wide_params = dict(wide.named_parameters())
    for name, old in narrow.named_parameters():  # every old weight kept its place (lr ~ 0)
        new = wide_params[name]
        if name.startswith("merge.") and name.endswith(".0.weight"):  # reads cat(up, skip): two blocks
            half_old, half_new = old.shape[1] // 2, new.shape[1] // 2
            new = torch.cat([new[:, :half_old], new[:, half_new : half_new + half_old]], dim=1)
        block = new[tuple(slice(0, n) for n in old.shape)]
        assert torch.allclose(block, old, atol=1e-3), name


def net1_features_of(seed: int) -> np.ndarray:
    from napari_grainseg.models.features import net1_features

    return net1_features(generate(seed, (64, 96)).image)


def test_test_time_augmentation_is_orientation_free_and_differs_from_one_pass(random_model):
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.segmentation.inference import run_net1

    features = net1_features(generate(seed=31, shape=(96, 128), preset="tem", mean_diameter=20.0).image)
    plain = run_net1(random_model, features, "cpu")
    averaged = run_net1(random_model, features, "cpu", tta=True)
    assert averaged.shape == plain.shape == (96, 128)
    assert np.abs(averaged - plain).max() > 1e-3  # a random network is far from orientation-free
    # The average over the eight symmetries commutes with a turn and with a flip of the input
    # (away from the zero padding, which a turn of a non-square array moves).
    turned = run_net1(random_model, np.ascontiguousarray(np.rot90(features, 1, axes=(1, 2))), "cpu", tta=True)
    np.testing.assert_allclose(np.rot90(averaged, 1), turned, atol=1e-4)
    flipped = run_net1(random_model, np.ascontiguousarray(features[:, ::-1]), "cpu", tta=True)
    np.testing.assert_allclose(averaged[::-1], flipped, atol=1e-4)


def test_segment_options_carry_test_time_augmentation():
    from napari_grainseg.segmentation.options import OptionError, SegmentOptions
    from napari_grainseg.segmentation.pipeline import segment

    image = generate(seed=32, shape=(128, 128), preset="tem", mean_diameter=20.0).image
    plain = segment(image, SegmentOptions(device="cpu", grain_size_px=20.0))
    tta = segment(image, SegmentOptions(device="cpu", grain_size_px=20.0, tta=True))
    assert not np.array_equal(plain.prediction.probability, tta.prediction.probability)
    assert tta.info()["tta"] is True and "tta" not in plain.info()
    with pytest.raises(OptionError, match="tta"):
        SegmentOptions(tta="yes")


def test_upsampled_fine_source_enlarges_fine_grains_with_exact_centred_targets():
    from scipy import ndimage as ndi
    from skimage.measure import label

    from napari_grainseg.training.net1 import (
        UPSAMPLED_FINE,
        TrainConfig,
        _SyntheticSamples,
        make_example,
        training_seed,
        upsampled_fine_sample,
    )

    config = TrainConfig(steps=1, batch_size=2, patch_shape=(96, 128), preset=("tem", UPSAMPLED_FINE))
    features, target = _SyntheticSamples(config)[1]
    expected, expected_target, _ = make_example(training_seed(config, 1), (96, 128), UPSAMPLED_FINE, 3)
    np.testing.assert_array_equal(features, expected)  # deterministic per seed, like the presets
    np.testing.assert_array_equal(target, expected_target)
    with pytest.raises(InputError, match="upsampled-fine"):  # the error lists it among the sources
        TrainConfig(preset=("tem", "upsampled-fin"))
    ratios = []
    for seed in range(4):
        image, boundaries = upsampled_fine_sample(100 + seed, (128, 192))
        assert image.shape == boundaries.shape == (128, 192) and image.dtype == np.float32
        assert boundaries.dtype == bool and 0.05 < boundaries.mean() < 0.2
        # fine grains enlarged to ~14 px: many closed grains, a median of tens of px (not 4-10 px grains)
        grains = label(~boundaries, connectivity=1)
        areas = np.bincount(grains.ravel())[1:]
        assert grains.max() > 60 and 30 <= np.median(areas) < 400
        # 1 px wide: 2x2 blocks of boundary pixels only at a few junctions (skeletonize), not along lines
        b = boundaries
        assert (b[:-1, :-1] & b[1:, :-1] & b[:-1, 1:] & b[1:, 1:]).sum() <= 0.002 * b.sum()
        g = np.hypot(ndi.sobel(image, 0), ndi.sobel(image, 1))
        shifts = ((2, 0), (-2, 0), (0, 2), (0, -2))
        ratios.append([g[np.roll(b, shift, (0, 1))].mean() / g[b].mean() for shift in shifts])
    # on the rendered edges: on average the image gradient is higher on the targets than on the
    # targets moved 2 px in any direction (catches an offset of a native pixel or more; the half-pixel
    # centring itself was checked by a one-off probe, docs/net1.md)
    assert np.all(np.mean(ratios, axis=0) < 1.0)


def test_boundary_segments_split_the_boundaries_at_the_junctions():
    from napari_grainseg.training.net1 import boundary_segments

    b = np.zeros((41, 41), bool)
    b[20, :] = True  # two grains above and below ...
    b[:20, 10] = True  # ... the upper one split: a T-junction at (20, 10)
    b[30:36, 30] = True  # a dangling line inside the lower grain separates nothing
    segments = boundary_segments(b)
    assert segments.dtype == np.int32 and segments.shape == b.shape
    assert segments.max() == 3  # left of the junction, right of it, the vertical arm
    assert not segments[b == 0].any() and not segments[30:36, 30].any()
    assert not segments[19:22, 9:12].any()  # the junction and its neighbours belong to no segment
    assert len({segments[20, 2], segments[20, 30], segments[5, 10]}) == 3
    short = np.zeros((41, 41), bool)
    short[20, :] = True
    short[:20, 10] = True
    short[:20, 14] = True  # two junctions 4 px apart leave a 1 px run between them
    assert boundary_segments(short).max() == 4 and boundary_segments(short, min_length=1).max() == 5


def test_saddle_loss_is_the_lowest_point_of_each_segment_and_sends_the_gradient_there():
    from napari_grainseg.training.net1 import saddle_loss

    segments = torch.zeros(2, 1, 16, 32, dtype=torch.int32)
    segments[0, 0, 8, 2:30] = 1
    segments[1, 0, 8, 2:30] = 1  # the same id in another sample is another segment
    prob = torch.full((2, 1, 16, 32), 0.01)
    prob[:, :, 8, :] = 0.9
    prob[0, 0, 7:10, 14:17] = 0.15  # a pass in sample 0's ridge, wide enough for the 3 x 3 max-pool to see ...
    prob[0, 0, 8, 15] = 0.2  # ... whose highest pixel is its centre
    logits = torch.logit(prob).requires_grad_(True)
    loss = saddle_loss(logits, segments)
    assert loss.item() == pytest.approx(-(np.log(0.2) + np.log(0.9)) / 2, rel=1e-4)
    loss.backward()
    grad = logits.grad[0, 0]
    assert grad[8, 15] < 0  # raising the pass lowers the loss ...
    assert torch.count_nonzero(logits.grad[0]) == 1  # ... and only the pass is pushed
    assert saddle_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.int32)).item() == 0.0


def test_pass_distillation_raises_only_the_passes_below_the_best_teacher():
    from napari_grainseg.training.net1 import pass_distillation_loss, segment_passes

    segments = torch.zeros(1, 1, 16, 32, dtype=torch.int32)
    segments[0, 0, 4, 2:30] = 1  # two true segments on two rows
    segments[0, 0, 12, 2:30] = 2
    student = torch.full((1, 1, 16, 32), 0.01)
    student[:, :, 4, :] = 0.9
    student[:, :, 12, :] = 0.9
    student[0, 0, 3:6, 14:17] = 0.1
    student[0, 0, 4, 15] = 0.2  # segment 1's pass: 0.2
    low, high = torch.full_like(student, 0.01), torch.full_like(student, 0.01)
    low[:, :, 4, :] = 0.5  # one teacher's passes: 0.5 on segment 1, 0.3 on segment 2 ...
    low[:, :, 12, :] = 0.3
    high[:, :, 4, :] = 0.1  # ... the other's 0.1 and 0.6: the targets are 0.5 and 0.6
    high[:, :, 12, :] = 0.6
    passes, keys = segment_passes(student, segments)
    assert keys.tolist() == [1, 2] and torch.allclose(passes, torch.tensor([0.2, 0.9]))
    logits = torch.logit(student).requires_grad_(True)
    loss = pass_distillation_loss(logits, [low, high], segments)
    assert loss.item() == pytest.approx(np.log(0.5 / 0.2), rel=1e-4)  # segment 2 (0.9) is above 0.6
    loss.backward()
    assert logits.grad[0, 0, 4, 15] < 0 and torch.count_nonzero(logits.grad) == 1
    assert pass_distillation_loss(torch.logit(student), [low * 0.1], segments).item() == 0.0


def test_pass_distillation_changes_the_training_only_through_its_weight(tmp_path, weights_file):
    from napari_grainseg.training.config import TrainConfig as Config

    teachers = (str(weights_file),)

    def run(name, **fields):
        return _trained_briefly(tmp_path / name, weights_file, teachers=teachers, **fields)

    plain = run("plain")
    assert all(torch.equal(a, b) for a, b in zip(plain, run("off", pass_distill_weight=0.0)))
    assert any(not torch.equal(a, b) for a, b in zip(plain, run("on", pass_distill_weight=5.0)))
    with pytest.raises(InputError, match="pass_distill_weight"):
        Config(pass_distill_weight=-1.0, teachers=teachers)
    with pytest.raises(InputError, match="needs teachers"):
        Config(pass_distill_weight=1.0)


def test_the_saddle_term_changes_the_training_only_through_its_weight(tmp_path, weights_file):
    from napari_grainseg.training.config import TrainConfig as Config

    def run(name, **saddle):
        return _trained_briefly(tmp_path / name, weights_file, **saddle)

    plain = run("plain")
    assert all(torch.equal(a, b) for a, b in zip(plain, run("off", saddle_weight=0.0)))
    assert any(not torch.equal(a, b) for a, b in zip(plain, run("on", saddle_weight=1.0)))
    with pytest.raises(InputError, match="saddle_weight"):
        Config(saddle_weight=-0.5)
