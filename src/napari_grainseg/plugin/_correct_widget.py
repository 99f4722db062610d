"""The "Correct grains" dock widget: merge, split and delete grains by editing the boundary layer.

Grains are picked with points (a Points layer the widget adds) and split lines
are drawn as paths or lines in a Shapes layer. Each tool runs the core
editing operation (:mod:`napari_grainseg.segmentation.editing`) on the derived grains and
writes exactly the boundary pixels it changes with ``data_setitem`` inside
``block_history()``: one Ctrl-Z (with the boundary layer selected, or the
Undo button) reverts one tool use. Painting and erasing boundaries is done
with napari's own Labels tools on the boundary layer (label 1 = boundary).
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.utils.notifications import show_error

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.plugin._boundaries import ROLE_KEY, BoundaryLink, checksum, on_any_rebuild
from napari_grainseg.plugin._dock import (
    column,
    follow_active,
    follow_image_renames,
    join_other_docks,
    link_for,
    link_of,
    same_layer,
    scroll_body,
    suggest_reader_for_calibrated_tiffs,
)
from napari_grainseg.plugin._layers import adding_layers, derived_layer_kwargs, helper_layer_name
from napari_grainseg.segmentation.editing import (
    GrainsApart,
    LineMissesGrains,
    delete_grain,
    grains_on_lines,
    grains_window,
    merge_grains,
    split_grain,
)


class CorrectWidget(Container):
    """Merge / split / delete grains of a boundary layer, each one undoable step."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self.boundaries = ComboBox(
            label="boundaries",
            choices=self._boundary_layers,
            tooltip="The boundary layer the tools edit (1 = boundary). Its grains layer is rebuilt from it after "
            "every edit; paint or erase on it with napari's brush (label 1) for any other correction.",
        )
        self.picks_button = PushButton(
            text="Pick grains (points)",
            tooltip="Adds (or selects) a points layer: click inside the grains to merge or delete. A click on a "
            "yellow line counts for the grain beside it.",
        )
        self.lines_button = PushButton(
            text="Draw split lines (shapes)",
            tooltip="Adds (or selects) a shapes layer in path mode: click across a grain from boundary to "
            "boundary, double-click to end. Each line splits one grain.",
        )
        self.merge_button = PushButton(
            text="Merge picked grains",
            tooltip="Removes the boundary between the picked grains (two or more, touching): one grain, e.g. a "
            "grain Net1 cut by a twin or a contrast band. The grain count and sizes change. Undoable.",
        )
        self.split_button = PushButton(
            text="Split along lines",
            tooltip="Draws each line as a boundary inside the grain it cuts in two (a missed boundary). A line "
            "crossing several grains splits the one it mostly lies in; to cut several, paint on the boundary "
            "layer. Undoable.",
        )
        self.delete_button = PushButton(
            text="Delete picked grains",
            tooltip="Removes the picked grains: their neighbours grow into them (a false grain, dirt, a hole). "
            "They are no longer counted. To leave an area out of the statistics instead, use the exclusion "
            "mask of the statistics dock. Undoable.",
        )
        self.undo_button = PushButton(
            text="Undo",
            tooltip="Undoes the last edit of the boundary layer, a tool's or a brush stroke (Ctrl-Z with the "
            "layer, its picks or its lines selected). A Net1 run or Net2 step starts a new history.",
        )
        self.redo_button = PushButton(text="Redo", tooltip="Redoes the last undone edit (Ctrl-Shift-Z).")
        history = Container(widgets=[self.undo_button, self.redo_button], layout="horizontal", labels=False)
        self.status = Label(value="paint / erase boundaries with label 1 on the boundary layer")
        self.body = column(
            [
                self.boundaries,
                self.picks_button,
                self.lines_button,
                self.merge_button,
                self.split_button,
                self.delete_button,
                history,
                self.status,
            ]
        )
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        join_other_docks(self, "Correct")
        # buttons call the methods with no argument (a button's value is not a list of points)
        self.picks_button.clicked.connect(lambda: self.picks_layer())
        self.lines_button.clicked.connect(lambda: self.lines_layer())
        self.merge_button.clicked.connect(lambda: self.merge())
        self.split_button.clicked.connect(lambda: self.split())
        self.delete_button.clicked.connect(lambda: self.delete())
        self.undo_button.clicked.connect(lambda: self.undo())
        self.redo_button.clicked.connect(lambda: self.redo())
        viewer.layers.events.inserted.connect(self.boundaries.reset_choices)
        viewer.layers.events.removed.connect(self.boundaries.reset_choices)
        follow_active(viewer, self.boundaries, self._boundaries_for)
        suggest_reader_for_calibrated_tiffs(viewer)
        follow_image_renames(viewer)
        self._editing = False  # a tool or Undo/Redo runs: it writes its own status
        on_any_rebuild(self._grains_rebuilt)

    def _grains_rebuilt(self, link: BoundaryLink) -> None:
        """After a brush stroke on the selected boundary layer, say how the grain count changed."""
        if self._editing or not link.edited:
            return
        try:
            if same_layer(link.boundaries, self.boundaries.value):
                before, after = link.last_rebuild
                self.status.value = f"boundaries edited: {before} → {after} grains"
        except RuntimeError:  # the dock was closed (its Qt widgets are gone)
            pass

    def _boundaries_for(self, layer):
        """The boundary layer to edit when ``layer`` becomes active (None: keep the current one)."""
        if layer is None or layer.metadata.get(ROLE_KEY) in ("picks", "split lines"):
            return None
        if layer.metadata.get(ROLE_KEY) == "boundaries":
            return layer
        link = link_for(self._viewer, layer)
        return link.boundaries if link is not None else None

    def _boundary_layers(self, _widget=None) -> list:
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Labels) and layer.metadata.get(ROLE_KEY) == "boundaries"
        ]

    def _fail(self, exc) -> None:
        show_error(str(exc))
        self.status.value = f"error: {exc}"

    def link(self) -> BoundaryLink:
        """The selected boundary layer's link (grains made current)."""
        layer = self.boundaries.value
        if layer is None:
            raise InputError("no boundary layer: run Net1 first (Segment grains widget)")
        link = BoundaryLink.for_layer(self._viewer, layer)
        link.flush()
        return link

    # ------------------------------------------------------------------ helper layers

    def _helper_layer(self, kind: str, create: bool = True):
        layer = self.boundaries.value
        if layer is None:
            if create:
                self._fail("no boundary layer: run Net1 first (Segment grains widget)")
            return None
        name = helper_layer_name(layer.name, kind)
        if name in self._viewer.layers:
            helper = self._viewer.layers[name]
        elif not create:
            return None
        elif kind == "points":
            with adding_layers(self._viewer):
                helper = self._viewer.add_points(
                    ndim=2,
                    size=max(12 * float(np.mean(layer.scale)), 1e-6),
                    face_color="cyan",
                    metadata={ROLE_KEY: "picks"},
                    **derived_layer_kwargs(layer, name),
                )
        else:
            with adding_layers(self._viewer):
                helper = self._viewer.add_shapes(
                    ndim=2,
                    edge_color="cyan",
                    edge_width=2 * float(np.mean(layer.scale)),
                    metadata={ROLE_KEY: "split lines"},
                    **derived_layer_kwargs(layer, name),
                )
        # Ctrl-Z with the picks or lines active (as they are after Merge, Delete or Split): the edit
        helper.bind_key("Control-Z", lambda _helper, owner=layer: self.undo(owner), overwrite=True)
        helper.bind_key("Control-Shift-Z", lambda _helper, owner=layer: self.redo(owner), overwrite=True)
        if create:
            self._viewer.layers.selection.active = helper
            helper.mode = "add" if kind == "points" else "add_path"
        return helper

    def picks_layer(self):
        """The Points layer whose points pick grains (made and activated on demand)."""
        helper = self._helper_layer("points")
        if helper is not None:
            self.status.value = "click on the grains to pick them, then press Merge or Delete"
        return helper

    def lines_layer(self):
        """The Shapes layer whose paths/lines are split lines (made and activated on demand)."""
        helper = self._helper_layer("shapes")
        if helper is not None:
            self.status.value = (
                "draw a path across a grain, from boundary to boundary (click the points, "
                "double-click to end), then press Split"
            )
        return helper

    def _to_pixels(self, helper, coords: np.ndarray) -> np.ndarray:
        """(n, 2) helper-layer data coordinates → (y, x) pixels of the boundary layer."""
        target = self.boundaries.value
        return np.array([target.world_to_data(helper.data_to_world(c)) for c in np.atleast_2d(coords)])

    def _picked_ids(self, link: BoundaryLink, points_yx) -> tuple[list[int], tuple[slice, slice], int]:
        """The picked grains' ids, the box of the picks (where :func:`grains_window` starts) and
        how many picks lay on a boundary line (each counts for the grain beside it)."""
        if points_yx is None:
            helper = self._helper_layer("points", create=False)
            if helper is None or len(helper.data) == 0:
                raise InputError("no grains picked: press 'Pick grains' and click on the grains")
            points_yx = self._to_pixels(helper, helper.data)
        labels = np.asarray(link.grains.data)
        picks = np.rint(np.atleast_2d(points_yx)).astype(int)
        ids = []
        on_boundary = 0
        for y, x in picks:
            if not (0 <= y < labels.shape[0] and 0 <= x < labels.shape[1]):
                raise InputError(f"pick ({y}, {x}) lies outside the image")
            gid = int(labels[y, x])
            if gid == 0:  # on a boundary pixel: take the grain most of its 3x3 neighbourhood belongs to
                on_boundary += 1
                patch = labels[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                patch = patch[patch > 0]
                gid = int(np.bincount(patch).argmax()) if patch.size else 0
            if gid and gid not in ids:
                ids.append(gid)
        return ids, _box_around(picks), on_boundary

    def _clear(self, kind: str) -> None:
        helper = self._helper_layer(kind, create=False)
        if helper is not None:
            helper.data = []

    # ------------------------------------------------------------------ tools

    def _apply(self, what: str, op, kind: str) -> int | None:
        """Run ``op(link) -> (labels after, window)`` and write it as one undoable edit."""
        self._editing = True
        try:
            link = self.link()
            before = link.grain_count
            after_labels, window = op(link)
            n = link.apply_grain_edit(after_labels, kind, window)
        except GrainsegError as exc:
            self._fail(exc)
            return None
        finally:
            self._editing = False
        after = link.grain_count  # the grains as rebuilt from the boundaries
        self.status.value = f"{what}: {before} → {after} grains ({n} boundary px changed)"
        return n

    def merge(self, points_yx=None) -> int | None:
        """Merge the picked grains (≥ 2, touching) into one. Returns boundary pixels changed."""

        def op(link):
            ids, picks, on_boundary = self._picked_ids(link, points_yx)
            if len(ids) < 2:
                raise InputError(
                    "pick at least two touching grains to merge"
                    + (
                        f" ({on_boundary} pick(s) on a boundary line counted for the grain beside it: "
                        "click inside the grains)"
                        if on_boundary
                        else ""
                    )
                )
            window = grains_window(link.grains.data, ids, around=picks)
            try:
                return merge_grains(np.asarray(link.grains.data)[window], ids), window
            except GrainsApart:  # its message names the grains by id, which the user never sees
                raise InputError(
                    f"the {len(ids)} picked grains do not all touch: cannot merge them; pick grains that "
                    "share a boundary line (or pick the grains between them too)"
                ) from None

        n = self._apply("merge", op, "merges")
        if n is not None and points_yx is None:
            self._clear("points")
        return n

    def delete(self, points_yx=None) -> int | None:
        """Delete the picked grains: their neighbours grow into them."""

        def op(link):
            ids, picks, _ = self._picked_ids(link, points_yx)
            if not ids:
                raise InputError("pick the grains to delete")
            window = grains_window(link.grains.data, ids, around=picks)
            labels = np.asarray(link.grains.data)[window]
            for i, gid in enumerate(ids):
                try:
                    labels = delete_grain(labels, gid)
                except InputError as exc:  # said of the pick, not of an id the user never sees
                    which = "the picked grain" if len(ids) == 1 else f"the {_ordinal(i + 1)} picked grain"
                    raise InputError(f"cannot delete: {str(exc).replace(f'grain {gid}', which)}") from None
            return labels, window

        n = self._apply("delete", op, "deletions")
        if n is not None and points_yx is None:
            self._clear("points")
        return n

    def split(self, lines_yx=None) -> int | None:
        """Split grains along drawn lines (each from boundary to boundary).

        Paths of fewer than two distinct pixels (a stray click after a finished path) are
        ignored; the status says how many.
        """

        def op(link):
            lines = lines_yx
            if lines is None:
                helper = self._helper_layer("shapes", create=False)
                if helper is None or len(helper.data) == 0:
                    raise InputError("no split line: press 'Draw split lines' and draw a path across a grain")
                lines = [self._to_pixels(helper, shape) for shape in helper.data]
            lines = [np.asarray(line, float) for line in lines]
            kept = [line for line in lines if len(np.unique(np.rint(line), axis=0)) >= 2]
            stray[0] = len(lines) - len(kept)
            if not kept:
                raise InputError(
                    f"no split line: {_stray_words(stray[0])}; draw a path across a grain, from boundary to "
                    "boundary (click the points, double-click to end)"
                )
            lines = kept
            crossed = grains_on_lines(link.grains.data, lines)
            if not crossed:
                raise InputError(
                    f"the {'line does' if len(lines) == 1 else 'lines do'} not cross any grain: draw "
                    "across a grain, from boundary to boundary"
                )
            if len(crossed) > len(lines):  # each line splits one grain: say so
                each = (
                    "the lines crossed {} grains, each splits one"
                    if len(lines) > 1
                    else "the line crossed {} grains, it splits one"
                )
                note.append(f"; {each.format(len(crossed))} (to cut several, draw on the boundary layer)")
            vertices = np.clip(np.rint(np.concatenate(lines)), 0, np.array(link.grains.data.shape) - 1).astype(int)
            window = grains_window(link.grains.data, crossed, around=_box_around(vertices))
            labels = np.asarray(link.grains.data)[window]
            origin = np.array([window[0].start, window[1].start], float)
            for i, line in enumerate(lines):  # every grain a line crosses lies in the window: the same cut
                try:
                    labels = split_grain(labels, np.rint(line) - origin)  # rounded first: rint(2.5) != rint(1.5) + 1
                except InputError as exc:  # its message names a grain id, which the user never sees
                    which = "the line" if len(lines) == 1 else f"the {_ordinal(i + 1)} of the {len(lines)} lines"
                    what = "crosses no grain" if isinstance(exc, LineMissesGrains) else "does not cut a grain in two"
                    raise InputError(
                        f"{which} {what}: draw it across one grain, from its boundary to the boundary on "
                        "the other side (both ends on or past the yellow lines)"
                    ) from None
            return labels, window

        note: list[str] = []  # what the status adds, from op
        stray = [0]  # one-point paths ignored
        n = self._apply("split", op, "splits")
        if n is not None and note:
            self.status.value += note[0]
        if n is not None and stray[0]:
            self.status.value += f"; {_stray_words(stray[0])}, ignored"
        if n is not None and lines_yx is None:
            self._clear("shapes")
        return n

    def undo(self, layer=None) -> None:
        """Undo the last edit of the boundary layer (same as Ctrl-Z on it, or on its picks or lines)."""
        self._history(layer, "undo")

    def redo(self, layer=None) -> None:
        """Redo the last undone edit of the boundary layer (Ctrl-Shift-Z on its picks or lines too)."""
        self._history(layer, "redo")

    def _history(self, layer, what: str) -> None:
        layer = self.boundaries.value if layer is None else layer
        if layer is None:
            return
        link = link_of(layer)
        if link is not None:
            link.flush()  # the count before is of the grains as they are now
        count = link.grain_count if link is not None else None
        before = checksum(layer.data)
        self._editing = True
        try:
            getattr(layer, what)()
            if link is not None:
                link.flush()  # the grains follow at once
        finally:
            self._editing = False
        if checksum(layer.data) == before:  # say so: a model result starts the layer's history anew
            self.status.value = f"nothing to {what} on '{layer.name}'" + (
                " (a Net1 result or Net2 step starts a new history; earlier edits it kept stay)"
                if what == "undo"
                else ""
            )
            return
        if link is None:
            self.status.value = f"{what} on '{layer.name}'"
            return
        self.status.value = f"{what} on '{layer.name}': {count} → {link.grain_count} grains"


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _stray_words(n: int) -> str:
    """What ``n`` paths of a single point are, in the user's words."""
    return f"{n} stray click{'s' if n > 1 else ''} (a path of one point{'' if n == 1 else ' each'})"


def _box_around(points_yx: np.ndarray) -> tuple[slice, slice]:
    """The (rows, columns) slices of the smallest box holding integer ``(y, x)`` points."""
    low, high = points_yx.min(axis=0), points_yx.max(axis=0) + 1
    return slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1]))
