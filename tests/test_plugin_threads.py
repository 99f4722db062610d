"""Net1 and Net2 through the real napari thread workers, started and cancelled with the real buttons;
re-running after hand edits; Net2 continuing from the edited boundary layer."""

from __future__ import annotations

import os

import numpy as np
import pytest

napari = pytest.importorskip("napari")
torch = pytest.importorskip("torch")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari

#: Longer than the grains' rebuild delay after an edit (plugin._boundaries.REBUILD_DELAY_MS).
REBUILD_WAIT_MS = 600


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


@pytest.fixture(scope="module")
def weights():
    from napari_grainseg.models.weights import shipped_weights_dir

    net1, net2 = shipped_weights_dir() / "net1.pt", shipped_weights_dir() / "net2.pt"
    if not (net1.is_file() and net2.is_file()):
        pytest.skip("no shipped Net1 / Net2 weights")
    return str(net1), str(net2)


@pytest.fixture
def errors(monkeypatch):
    from napari_grainseg.plugin import _correct_widget, _segment_widget, _stats_widget

    got = []
    for module in (_correct_widget, _segment_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", got.append)
    return got


def _sample_in_dock(make_napari_viewer, weights, monkeypatch, synchronous: bool = True):
    """A viewer with the bundled sample and a Segment dock whose workers run synchronously
    (or, with ``synchronous=False``, in their threads as in a user's session)."""
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", synchronous)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    return viewer, _segment(viewer, weights)


def _segment(viewer, weights):
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    seg = SegmentWidget(viewer)
    seg.net1_weights, seg.net2_weights = weights
    seg.device.value = "cpu"
    return seg


def test_net1_and_net2_in_threads_cancel_with_stop(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    image = viewer.layers["interconnect_tem"]
    big = np.tile(image.data, (4, 1))  # several tiles: Stop lands between two
    viewer.add_image(big, name="big")
    seg = _segment(viewer, weights)
    seg.image.value = viewer.layers["big"]

    # Net1 through OpenCV can finish a few tiles before the Stop click is handled: each tile is
    # held for a second, in the worker thread, before the worker looks for a stop request
    import time

    from napari_grainseg.plugin import _segment_widget

    report_tile = _segment_widget._Net1Progress.__call__

    def slow_tile(self, done, total):
        report_tile(self, done, total)
        time.sleep(1.0)

    monkeypatch.setattr(_segment_widget._Net1Progress, "__call__", slow_tile)

    # Net1: Stop right after Run; the result is dropped, the status says so
    click(qtbot, seg.run_net1_button)
    worker = seg._net1_worker
    assert worker is not None and "Net1 running on big" in seg.status.value
    click(qtbot, seg.stop_button)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "cancelled" in seg.status.value, timeout=5000)
    assert "running" not in seg.status.value
    assert "big boundaries" not in viewer.layers and seg._net1_worker is None
    monkeypatch.setattr(_segment_widget._Net1Progress, "__call__", report_tile)

    # Net1 to the end on the small image, with a determinate progress count of tiles
    viewer.layers.selection.active = image
    assert seg.image.value is image
    click(qtbot, seg.run_net1_button)
    with qtbot.waitSignal(seg._net1_worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=5000)
    qtbot.waitUntil(lambda: viewer.layers["interconnect_tem boundaries"].data.shape == image.data.shape, timeout=5000)
    assert seg.status.value.startswith("Net1:")

    # Net2 Run in its thread; Stop after the first step: stopped, the steps done are kept
    click(qtbot, seg.run_button)
    r = seg._refinement
    assert r is not None
    qtbot.waitUntil(lambda: seg.net2_label.value.startswith("step 1:"), timeout=120_000)
    click(qtbot, seg.stop_button)
    with qtbot.waitSignal(r.worker.finished, timeout=120_000, raising=False):
        pass
    qtbot.waitUntil(lambda: seg._refinement is None, timeout=30_000)
    assert "cancelled" in seg.status.value and "running" not in seg.status.value
    steps = viewer.layers["interconnect_tem boundaries"].metadata["grainseg_info"]["net2_steps"]
    assert 1 <= steps < 30
    assert errors == []


def test_net2_steps_keep_hand_edits_and_rerun_hides_the_old_result(
    make_napari_viewer, qtbot, weights, monkeypatch, errors, request
):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # as in a user's session: Net2 then leaves the viewer a core
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    image = viewer.layers["interconnect_tem"]
    seg = _segment(viewer, weights)
    fix, stats = CorrectWidget(viewer), StatsWidget(viewer)
    click(qtbot, seg.run_net1_button)
    bnd, grains = viewer.layers["interconnect_tem boundaries"], viewer.layers["interconnect_tem grains"]
    assert fix.boundaries.value is bnd and stats.grains.value is grains
    # the shipped weights have an ONNX export: on the CPU Net1 ran through OpenCV, and the dock says so
    net1_device = seg.device_label.value
    assert net1_device.startswith("Net1: cpu (OpenCV DNN, ") and "OpenCV DNN" in seg.status.value
    click(qtbot, seg.step_button)
    assert seg.net2_label.value.startswith("step 1:")
    assert seg.device_label.value.startswith(f"{net1_device}; Net2: cpu (")
    assert seg.device_label.value.endswith(", PyTorch")

    # a hand edit between two steps: a boundary line drawn across the whole image at row 70 (border to
    # border, so it separates grains whatever the model draws; it crosses the model's boundaries)
    width = bnd.data.shape[1]
    line = (np.full(width, 70), np.arange(width))
    with bnd.block_history():
        bnd.data_setitem(line, np.ones(width, np.uint8))
    # and a boundary erased (one grain merged into its neighbour)
    ys, xs = np.nonzero(bnd.data[:, 800:1000] == 1)
    keep = (ys > 20) & (ys < 130) & (np.abs(ys - 70) > 3)  # not the drawn line
    erased = (ys[keep][:40], xs[keep][:40] + 800)
    with bnd.block_history():
        bnd.data_setitem(erased, np.zeros(len(erased[0]), np.uint8))
    for _ in range(2):
        click(qtbot, seg.step_button)
        assert "kept fixed" in seg.status.value or seg.net2_label.value.startswith("step")
        assert bnd.data[line].all()  # the drawn line stays
        assert not bnd.data[erased].any()  # the erased pixels stay erased
        assert "interconnect_tem boundaries [2]" not in viewer.layers  # same layer, edits kept
    assert seg.net2_label.value.startswith("step 3:")
    assert grains.data[69, 500] != grains.data[71, 500]  # the line separates two grains
    edits = stats._extra()["hand_edits"]
    assert edits["painted_px"] >= 400
    assert "hand edits" in stats._extra()["method"]

    # Net1 again over the layer whose edits Net2 carried (no edit since the last step): new layers,
    # the old ones hidden, not overwritten, and the docks follow the new ones
    click(qtbot, seg.stop_button)
    click(qtbot, fix.picks_button)  # the old layer's picks: hidden with it
    click(qtbot, fix.lines_button)
    helpers = [viewer.layers[f"interconnect_tem boundaries {kind}"] for kind in ("picks", "split lines")]
    kept = bnd.data.copy()
    click(qtbot, seg.run_net1_button)
    # the core Net2 left the viewer (torch's count lowered) is not taken from OpenCV's Net1
    assert seg.device_label.value == net1_device
    np.testing.assert_array_equal(bnd.data, kept)
    new_b = viewer.layers["interconnect_tem boundaries [2]"]
    new_g = viewer.layers["interconnect_tem grains [2]"]
    assert not bnd.visible and not grains.visible and new_b.visible
    assert not any(helper.visible for helper in helpers)
    assert fix.boundaries.value is new_b and stats.grains.value is new_g
    assert seg.link_for(image).boundaries is new_b
    assert errors == []


def test_tta_checkbox_reaches_net1_and_is_recorded(make_napari_viewer, qtbot, weights, errors):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = _segment(viewer, weights)
    assert seg.tta.value is False
    from qtpy.QtCore import QPoint

    box = seg.tta.native  # click on its tick box (a click right of the text does not toggle a QCheckBox)
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert seg.tta.value is True
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=120_000)
    layer = viewer.layers["interconnect_tem boundaries"]
    qtbot.waitUntil(lambda: "grainseg_info" in layer.metadata, timeout=30_000)
    assert layer.metadata["grainseg_info"]["tta"] is True
    assert errors == []


