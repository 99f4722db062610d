"""Net2: the refiner network, the refinement generator, its training and its place in the pipeline.

Tests marked by the fixtures ``trained_net1`` / ``shipped_net2`` need trained weights: the
shipped Net1 and Net2, which the package always carries. Everything else uses untrained networks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_grainseg.errors import InputError
from napari_grainseg.models.net1 import Net1, Net1Config
from napari_grainseg.models.net2 import Net2, Net2Config, count_parameters
from napari_grainseg.models.weights import load_net2, save_weights, shipped_weights_dir
from napari_grainseg.segmentation.grains import boundaries_to_labels
from napari_grainseg.segmentation.refine import DEFAULT_TOL, RefineStep, refine
from napari_grainseg.synthetic import generate
from napari_grainseg.training.net1 import boundary_loss, boundary_target


@pytest.fixture(scope="module")
def random_net2() -> Net2:
    torch.manual_seed(0)
    return Net2(Net2Config()).eval()


@pytest.fixture(scope="module")
def trained_net1():
    from napari_grainseg.models.weights import load_net1

    for path in (shipped_weights_dir() / "net1.pt",):
        if path.is_file():
            return load_net1(path)
    pytest.fail("the shipped Net1 weights are missing from the package")


@pytest.fixture(scope="module")
def shipped_net2():
    if not (shipped_weights_dir() / "net2.pt").is_file():
        pytest.skip("no shipped Net2 weights")
    return load_net2()


@pytest.fixture(scope="module")
def sample():
    return generate(seed=7, shape=(96, 128), preset="tem")


# --------------------------------------------------------------------------- network


def test_net2_is_small_and_conditioned(random_net2):
    assert 10_000 < count_parameters(random_net2) < 60_000
    state, cond = torch.rand(2, 1, 32, 48), torch.rand(2, 5, 32, 48)
    with torch.inference_mode():
        out = random_net2(state, cond, torch.tensor([0.0, 1.0]))
        assert out.shape == (2, 1, 32, 48)
        # the image features and the step index both change the output
        assert not torch.allclose(out, random_net2(state, torch.rand(2, 5, 32, 48), torch.tensor([0.0, 1.0])))
        assert not torch.allclose(out, random_net2(state, cond, torch.tensor([0.5, 0.5])))
    blind = Net2(Net2Config(conditioning="blind", scheduled_steps=0)).eval()
    with torch.inference_mode():
        a, b = blind(state, None, 0.0), blind(state, cond, 1.0)  # sees the state only
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        Net2Config(conditioning="blind", scheduled_steps=3)


def test_load_net2_roundtrip_and_errors(tmp_path, random_net2):
    path, _ = save_weights(random_net2, tmp_path / "n2.pt", {"architecture": random_net2.config.to_dict()})
    loaded = load_net2(path)
    x, c = torch.rand(1, 1, 16, 16), torch.rand(1, 5, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(loaded(x, c, 0.0), random_net2(x, c, 0.0), atol=2e-2)  # fp16 storage
    net1_path, _ = save_weights(Net1(Net1Config()), tmp_path / "n1.pt", {"architecture": Net1Config().to_dict()})
    with pytest.raises(InputError, match="not Net2"):
        load_net2(net1_path)
    with pytest.raises(InputError, match="not found"):
        load_net2(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- refinement generator


def test_schedule_phases_budget_and_output(sample, random_net2):
    image = sample.image
    prob = boundary_target(sample.boundaries, 3) * 0.8
    steps = list(refine(image, prob, model=random_net2, device="cpu", max_steps=6, tol=1e-9))
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6]
    assert [s.phase for s in steps] == ["scheduled"] * 4 + ["fixed-point"] * 2
    for s in steps:
        assert isinstance(s, RefineStep) and s.state.shape == image.shape and s.state.dtype == np.float32
        assert 0.0 <= s.state.min() and s.state.max() <= 1.0 and s.seconds >= 0
        assert not s.converged
    # change is the mean absolute difference to the previous state (Net1's map for step 1)
    assert steps[0].change == pytest.approx(float(np.mean(np.abs(steps[0].state - prob))), rel=1e-5)
    assert steps[3].change == pytest.approx(float(np.mean(np.abs(steps[3].state - steps[2].state))), rel=1e-5)
    blind = Net2(Net2Config(conditioning="blind", scheduled_steps=0)).eval()
    assert {s.phase for s in refine(image, prob, model=blind, device="cpu", max_steps=2)} == {"fixed-point"}


def test_schedule_mixes_towards_the_prediction_then_takes_it():
    """The sampler's state after step t is the training degradation's expected state at t - 1."""
    from napari_grainseg.segmentation.refine import schedule_level, schedule_state

    assert [schedule_level(n, 4) for n in range(1, 7)] == [4, 3, 2, 1, 0, 0]
    assert [schedule_level(n, 0) for n in (1, 2)] == [0, 0]  # the blind ablation: fixed point only
    coarse = np.full((4, 4), 0.8, np.float32)
    for t, expected in ((4, 0.75 * 0.8 + 0.25 * 0.2), (2, 0.25 * 0.8 + 0.75 * 0.2), (1, 0.2), (0, 0.2)):
        out = schedule_state(np.full((4, 4), 0.2, np.float32), coarse, t, 4)
        assert out.dtype == np.float32 and np.allclose(out, expected)
    assert schedule_state(np.full((2, 2), 1.5, np.float32), coarse[:2, :2], 0, 4).max() == 1.0


def test_deterministic_and_cancel_is_safe(sample, random_net2):
    prob = boundary_target(sample.boundaries, 3)
    a = [s.state for s in refine(sample.image, prob, model=random_net2, device="cpu", max_steps=5)]
    gen = refine(sample.image, prob, model=random_net2, device="cpu", max_steps=5)
    first = next(gen)
    gen.close()  # the cancel path
    with pytest.raises(StopIteration):
        next(gen)
    np.testing.assert_array_equal(first.state, a[0])
    b = [s.state for s in refine(sample.image, prob, model=random_net2, device="cpu", max_steps=5)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_scale_runs_at_net1_scale_and_returns_input_size(sample, random_net2):
    prob = boundary_target(sample.boundaries, 3)
    steps = list(refine(sample.image, prob, model=random_net2, device="cpu", max_steps=2, scale=0.5))
    assert all(s.state.shape == sample.image.shape for s in steps)


def test_tiled_refinement_matches_whole_image(monkeypatch, random_net2):
    from napari_grainseg.segmentation import refine as refine_mod

    s = generate(seed=3, shape=(160, 200), preset="tem")
    prob = boundary_target(s.boundaries, 3)
    whole = list(refine(s.image, prob, model=random_net2, device="cpu", max_steps=2))[-1].state
    monkeypatch.setattr(refine_mod, "REFINE_TILE_SIZE", 112)
    monkeypatch.setattr(refine_mod, "REFINE_OVERLAP", 48)
    tiled = list(refine(s.image, prob, model=random_net2, device="cpu", max_steps=2))[-1].state
    assert float(np.mean(np.abs(tiled - whole))) < 0.01


def test_refine_reports_every_tile_and_a_raise_cuts_the_step_short(monkeypatch, random_net2):
    from napari_grainseg.segmentation import refine as refine_mod

    s = generate(seed=3, shape=(160, 200), preset="tem")
    prob = boundary_target(s.boundaries, 3)
    monkeypatch.setattr(refine_mod, "REFINE_TILE_SIZE", 112)
    monkeypatch.setattr(refine_mod, "REFINE_OVERLAP", 48)
    calls = []

    def record(*tile):
        calls.append(tile)

    steps = list(refine(s.image, prob, model=random_net2, device="cpu", max_steps=2, progress=record))
    n = len(refine_mod.TileGrid((160, 200), 112, 48))
    assert n > 1
    # the features of every tile (before step 1), then every tile of each of the two steps
    assert calls == [(i, n) for i in range(1, n + 1)] * 3
    assert len(steps) == 2

    class Stop(Exception):
        pass

    ran = []
    real_run = refine_mod._StepRunner._run

    def counted(self, *args):
        ran.append(1)
        return real_run(self, *args)

    def stop_in_step_1(done, total):
        if ran:  # a tile of step 1 has run
            raise Stop

    monkeypatch.setattr(refine_mod._StepRunner, "_run", counted)
    gen = refine(s.image, prob, model=random_net2, device="cpu", max_steps=2, progress=stop_in_step_1)
    with pytest.raises(Stop):
        next(gen)
    assert len(ran) == 1  # one tile of n, then the step stopped


def test_refine_to_end_keeps_the_last_step_of_the_one_loop(random_net2):
    from napari_grainseg.segmentation.refine import refine_to_end

    s = generate(seed=4, shape=(96, 128), preset="tem")
    prob = boundary_target(s.boundaries, 3)
    steps = list(refine(s.image, prob, model=random_net2, device="cpu", max_steps=3))
    run = refine_to_end(s.image, prob, model=random_net2, device="cpu", max_steps=3)
    assert run.steps == steps[-1].step == len(steps) == len(run.step_seconds)
    assert run.converged == steps[-1].converged
    np.testing.assert_array_equal(run.state, steps[-1].state)
    assert run.state.shape == prob.shape and not np.array_equal(run.state, prob)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"probability": np.zeros((5, 5), np.float32)}, "shape"),
        ({"max_steps": 0}, "max_steps"),
        ({"tol": 0.0}, "tol"),
        ({"scale": -1.0}, "scale"),
    ],
)
def test_refine_bad_input(sample, random_net2, kwargs, words):
    args = {"probability": boundary_target(sample.boundaries, 3)} | kwargs
    with pytest.raises(InputError, match=words):
        next(refine(sample.image, args.pop("probability"), model=random_net2, device="cpu", **args))


# --------------------------------------------------------------------------- trained models


def _gap_cases(net1, n: int = 10):
    """Known grain structures whose Net1 map gets a 6 px gap cut across one boundary.

    The gap is cut into the shipped Net1's real output on the image (what Net2
    refines), at a boundary pixel between exactly two grains, away from junctions
    and edges. Yields (sample, gapped map, (grain a, grain b)).
    """
    from napari_grainseg.segmentation.inference import predict_boundaries

    for seed in range(11, 11 + n):
        s = generate(seed=seed, shape=(128, 128), preset="tem", mean_diameter=30.0)
        ys, xs = np.nonzero(s.boundaries)
        for y, x in zip(ys, xs):
            if 20 <= y < 108 and 20 <= x < 108:
                ids = set(np.unique(s.labels[y - 7 : y + 8, x - 7 : x + 8])) - {0}
                if len(ids) == 2:
                    break
        gapped = predict_boundaries(s.image, net1, device="cpu").probability.copy()
        gapped[y - 3 : y + 3, x - 3 : x + 3] = 0.0  # a 6 px gap across the line
        yield s, gapped, tuple(sorted(ids))


def _merged(labels: np.ndarray, truth: np.ndarray, pair) -> bool:
    """Whether the two true grains share one predicted grain (by majority label)."""
    ids = []
    for g in pair:
        values = labels[(truth == g) & (labels > 0)]
        ids.append(np.bincount(values).argmax())
    return ids[0] == ids[1]


def test_gaps_are_closed_by_shipped_model(trained_net1, shipped_net2):
    closed = 0
    for s, gapped, pair in _gap_cases(trained_net1):
        assert _merged(boundaries_to_labels(gapped), s.labels, pair)  # the gap merges the two grains
        steps = list(refine(s.image, gapped, model=shipped_net2, device="cpu"))
        closed += not _merged(boundaries_to_labels(steps[-1].state), s.labels, pair)
    assert closed >= 7  # the shipped model closes 8 of these 10 (none is closed by thresholding)


def test_real_example_stops_by_criterion(trained_net1, shipped_net2):
    from napari_grainseg.io.samples import interconnect_tem
    from napari_grainseg.segmentation.inference import predict_boundaries

    image = interconnect_tem().data
    pred = predict_boundaries(image, trained_net1, device="cpu")
    steps = list(refine(image, pred.probability, model=shipped_net2, device="cpu", scale=pred.scale))
    last = steps[-1]
    assert last.converged and last.change < DEFAULT_TOL and last.phase == "fixed-point"
    assert len(steps) < 30 and not any(s.converged for s in steps[:-1])


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_pool():
    from napari_grainseg.training.net2 import Net2TrainConfig, build_pool

    torch.manual_seed(0)
    config = Net2TrainConfig(
        pool_size=3,
        pool_shape=(64, 96),
        patch_shape=(64, 64),
        batch_size=4,
        val_size=2,
        val_shape=(64, 96),
        lr=1e-2,
        warmup_steps=1,
    )
    return config, build_pool(config, Net1(Net1Config()).eval(), "random-net1", None, progress=False)


def test_degraded_states_lie_between_truth_and_coarse(tiny_pool):
    from napari_grainseg.training.net2 import make_batch

    config, pool = tiny_pool
    states, conds, ts, targets, unrolls = make_batch(pool, 0, config)
    assert states.shape == targets.shape == (4, 1, 64, 64) and conds.shape == (4, 5, 64, 64)
    assert set(np.round(ts * config.levels).astype(int)) <= set(range(config.levels + 1))
    lo = np.minimum(targets, conds[:, :1]) - 1e-5
    hi = np.maximum(targets, conds[:, :1]) + 1e-5
    blurred_ok = (states >= 0) & (states <= 1)
    assert blurred_ok.all() and ((states >= lo) & (states <= hi)).mean() > 0.9
    again = make_batch(pool, 0, config)
    np.testing.assert_array_equal(states, again[0])  # deterministic per step


@pytest.mark.parametrize(
    "field, value", [("gap_length", 3), ("blur_sigma", (1.2, 0.5)), ("patch_shape", 96), ("pool_shape", (128, "x"))]
)
def test_net2_config_refuses_malformed_ranges_and_shapes(field, value):
    """A scalar or reversed range (as a JSON config can hold) is refused when the config is read,
    not with a TypeError minutes into training."""
    from napari_grainseg.training.net2 import Net2TrainConfig

    with pytest.raises(InputError, match=field):
        Net2TrainConfig(**{field: value})


def test_non_square_crops_keep_their_shape(tiny_pool):
    """Quarter turns would swap a non-square crop's sides; such crops are only flipped and half-turned."""
    from dataclasses import replace

    from napari_grainseg.training.net2 import make_batch

    config, pool = tiny_pool
    wide = replace(config, patch_shape=(48, 96), batch_size=16)
    for step in range(3):
        states, conds, _, targets, _ = make_batch(pool, step, wide)
        assert states.shape == targets.shape == (16, 1, 48, 96) and conds.shape == (16, 5, 48, 96)


