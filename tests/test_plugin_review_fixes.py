"""What a microscopist tripped over in the screenshot walkthrough (scripts/review_walkthrough.py),
each checked with the real buttons in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import QPoint, Qt  # noqa: E402

pytestmark = pytest.mark.napari

H, W = 60, 120


def n_grains(labels) -> int:
    """Grains in a label image (after edits its ids need not run 1..n)."""
    return int(np.count_nonzero(np.unique(labels)))


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def tick(qtbot, checkbox) -> None:
    native = checkbox.native
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))


def six_grains() -> np.ndarray:
    """Boundaries (1) of six grains: three columns of two rows."""
    b = np.zeros((H, W), np.uint8)
    b[:, 40] = b[:, 80] = 1
    b[30, :] = 1
    return b


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


@pytest.fixture
def errors(monkeypatch):
    from napari_grainseg.plugin import _correct_widget, _segment_widget, _stats_widget

    got = []
    for module in (_correct_widget, _segment_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", got.append)
    return got


def calibrated_scene(viewer, name="cal", nm=2.0):
    from napari_grainseg.plugin._boundaries import BoundaryLink

    image = viewer.add_image(
        np.random.default_rng(0).random((H, W)).astype(np.float32), name=name, scale=(nm, nm), units=("nm", "nm")
    )
    return image, BoundaryLink.create(viewer, image, six_grains())


def test_a_rectangle_drawn_over_a_calibrated_image_excludes_the_grains_under_it(
    make_napari_viewer, qtbot, errors, tmp_path
):
    """A Shapes layer made with napari's button is in pixels at scale 1; the rectangle is drawn in
    world (nm) coordinates over the image: the grains under it, not others, are left out."""
    import json

    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer()
    image, link = calibrated_scene(viewer)
    stats = StatsWidget(viewer)
    tick(qtbot, stats.include_edge)
    # a scale-bar strip in the bottom-right grain: pixels rows 50-58, columns 90-118, i.e. nm x 2
    strip = viewer.add_shapes(
        [np.array([[50, 90], [58, 118]], float) * 2.0], shape_type="rectangle", name="scale bar strip"
    )
    assert tuple(strip.scale) == (1.0, 1.0)
    viewer.layers.selection.active = link.grains
    stats.exclude.value = strip
    stats.update()
    assert errors == []
    assert stats.stats.summary["measurement"]["exclude"]["n_grains_dropped"] == 1
    assert stats.stats.summary["n_grains_included"] == 5
    assert "1 in the excluded region left out" in stats.summary.value
    mask = stats.exclusion_mask((H, W))
    assert mask[54, 100] and not mask[54, 60] and mask.sum() == 9 * 29
    stats.folder.value, stats.stem.value = tmp_path, "cal"
    click(qtbot, stats.json_button)
    summary = json.loads((tmp_path / "cal_summary.json").read_text())
    assert summary["measurement"]["exclude"]["n_grains_dropped"] == 1


def test_an_exclusion_region_stays_with_the_grains_it_was_chosen_for(make_napari_viewer, qtbot, errors):
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer()
    _, first = calibrated_scene(viewer, "first")
    _, second = calibrated_scene(viewer, "second")
    stats = StatsWidget(viewer)
    strip = viewer.add_shapes([np.array([[100, 180], [116, 236]], float)], shape_type="rectangle", name="strip")
    viewer.layers.selection.active = first.grains
    stats.exclude.value = strip
    viewer.layers.selection.active = second.grains
    assert stats.grains.value is second.grains and stats.exclude.value is None  # not the first image's strip
    stats.update()
    assert stats.stats.summary["measurement"]["exclude"] is None
    viewer.layers.selection.active = first.grains
    assert stats.exclude.value is strip  # and back


def test_summary_says_which_grains_were_measured():
    from napari_grainseg.measure.statistics import measure_field
    from napari_grainseg.plugin._stats_widget import summary_text
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    b = np.zeros((H, W), np.uint8)
    b[20, :] = b[40, :] = b[:, 40] = b[:, 80] = 1  # nine grains: the middle one is complete
    labels = boundaries_to_labels(b)
    _, excluded = measure_field(labels, 2.0, exclude_edge_grains=True)
    _, included = measure_field(labels, 2.0, exclude_edge_grains=False)
    text_in = summary_text(included).splitlines()[0]
    assert text_in == "grains: 9 measured, 8 of them cut by the border", text_in
    text_ex = summary_text(excluded).splitlines()[0]
    assert text_ex == "grains: 1 measured (8 cut by the border left out)", text_ex
    _, px = measure_field(labels, None)
    assert "ASTM G: – (no pixel size)" in summary_text(px)


def test_exports_are_listed_in_the_dock_above_the_histogram(make_napari_viewer, qtbot, errors, tmp_path):
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer()
    calibrated_scene(viewer)
    stats = StatsWidget(viewer)
    stats.update()
    stats.folder.value = tmp_path
    click(qtbot, stats.all_button)
    assert errors == []
    assert "cal_grains.csv" in stats.export_status.value and str(tmp_path) in stats.export_status.value
    layout = stats.body.native.layout()
    rows = [layout.itemAt(i).widget() for i in range(layout.count())]
    buttons = next(i for i, w in enumerate(rows) if w is not None and w.isAncestorOf(stats.all_button.native))
    assert stats._canvas is not None and buttons < rows.index(stats._canvas)
    _, other = calibrated_scene(viewer, "other")
    viewer.layers.selection.active = other.grains
    assert stats.grains.value is other.grains and stats.export_status.value == ""  # not the other image's files


def test_net1_on_another_image_ends_a_paused_net2_without_saying_cancelled(make_napari_viewer, qtbot, monkeypatch):
    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.plugin import _segment_widget
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    if not (shipped_weights_dir() / "net1.pt").is_file() or not (shipped_weights_dir() / "net2.pt").is_file():
        pytest.skip("no shipped Net1 / Net2 weights")
    told = []
    monkeypatch.setattr(_segment_widget, "show_info", told.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    a = viewer.add_image(rng.random((96, 96)).astype(np.float32), name="a")
    b = viewer.add_image(rng.random((96, 96)).astype(np.float32), name="b")
    seg = SegmentWidget(viewer)
    seg.device.value = "cpu"
    viewer.layers.selection.active = a
    click(qtbot, seg.run_net1_button)
    click(qtbot, seg.step_button)
    assert seg._refinement is not None and seg._refinement_paused()
    viewer.layers.selection.active = b
    click(qtbot, seg.run_net1_button)
    assert seg.status.value.startswith("Net1:") and "b boundaries" in viewer.layers
    assert not [m for m in told if "cancelled" in m], told
    # Stop after single steps: "stopped", not "cancelled" (nothing was running)
    click(qtbot, seg.step_button)
    click(qtbot, seg.stop_button)
    n = int(viewer.layers["b grains"].data.max())
    assert seg.status.value == f"Net2 stopped on 'b' after 1 step, {n} grain{'' if n == 1 else 's'}", seg.status.value
    assert not [m for m in told if "cancelled" in m], told


def test_net2_status_counts_the_pixels_the_user_drew(make_napari_viewer, qtbot):
    from napari_grainseg.plugin._boundaries import BoundaryLink

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((H, W), np.float32), name="img")
    link = BoundaryLink.create(viewer, image, six_grains())
    line = (np.full(20, 15), np.arange(5, 25))
    with link.boundaries.block_history():
        link.boundaries.data_setitem(line, np.ones(20, np.uint8))
    mask, _ = link.clamp()
    assert link.hand_edited_px == 20 and mask.sum() > 20  # the margin is kept too, but not counted


def test_reopened_boundaries_get_one_grains_and_one_ecd_layer_named_after_the_image(
    make_napari_viewer, qtbot, errors, tmp_path
):
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    write_tiff(tmp_path / "line7_boundaries.tif", six_grains(), 2.0)
    viewer = make_napari_viewer()
    fix, stats = CorrectWidget(viewer), StatsWidget(viewer)
    tick(qtbot, stats.colour_by_ecd)
    (layer,) = viewer.open(str(tmp_path / "line7_boundaries.tif"), plugin="napari-grainseg")
    stats.update()
    click(qtbot, fix.picks_button)
    assert "click on the grains" in fix.status.value
    viewer.layers["line7 boundaries picks"].data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert errors == []
    grains = viewer.layers["line7 grains"]
    assert np.unique(grains.data[grains.data > 0]).size == 5 and grains.metadata["grainseg_source"] == "line7"
    assert fix.status.value.startswith("merge: 6 → 5 grains"), fix.status.value
    viewer.layers.selection.active = grains
    stats.update()
    ecd = [lay.name for lay in viewer.layers if lay.name.endswith("ECD")]
    assert ecd == ["line7 ECD"], ecd


def test_edges_leave_the_image_selected_and_cpu_threads_read_well(make_napari_viewer, qtbot):
    from napari_grainseg.models.device import describe_device
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="img")
    edges = EdgeDetectorsWidget(viewer)
    click(qtbot, edges.run_button)
    assert "img edges RGB" in viewer.layers and viewer.layers.selection.active is image
    import torch

    assert describe_device(torch.device("cpu")) == "cpu (1 thread)"  # conftest: torch on one thread


def test_the_histogram_is_drawn_in_the_worker_and_shown_at_the_dock_width(make_napari_viewer, qtbot, errors):
    """Drawing the figure (constrained layout) took 0.15-0.2 s of the viewer's thread at 1024 px."""
    from napari_grainseg.plugin._stats_widget import FigureImage, StatsWidget, compute_stats
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    stats_only = compute_stats(boundaries_to_labels(six_grains()), 2.0)
    assert stats_only.image.ndim == 3 and stats_only.image.shape[2] == 4 and stats_only.image[..., 3].all()
    viewer = make_napari_viewer()
    calibrated_scene(viewer)
    stats = StatsWidget(viewer)
    stats.update()
    view = stats._canvas
    assert isinstance(view, FigureImage) and errors == []
    h, w = stats.stats.image.shape[:2]
    assert view.heightForWidth(300) == round(300 * h / w)