def test_grains_too_fine_for_net1_are_enlarged_and_the_dock_says_so(make_napari_viewer, qtbot, weights, errors):
    """6 px grains, no grain size given: the Net1 button resamples the image (inference.finer_scale)
    and the status names the resampling; the boundary layer keeps the image's own size."""
    from napari_grainseg.synthetic import generate

    sample = generate(seed=8_600_200_001, shape=(256, 256), preset="tem", mean_diameter=6.0)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fine")
    seg = _segment(viewer, weights)
    click(qtbot, seg.run_net1_button)
    # the result's layers are filled in the event-loop turns after the worker returns
    qtbot.waitUntil(
        lambda: "fine grains" in viewer.layers and viewer.layers["fine grains"].data.shape == (256, 256),
        timeout=120_000,
    )
    assert "image resampled ×2" in seg.status.value and "(estimate)" in seg.status.value, seg.status.value
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    native = boundaries_to_labels(predict_boundaries(sample.image, grain_size_px=30.0, device="cpu").probability)
    n_napari, n_native = int(viewer.layers["fine grains"].data.max()), int(native.max())
    n_true = int(sample.labels.max())
    assert 4 * n_native < n_napari < n_true, (n_native, n_napari, n_true)  # native scale merges most grains
    assert errors == []


def test_grains_by_watershed_by_default_and_threshold_when_chosen_with_the_buttons(
    make_napari_viewer, qtbot, weights, monkeypatch, errors
):
    from napari_grainseg.segmentation.grains import probability_to_labels

    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch)
    assert seg.grains.value == "watershed"  # the default
    seg.grain_size.value = 100.0  # Net1 works on the image shrunk: the watershed smooths at that scale
    click(qtbot, seg.run_net1_button)
    bnd = viewer.layers["interconnect_tem boundaries"]
    prob = viewer.layers["interconnect_tem boundary probability"].data
    info = bnd.metadata["grainseg_info"]
    assert info["grains"] == "watershed" and info["net1_scale"] < 1
    by_watershed = probability_to_labels(prob, "watershed", net1_scale=info["net1_scale"]) == 0
    np.testing.assert_array_equal(bnd.data == 1, by_watershed)
    assert not np.array_equal(by_watershed, probability_to_labels(prob, "watershed") == 0)  # the scale mattered
    assert "(watershed, depth 0.2)" in seg.status.value
    shown = lambda widget: widget.native.isVisibleTo(seg.native)  # noqa: E731  (would show in the dock)
    assert shown(seg.basin_depth) and not shown(seg.threshold)  # the chosen builder's parameter only
    n_default = int(viewer.layers["interconnect_tem grains"].data.max())

    # a deeper basin depth, typed into the dock: fewer, larger grains
    seg.basin_depth.value = 0.45
    click(qtbot, seg.run_net1_button)
    bnd = viewer.layers["interconnect_tem boundaries"]
    deeper = probability_to_labels(prob, "watershed", watershed_h=0.45, net1_scale=info["net1_scale"]) == 0
    np.testing.assert_array_equal(bnd.data == 1, deeper)
    assert bnd.metadata["grainseg_info"]["watershed_h"] == 0.45 and "(watershed, depth 0.45)" in seg.status.value
    n_deep = int(viewer.layers["interconnect_tem grains"].data.max())
    assert 1 <= n_deep <= n_default  # a deeper basin depth never adds grains

    seg.grains.value = "threshold"
    assert shown(seg.threshold) and not shown(seg.basin_depth)  # the depth applies to the watershed only
    click(qtbot, seg.run_net1_button)
    bnd = viewer.layers["interconnect_tem boundaries"]
    assert bnd.metadata["grainseg_info"]["grains"] == "threshold"
    by_threshold = probability_to_labels(prob, "threshold") == 0
    np.testing.assert_array_equal(bnd.data == 1, by_threshold)
    assert not np.array_equal(by_threshold, by_watershed)
    assert "(threshold 0.5)" in seg.status.value

    # a lower threshold typed into its box: faint boundaries kept, more boundary pixels
    seg.threshold.value = 0.3
    click(qtbot, seg.run_net1_button)
    bnd = viewer.layers["interconnect_tem boundaries"]
    np.testing.assert_array_equal(bnd.data == 1, probability_to_labels(prob, "threshold", threshold=0.3) == 0)
    assert bnd.metadata["grainseg_info"]["threshold"] == 0.3 and "(threshold 0.3)" in seg.status.value
    assert (bnd.data == 1).sum() > by_threshold.sum()
    assert errors == []


