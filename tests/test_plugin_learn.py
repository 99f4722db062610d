"""The "Learn from corrections" dock, clicked for real in a real viewer: learning from a corrected
layer makes the next image of an unfamiliar look segment better; Cancel saves nothing; the learned
models are renamed and deleted with the buttons; a model worse than the shipped one is flagged."""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
torch = pytest.importorskip("torch")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari

#: A look the shipped Net1 was not trained on: strong amorphous speckle over low grain contrast and
#: faint boundary lines. Measured (texture look, 256², 40 default fine-tuning steps on one image,
#: tested on another): boundary F1 0.62 -> 0.73 / 0.55 -> 0.68 / 0.45 -> 0.54 and VI 2.13 -> 1.57 /
#: 2.47 -> 1.71 / 3.05 -> 2.26 for three seeds.
TEXTURED = dict(preset="tem", texture=0.3, contrast=0.08, boundary_darkening=0.1, mean_diameter=24.0)
#: A fast configuration for tests that check behaviour, not quality.
FAST = dict(batch_size=2, patch=64, synthetic_samples=2, warmup_steps=1)


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    from napari_grainseg.models.store import STORE_ENV

    root = tmp_path / "store"
    monkeypatch.setenv(STORE_ENV, str(root))
    return root


@pytest.fixture
def messages(monkeypatch):
    from napari_grainseg.plugin import _learn_widget, _segment_widget

    got = {"error": [], "warning": []}
    for module in (_learn_widget, _segment_widget):
        monkeypatch.setattr(module, "show_error", got["error"].append)
        monkeypatch.setattr(module, "show_warning", got["warning"].append)
    return got


def _sample(seed: int, shape=(256, 256), **look):
    from napari_grainseg.synthetic import generate

    return generate(seed, shape=shape, **(look or TEXTURED))


def _docks(viewer):
    from napari_grainseg.plugin._learn_widget import LearnWidget
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.device.value = "cpu"
    learn = LearnWidget(viewer)
    learn.device.value = "cpu"
    return seg, learn


def _correct_by_hand(layer, truth: np.ndarray) -> None:
    """What a user's painting and erasing amounts to: the layer ends up holding the true boundaries."""
    index = np.nonzero(np.asarray(layer.data) != truth)
    with layer.block_history():
        layer.data_setitem(index, truth[index].astype(np.uint8))


def _run_net1(qtbot, seg, image):
    """Click Run Net1 on ``image`` (threaded) and wait until its boundary layer holds the result."""
    seg.image.value = image
    before = seg.link_for(image)
    before_info = None if before is None else before.boundaries.metadata.get("grainseg_info")
    click(qtbot, seg.run_net1_button)
    worker = seg._net1_worker
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=180_000):
        pass

    def new_result():  # a re-run's result lands a turn or two after the worker ends
        link = seg.link_for(image)
        return link is not None and link.boundaries.metadata.get("grainseg_info") is not before_info

    qtbot.waitUntil(new_result, timeout=10_000)
    link = seg.link_for(image)
    qtbot.waitUntil(lambda: np.array_equal(link.boundaries.data, link.model_boundaries), timeout=10_000)
    return link


def _score(boundaries: np.ndarray, sample) -> dict:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    b = np.asarray(boundaries, np.uint8)
    return evaluate_prediction(b > 0, boundaries_to_labels(b), sample.boundaries, sample.labels)


