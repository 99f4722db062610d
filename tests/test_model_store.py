"""The user's model store (models/store.py): listing, names, rename, delete, learning into it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_grainseg.errors import InputError

#: A fast configuration: a few small steps (tests check behaviour, not quality).
FAST = dict(steps=3, batch_size=2, patch=64, synthetic_samples=2, warmup_steps=1)


@pytest.fixture
def store(tmp_path, monkeypatch):
    from napari_grainseg.models import store as store_mod

    root = tmp_path / "store"
    monkeypatch.setenv(store_mod.STORE_ENV, str(root))
    return root


def _corrected(seed: int, roi=None, name=None):
    from napari_grainseg.models.store import CorrectedImage
    from napari_grainseg.synthetic import generate

    s = generate(seed, shape=(96, 96), preset="tem", mean_diameter=22.0)
    return CorrectedImage(s.image.astype(np.float32), s.boundaries.copy(), roi, name or f"img{seed}")


def _config(**kw):
    from napari_grainseg.training.finetune import FinetuneConfig

    return FinetuneConfig(**(FAST | kw))


def _fake_model(root: Path, name: str, date: str, worse: bool | None = None) -> Path:
    """A model directory as the store lists it (model.json only: listing reads nothing else)."""
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.model_dir import MODEL_FORMAT, MODEL_FORMAT_VERSION
    from napari_grainseg.models.net1 import Net1Config

    d = root / name
    d.mkdir(parents=True)
    held = None
    if worse is not None:
        f = {"vi": 1.0, "f1_2px": 0.5}
        held = {
            "base": {"threshold": f},
            "adapted": {"tuned": dict(f, vi=2.0 if worse else 0.5)},
            "best_grains": "tuned",
        }
    info = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "date": date,
        "architecture": {"net1": Net1Config(in_channels=len(NET1_CHANNELS)).to_dict()},
        "heldout": held,
        "worse_than_base": bool(worse),
        "training_images": [],
    }
    (d / "model.json").write_text(json.dumps(info))
    return d


def test_store_folder_is_the_user_data_folder_unless_overridden(monkeypatch, tmp_path):
    import platformdirs

    from napari_grainseg.models.store import STORE_ENV, store_dir

    monkeypatch.delenv(STORE_ENV, raising=False)
    assert store_dir(create=False) == Path(platformdirs.user_data_dir("napari-grainseg")) / "models"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "elsewhere"))
    assert store_dir() == tmp_path / "elsewhere" and (tmp_path / "elsewhere").is_dir()


def test_list_newest_first_with_verdicts_skipping_what_is_not_a_model(store):
    from napari_grainseg.models.store import list_models

    _fake_model(store, "old", "2026-01-01T10:00:00+00:00", worse=False)
    _fake_model(store, "new", "2026-02-01T10:00:00+00:00", worse=True)
    _fake_model(store, "single", "2026-01-15T10:00:00+00:00")
    (store / "not a model").mkdir()
    (store / ".learning-x").mkdir()
    models = list_models()
    assert [m.name for m in models] == ["new", "single", "old"]
    new, single, old = models
    assert new.worse_than_base is True and "WORSE" in new.verdict and "worse than shipped" in new.label
    assert old.worse_than_base is False and old.verdict.startswith("better") and "worse" not in old.label
    assert single.worse_than_base is None and "not checked" in single.verdict
    assert new.label == "worse than shipped! new (2026-02-01 10:00)"  # the flag first: a narrow box clips the end


@pytest.mark.parametrize(
    "name, message",
    [
        ("a/b", "may not contain '/'"),
        ("a\\b", "may not contain"),
        ("..", "may not start or end with '.'"),
        (".hidden", "may not start"),
        ("  ", "give the model a name"),
        ("shipped", "reserved"),
        ("Shipped", "reserved"),
        ("corrections", "reserved"),
        ("x" * 81, "at most 80"),
        ("tab\there", "control characters"),
    ],
)
def test_bad_names_are_clear_one_line_errors(store, name, message):
    from napari_grainseg.models.store import check_name, new_model_path

    for call in (check_name, new_model_path):
        with pytest.raises(InputError, match=message) as info:
            call(name)
        assert "\n" not in str(info.value)


def test_unique_names_rename_and_refusals(store):
    from napari_grainseg.models.store import list_models, new_model_path, rename_model, unique_name

    _fake_model(store, "steel", "2026-01-01T10:00:00+00:00")
    assert unique_name("steel") == "steel 2" and unique_name("other") == "other"
    with pytest.raises(InputError, match="exists already"):
        new_model_path("steel")
    _fake_model(store, "copper", "2026-01-02T10:00:00+00:00")
    with pytest.raises(InputError, match="exists already"):
        rename_model("steel", "copper")
    with pytest.raises(InputError, match="no model named 'nickel'"):
        rename_model("nickel", "x")
    with pytest.raises(InputError, match="not in the model store"):
        rename_model("shipped", "mine")
    assert rename_model("steel", "steel 304") == store / "steel 304"
    assert sorted(m.name for m in list_models()) == ["copper", "steel 304"]
    assert not (store / "steel").exists()


def test_delete_refuses_the_shipped_model_and_removes_a_stored_one_whole(store):
    from napari_grainseg.models.store import delete_model, list_models
    from napari_grainseg.models.weights import shipped_weights_dir

    shipped = sorted(p.name for p in shipped_weights_dir().iterdir())
    for name in ("shipped", "SHIPPED"):
        with pytest.raises(InputError, match="shipped model"):
            delete_model(name)
    assert sorted(p.name for p in shipped_weights_dir().iterdir()) == shipped
    _fake_model(store, "a", "2026-01-01T10:00:00+00:00")
    delete_model("a")
    assert list_models() == [] and sorted(os.listdir(store)) == []
    with pytest.raises(InputError, match="no model named 'a'"):
        delete_model("a")


def test_learn_into_the_store_round_trip_and_learn_again_from_the_base(store):
    from napari_grainseg.models.model_dir import load_model, model_segment_options
    from napari_grainseg.models.store import CORRECTIONS, delete_model, learn_model, list_models

    roi = np.zeros((96, 96), bool)
    roi[10:80, 5:90] = True
    path, info = learn_model("steel", [_corrected(1, roi=roi, name="layer A")], steps=3, config=_config(), device="cpu")
    assert path == store / "steel" and info["steps_done"] == 3 and info["base_model"]["shipped"]
    (rec,) = info["training_images"]
    assert Path(rec["image"]).is_relative_to(store / CORRECTIONS) and Path(rec["roi"]).is_file()
    loaded = load_model(path)  # the saved model loads (hashes checked)
    assert loaded.record["model"] == "steel"
    (m,) = list_models()
    assert m.name == "steel" and m.worse_than_base is None and m.n_images == 1
    opts = model_segment_options(path, info, device="cpu")
    assert opts.weights == str(path / "net1.pt") and opts.grains == info["recommended"]["grains"]

    # learn again: the recorded image comes back (read from the store), the new one is added,
    # training starts from the shipped model again, and one image is held out and checked
    path2, info2 = learn_model("steel 2", [_corrected(2)], again_from="steel", steps=3, config=_config(), device="cpu")
    assert info2["base_model"]["shipped"] and info2["learned_from"] == str(path.resolve())
    assert len(info2["training_images"]) == 2 and info2["heldout"] is not None
    assert rec["image"] in {r["image"] for r in info2["training_images"]}

    # the same image corrected anew replaces its earlier correction (not counted twice)
    again = _corrected(1, name="layer A")
    again.boundaries[40, :] = True
    _, info3 = learn_model("steel 3", [again], again_from="steel 2", steps=3, config=_config(), device="cpu")
    assert len(info3["training_images"]) == 2
    assert rec["target"] not in {r["target"] for r in info3["training_images"]}

    # deleting models removes the corrected images only no other model uses
    delete_model("steel 3")
    assert Path(rec["target"]).is_file()
    delete_model("steel")
    delete_model("steel 2")
    assert list_models() == [] and not any((store / CORRECTIONS).iterdir())


def test_cancel_saves_nothing(store):
    from napari_grainseg.models.store import CORRECTIONS, LearnCancelled, learn_model, list_models

    steps = []
    with pytest.raises(LearnCancelled):
        learn_model(
            "x",
            [_corrected(3)],
            steps=50,
            config=_config(),
            device="cpu",
            progress=lambda step, total, loss: steps.append(step),
            cancel=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    assert list_models() == [] and not (store / "x").exists()
    assert [p.name for p in store.iterdir() if p.name != CORRECTIONS] == []
    assert not any((store / CORRECTIONS).iterdir())


def test_learning_refuses_a_taken_name_and_no_corrections_before_any_work(store):
    from napari_grainseg.models.store import learn_model

    _fake_model(store, "steel", "2026-01-01T10:00:00+00:00")
    with pytest.raises(InputError, match="exists already"):
        learn_model("steel", [_corrected(4)], steps=2, config=_config())
    with pytest.raises(InputError, match="no corrected boundary layer"):
        learn_model("new", [], steps=2, config=_config())
    empty = _corrected(5, name="layer E")
    empty.boundaries[:] = False
    with pytest.raises(InputError, match="'layer E'.*all zero"):
        learn_model("new", [empty], steps=2, config=_config())


def test_an_adapted_model_s_grain_size_in_an_image_s_pixels_and_its_hint():
    """What the user is told (the corrections' size, converted by the pixel sizes) and the hint that
    gives the adapted scale (grains above 40 px are shrunk to 24 px, not to the shipped rule's 40)."""
    from napari_grainseg.models.model_dir import ADAPTED_GRAIN_SIZE_PX, corrections_grain_size, model_grain_size_hint
    from napari_grainseg.segmentation.inference import scale_for_grain_size

    info = {"grain_size_px": 112.0, "pixel_size_nm": 2.0}
    assert corrections_grain_size(info) == 112.0
    assert corrections_grain_size(info, pixel_size_nm=4.0) == 56.0  # half the magnification
    assert corrections_grain_size({"grain_size_px": 112.0}, pixel_size_nm=4.0) == 112.0  # model uncalibrated
    assert corrections_grain_size({}) is None and model_grain_size_hint({}) is None
    hint = model_grain_size_hint(info, pixel_size_nm=4.0)
    assert hint > 56.0  # the internal hint is not the grain size shown to the user
    assert scale_for_grain_size(hint) == pytest.approx(ADAPTED_GRAIN_SIZE_PX / 56.0)
    small = {"grain_size_px": 20.0}
    assert model_grain_size_hint(small) == corrections_grain_size(small) == 20.0  # in range: as is


def test_learning_from_layers_at_two_magnifications_records_the_grain_size_in_nm(store, monkeypatch):
    """Two layers of one material at 4 and 4/3 nm/px (12 px and 36 px grains): the model records each
    image's pixel size and their common grain size in nm, so each calibrated image runs at its own
    scale; it is not warned of, and learning again keeps each image's pixel size."""
    from napari_grainseg.models.model_dir import (
        corrections_grain_size,
        grain_size_advice,
        magnification_warning,
        mixed_magnifications,
        model_grain_size_hint,
    )
    from napari_grainseg.models.store import CorrectedImage, learn_model
    from napari_grainseg.synthetic import generate
    from napari_grainseg.training import finetune

    tuned_with = []  # the grain builder is tuned with each image at the scale it will be predicted at
    tune = finetune.tune_grain_builder
    monkeypatch.setattr(
        finetune, "tune_grain_builder", lambda *a, **kw: tuned_with.append(kw["grain_size_px"]) or tune(*a, **kw)
    )
    layers = []
    for seed, diameter, nm in ((11, 12.0, 4.0), (12, 36.0, 4.0 / 3.0)):
        s = generate(seed, shape=(160, 160), preset="tem", mean_diameter=diameter)
        layers.append(CorrectedImage(s.image.astype(np.float32), s.boundaries.copy(), None, f"at {nm:.3g}", nm))
    _, info = learn_model("two mags", layers, steps=1, config=_config(holdout=0.0), device="cpu")
    assert info["corrections_pixel_sizes_nm"] == [4.0, pytest.approx(4.0 / 3.0)]
    assert info["pixel_size_nm"] is None  # no single pixel size
    small, large = sorted(info["corrections_grain_sizes_px"])
    assert mixed_magnifications(info) and large > 2 * small
    # in nm the two images agree (each image's size times its pixel size, within 15 %)
    nm_sizes = sorted([small * 4.0, large * 4.0 / 3.0])
    assert nm_sizes[1] < 1.15 * nm_sizes[0]
    assert info["grain_size_nm"] == pytest.approx(np.median(nm_sizes), rel=1e-3)  # sizes recorded to 0.01 px
    assert magnification_warning(info) == "" and "agree at about" in grain_size_advice(info)
    # each calibrated image at its own scale: three times the grains in px at a third of the pixel size
    at_4, at_133 = corrections_grain_size(info, 4.0), corrections_grain_size(info, 4.0 / 3.0)
    assert at_133 == pytest.approx(3 * at_4) and at_4 == pytest.approx(info["grain_size_nm"] / 4.0)
    assert corrections_grain_size(info) == info["grain_size_px"]  # an uncalibrated image: the median px size
    own = [model_grain_size_hint(info, pixel_size_nm=nm) for nm in (4.0, 4.0 / 3.0)]
    assert tuned_with[0] == [pytest.approx(own[0]), pytest.approx(own[1])] and own[1] > 2 * own[0]
    # learn again: the stored (uncalibrated) files get back the pixel size each was learned with
    _, again = learn_model("two mags again", [], again_from="two mags", steps=1, config=_config(), device="cpu")
    assert again["corrections_pixel_sizes_nm"] == info["corrections_pixel_sizes_nm"]
    assert again["grain_size_nm"] == pytest.approx(info["grain_size_nm"])