def test_training_a_few_steps_decreases_the_loss(tiny_pool):
    from napari_grainseg.training.net2 import make_batch, unroll_states

    config, pool = tiny_pool
    torch.manual_seed(0)
    model = Net2(config.net2_config())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = [torch.from_numpy(a) for a in make_batch(pool, 0, config)]

    def loss_now():
        states, ts = unroll_states(model, batch[0], batch[1], batch[2], batch[4])
        return boundary_loss(model(states, batch[1], ts), batch[3], config.pos_weight, config.dice_weight)

    model.eval()
    with torch.no_grad():
        before = float(loss_now())
    model.train()
    for _ in range(25):
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(loss_now())
    assert after < 0.8 * before


def test_train_net2_writes_weights_with_net1_hash_and_resumes(tmp_path):
    from napari_grainseg.models.weights import file_sha256
    from napari_grainseg.training.net2 import Net2TrainConfig, train_net2

    net1_path, _ = save_weights(Net1(Net1Config()), tmp_path / "net1.pt", {"architecture": Net1Config().to_dict()})
    config = Net2TrainConfig(
        steps=4,
        pool_size=2,
        pool_shape=(64, 64),
        patch_shape=(64, 64),
        batch_size=2,
        val_size=1,
        val_shape=(64, 64),
        val_every=2,
        checkpoint_every=1,
        lr=0.05,
    )
    out = tmp_path / "run"
    summary = train_net2(config, out, net1_weights=net1_path, device="cpu", progress=False)
    assert summary["finished"] and Path(summary["weights"]).is_file()
    info = json.loads((out / "net2.json").read_text())
    assert info["net1_sha256"] == file_sha256(net1_path) and info["model"] == "net2"
    assert info["architecture"]["scheduled_steps"] == config.levels
    assert {"val_vi_net1", "val_vi_net1_watershed", "val_vi_refined", "val_steps"} <= set(info["validation"])
    # keep_best: the exported weights are those of the validation with the lowest refined VI
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    chosen = min(log, key=lambda r: r["val_vi_refined"])
    assert info["selected_step"] == chosen["step"] and info["validation"] == chosen
    best = torch.load(out / "best_model.pt", weights_only=True)
    exported = load_net2(out / "net2.pt", for_training=True).state_dict()
    for name, value in best.items():
        if value.is_floating_point():
            torch.testing.assert_close(exported[name], value, atol=2e-3, rtol=2e-3)  # fp16 on disk
    other = Net2TrainConfig(**(config.to_dict() | {"steps": 3, "lr": 1e-3}))
    with pytest.raises(InputError, match="different config"):
        train_net2(other, out, net1_weights=net1_path, device="cpu", progress=False)