def test_learning_from_a_corrected_layer_segments_the_next_image_better(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._segment_widget import SHIPPED

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    a, b = _sample(3), _sample(1003)
    viewer = make_napari_viewer()
    img_a = viewer.add_image(a.image, name="A")
    img_b = viewer.add_image(b.image, name="B")
    seg, learn = _docks(viewer)
    assert seg.model.value == SHIPPED and list(learn.corrected.value) == []

    # segment A with the shipped model, then correct it by hand: the layer is chosen for learning
    link_a = _run_net1(qtbot, seg, img_a)
    _correct_by_hand(link_a.boundaries, a.boundaries.astype(np.uint8))
    qtbot.waitUntil(lambda: link_a.has_hand_edits, timeout=5000)
    qtbot.waitUntil(lambda: [layer.name for layer in learn.corrected.value] == ["A boundaries"], timeout=5000)
    assert learn.model_name.value == "A model"

    # Learn (40 steps), in its worker, with a progress bar and the loss
    learn.steps.value = 40
    learn.model_name.value = "textured"
    click(qtbot, learn.learn_button)
    run = learn._run
    assert run is not None and not learn.learn_button.enabled and learn.cancel_button.enabled
    assert learn.status.value.endswith("(40 steps) on cpu...")  # the device chosen in the dock
    with qtbot.waitSignal(run.worker.finished, timeout=300_000):
        pass
    qtbot.waitUntil(lambda: learn._run is None, timeout=5000)
    assert messages["error"] == [], messages
    assert (store / "textured" / "model.json").is_file()
    info = json.loads((store / "textured" / "model.json").read_text())
    assert info["steps_done"] == 40 and info["base_model"]["shipped"]
    assert learn.progress.value == 40 and learn.progress.max == 40 and "step 40 of 40" in learn.loss.value
    assert learn.status.value.startswith("learned 'textured'") and learn.learn_button.enabled
    assert f"s on {info['device']}; saved" in learn.status.value and info["device"].startswith("cpu (")
    # the segment dock says at which scale the model runs (another magnification needs a hint)
    assert f"runs at your corrections' grain size ({info['grain_size_px']:.0f} px" in seg.model_label.value

    # the new model is the segment dock's model: segmenting B with it is one click;
    # the shipped model's result on B for comparison
    assert seg.model.value == str(store / "textured")
    seg.model.value = SHIPPED
    link_b = _run_net1(qtbot, seg, img_b)
    shipped = _score(link_b.boundaries.data, b)
    assert link_b.boundaries.metadata["grainseg_info"]["model"] == "shipped"
    seg.model.value = str(store / "textured")
    assert seg.grains.value == info["recommended"]["grains"]
    link_b = _run_net1(qtbot, seg, img_b)
    adapted = _score(link_b.boundaries.data, b)
    assert link_b.boundaries.metadata["grainseg_info"]["model"] == "textured"
    assert "model 'textured'" in seg.status.value
    # the grain size came from the model, not from a typed hint; the corrections' size, not the internal hint
    assert f"grain size {info['grain_size_px']:.1f} px (the model's)" in seg.status.value
    assert adapted["f1_2px"] > shipped["f1_2px"] + 0.05, (shipped, adapted)
    # (the margin was 0.3 while the shipped model's grains came by threshold; by watershed the
    # shipped model scores better on this texture, 1.84 against 2.1, and the adapted one still gains 0.26)
    assert adapted["vi"] < shipped["vi"] - 0.2, (shipped, adapted)
    assert messages["error"] == []


def _corrected_scene(viewer, seeds=(11,), shape=(96, 96)):
    """Images with a boundary layer each holding hand corrections (no network)."""
    from napari_grainseg.plugin._boundaries import BoundaryLink

    samples = []
    for seed in seeds:
        s = _sample(seed, shape=shape, preset="tem", mean_diameter=22.0)
        image = viewer.add_image(s.image, name=f"img{seed}")
        link = BoundaryLink.create(viewer, image, np.zeros(shape, np.uint8))
        _correct_by_hand(link.boundaries, s.boundaries.astype(np.uint8))
        samples.append(s)
    return samples


def test_cancel_stops_the_worker_and_saves_nothing(make_napari_viewer, qtbot, monkeypatch, store, messages):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)  # the layers are set up at once
    viewer = make_napari_viewer()
    _corrected_scene(viewer)
    seg, learn = _docks(viewer)
    assert [layer.name for layer in learn.corrected.value] == ["img11 boundaries"]
    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 5000
    learn.model_name.value = "never"
    click(qtbot, learn.learn_button)
    run = learn._run
    qtbot.waitUntil(lambda: run.step >= 2, timeout=60_000)
    qtbot.waitUntil(lambda: learn.progress.value >= 1, timeout=5000)  # the bar moves while it learns
    click(qtbot, learn.cancel_button)
    with qtbot.waitSignal(run.worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: learn._run is None, timeout=5000)
    assert run.step < 5000
    assert "cancelled: nothing saved" in learn.status.value
    assert learn.loss.value.startswith("cancelled at step ")
    assert [p.name for p in store.iterdir() if p.name != "corrections"] == []
    assert not any((store / "corrections").rglob("*.tif"))
    assert learn.learn_button.enabled and not learn.cancel_button.enabled
    assert list(seg.model.choices) == ["shipped"] and messages["error"] == []


