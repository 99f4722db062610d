"""The Correct dock as a user drives it: real buttons, real mouse events on the canvas.

A known geometry — three grains: A (top left), B (bottom left), C (right) — in a boundary
layer made without a network, so every effect on the boundary array is known exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import QEvent, QPointF, Qt  # noqa: E402

pytestmark = pytest.mark.napari

H, W = 60, 80


def three_grains() -> np.ndarray:
    b = np.zeros((H, W), np.uint8)
    b[:, 40] = 1  # A | C and B | C
    b[30, :40] = 1  # A over B
    return b


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


@pytest.fixture
def errors(monkeypatch):
    from napari_grainseg.plugin import _correct_widget, _stats_widget

    got = []
    for module in (_correct_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", got.append)
    return got


@pytest.fixture
def scene(make_napari_viewer):
    from napari_grainseg.plugin._boundaries import BoundaryLink

    viewer = make_napari_viewer(show=True)  # shown: the canvas gets its size and mouse events
    image = viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="img")
    link = BoundaryLink.create(viewer, image, three_grains())
    viewer.reset_view()
    return viewer, image, link


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def _mouse(native, kind, x: float, y: float, button, buttons) -> None:
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    point = QPointF(x, y)
    where = QPointF(native.mapToGlobal(point.toPoint()))
    event = QMouseEvent(kind, point, point, where, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(native, event)
    QApplication.processEvents()


def _canvas_xy(viewer, y: float, x: float) -> tuple[float, float]:
    """Canvas widget position of world point (y, x) (a 2-D view, no rotation)."""
    native = viewer.window._qt_viewer.canvas.native
    cy, cx = viewer.camera.center[-2:]
    zoom = viewer.camera.zoom
    return (x - cx) * zoom + native.width() / 2, (y - cy) * zoom + native.height() / 2


def canvas_drag(viewer, points, steps: int = 8) -> None:
    """Press the left button at the first world point, move through the others, release at the last."""
    native = viewer.window._qt_viewer.canvas.native
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    xy = [_canvas_xy(viewer, *p) for p in points]
    _mouse(native, QEvent.Type.MouseMove, *xy[0], none, none)
    _mouse(native, QEvent.Type.MouseButtonPress, *xy[0], left, left)
    for (xa, ya), (xb, yb) in zip(xy[:-1], xy[1:]):
        for t in np.linspace(0, 1, steps + 1)[1:]:
            _mouse(native, QEvent.Type.MouseMove, xa + t * (xb - xa), ya + t * (yb - ya), none, left)
    _mouse(native, QEvent.Type.MouseButtonRelease, *xy[-1], left, none)


def canvas_click(viewer, y: float, x: float, double: bool = False) -> None:
    """A left click at world point (y, x); ``double``: a double click (Qt's press, release,
    double-click, release)."""
    native = viewer.window._qt_viewer.canvas.native
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    cx, cy = _canvas_xy(viewer, y, x)
    _mouse(native, QEvent.Type.MouseMove, cx, cy, none, none)
    _mouse(native, QEvent.Type.MouseButtonPress, cx, cy, left, left)
    _mouse(native, QEvent.Type.MouseButtonRelease, cx, cy, left, none)
    if double:
        _mouse(native, QEvent.Type.MouseButtonDblClick, cx, cy, left, left)
        _mouse(native, QEvent.Type.MouseButtonRelease, cx, cy, left, none)


def test_a_deletion_partly_painted_over_still_counts_and_the_stroke_counts_its_own_pixels(
    scene, qtbot, tmp_path, errors
):
    """Delete a grain with the buttons, paint a brush stroke across a boundary pixel the deletion
    erased, export the summary JSON: one deletion, and only the stroke's own pixels painted."""
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, image, link = scene
    bnd = link.boundaries
    fix = CorrectWidget(viewer)
    stats = StatsWidget(viewer)

    click(qtbot, fix.picks_button)
    canvas_click(viewer, 10, 10)  # inside A
    assert len(fix.picks_layer().data) == 1
    click(qtbot, fix.delete_button)
    assert errors == [] and fix.status.value.startswith("delete: 3 → 2 grains"), fix.status.value
    assert bnd.data[30, 20] == 0  # the deletion erased A's lower boundary here
    assert link.edit_counts() == {"merges": 0, "splits": 0, "deletions": 1, "painted_px": 0}

    # one brush stroke across the erased pixel (30, 20), with the mouse on the canvas
    viewer.layers.selection.active = bnd
    bnd.mode, bnd.brush_size, bnd.selected_label = "paint", 1, 1
    before = bnd.data.copy()
    canvas_drag(viewer, [(20, 20), (40, 20)])
    bnd.mode = "pan_zoom"
    link.flush()
    stroke = int(np.count_nonzero(bnd.data != before))
    assert bnd.data[30, 20] == 1 and stroke >= 15  # the stroke ran across it
    assert link.edit_counts() == {"merges": 0, "splits": 0, "deletions": 1, "painted_px": stroke}

    stats.folder.value, stats.stem.value = tmp_path, "edited"
    click(qtbot, stats.json_button)
    assert errors == [], errors
    summary = json.loads((tmp_path / "edited_summary.json").read_text())
    assert summary["hand_edits"] == {"merges": 0, "splits": 0, "deletions": 1, "painted_px": stroke}
    assert summary["method"].endswith(f"+ hand edits (1 deletions, {stroke} painted px)"), summary["method"]

    # Undo takes back the stroke, then the deletion: the counts follow
    click(qtbot, fix.undo_button)
    assert link.edit_counts() == {"merges": 0, "splits": 0, "deletions": 1, "painted_px": 0}
    click(qtbot, fix.undo_button)
    assert link.edit_counts() == {"merges": 0, "splits": 0, "deletions": 0, "painted_px": 0}