def test_a_new_basin_depth_between_net2_steps_is_used_by_the_next_step(
    make_napari_viewer, qtbot, weights, monkeypatch, errors
):
    from napari_grainseg.segmentation.grains import probability_to_labels

    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch)
    click(qtbot, seg.run_net1_button)
    scale = viewer.layers["interconnect_tem boundaries"].metadata["grainseg_info"]["net1_scale"]
    click(qtbot, seg.step_button)
    assert seg.net2_label.value.startswith("step 1: ") and " grains (watershed, depth 0.2), change " in (
        seg.net2_label.value
    )
    for depth, step in ((0.6, 2), (0.1, 3)):
        seg.basin_depth.value = depth  # the paused run ends; the next Step continues with this depth
        click(qtbot, seg.step_button)
        assert seg.net2_label.value.startswith(f"step {step}: "), seg.net2_label.value
        prob = viewer.layers["interconnect_tem boundary probability"].data
        expected = probability_to_labels(prob, "watershed", watershed_h=depth, net1_scale=scale) == 0
        np.testing.assert_array_equal(viewer.layers["interconnect_tem boundaries"].data == 1, expected)
        n = int(viewer.layers["interconnect_tem grains"].data.max())
        # the Net2 line names the setting the step used, so the change is visible
        assert seg.net2_label.value.startswith(f"step {step}: {n} grain"), seg.net2_label.value
        assert f"(watershed, depth {depth:g}), change " in seg.net2_label.value
    assert errors == []