def test_verified_region_rename_and_delete_with_the_buttons(make_napari_viewer, qtbot, monkeypatch, store, messages):
    import tifffile

    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._segment_widget import SHIPPED
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    _corrected_scene(viewer)
    seg, learn = _docks(viewer)
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2

    # a verified region drawn as a rectangle: only it is learned from (recorded with the model)
    click(qtbot, learn.region_button)
    region = viewer.layers["img11 verified region"]
    assert viewer.layers.selection.active is region and region.mode == "add_rectangle"
    assert learn.region.value is region
    region.add_rectangles(np.array([[10, 20], [60, 80]], float))
    learn.model_name.value = "steel"
    click(qtbot, learn.learn_button)
    assert messages["error"] == [], messages
    info = json.loads((store / "steel" / "model.json").read_text())
    roi = tifffile.imread(info["training_images"][0]["roi"])
    assert roi[10:60, 20:80].all() and int(roi.sum()) <= 51 * 61  # the rectangle, edges included
    assert not roi[:10].any() and not roi[61:].any() and not roi[:, :20].any() and not roi[:, 81:].any()
    assert seg.model.value == str(store / "steel") and learn.stored.value == "steel"
    grains = info["recommended"]["grains"]
    assert seg.grains.value == grains
    if grains == "watershed":  # the model's tuned depth is the dock's, for the user to see and change
        assert seg.basin_depth.value == pytest.approx(info["recommended"]["watershed_h"])
    if grains != "watershed":  # the dock's default: a switch is said in words
        assert f"'grains by' set to {grains}" in seg.model_label.value
    else:
        assert "'grains by'" not in seg.model_label.value
    depth = info["recommended"].get("watershed_h", 0.2)
    if grains != "watershed" or depth != pytest.approx(0.2):  # every change of setting is named
        assert "(the model's choice, made on your corrections)" in seg.model_label.value
    if grains == "watershed" and depth != pytest.approx(0.2):
        assert f"basin depth 0.2 -> {depth:g}" in seg.model_label.value
    # back to the shipped model: the dock's own settings return, and the dock says so
    seg.model.value = SHIPPED
    assert (seg.grains.value, seg.basin_depth.value) == ("watershed", pytest.approx(0.2))
    if grains != "watershed" or depth != pytest.approx(0.2):
        assert "your settings are back" in seg.model_label.value
    seg.model.value = str(store / "steel")
    assert seg.grains.value == grains
    assert "not checked" in learn.result.value

    # rename: a bad name is a clear error and changes nothing; a good one renames
    learn.new_name.value = "a/b"
    click(qtbot, learn.rename_button)
    assert messages["error"] and "may not contain '/'" in messages["error"][-1]
    assert (store / "steel").is_dir()
    learn.new_name.value = "steel 304"
    click(qtbot, learn.rename_button)
    assert not (store / "steel").exists() and (store / "steel 304" / "model.json").is_file()
    assert learn.stored.value == "steel 304"
    assert seg.model.value == str(store / "steel 304")  # the segment dock keeps it chosen
    assert str(store / "steel 304") in seg.model.choices and str(store / "steel") not in seg.model.choices

    # delete: the first press asks, the second deletes; the segment dock falls back to the shipped model
    seg.model.value = str(store / "steel 304")
    click(qtbot, learn.delete_button)
    assert (store / "steel 304").is_dir() and "press Delete again" in learn.status.value
    click(qtbot, learn.delete_button)
    assert not (store / "steel 304").exists()
    assert list(seg.model.choices) == [SHIPPED] and seg.model.value == SHIPPED
    assert list(learn.stored.choices) == []
    assert not any((store / "corrections").rglob("*.tif"))  # its corrected image went with it