def test_the_boundary_lines_stay_on_top_of_the_grain_and_ecd_colours(make_napari_viewer, qtbot, errors, tmp_path):
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer()
    image, link = calibrated_scene(viewer)
    stats = StatsWidget(viewer)
    tick(qtbot, stats.colour_by_ecd)
    stats.update()
    names = [lay.name for lay in viewer.layers]  # bottom to top
    assert names.index("cal") < names.index("cal grains") < names.index("cal ECD") < names.index("cal boundaries")
    # reopened boundaries: the grains layer made for them goes under them too
    write_tiff(tmp_path / "r_boundaries.tif", six_grains(), 2.0)
    fix = CorrectWidget(viewer)
    (reopened,) = viewer.open(str(tmp_path / "r_boundaries.tif"), plugin="napari-grainseg")
    stats.update()  # the boundary layer measured as it is: its ECD colours come first
    assert "r ECD" in viewer.layers
    # the ECD view did not take the selection: the reopened layer is still the one being worked on
    assert viewer.layers.selection.active is reopened and fix.boundaries.value is reopened
    click(qtbot, fix.picks_button)
    viewer.layers["r boundaries picks"].data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    viewer.layers.selection.active = viewer.layers["r grains"]
    stats.update()
    names = [lay.name for lay in viewer.layers]
    assert names.index("r grains") < names.index("r ECD") < names.index("r boundaries"), names