def test_a_stop_after_net1_finished_does_not_claim_a_cancel(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """Stop pressed while Net1's finished result waits to be shown: the result is shown, and the
    status does not say "cancelled: nothing changed"."""
    import threading
    import time

    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    done = threading.Event()
    real_job = SegmentWidget._net1_job

    def job(self, *args):
        out = real_job(self, *args)
        done.set()
        return out

    monkeypatch.setattr(SegmentWidget, "_net1_job", job)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = _segment(viewer, weights)
    click(qtbot, seg.run_net1_button)
    assert done.wait(60)  # no Qt events meanwhile: the result stays queued for the main thread
    time.sleep(0.3)
    click(qtbot, seg.stop_button)
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=10_000)
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=5000)
    assert "cancelled" not in seg.status.value and errors == []


def _touching_pair(labels: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """A point deep inside each of the two largest grains that share a 1-px boundary."""
    from scipy import ndimage as ndi

    areas = np.bincount(labels.ravel())
    best = None
    for y, x in zip(*np.nonzero(labels[2:-2, 2:-2] == 0), strict=True):
        a, b = labels[y + 2, x + 1], labels[y + 2, x + 3]
        if a and b and a != b and (best is None or min(areas[a], areas[b]) > best[0]):
            best = (min(areas[a], areas[b]), a, b)

    def inside(grain):
        d = ndi.distance_transform_edt(labels == grain)
        return tuple(int(v) for v in np.unravel_index(np.argmax(d), d.shape))

    return inside(best[1]), inside(best[2])


def test_net2_steps_keep_merged_grains_merged(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """A merge made with the Merge button stays one grain through Net2 steps: fixing only the
    erased pixels let a step draw the boundary again 2-3 px beside them (a walkthrough found the
    merge undone after one step while the summary still counted it)."""
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch)
    fix = CorrectWidget(viewer)
    click(qtbot, seg.run_net1_button)
    bnd, grains = viewer.layers["interconnect_tem boundaries"], viewer.layers["interconnect_tem grains"]
    a, b = _touching_pair(grains.data)
    assert grains.data[a] != grains.data[b]
    click(qtbot, fix.picks_button)
    viewer.layers.selection.active.data = np.array([a, b], float)
    click(qtbot, fix.merge_button)
    assert errors == [] and grains.data[a] == grains.data[b]
    click(qtbot, fix.undo_button)
    assert fix.status.value.startswith("undo on") and grains.data[a] != grains.data[b]
    click(qtbot, fix.redo_button)
    assert fix.status.value.startswith("redo on") and grains.data[a] == grains.data[b]
    for step in range(1, 4):
        click(qtbot, seg.step_button)
        assert seg.net2_label.value.startswith(f"step {step}:")
        qtbot.wait(REBUILD_WAIT_MS)
        assert grains.data[a] == grains.data[b], f"the merge was undone by Net2 step {step}"
    # a Net2 step starts the layer's history anew: Undo says there is nothing to undo, not "undo on"
    kept = bnd.data.copy()
    click(qtbot, fix.undo_button)
    assert fix.status.value.startswith("nothing to undo") and "Net2 step" in fix.status.value
    np.testing.assert_array_equal(bnd.data, kept)
    assert errors == []


def test_net1_status_shows_the_result_not_the_last_tile(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """The tile counter's timer must not fire after the result's status is written (a walkthrough saw
    "Net1 running ...: tile 1 of 1" stay for good beside the drawn result). The worker's end is
    delivered late, past several of the counter's intervals, so the race happens every time."""
    from qtpy.QtCore import QTimer

    from napari_grainseg.plugin import _segment_widget

    finished = _segment_widget.SegmentWidget._net1_finished
    late = 5 * _segment_widget._Net1Progress.POLL_MS

    def finished_late(self, *args, **kwargs):
        QTimer.singleShot(late, lambda: finished(self, *args, **kwargs))

    monkeypatch.setattr(_segment_widget.SegmentWidget, "_net1_finished", finished_late)
    _, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch, synchronous=False)
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=120_000)
    qtbot.wait(late)
    assert seg.status.value.startswith("Net1: 'interconnect_tem'"), seg.status.value
    assert errors == []