def draw_path(viewer, points) -> None:
    """Click the points of a path on the canvas, double-clicking the last (napari's add_path)."""
    for y, x in points[:-1]:
        canvas_click(viewer, y, x)
    canvas_click(viewer, *points[-1], double=True)


def test_a_stray_click_after_a_split_line_is_ignored_and_messages_say_which_line_or_pick(scene, qtbot, errors):
    """Draw a path across C (click, double-click), click once more (a one-point path), switch
    tool, Split: C is split and the status says one stray click was ignored. Failing lines and
    merges are described by which line / what to pick, never by a grain id the user cannot see."""
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    click(qtbot, fix.lines_button)
    lines = viewer.layers["img boundaries split lines"]
    draw_path(viewer, [(20, 38), (20, 79.4)])
    canvas_click(viewer, 45, 60)  # a stray click: a new path of one point
    lines.mode = "pan_zoom"  # the user switches tool: napari finishes that path
    assert len(lines.data) == 2 and len(np.unique(np.rint(lines.data[1]), axis=0)) == 1, lines.data
    click(qtbot, fix.split_button)
    assert errors == [], errors
    assert fix.status.value.startswith("split: 3 → 4 grains"), fix.status.value
    assert fix.status.value.endswith("; 1 stray click (a path of one point), ignored"), fix.status.value
    assert link.grains.data[10, 60] != link.grains.data[40, 60] and len(lines.data) == 0

    # only stray clicks: nothing to split, and why
    for y, x in ((45, 60), (50, 20)):
        click(qtbot, fix.lines_button)
        canvas_click(viewer, y, x)
        lines.mode = "pan_zoom"
    assert len(lines.data) == 2
    click(qtbot, fix.split_button)
    assert errors[-1].startswith("no split line: 2 stray clicks (a path of one point each); draw a path across")

    # the 2nd of two lines stops inside a grain: said by its place, not by a grain id
    lines.data = []
    click(qtbot, fix.lines_button)
    draw_path(viewer, [(45, 38), (45, 79.4)])  # across the bottom part of C: fine
    draw_path(viewer, [(10, 48), (10, 70)])  # inside the top part of C, no boundary reached
    click(qtbot, fix.split_button)
    assert errors[-1] == (
        "the 2nd of the 2 lines does not cut a grain in two: draw it across one grain, from its boundary "
        "to the boundary on the other side (both ends on or past the yellow lines)"
    )
    assert link.grain_count == 4  # nothing split

    # B (bottom left) and the top part of C share no boundary
    lines.data = []
    click(qtbot, fix.picks_button)
    canvas_click(viewer, 50, 10)
    canvas_click(viewer, 10, 60)
    click(qtbot, fix.merge_button)
    assert errors[-1] == (
        "the 2 picked grains do not all touch: cannot merge them; pick grains that share a boundary line "
        "(or pick the grains between them too)"
    )
    assert not any(ch.isdigit() for ch in errors[-1].replace("2 picked", ""))


def test_deleting_the_only_grain_says_so_of_the_pick_not_of_an_id(scene, qtbot, errors):
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, _ = scene
    one = BoundaryLink.create(viewer, image, np.zeros((H, W), np.uint8), name="one grain boundaries")
    fix = CorrectWidget(viewer)
    fix.boundaries.value = one.boundaries
    click(qtbot, fix.picks_button)
    canvas_click(viewer, 30, 30)
    click(qtbot, fix.delete_button)
    assert errors == ["cannot delete: the picked grain is the only grain: there is nothing to give it to"]