def test_a_new_result_adds_its_two_labels_layers_in_separate_event_loop_turns(make_napari_viewer, qtbot, monkeypatch):
    """Each new napari Labels layer costs 0.05-0.2 s of the viewer's thread: one per turn, not two."""
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._boundaries import BoundaryLink

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((H, W), np.float32), name="img")
    made = []
    BoundaryLink.create_staged(viewer, image, six_grains(), then=made.append)
    assert "img grains" in viewer.layers and "img boundaries" not in viewer.layers and made == []
    qtbot.waitUntil(lambda: bool(made), timeout=5000)
    (link,) = made
    qtbot.waitUntil(lambda: link.grains.data.shape == (H, W), timeout=5000)
    assert link.boundaries.name == "img boundaries" and link.grains is viewer.layers["img grains"]
    assert n_grains(link.grains.data) == 6


def test_net2_keeps_a_drawn_line_where_it_runs_over_a_model_boundary(make_napari_viewer, qtbot):
    from napari_grainseg.plugin._boundaries import BoundaryLink

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((H, W), np.float32), name="img")
    link = BoundaryLink.create(viewer, image, six_grains())
    # a line along row 31 that joins the model's boundary at row 30 for 9 px (x = 36..44, across
    # the junction at x = 40) and leaves it again: those 9 px are the model's, not an edit
    drawn = [(31, x) for x in range(5, 36)] + [(31, x) for x in range(45, 76)]
    rows, cols = np.array(drawn).T
    with link.boundaries.block_history():
        link.boundaries.data_setitem((rows, cols), np.ones(len(rows), np.uint8))
    mask, values = link.clamp()
    assert link.hand_edited_px == len(drawn)  # only what the user changed is counted
    overlap = np.s_[30, 36:45]
    assert mask[overlap].all() and (values[overlap] == 1).all()  # fixed as boundary: the line stays whole
    assert not mask[30, 100:].any() and not mask[50:, 40].any()  # model boundaries far from the line stay free