def test_closing_the_viewer_with_work_on_its_way_raises_nothing(make_napari_viewer, qtbot, weights, monkeypatch):
    """A measurement, a grains rebuild or a Net2 step finishing after the viewer closed wrote into
    deleted Qt widgets ("wrapped C/C++ object ... has been deleted", found by a walkthrough);
    pytest-qt fails this test on any exception raised in the event loop."""
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    viewer.window.add_plugin_dock_widget("napari-grainseg", "Correct grains")
    viewer.window.add_plugin_dock_widget("napari-grainseg", "Learn from corrections")
    seg.net1_weights, seg.net2_weights = weights
    seg.device.value = "cpu"
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=120_000)
    qtbot.wait(REBUILD_WAIT_MS)
    click(qtbot, seg.step_button)
    qtbot.waitUntil(lambda: seg.net2_label.value.startswith("step 1"), timeout=120_000)
    bnd = viewer.layers["interconnect_tem boundaries"]
    with bnd.block_history():  # an edit: a rebuild and a measurement are scheduled
        bnd.data_setitem((np.full(100, 77), np.arange(300, 400)), np.ones(100, np.uint8))
    qtbot.wait(50)
    viewer.close()
    qtbot.wait(3 * REBUILD_WAIT_MS)


def test_closing_the_viewer_while_net1_runs_raises_nothing(make_napari_viewer, qtbot, weights, monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    seg.net1_weights, seg.net2_weights = weights
    seg.device.value = "cpu"
    click(qtbot, seg.run_net1_button)
    worker = seg._net1_worker
    viewer.close()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.wait(3 * REBUILD_WAIT_MS)


def _net1_result_with_slow_net2(make_napari_viewer, qtbot, weights, monkeypatch, seconds: float, first=None):
    """The sample's Net1 result in a threaded dock whose Net2 steps each take ``seconds`` longer
    (``first``: the first step's delay, default the same): a click can land while a step computes."""
    import time

    from napari_grainseg.segmentation import refine as refine_module

    real_refine = refine_module.refine

    def slow_refine(*args, **kwargs):
        for i, step in enumerate(real_refine(*args, **kwargs)):
            time.sleep(seconds if i or first is None else first)
            yield step

    monkeypatch.setattr(refine_module, "refine", slow_refine)
    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch, synchronous=False)
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=120_000)
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=5000)
    return viewer, seg, viewer.layers["interconnect_tem boundaries"]