def test_a_model_worse_than_the_shipped_one_is_flagged_not_chosen(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._segment_widget import SHIPPED
    from napari_grainseg.training import finetune
    from napari_grainseg.training.finetune import FinetuneConfig

    real = finetune.compare_on
    monkeypatch.setattr(finetune, "compare_on", lambda *a, **k: real(*a, **k) | {"worse_than_base": True})
    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    _corrected_scene(viewer, seeds=(12, 13))
    seg, learn = _docks(viewer)
    assert len(learn.corrected.value) == 2
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2
    learn.net2_steps.value = 2  # Net2 adapted too: the verdict says whether it helped
    learn.model_name.value = "doubtful"
    click(qtbot, learn.learn_button)
    assert messages["error"] == [], messages
    assert json.loads((store / "doubtful" / "model.json").read_text())["net2"]["adapted"] is True
    assert "WORSE than the shipped model" in learn.result.value and "its adapted Net2" in learn.result.value
    assert any("scored WORSE" in w for w in messages["warning"])
    assert seg.model.value == SHIPPED  # kept, listed with a warning, but not chosen
    (label,) = [lab for lab, value in seg.model._widget._mgui_get_choices() if value == str(store / "doubtful")]
    assert label.startswith("worse than shipped! doubtful (")  # first: the narrow box clips the end
    seg.model.value = str(store / "doubtful")  # choosing it says so again
    assert "WORSE" in seg.model_label.value and any("worse than the shipped" in w for w in messages["warning"])
    # the box clips long names: its tooltip gives the choice whole, its list opens wide enough
    box = seg.model.native
    assert box.toolTip().startswith(label + "\n\n") and "learned from your corrections" in box.toolTip()
    assert box.view().minimumWidth() >= box.fontMetrics().horizontalAdvance(label)

    # learn again from it: from the shipped model, on its two images plus none new
    learn.corrected.value = []
    learn.model_name.value = "again"
    click(qtbot, learn.again_button)
    assert messages["error"] == [], messages
    info = json.loads((store / "again" / "model.json").read_text())
    assert info["base_model"]["shipped"] and len(info["training_images"]) == 2
    assert info["learned_from"] == str((store / "doubtful").resolve())


def test_the_dock_opens_from_the_plugin_menu_and_fits_a_small_screen(make_napari_viewer):
    from napari_grainseg.plugin._learn_widget import LearnWidget

    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-grainseg", "Learn from corrections")
    assert isinstance(widget, LearnWidget)
    assert dock.minimumSizeHint().height() < 250 and dock.minimumSizeHint().width() < 480
    assert list(widget.stored.choices) == [] and widget.stored_info.value == "no learned model yet"


def test_verified_region_follows_world_coordinates_and_bad_regions_are_clear_errors(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    _corrected_scene(viewer)
    image = viewer.layers["img11"]
    for layer in (image, viewer.layers["img11 boundaries"], viewer.layers["img11 grains"]):
        layer.scale = (2.0, 2.0)  # calibrated at 2 nm/px
        layer.units = ("nm", "nm")
    seg, learn = _docks(viewer)

    # a Shapes layer added by hand (scale 1: world = nm): a rectangle of 40-100 nm x 20-60 nm
    shapes = viewer.add_shapes(np.array([[[40, 20], [40, 60], [100, 60], [100, 20]]], float), name="checked")
    learn.region.value = shapes
    (corr,) = learn.corrected_images()
    ys, xs = np.nonzero(corr.roi)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20, 50, 10, 30)  # in pixels of the image
    assert corr.pixel_size_nm == 2.0

    # a painted Labels mask of the image's shape
    mask = np.zeros((96, 96), np.uint8)
    mask[5:15, 5:25] = 3
    labels = viewer.add_labels(mask, name="painted", scale=(2.0, 2.0))
    learn.region.reset_choices()
    learn.region.value = labels
    (corr,) = learn.corrected_images()
    np.testing.assert_array_equal(corr.roi, mask > 0)

    # wrong shape, a line, a region beside the image: one-line errors through the Learn button
    for layer, message in (
        (viewer.add_labels(np.ones((50, 50), np.uint8), name="small"), "is (50, 50), image 'img11' is (96, 96)"),
        (viewer.add_shapes([np.array([[0, 0], [50, 50]], float)], shape_type="line", name="line"), "holds a line"),
        (
            viewer.add_shapes([np.array([[500, 500], [500, 600], [600, 600], [600, 500]], float)], name="far"),
            "covers nothing of 'img11'",
        ),
    ):
        learn.region.reset_choices()
        learn.region.value = layer
        learn.model_name.value = "x"
        click(qtbot, learn.learn_button)
        assert messages["error"] and message in messages["error"][-1], messages["error"]
        assert "\n" not in messages["error"][-1] and learn._run is None
    assert not (store / "x").exists()


def test_learning_from_files_opened_another_day(make_napari_viewer, qtbot, monkeypatch, store, tmp_path, messages):
    """A micrograph and its corrected ``*_boundaries.tif`` opened with the plugin's reader are learned from."""
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    s = _sample(14, shape=(96, 96), preset="tem", mean_diameter=22.0)
    write_tiff(tmp_path / "cu.tif", (s.image * 60000).astype(np.uint16), 2.5)
    write_tiff(tmp_path / "cu_boundaries.tif", s.boundaries.astype(np.uint8), 2.5)
    viewer = make_napari_viewer()
    seg, learn = _docks(viewer)
    (boundaries,) = viewer.open(str(tmp_path / "cu_boundaries.tif"), plugin="napari-grainseg")
    assert [layer.name for layer in learn.corrected.choices] == ["cu boundaries"]
    learn.corrected.value = [boundaries]
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2
    learn.model_name.value = "copper"
    click(qtbot, learn.learn_button)  # its micrograph is not open yet: said plainly
    assert messages["error"] and "its micrograph 'cu' is not open: open it too" in messages["error"][-1]
    viewer.open(str(tmp_path / "cu.tif"), plugin="napari-grainseg")
    click(qtbot, learn.learn_button)
    assert len(messages["error"]) == 1, messages
    info = json.loads((store / "copper" / "model.json").read_text())
    assert info["pixel_size_nm"] == pytest.approx(2.5) and info["training_images"][0]["name"] == "cu boundaries"
    assert seg.model.value == str(store / "copper")


def _click_row(qtbot, select, row: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """Click row ``row`` of a magicgui Select (a QListWidget), as a user does."""
    native = select.native
    rect = native.visualItemRect(native.item(row))
    qtbot.mouseClick(native.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_the_dock_says_what_is_chosen_and_offers_only_what_can_be_pressed(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    """What a microscopist tripped over in the walkthrough (scripts/review_learn.py): a chosen row only
    faintly highlighted, a time budget that silently did not count, Learn again / Rename / Delete
    pressable with no model, an empty 'check' row, a status line below the stored models."""
    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    seg, learn = _docks(viewer)
    assert learn.corrected_info.value.startswith("no boundary layer yet: run Net1")
    assert not learn.again_button.enabled and not learn.rename_button.enabled and not learn.delete_button.enabled
    assert all(w.native.isHidden() for w in (learn.progress, learn.loss, learn.result))  # nothing to show yet
    click(qtbot, learn.learn_button)
    assert "run Net1 on an image and correct its result first" in messages["error"][-1]

    _corrected_scene(viewer, seeds=(12, 13))
    assert learn.corrected_info.value == "chosen: img12 boundaries, img13 boundaries (the hand-edited layers)"
    assert learn.corrected.native.height() < 90  # sized to its two rows, not a tall empty box
    _click_row(qtbot, learn.corrected, 0)  # a click chooses that layer alone
    assert [layer.name for layer in learn.corrected.value] == ["img12 boundaries"]
    assert learn.corrected_info.value == "chosen: img12 boundaries"
    _click_row(qtbot, learn.corrected, 0, Qt.KeyboardModifier.ControlModifier)  # Ctrl-click: chosen no more
    assert list(learn.corrected.value) == [] and learn.corrected_info.value.startswith("none chosen: click")
    click(qtbot, learn.learn_button)
    assert messages["error"][-1] == "no corrected layer chosen: click one under 'corrected layers'"
    assert learn._run is None
    _click_row(qtbot, learn.corrected, 1)

    # steps set: the time budget is greyed out (it is not used); 0 steps: it counts again
    assert learn.minutes.enabled
    learn.steps.native.setFocus()
    learn.steps.native.selectAll()
    qtbot.keyClicks(learn.steps.native, "2")
    assert learn.steps.value == 2 and not learn.minutes.enabled
    learn.config = FinetuneConfig(**FAST)
    learn.model_name.value = "steel"
    n_errors = len(messages["error"])
    click(qtbot, learn.learn_button)
    assert len(messages["error"]) == n_errors, messages
    # the loss with the first step's, the status next to the buttons, the check under the stored model
    assert not learn.loss.native.isHidden() and "(first step " in learn.loss.value and "step 2 of 2" in learn.loss.value
    assert learn.status.value.startswith("learned 'steel' from 1 corrected image: 2 steps")
    order = list(learn.body)
    assert order.index(learn.status) < order.index(learn.stored)
    assert not learn.result.native.isHidden() and learn.result.value.startswith("not checked")
    assert learn.stored_info.value.startswith("learned from 1 corrected image; folder ")
    assert learn.again_button.enabled and learn.rename_button.enabled and learn.delete_button.enabled

    # Learn again with the suggested name untouched: named after the model it learns again from
    assert learn.model_name.value.endswith(" model")  # the suggestion for the next model
    click(qtbot, learn.again_button)
    assert len(messages["error"]) == n_errors, messages
    assert (store / "steel 2" / "model.json").is_file() and not (store / "img13 model").exists()
    assert learn.stored.value == "steel 2"  # (2 steps on two images: may be flagged worse, so not asserted chosen)

    # an empty new name says where to type it
    learn.new_name.value = "  "
    click(qtbot, learn.rename_button)
    assert messages["error"][-1] == "type the new name under 'rename to'"
    assert (store / "steel 2").is_dir()


def test_the_loss_line_says_the_time_left():
    import time

    from napari_grainseg.plugin._learn_widget import _Run

    run = _Run("x")
    run.progress(1, 11, 2.0)
    run.started = time.monotonic() - 10.0  # step 1 began 10 s ago: 2 s a step since
    run.progress(6, 11, 1.5)
    assert run.words() == "1.5000 (first step 2.0000); step 6 of 11; about 10 s left"
    assert run.words(running=False) == "1.5000 (first step 2.0000); step 6 of 11"
    run.started = time.monotonic() - 1000.0
    assert run.words().endswith("; about 17 min left")


def test_a_region_drawn_over_one_image_leaves_the_other_chosen_images_whole(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    """The walkthrough drew a verified region over the first of two corrected images with the button:
    it restricted the second (fully corrected) image as well."""
    import tifffile

    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    _corrected_scene(viewer, seeds=(12, 13))
    seg, learn = _docks(viewer)
    assert [layer.name for layer in learn.corrected.value] == ["img12 boundaries", "img13 boundaries"]
    click(qtbot, learn.region_button)
    region = viewer.layers["img12 verified region"]
    assert "over the part of 'img12' you checked" in learn.status.value and "img13 boundaries" in learn.status.value
    region.add_rectangles(np.array([[10, 20], [60, 80]], float))
    corr = {c.name: c for c in learn.corrected_images()}
    assert corr["img12 boundaries"].roi is not None and corr["img12 boundaries"].roi[10:60, 20:80].all()
    assert corr["img13 boundaries"].roi is None  # learned from whole

    # a Shapes layer drawn by hand (no image of its own) restricts every chosen image
    shapes = viewer.add_shapes(np.array([[[0, 0], [0, 40], [40, 40], [40, 0]]], float), name="checked")
    learn.region.value = shapes
    assert all(c.roi is not None and c.roi[:40, :40].all() for c in learn.corrected_images())

    # learning with the button's region: recorded for the first image only
    learn.region.value = region
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2
    learn.model_name.value = "part"
    click(qtbot, learn.learn_button)
    assert messages["error"] == [], messages
    records = {r["name"]: r for r in json.loads((store / "part" / "model.json").read_text())["training_images"]}
    assert records["img12 boundaries"]["roi"] and not records["img13 boundaries"].get("roi")
    assert tifffile.imread(records["img12 boundaries"]["roi"])[10:60, 20:80].all()


def test_delete_asks_again_after_another_button_was_pressed(make_napari_viewer, qtbot, monkeypatch, store, messages):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    _corrected_scene(viewer)
    seg, learn = _docks(viewer)
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2
    learn.model_name.value = "keep me"
    click(qtbot, learn.learn_button)
    assert (store / "keep me").is_dir()
    click(qtbot, learn.delete_button)
    assert learn.delete_button.text == "Delete: sure?"
    learn.new_name.value = ""
    click(qtbot, learn.rename_button)  # something else in between: the next Delete asks again
    assert learn.delete_button.text == "Delete"
    click(qtbot, learn.delete_button)
    assert (store / "keep me").is_dir() and "press Delete again" in learn.status.value


def test_a_learned_models_settings_are_named_and_the_users_return_with_the_shipped_model(
    make_napari_viewer, store, messages
):
    """Choosing a learned model sets its tuned grain builder in the dock and says every change
    (a walkthrough saw the basin depth change unannounced); choosing the shipped model again brings
    back the settings the dock had before, not the learned model's."""
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.model_dir import MODEL_FORMAT, MODEL_FORMAT_VERSION
    from napari_grainseg.models.net1_config import Net1Config
    from napari_grainseg.plugin._segment_widget import SHIPPED, SegmentWidget

    for name, recommended in (
        ("deep", {"grains": "watershed", "watershed_h": 0.1}),
        ("thr", {"grains": "threshold", "threshold": 0.4}),
    ):
        (store / name).mkdir(parents=True)
        info = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "architecture": {"net1": Net1Config(in_channels=len(NET1_CHANNELS)).to_dict()},
            "recommended": recommended,
        }
        (store / name / "model.json").write_text(json.dumps(info))
    viewer = make_napari_viewer()
    seg = SegmentWidget(viewer)
    seg.basin_depth.value = 0.3  # the user's own choice
    seg.refresh_models()
    seg.model.value = str(store / "deep")
    assert seg.basin_depth.value == pytest.approx(0.1)
    assert "basin depth 0.3 -> 0.1 (the model's choice" in seg.model_label.value
    seg.model.value = str(store / "thr")  # one learned model to another: still the user's settings to return to
    assert (seg.grains.value, seg.threshold.value) == ("threshold", pytest.approx(0.4))
    assert "'grains by' set to threshold, threshold 0.5 -> 0.4" in seg.model_label.value
    seg.model.value = SHIPPED
    assert (seg.grains.value, seg.basin_depth.value, seg.threshold.value) == (
        "watershed",
        pytest.approx(0.3),
        pytest.approx(0.5),
    )
    assert seg.model_label.value == (
        "shipped model; your settings are back: 'grains by' set to watershed, basin depth 0.1 -> 0.3, "
        "threshold 0.4 -> 0.5"
    )
    seg.model.value = SHIPPED  # nothing more to restore
    # a depth the user set while the learned model was chosen is the user's: it stays
    seg.model.value = str(store / "deep")
    seg.basin_depth.value = 0.45
    seg.model.value = SHIPPED
    assert seg.basin_depth.value == pytest.approx(0.45)
    assert seg.model_label.value == "shipped model"  # nothing the model set was left to restore
    assert messages["error"] == []


def test_closing_the_viewer_while_learning_stops_it_and_saves_nothing(
    make_napari_viewer, qtbot, monkeypatch, store, messages
):
    """Learning went on unseen after the viewer closed, saved a model the user had walked away from,
    and at exit wrote into deleted signals (a crash). Now it stops after the current step."""
    from napari_grainseg.plugin import _threading
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer()
    _corrected_scene(viewer)
    _, learn = _docks(viewer)
    learn.config = FinetuneConfig(**FAST)
    learn.steps.value = 2000  # minutes of work, were it not stopped
    learn.model_name.value = "walked away"
    click(qtbot, learn.learn_button)
    run = learn._run
    qtbot.waitUntil(lambda: run.step >= 1, timeout=120_000)
    viewer.close()
    qtbot.waitUntil(lambda: not run.worker.is_running, timeout=60_000)
    assert run.step < 2000 and not (store / "walked away").exists()


@pytest.mark.parametrize("calibrated", [False, True])
def test_corrections_at_two_magnifications_warn_only_without_pixel_sizes(
    make_napari_viewer, qtbot, monkeypatch, store, messages, calibrated
):
    """Two corrected layers of one material, 12 px grains at 4 nm/px and 36 px grains at 4/3 nm/px:
    with their pixel sizes the model learns the grain size in nm and runs each calibrated image at its
    own scale (no warning; the segment dock says so); without them it warns after Learn."""
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.synthetic import generate
    from napari_grainseg.training.finetune import FinetuneConfig

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    for seed, diameter, nm in ((11, 12.0, 4.0), (12, 36.0, 4.0 / 3.0)):
        s = generate(seed, shape=(160, 160), preset="tem", mean_diameter=diameter)
        calibration = {"scale": (nm, nm), "units": ("nm", "nm")} if calibrated else {}
        image = viewer.add_image(s.image, name=f"at {nm:.3g} nm", **calibration)
        link = BoundaryLink.create(viewer, image, np.zeros(s.image.shape, np.uint8))
        _correct_by_hand(link.boundaries, s.boundaries.astype(np.uint8))
    seg, learn = _docks(viewer)
    qtbot.waitUntil(lambda: len(learn.corrected.value) == 2, timeout=5000)
    learn.config = FinetuneConfig(**FAST, holdout=0.0)  # no held-out check: two steps cannot pass one
    learn.steps.value = 2
    learn.model_name.value = "two mags"
    click(qtbot, learn.learn_button)
    info = json.loads((store / "two mags" / "model.json").read_text())
    assert messages["error"] == []
    if calibrated:
        assert info["corrections_pixel_sizes_nm"] == [pytest.approx(4.0), pytest.approx(4.0 / 3.0)]
        assert info["grain_size_nm"] and messages["warning"] == []
        assert "agree at about" in seg.model_label.value and "each calibrated image" in seg.model_label.value
    else:
        assert info["grain_size_nm"] is None
        assert len(messages["warning"]) == 1 and "grain sizes span" in messages["warning"][0]
        assert "give each corrected image its pixel size and learn again" in messages["warning"][0]