def test_train_net2_with_weight_averaging_exports_the_average_and_resumes_identically(tmp_path):
    from napari_grainseg.training.net2 import Net2TrainConfig, export_net2_checkpoint, train_net2

    net1_path, _ = save_weights(Net1(Net1Config()), tmp_path / "net1.pt", {"architecture": Net1Config().to_dict()})
    config = Net2TrainConfig(
        steps=4,
        pool_size=2,
        pool_shape=(64, 64),
        patch_shape=(64, 64),
        batch_size=2,
        val_size=1,
        val_shape=(64, 64),
        val_every=4,
        checkpoint_every=1,
        lr=0.05,
        ema_decay=0.5,
        keep_best=False,
    )
    straight = train_net2(config, tmp_path / "a", net1_weights=net1_path, device="cpu", progress=False)
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    raw = ckpt["model"]
    assert any(not torch.allclose(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    exported = load_net2(straight["weights"], for_training=True).state_dict()
    for name, value in averaged.items():  # the export holds the average, not the last raw weights
        if value.is_floating_point():
            torch.testing.assert_close(exported[name], value, atol=2e-3, rtol=2e-3)  # fp16 on disk
    assert export_net2_checkpoint(tmp_path / "a" / "checkpoint.pt", tmp_path / "x.pt").is_file()
    torch.testing.assert_close(load_net2(tmp_path / "x.pt", for_training=True).state_dict(), exported)
    # interrupted after the first step (max_minutes=0) and resumed: the same average
    train_net2(config, tmp_path / "b", net1_weights=net1_path, device="cpu", progress=False, max_minutes=0)
    resumed = train_net2(config, tmp_path / "b", net1_weights=net1_path, device="cpu", progress=False)
    assert resumed["finished"]
    torch.testing.assert_close(load_net2(resumed["weights"], for_training=True).state_dict(), exported)
    with pytest.raises(InputError, match="ema_decay"):
        Net2TrainConfig(ema_decay=1.0)
    for bad in ((), ("train", "bogus")):  # checked with the config, not minutes later in the pool
        with pytest.raises(InputError, match="net2 training config: preset must name synthetic presets"):
            Net2TrainConfig(presets=bad)


# --------------------------------------------------------------------------- pipeline and CLI


def test_segment_net2_steps(sample):
    from napari_grainseg.segmentation.grains import probability_watershed
    from napari_grainseg.segmentation.pipeline import net2_step_budget, segment

    torch.manual_seed(0)
    net1, net2 = Net1(Net1Config()).eval(), Net2(Net2Config()).eval()
    with torch.no_grad():  # untrained nets answer "boundary" everywhere; make them answer "grain"
        net1.head.bias -= 5.0
        net2.head.bias -= 5.0
    plain = segment(sample.image, model=net1, device="cpu", grain_size_px=20, net2_steps=0)
    assert plain.refine_steps == 0 and plain.refined is None and plain.info()["net2_steps"] == 0
    refined = segment(sample.image, model=net1, device="cpu", grain_size_px=20, net2_steps=3, net2_model=net2)
    assert refined.refine_steps == 3 and refined.refined.shape == sample.image.shape
    info = refined.info()
    assert info["net2_steps"] == 3 and info["method"] == "net1+net2" and info["net2_seconds"] >= 0
    assert info["net2_device"].startswith("cpu (") and info["net2_device"].endswith(", PyTorch")
    assert "net2_device" not in plain.info()
    by_threshold = segment(sample.image, model=net1, device="cpu", grain_size_px=20, net2_steps=0, grains="threshold")
    np.testing.assert_array_equal(plain.labels, probability_watershed(plain.prediction.probability))
    np.testing.assert_array_equal(by_threshold.labels, boundaries_to_labels(by_threshold.prediction.probability))
    assert by_threshold.info()["grains"] == "threshold" and plain.info()["grains"] == "watershed"
    with pytest.raises(InputError, match="grains must be one of"):
        segment(sample.image, model=net1, device="cpu", grain_size_px=20, net2_steps=0, grains="closing")
    assert net2_step_budget("auto") == 30 and net2_step_budget("4") == 4 and net2_step_budget(0) == 0
    for bad in ("-1", "many", 1.5, -2):
        with pytest.raises(InputError):
            net2_step_budget(bad)


def test_cli_train_net2_config_and_bad_options(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "napari_grainseg.cli", "train", *args], capture_output=True, text=True, timeout=120
        )

    shown = run("net2", "--print-config")
    assert shown.returncode == 0 and json.loads(shown.stdout)["levels"] == 4
    bad = run("net1", "--net1-weights", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"))
    assert bad.returncode == 2 and "net2 only" in bad.stderr
    missing = run("net2", "--net1-weights", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    conflicting = tmp_path / "blind.json"
    conflicting.write_text(json.dumps({"architecture": {"conditioning": "blind", "closed_start": True}}))
    refused = run("net2", "--config", str(conflicting), "--out", str(tmp_path / "o"))
    assert refused.returncode == 2 and "architecture" in refused.stderr and "Traceback" not in refused.stderr
    assert "closed_start" in refused.stderr and "dd9474d" in refused.stderr  # a retired experiment
    from napari_grainseg.training.net2 import Net2TrainConfig

    with pytest.raises(InputError, match="architecture .*unexpected keyword"):
        Net2TrainConfig(architecture={"foo": 1})


def test_retired_experiment_options_load_when_off_and_are_refused_when_on(tmp_path):
    """Weights and configs written while the failed experiments were in the code name their
    options; at the off value they load (the shipped files do), switched on they are a
    one-line error naming the commit that last had the code."""
    from napari_grainseg.training.config import config_from_dict
    from napari_grainseg.training.net2 import Net2TrainConfig

    info = json.loads((shipped_weights_dir() / "net2.json").read_text())
    assert info["architecture"]["closed_start"] is False and info["train_config"]["cldice_weight"] == 0.0
    config = config_from_dict(Net2TrainConfig, info["train_config"], "net2.json")
    assert config.net2_config() == Net2Config.from_dict(info["architecture"]) == load_net2().config
    assert not hasattr(config, "cldice_weight")
    off = tmp_path / "off.json"
    off.write_text(json.dumps({"topology_weight": 0, "segment_residue": [0.0, 0.3], "steps": 5}))
    assert Net2TrainConfig.from_json(off).steps == 5
    on = tmp_path / "on.json"
    on.write_text(json.dumps({"topology_weight": 2.0}))
    with pytest.raises(InputError, match="topology_weight .*dd9474d"):
        Net2TrainConfig.from_json(on)
    with pytest.raises(ValueError, match="net1_features = 16 .*dd9474d"):
        Net2Config.from_dict({"conditioning": "image", "net1_features": 16})
    with pytest.raises(TypeError):
        Net2Config(watershed_candidates=False)  # the options are gone from the code