def test_an_edit_while_net2_runs_stops_it_and_the_dock_names_the_steps_shown(
    make_napari_viewer, qtbot, weights, monkeypatch, errors
):
    """Net2 Run never draws over a hand edit made while it runs; the step line then says which step
    is shown and which was dropped (it showed the dropped step as if drawn, "converged" included)."""

    # a step every 0.4 s after the first: the edit lands between two
    viewer, seg, bnd = _net1_result_with_slow_net2(make_napari_viewer, qtbot, weights, monkeypatch, 0.4, first=0.0)
    click(qtbot, seg.run_button)
    qtbot.waitUntil(lambda: bnd.metadata.get("grainseg_info", {}).get("net2_steps") == 1, timeout=120_000)
    line = (np.full(100, 77), np.arange(300, 400))
    with bnd.block_history():
        bnd.data_setitem(line, np.ones(100, np.uint8))
    qtbot.waitUntil(lambda: "was edited" in seg.status.value, timeout=30_000)
    qtbot.waitUntil(lambda: seg._refinement is None, timeout=30_000)
    assert bnd.data[line].all()  # the edit stays
    shown = bnd.metadata["grainseg_info"]["net2_steps"]
    assert seg.net2_label.value.startswith(f"{shown} step") and "dropped (the layer was edited)" in seg.net2_label.value
    assert "converged" not in seg.net2_label.value
    assert errors == []


def test_stop_during_a_net2_step_drops_that_step(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """Stop pressed while a step computes: the dock says the step is dropped, and it was drawn
    anyway (a large-image audit: 'cancelled ... the unfinished step was dropped' beside step 1)."""

    # each step takes a second before it is yielded
    viewer, seg, bnd = _net1_result_with_slow_net2(make_napari_viewer, qtbot, weights, monkeypatch, 1.0)
    qtbot.wait(300)
    before = bnd.data.copy()
    click(qtbot, seg.step_button)
    qtbot.wait(300)  # the step is computing
    click(qtbot, seg.stop_button)
    assert "the step being computed will be dropped" in seg.status.value
    qtbot.waitUntil(lambda: seg._refinement is None, timeout=60_000)
    qtbot.wait(300)
    assert "cancelled" in seg.status.value and "dropped" in seg.status.value
    np.testing.assert_array_equal(bnd.data, before)  # nothing drawn
    assert not bnd.metadata.get("grainseg_info", {}).get("net2_steps")
    assert errors == []


@pytest.mark.parametrize("how", ["Stop", "progress bar"])
def test_stop_cuts_a_net2_step_short_at_the_next_tile(make_napari_viewer, qtbot, weights, monkeypatch, errors, how):
    """Stop ends a Net2 step within one tile: before, the whole step ran to its end and was then
    dropped (a step takes about 7 s at 4096² and 28 s at 8192² on 2 cores). napari's progress bar
    cancels by quitting the worker (its cancel callback): the dock says so the same way."""
    import threading

    from napari_grainseg.segmentation import refine as refine_module

    monkeypatch.setattr(refine_module, "REFINE_TILE_SIZE", 160)  # the sample: several tiles
    monkeypatch.setattr(refine_module, "REFINE_OVERLAP", 48)
    in_step, go = threading.Event(), threading.Event()
    ran = []
    real_run = refine_module._StepRunner._run

    def held_first_tile(self, *args):  # the first tile of step 1 waits until Stop was clicked
        ran.append(len(self.tiles))
        if len(ran) == 1:
            in_step.set()
            go.wait(30)
        return real_run(self, *args)

    monkeypatch.setattr(refine_module._StepRunner, "_run", held_first_tile)
    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch, synchronous=False)
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=120_000)
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=5000)
    bnd = viewer.layers["interconnect_tem boundaries"]
    before = bnd.data.copy()
    click(qtbot, seg.step_button)
    try:
        qtbot.waitUntil(in_step.is_set, timeout=60_000)
        if how == "Stop":
            click(qtbot, seg.stop_button)
            assert "the step being computed will be dropped" in seg.status.value
        else:
            seg._refinement.worker.quit()  # what the progress bar's cancel button calls
    finally:
        go.set()
    qtbot.waitUntil(lambda: seg._refinement is None, timeout=60_000)
    assert ran[0] > 1 and len(ran) == 1  # one tile of several ran, then the step stopped
    assert "cancelled" in seg.status.value and "dropped" in seg.status.value
    np.testing.assert_array_equal(bnd.data, before)  # nothing drawn
    assert not bnd.metadata.get("grainseg_info", {}).get("net2_steps")
    assert errors == []


