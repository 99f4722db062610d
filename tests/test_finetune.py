"""Learning from corrections: data, fine-tuning, model directories, the finetune CLI, --model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_grainseg.errors import InputError

#: A fast configuration: a few small steps (tests only check behaviour, not quality).
FAST = dict(steps=4, batch_size=2, patch=64, synthetic_samples=2, warmup_steps=1)


def _sample(seed: int, shape=(96, 96), preset="tem"):
    from napari_grainseg.synthetic import generate

    return generate(seed, shape=shape, preset=preset, mean_diameter=22.0)


def _correction(seed: int, roi=None, preset="tem"):
    from napari_grainseg.training.corrections import Correction

    s = _sample(seed, preset=preset)
    return Correction(s.image.astype(np.float32), s.boundaries.copy(), roi, f"img{seed}.tif")


def _config(**kw):
    from napari_grainseg.training.finetune import FinetuneConfig

    return FinetuneConfig(**(FAST | kw))


def _write_set(tmp_path: Path, seeds=(1, 2), kind="labels"):
    """Corrected micrographs as files: images, label images (or boundary masks) of synthetic samples."""
    import tifffile

    images, targets = [], []
    for seed in seeds:
        s = _sample(seed)
        img, tgt = tmp_path / f"img{seed}.tif", tmp_path / f"{kind}{seed}.tif"
        tifffile.imwrite(img, (s.image * 65535).astype(np.uint16))
        if kind == "labels":
            tifffile.imwrite(tgt, s.labels.astype(np.uint16))
        else:  # hand-drawn-like thick lines
            import cv2

            tifffile.imwrite(tgt, cv2.dilate(s.boundaries.astype(np.uint8) * 255, np.ones((5, 5), np.uint8)))
        images.append(img)
        targets.append(tgt)
    return images, targets


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- targets


def test_labels_give_thin_boundaries_also_where_ids_meet():
    from napari_grainseg.training.corrections import boundaries_from_labels

    tiling = np.ones((40, 40), np.int32)
    tiling[:, 20:] = 2  # a full partition, no 0 pixel
    lines = boundaries_from_labels(tiling)
    assert lines[:, 19].all() and lines.sum() == 40  # one line, 1 px wide, where the ids meet
    thick = tiling.copy()
    thick[:, 17:24] = 0  # a 7 px boundary band
    lines = boundaries_from_labels(thick)
    assert (lines.sum(axis=1) == 1).all() and lines[:, 20].all()  # thinned to its centre


def test_thick_boundary_mask_is_thinned_to_centre():
    from napari_grainseg.training.corrections import boundaries_from_mask

    mask = np.zeros((50, 50), np.uint8)
    mask[:, 22:29] = 200  # a 7 px wide hand-drawn stroke
    lines = boundaries_from_mask(mask)
    assert (lines.sum(axis=1) <= 1).all() and lines[5:45, 25].all()


@pytest.mark.parametrize(
    "labels, message",
    [(np.ones((30, 30), np.int32), "at least two grains"), (np.zeros((30, 30), np.int32), "at least two grains")],
)
def test_label_image_with_one_grain_is_an_error(labels, message):
    from napari_grainseg.training.corrections import boundaries_from_labels

    with pytest.raises(InputError, match=message):
        boundaries_from_labels(labels)


def test_all_zero_boundaries_is_an_error():
    from napari_grainseg.training.corrections import boundaries_from_mask

    with pytest.raises(InputError, match="all zero"):
        boundaries_from_mask(np.zeros((30, 30), np.uint8))


def test_features_are_computed_on_the_whole_image_then_cropped():
    """A crop's features equal the crop of the whole image's features (same thresholds as inference)."""
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.training.corrections import CorrectionSampler

    c = _correction(3)
    sampler = CorrectionSampler([c], 1.0, patch=64, synthetic=0)
    whole = net1_features(c.image)
    assert np.array_equal(sampler.prepared[0][2].features, whole)  # scale 1.0 is the middle entry
    crop_alone = net1_features(c.image[10:74, 10:74])
    assert not np.array_equal(crop_alone, whole[:, 10:74, 10:74])  # the pitfall this avoids is real


# --------------------------------------------------------------------------- ROI


def test_roi_pixels_outside_contribute_nothing_to_the_loss():
    import torch

    from napari_grainseg.training.finetune import masked_boundary_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 32, 32, generator=g, requires_grad=True)
    target = (torch.rand(2, 1, 32, 32, generator=g) > 0.8).float()
    weight = torch.zeros(2, 1, 32, 32)
    weight[..., :16] = 1
    loss = masked_boundary_loss(logits, target, weight, 3.0, 1.0)
    loss.backward()
    assert logits.grad[..., :16].abs().sum() > 0
    assert torch.all(logits.grad[..., 16:] == 0)
    other = logits.detach().clone()
    other[..., 16:] = 50.0  # anything outside the ROI
    target2 = target.clone()
    target2[..., 16:] = 1 - target2[..., 16:]
    assert torch.allclose(masked_boundary_loss(other, target2, weight, 3.0, 1.0), loss.detach())
    # with all weights 1 it is the project's boundary_loss
    from napari_grainseg.training.net1 import boundary_loss

    ones = torch.ones_like(weight)
    assert torch.allclose(
        masked_boundary_loss(logits.detach(), target, ones, 3.0, 1.0),
        boundary_loss(logits.detach(), target, 3.0, 1.0),
        atol=1e-6,
    )


def test_roi_excludes_pixels_end_to_end():
    """Two corrections that differ only outside the ROI train exactly the same weights."""
    from napari_grainseg.training.corrections import Correction
    from napari_grainseg.training.finetune import finetune_net1

    c = _correction(4)
    roi = np.zeros(c.image.shape, bool)
    roi[:, :48] = True
    garbage = c.boundaries.copy()
    garbage[:, 60:] = False
    garbage[::7, 60:] = True  # different "boundaries" far outside the ROI
    a = Correction(c.image, c.boundaries, roi, "a")
    b = Correction(c.image, garbage, roi, "b")
    ra = finetune_net1([a], _config(holdout=0.0), grain_size_px=22.0)
    rb = finetune_net1([b], _config(holdout=0.0), grain_size_px=22.0)
    sa, sb = _state(ra.model), _state(rb.model)
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
    # ...while the same change inside the ROI changes them
    inside = c.boundaries.copy()
    inside[::7, :40] = True
    rc = finetune_net1([Correction(c.image, inside, roi, "c")], _config(holdout=0.0), grain_size_px=22.0)
    assert any(not np.array_equal(sa[k].numpy(), _state(rc.model)[k].numpy()) for k in sa)


# --------------------------------------------------------------------------- fine-tuning


def test_a_few_steps_lower_the_loss_on_the_corrected_images():
    import torch

    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.training.corrections import prepare
    from napari_grainseg.training.finetune import finetune_net1, masked_boundary_loss

    corr = [_correction(5, preset="paper"), _correction(6, preset="paper")]  # a look Net1 knows less well
    prepared = [prepare(c, 1.0, 3) for c in corr]

    def loss_of(model):
        model.eval()
        with torch.no_grad():
            return float(
                np.mean(
                    [
                        masked_boundary_loss(
                            model(torch.from_numpy(p.features)[None]),
                            torch.from_numpy(p.target)[None],
                            torch.from_numpy(p.weight)[None],
                            3.0,
                            1.0,
                        )
                        for p in prepared
                    ]
                )
            )

    before = loss_of(load_net1(for_training=True))
    result = finetune_net1(corr, _config(steps=30, lr=1e-3, holdout=0.0, synthetic_share=0.0), grain_size_px=22.0)
    after = loss_of(result.model)
    assert after < 0.97 * before, (before, after)
    assert len(result.info["loss_curve"]) > 0 and result.info["steps_done"] == 30


def test_same_seed_same_weights_other_seed_other_weights():
    from napari_grainseg.training.finetune import finetune_net1

    corr = [_correction(7)]
    a = _state(finetune_net1(corr, _config(seed=3, holdout=0.0)).model)
    b = _state(finetune_net1(corr, _config(seed=3, holdout=0.0)).model)
    c = _state(finetune_net1(corr, _config(seed=4, holdout=0.0)).model)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert any(not np.array_equal(a[k].numpy(), c[k].numpy()) for k in a)


def test_two_images_hold_one_out_and_compare_with_the_base():
    from napari_grainseg.training.finetune import finetune_net1

    result = finetune_net1([_correction(8), _correction(9)], _config())
    held = result.heldout
    assert held["n_images"] == 1 and len(result.info["train_images"]) == 1
    assert set(held["base"]) == {"threshold", "watershed"}
    assert set(held["adapted"]) == {"threshold", "watershed", "tuned"} and held["best_grains"] == "tuned"
    assert 0 <= held["adapted"]["threshold"]["f1_2px"] <= 1
    tuned = result.info["grain_builder"]
    assert tuned["grains"] in ("threshold", "watershed") and ("threshold" in tuned or "watershed_h" in tuned)
    base_best = min(f["vi"] for f in held["base"].values())
    assert held["worse_than_base"] == (held["adapted"]["tuned"]["vi"] > base_best)


def test_worse_adapted_model_is_flagged_in_model_json_and_cli(tmp_path, capsys, monkeypatch):
    from napari_grainseg.cli import main
    from napari_grainseg.training import finetune

    real = finetune.compare_on

    def pessimistic(*args, **kwargs):
        return real(*args, **kwargs) | {"worse_than_base": True}

    monkeypatch.setattr(finetune, "compare_on", pessimistic)
    images, labels = _write_set(tmp_path, seeds=(20, 21))
    assert (
        main(
            [
                "finetune",
                *map(str, images),
                "--labels",
                *map(str, labels),
                "--out",
                str(tmp_path / "m"),
                "--steps",
                "2",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "WARNING: the adapted model scores worse" in capsys.readouterr().err
    assert json.loads((tmp_path / "m" / "model.json").read_text())["worse_than_base"] is True


def test_cancel_stops_after_the_current_step():
    from napari_grainseg.training.finetune import finetune_net1

    calls = []
    result = finetune_net1(
        [_correction(10)],
        _config(steps=50, holdout=0.0),
        cancel=lambda: len(calls) >= 2,
        progress=lambda step, total, loss: calls.append(step),
    )
    assert result.info["stopped"] == "cancelled" and result.info["steps_done"] == 2


# --------------------------------------------------------------------------- model directories


def test_model_directory_round_trip(tmp_path):
    import torch

    from napari_grainseg.models.model_dir import load_model
    from napari_grainseg.models.weights import file_sha256, shipped_weights_dir
    from napari_grainseg.training.finetune import adapt_and_save, inference_copy

    images, labels = _write_set(tmp_path)
    out, info = adapt_and_save(images, labels=labels, out=tmp_path / "model", config=_config(), device="cpu")
    assert (out / "net1.pt").is_file() and (out / "net2.pt").is_file() and (out / "model.json").is_file()
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk["base_model"]["sha256"] == file_sha256(shipped_weights_dir() / "net1.pt")
    assert on_disk["base_model"]["shipped"] is True
    for rec, img, lab in zip(on_disk["training_images"], images, labels):
        assert rec["image"] == str(img.resolve()) and rec["image_sha256"] == file_sha256(img)
        assert rec["target"] == str(lab.resolve()) and rec["target_sha256"] == file_sha256(lab)
    assert {r["role"] for r in on_disk["training_images"]} == {"train", "heldout"}
    for key in (
        "steps",
        "seed",
        "config",
        "loss_curve",
        "package_version",
        "date",
        "heldout",
        "worse_than_base",
        "net1_sha256",
        "model_sha256",
    ):
        assert key in on_disk, key
    loaded = load_model(out)
    assert loaded.record["model"] == "model" and loaded.record["model_sha256"] == on_disk["model_sha256"]
    # the saved weights compute what the trained model computes (fp16 storage)
    x = torch.from_numpy(np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32))
    from napari_grainseg.training.corrections import load_corrections
    from napari_grainseg.training.finetune import finetune_net1

    again = finetune_net1(load_corrections(images, labels=labels), _config())
    with torch.no_grad():
        assert torch.allclose(inference_copy(again.model)(x), loaded.net1(x), atol=2e-2)
    # with the onnx package (the test extra) the adapted Net1 also gets its ONNX export, so on the
    # CPU it runs through OpenCV like the shipped one, with the PyTorch model's outputs
    pytest.importorskip("onnx")
    from napari_grainseg.models.net1_opencv import OpenCVNet1
    from napari_grainseg.segmentation.options import cached_net1, release_models

    release_models()
    fast = cached_net1(out / "net1.pt", "cpu")
    assert isinstance(fast, OpenCVNet1) and fast.weights_info["weights_sha256"] == on_disk["net1_sha256"]
    with torch.no_grad():
        assert np.abs(fast.logits(x.numpy()) - loaded.net1(x).numpy()).max() < 1e-4
    release_models()


def test_model_directory_of_another_version_or_architecture_is_a_one_line_error(tmp_path):
    from napari_grainseg.models.model_dir import load_model
    from napari_grainseg.training.finetune import adapt_and_save

    images, labels = _write_set(tmp_path, seeds=(11,))
    out, _ = adapt_and_save(images, labels=labels, out=tmp_path / "m", config=_config(), device="cpu")
    info = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps(info | {"format_version": 99}))
    with pytest.raises(InputError, match="version 99") as exc:
        load_model(out)
    assert "\n" not in str(exc.value)
    (out / "model.json").write_text(json.dumps(info | {"architecture": {"net1": {"base_channels": 16, "heads": 3}}}))
    with pytest.raises(InputError, match="another architecture"):
        load_model(out)
    (out / "model.json").write_text(json.dumps(info))
    (out / "net1.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="SHA-256"):
        load_model(out)
    with pytest.raises(InputError, match="not a model directory"):
        load_model(tmp_path)


def test_the_shipped_model_is_never_overwritten(tmp_path):
    from napari_grainseg.cli import main
    from napari_grainseg.models.weights import file_sha256, shipped_weights_dir
    from napari_grainseg.training.finetune import adapt_and_save

    shipped = shipped_weights_dir()
    before = {p.name: file_sha256(p) for p in shipped.iterdir() if p.is_file()}
    images, labels = _write_set(tmp_path, seeds=(12,))
    with pytest.raises(InputError, match="never overwritten"):
        adapt_and_save(images, labels=labels, out=shipped, config=_config())
    assert (
        main(
            [
                "finetune",
                str(images[0]),
                "--labels",
                str(labels[0]),
                "--out",
                str(shipped),
                "--steps",
                "1",
                "--no-progress",
            ]
        )
        == 2
    )
    adapt_and_save(images, labels=labels, out=tmp_path / "m", config=_config())  # a real run leaves it alone
    assert {p.name: file_sha256(p) for p in shipped.iterdir() if p.is_file()} == before


def test_existing_folder_that_is_not_a_model_is_refused(tmp_path):
    from napari_grainseg.training.finetune import adapt_and_save

    images, labels = _write_set(tmp_path, seeds=(13,))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="not a model directory"):
        adapt_and_save(images, labels=labels, out=tmp_path / "work", config=_config())
    assert (tmp_path / "work" / "thesis.docx").read_text() == "precious"


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    import tifffile

    from napari_grainseg.cli import main

    images, labels = _write_set(tmp_path, seeds=(14, 15))
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.ones((40, 40), np.uint16))
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, np.ones((96, 96), np.uint16))
    zero = tmp_path / "zero.tif"
    tifffile.imwrite(zero, np.zeros((96, 96), np.uint8))
    out = str(tmp_path / "m")
    cases = [
        ([str(images[0]), str(images[1]), "--labels", str(labels[0])], "2 images but 1"),
        ([str(images[0]), "--labels", str(small)], "has shape (40, 40)"),
        ([str(images[0]), "--labels", str(one)], "at least two grains"),
        ([str(images[0]), "--boundaries", str(zero)], "all zero"),
        ([str(tmp_path / "missing.tif"), "--labels", str(labels[0])], "not found"),
        ([str(images[0]), "--labels", str(tmp_path / "gone.tif")], "not found"),
        ([str(images[0])], "--labels FILE... or --boundaries"),
        ([str(images[0]), "--labels", str(labels[0]), "--roi", str(zero)], "ROI mask is all zero"),
        (["--from", str(tmp_path)], "not a model directory"),
    ]
    for argv, message in cases:
        code = main(["finetune", *argv, "--out", out, "--steps", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("grainseg: error:") and message in lines[0], (argv, err)
    assert not Path(out).exists()


# --------------------------------------------------------------------------- CLI end to end


def test_cli_finetune_then_segment_with_model_records_it(tmp_path, capsys):
    import tifffile

    from napari_grainseg.cli import main

    images, masks = _write_set(tmp_path, seeds=(16, 17), kind="boundaries")
    model = tmp_path / "lab-model"
    assert (
        main(
            [
                "finetune",
                *map(str, images),
                "--boundaries",
                *map(str, masks),
                "--out",
                str(model),
                "--steps",
                "3",
                "--seed",
                "1",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "held out 1 image" in err and f"model -> {model}" in err
    info = json.loads((model / "model.json").read_text())
    assert info["steps"] == 3 and info["seed"] == 1 and info["training_images"][0]["kind"] == "boundaries"
    out = tmp_path / "seg"
    assert main(["segment", str(images[0]), "--out", str(out), "--model", str(model), "--device", "cpu"]) == 0
    summary = json.loads((out / "img16_summary.json").read_text())
    text = json.dumps(summary)
    assert info["model_sha256"] in text and "lab-model" in text
    assert (
        main(["segment", str(images[0]), "--out", str(tmp_path / "seg2"), "--device", "cpu", "--net2-steps", "0"]) == 0
    )
    shipped = json.dumps(json.loads((tmp_path / "seg2" / "img16_summary.json").read_text()))
    assert '"shipped"' in shipped and info["model_sha256"] not in shipped
    tifffile.imwrite(tmp_path / "noise.tif", np.zeros((4, 4), np.uint8))
    assert main(["segment", str(images[0]), "--out", str(out), "--model", str(tmp_path)]) == 2

    # a second fine-tuning into the same folder: refused before any training unless --overwrite;
    # and a file as --out is refused before training too (both were found after the whole run)
    before = (model / "net1.pt").read_bytes()
    again = ["finetune", str(images[0]), "--boundaries", str(masks[0]), "--steps", "2", "--no-progress"]
    from napari_grainseg.training import finetune as finetune_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before --out was checked")

    real = finetune_module.finetune_net1
    finetune_module.finetune_net1 = no_training
    capsys.readouterr()
    try:
        for target, words in ((model, "already holds a model: add --overwrite"), (images[0], "is not a model dir")):
            assert main([*again, "--out", str(target)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and words in err[0], err
    finally:
        finetune_module.finetune_net1 = real
    assert (model / "net1.pt").read_bytes() == before
    assert main([*again, "--out", str(model), "--overwrite", "--device", "cpu"]) == 0
    assert (model / "net1.pt").read_bytes() != before


def test_learn_again_uses_all_recorded_corrections_from_the_base(tmp_path, capsys):
    from napari_grainseg.models.weights import file_sha256, shipped_weights_dir
    from napari_grainseg.training.finetune import adapt_and_save

    first, first_labels = _write_set(tmp_path, seeds=(18,))
    m1, _ = adapt_and_save(first, labels=first_labels, out=tmp_path / "m1", config=_config())
    second, second_labels = _write_set(tmp_path, seeds=(19,))
    m2, info = adapt_and_save(second, labels=second_labels, out=tmp_path / "m2", from_dir=m1, steps=None, config=None)
    names = sorted(Path(r["image"]).name for r in info["training_images"])
    assert names == ["img18.tif", "img19.tif"]
    assert info["base_model"]["sha256"] == file_sha256(shipped_weights_dir() / "net1.pt")
    assert info["learned_from"] == str(m1.resolve()) and info["config"]["steps"] == FAST["steps"]
    first[0].unlink()
    with pytest.raises(InputError, match="missing"):
        adapt_and_save(second, labels=second_labels, out=tmp_path / "m3", from_dir=m1)


def test_ctrl_c_stops_training_cleanly_and_saves_the_model(tmp_path, capsys):
    import signal

    from napari_grainseg.training.finetune import adapt_and_save

    images, labels = _write_set(tmp_path, seeds=(22,))
    previous = signal.getsignal(signal.SIGINT)  # the default handler; ignored in a background job

    def press_ctrl_c(step, total, loss):
        if step == 2:
            signal.raise_signal(signal.SIGINT)

    out, info = adapt_and_save(
        images, labels=labels, out=tmp_path / "m", config=_config(steps=50), progress=press_ctrl_c
    )
    assert info["stopped"] == "interrupted" and info["steps_done"] == 2
    assert (out / "net1.pt").is_file()
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is given back


def test_eval_with_model_records_it(tmp_path):
    from napari_grainseg.cli import main
    from napari_grainseg.training.finetune import adapt_and_save

    images, labels = _write_set(tmp_path, seeds=(23,))
    out, info = adapt_and_save(images, labels=labels, out=tmp_path / "m", config=_config())
    results = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--sets",
                "id-tem",
                "--methods",
                "net1",
                "--limit",
                "1",
                "--model",
                str(out),
                "--device",
                "cpu",
                "--json",
                str(results),
            ]
        )
        == 0
    )
    record = json.loads(results.read_text())["model"]
    assert record["model_sha256"] == info["model_sha256"] and record["model"] == "m"


def test_interrupted_fine_tuning_resumes_to_the_same_weights(tmp_path):
    from napari_grainseg.training.finetune import finetune_net1

    corr = [_correction(24)]
    whole = _state(finetune_net1(corr, _config(steps=6, holdout=0.0)).model)
    calls = []
    first = finetune_net1(
        corr,
        _config(steps=6, holdout=0.0),
        run_dir=tmp_path / "run",
        cancel=lambda: len(calls) >= 3,
        progress=lambda step, total, loss: calls.append(step),
    )
    assert first.info["stopped"] == "cancelled" and first.info["steps_done"] == 3
    resumed = finetune_net1(corr, _config(steps=6, holdout=0.0), run_dir=tmp_path / "run")
    assert resumed.info["steps_done"] == 6 and resumed.info["stopped"] == "done"
    again = _state(resumed.model)
    assert all(np.array_equal(whole[k].numpy(), again[k].numpy()) for k in whole)


def test_time_budget_trains_as_many_steps_as_fit():
    from napari_grainseg.training.finetune import finetune_net1

    result = finetune_net1(
        [_correction(25)], _config(holdout=0.0), max_minutes=0.05, until_time=True, tune_builder=False
    )
    assert result.info["steps"] >= 10 and result.info["steps_done"] >= 1
    assert result.info["stopped"] in ("done", "time")


# --------------------------------------------------------------------------- Net2 adaptation


def test_net2_batches_are_deterministic_and_carry_the_roi_weights():
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.training.corrections import CorrectionSampler
    from napari_grainseg.training.finetune_net2 import degradation_config, net2_batch

    roi = np.zeros((96, 96), bool)
    roi[:, :48] = True
    sampler = CorrectionSampler([_correction(30, roi=roi)], 1.0, patch=64, synthetic=0, seed=0)
    net1 = load_net1()
    degrade = degradation_config({})  # defaults
    kw = dict(seed=2, batch_size=3, synthetic_share=0.0, degrade=degrade)
    a, b = net2_batch(sampler, net1, 5, **kw), net2_batch(sampler, net1, 5, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    states, conds, ts, targets, weights, unrolls = a
    assert states.shape == targets.shape == weights.shape == (3, 1, 64, 64) and conds.shape == (3, 5, 64, 64)
    assert ((ts >= 0) & (ts <= 1)).all() and set(np.unique(weights)) <= {0.0, 1.0}
    assert 0 < weights.mean() < 1  # the crops straddle the verified half: unverified pixels weigh 0
    c = net2_batch(sampler, net1, 6, **kw)
    assert not np.array_equal(a[0], c[0])


def test_net2_adaptation_lowers_its_loss_and_is_saved_and_used(tmp_path, capsys):
    import torch

    from napari_grainseg.cli import main
    from napari_grainseg.models.weights import file_sha256, load_net2, shipped_weights_dir
    from napari_grainseg.training.corrections import CorrectionSampler
    from napari_grainseg.training.finetune import FinetuneConfig, finetune_net1, inference_copy, masked_boundary_loss
    from napari_grainseg.training.finetune_net2 import degradation_config, net2_batch

    corr = [_correction(31, preset="paper"), _correction(32, preset="paper")]
    config = _config(steps=3, net2_steps=30, batch_size=4, holdout=0.5, synthetic_share=0.0, lr=1e-3)
    result = finetune_net1(corr, config, grain_size_px=22.0)
    assert result.net2 is not None and result.info["net2"]["steps_done"] == 30
    held = result.heldout
    assert set(held["adapted_net2"]) == set(held["adapted"]) and isinstance(held["net2_helps"], bool)
    assert held["net2_helps"] == (held["adapted_net2"]["tuned"]["vi"] < held["adapted"]["tuned"]["vi"])
    # the adapted Net2 fits the corrections' pairs better than the shipped Net2 (fixed batches)
    sampler = CorrectionSampler(corr[:1], 1.0, patch=64, synthetic=0, seed=9)
    shipped = load_net2(for_training=True).eval()
    degrade = degradation_config(shipped.weights_info)
    drawer = inference_copy(result.model)  # the coarse maps come from the adapted Net1, as in training
    batches = [
        net2_batch(sampler, drawer, s, seed=9, batch_size=4, synthetic_share=0.0, degrade=degrade) for s in range(4)
    ]

    def loss_of(model):
        with torch.no_grad():
            return np.mean(
                [
                    float(
                        masked_boundary_loss(
                            model(*map(torch.from_numpy, b[:3])), *map(torch.from_numpy, b[3:5]), 2.5, 1.0
                        )
                    )
                    for b in batches
                ]
            )

    assert loss_of(result.net2) < loss_of(shipped)
    assert FinetuneConfig(net2_steps=5).net2_steps == 5
    with pytest.raises(InputError, match="net2_steps"):
        FinetuneConfig(net2_steps=-1)
    # the CLI writes the adapted Net2 into the model directory, and segment can step it
    images, masks = _write_set(tmp_path, seeds=(33, 34), kind="boundaries")
    model = tmp_path / "lab"
    argv = ["finetune", *map(str, images), "--boundaries", *map(str, masks), "--out", str(model)]
    assert main(argv + ["--steps", "2", "--net2-steps", "3", "--no-progress", "--device", "cpu"]) == 0
    assert "adapted Net2 on the held-out" in capsys.readouterr().err
    info = json.loads((model / "model.json").read_text())
    assert info["net2"]["adapted"] is True and info["net2"]["steps_done"] == 3
    assert info["net2_sha256"] == file_sha256(model / "net2.pt") != file_sha256(shipped_weights_dir() / "net2.pt")
    assert info["recommended"]["net2_steps"] in (0, "auto")
    out = tmp_path / "seg"
    assert main(["segment", str(images[0]), "--out", str(out), "--model", str(model), "--net2-steps", "2"]) == 0
    summary = json.loads((out / "img33_summary.json").read_text())
    assert info["net2_sha256"] in json.dumps(summary) and "net1+net2" in json.dumps(summary)
    assert (
        main(
            argv[:1]
            + [str(images[0]), "--boundaries", str(masks[0]), "--out", str(tmp_path / "x"), "--net2-steps", "-1"]
        )
        == 2
    )


def test_adapted_model_scale_follows_each_images_pixel_size_in_segment_and_batch(tmp_path):
    """A model adapted on 30 px grains at 2 nm/px runs a 4 nm/px image at 15 px (the same grains in nm),
    in `segment` (several inputs in one call) and in `batch`, as napari does for each image."""
    import tifffile

    from napari_grainseg.cli import main
    from napari_grainseg.models.model_dir import save_model_dir
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.synthetic import generate

    model = save_model_dir(tmp_path / "m", load_net1(for_training=True), {"grain_size_px": 30.0, "pixel_size_nm": 2.0})
    folder = tmp_path / "in"
    folder.mkdir()
    image = (generate(seed=3, shape=(128, 160)).image * 65535).astype(np.uint16)
    for name, nm in (("at2nm", 2.0), ("at4nm", 4.0)):
        tifffile.imwrite(
            folder / f"{name}.tif", image, imagej=True, resolution=(1 / nm, 1 / nm), metadata={"unit": "nm"}
        )
    files = sorted(map(str, folder.glob("*.tif")))
    assert main(["segment", *files, "--out", str(tmp_path / "seg"), "--model", str(model), "--device", "cpu"]) == 0
    assert main(["batch", str(folder), "--out", str(tmp_path / "bat"), "--model", str(model), "--device", "cpu"]) == 0
    for out in (tmp_path / "seg", tmp_path / "bat"):
        hints = {
            n: json.loads((out / f"{n}_summary.json").read_text())["grain_size_hint_px"] for n in ("at2nm", "at4nm")
        }
        assert hints == {"at2nm": pytest.approx(30.0), "at4nm": pytest.approx(15.0)}, (out, hints)
    # a size the user gives wins over the model's (and is taken to the model's scale rule)
    out = tmp_path / "given"
    assert main(["segment", files[1], "--out", str(out), "--model", str(model), "--grain-size", "12"]) == 0
    assert json.loads((out / "at4nm_summary.json").read_text())["grain_size_hint_px"] == pytest.approx(12.0)


def test_corrections_at_two_magnifications_are_warned_of_and_recorded(tmp_path, capsys):
    """One adapted scale cannot suit images whose grains differ 3x: the CLI says so, model.json keeps
    each image's grain size, and the segment dock's advice names the span."""
    import tifffile

    from napari_grainseg.cli import main
    from napari_grainseg.models.model_dir import grain_size_advice, mixed_magnifications
    from napari_grainseg.synthetic import generate

    images, labels = [], []
    for seed, diameter in ((5, 12.0), (6, 36.0)):
        s = generate(seed, shape=(160, 160), preset="tem", mean_diameter=diameter)
        images.append(tmp_path / f"img{seed}.tif")
        labels.append(tmp_path / f"labels{seed}.tif")
        tifffile.imwrite(images[-1], (s.image * 65535).astype(np.uint16))
        tifffile.imwrite(labels[-1], s.labels.astype(np.uint16))
    model = tmp_path / "mixed"
    argv = ["finetune", *map(str, images), "--labels", *map(str, labels), "--out", str(model), "--steps", "1"]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    info = json.loads((model / "model.json").read_text())
    small, large = sorted(info["corrections_grain_sizes_px"])
    assert large > 2 * small and mixed_magnifications(info)
    assert f"WARNING: your corrected images' grain sizes span {small:.0f}-{large:.0f} px" in err
    assert "one model per magnification" in grain_size_advice(info)
    # one magnification: no warning, and the advice is the hint for other magnifications
    one = dict(info, corrections_grain_sizes_px=[small, small * 1.2])
    assert not mixed_magnifications(one) and grain_size_advice(one).startswith("runs at your corrections' grain size")


def test_calibrated_corrections_at_two_magnifications_run_each_image_at_its_own_scale(tmp_path, capsys):
    """`grainseg finetune` reads each file's pixel size: corrections of one material at 4 and 4/3 nm/px
    make a model that records their grain size in nm, is not warned of, and `segment --model` gives
    each calibrated image the hint of its own magnification (an uncalibrated one: the median's)."""
    import tifffile

    from napari_grainseg.cli import main
    from napari_grainseg.models.model_dir import model_grain_size_hint
    from napari_grainseg.synthetic import generate

    images, labels = [], []
    for seed, diameter, nm in ((5, 12.0, 4.0), (6, 36.0, 4.0 / 3.0)):
        s = generate(seed, shape=(160, 160), preset="tem", mean_diameter=diameter)
        images.append(tmp_path / f"img{seed}.tif")
        labels.append(tmp_path / f"labels{seed}.tif")
        tifffile.imwrite(
            images[-1],
            (s.image * 65535).astype(np.uint16),
            imagej=True,
            resolution=(1 / nm, 1 / nm),
            metadata={"unit": "nm"},
        )
        tifffile.imwrite(labels[-1], s.labels.astype(np.uint16))
    model = tmp_path / "calibrated"
    argv = ["finetune", *map(str, images), "--labels", *map(str, labels), "--out", str(model), "--steps", "1"]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    info = json.loads((model / "model.json").read_text())
    assert info["corrections_pixel_sizes_nm"] == [pytest.approx(4.0), pytest.approx(4.0 / 3.0)]
    assert info["grain_size_nm"] and info["pixel_size_nm"] is None
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, tifffile.imread(images[0]))
    out = tmp_path / "seg"
    assert main(["segment", *map(str, images), str(bare), "--out", str(out), "--model", str(model)]) == 0
    hints = {
        p.stem: json.loads((out / f"{p.stem}_summary.json").read_text())["grain_size_hint_px"] for p in (*images, bare)
    }
    assert hints["img5"] == pytest.approx(model_grain_size_hint(info, pixel_size_nm=4.0))
    assert hints["img6"] == pytest.approx(model_grain_size_hint(info, pixel_size_nm=4.0 / 3.0))
    assert hints["img6"] > 2 * hints["img5"]  # three times the grains in px
    assert hints["bare"] == pytest.approx(model_grain_size_hint(info))  # uncalibrated: the median's
    # learning again with one more image and --pixel-size: that image gets it, the recorded ones keep theirs
    again = tmp_path / "again"
    more = ["finetune", str(bare), "--labels", str(labels[0]), "--from", str(model), "--out", str(again)]
    assert main([*more, "--pixel-size", "2", "--steps", "1", "--no-progress", "--device", "cpu"]) == 0
    sizes = json.loads((again / "model.json").read_text())["corrections_pixel_sizes_nm"]
    assert sizes == [pytest.approx(4.0), pytest.approx(4.0 / 3.0), pytest.approx(2.0)]