def test_net1_says_when_it_builds_grains_and_stop_then_drops_the_result(
    make_napari_viewer, qtbot, weights, monkeypatch, errors
):
    """After the last tile the grains are built in one pass (81 s at 8192² in an audit) while the
    status said 'tile 81 of 81' and Stop promised 'the end of the current tile'."""
    import time

    from napari_grainseg.segmentation import pipeline

    real_builder = pipeline.probability_to_labels

    def slow_builder(*args, **kwargs):
        time.sleep(1.5)
        return real_builder(*args, **kwargs)

    monkeypatch.setattr(pipeline, "probability_to_labels", slow_builder)
    viewer, seg = _sample_in_dock(make_napari_viewer, weights, monkeypatch, synchronous=False)
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: "done, building grains..." in seg.status.value, timeout=60_000)
    click(qtbot, seg.stop_button)
    assert "the grains are being built; the result will be dropped" in seg.status.value
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: "cancelled" in seg.status.value, timeout=5000)
    assert "interconnect_tem boundaries" not in viewer.layers
    assert errors == []


_CLOSE_WHILE_MEASURING = """
import time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication
from napari_grainseg.plugin._stats_widget import StatsWidget

grid = np.arange(2048) // 8
labels = (grid[:, None] * 256 + grid[None, :] + 1).astype(np.uint32)
labels[::8] = 0
labels[:, ::8] = 0  # 65 536 square grains: the measurement takes a second or more
viewer = napari.Viewer(show=False)
viewer.add_labels(labels, name="g", metadata={"grainseg_role": "grains"})
dock = StatsWidget(viewer)
viewer.window.add_dock_widget(dock)
start = time.time()
while dock._worker is None and time.time() - start < 30:
    QApplication.processEvents()
    time.sleep(0.02)
print("measuring" if dock._worker is not None else "no worker", flush=True)
viewer.close()
print("closed", flush=True)
"""


def test_a_script_may_close_the_viewer_while_a_measurement_runs(tmp_path):
    """The interpreter waits for the worker at exit; it aborted (exit code 134), the worker
    emitting its result through Qt objects deleted by the interpreter's teardown."""
    import subprocess
    import sys

    script = tmp_path / "close_while_measuring.py"
    script.write_text(_CLOSE_WHILE_MEASURING)
    env = dict(os.environ, GRAINSEG_SYNCHRONOUS="0")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.stdout.splitlines()[-2:] == ["measuring", "closed"], done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
