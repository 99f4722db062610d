"""The boundary Labels layer (single source of truth) and the grains layer derived from it.

A :class:`BoundaryLink` ties one editable boundary layer (uint8, 1 = boundary)
to one grains layer (uint32 labels, filled translucent over the micrograph). Every change of the
boundary layer — painting, erasing, the merge/split/delete tools, undo —
schedules a debounced rebuild of the grains with
:func:`napari_grainseg.segmentation.grains.boundaries_to_labels`, so nothing drawn by hand
is lost. The rebuild works in a window around the change where it can
(:func:`napari_grainseg.segmentation.editing.rebuild_grains_near`): on a large image an edit
then costs a fraction of a second instead of seconds, and grains away from it keep their ids
(and colours), so the ids of an edited layer need not be consecutive. The link also
remembers a checksum of what a model last wrote, so a new model result never silently
overwrites hand corrections.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Callable

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.plugin._layers import adding_layers, derived_layer_kwargs, keep_read_only, move_below
from napari_grainseg.plugin._threading import Debouncer, run_staged
from napari_grainseg.segmentation.grains import boundaries_to_labels

#: Metadata key that marks layers made by this plugin, with their role.
ROLE_KEY = "grainseg_role"
#: Metadata key of a layer still holding its small placeholder (filled in a later event-loop turn).
PENDING_KEY = "grainseg_pending"
#: Opacity of the filled grains layer.
GRAINS_OPACITY = 0.2
#: Debounce delay between an edit and the rebuild of the grains (ms).
REBUILD_DELAY_MS = 300
#: A grain made by removing a boundary (merge, deletion, erasing) is kept free of boundaries by Net2
#: steps except within this many pixels of its outline, where the outline itself may still move.
MERGED_GRAIN_MARGIN_PX = 3

#: Removed grains remembered so that an Undo gives them their ids (colours) back: at most this
#: many (each edit looks them up: ~10 ms for 10 000) ...
MAX_REMEMBERED_GRAINS = 10_000
#: ... and masks of their bounding boxes of at most this many pixels in all (one byte each); the
#: oldest are dropped first.
MAX_REMEMBERED_PX = 64_000_000

#: Kinds of hand edits counted in a summary.
EDIT_KINDS = ("merges", "splits", "deletions", "painted_px")

_LINKS: dict = {}


def layer_key(layer):
    """A stable key for a layer (``id`` is not: viewer proxies wrap layers anew on each access)."""
    return layer.unique_id


def checksum(data: np.ndarray) -> int:
    """Cheap fingerprint of an array's contents (CRC-32 of its bytes)."""
    return zlib.crc32(np.ascontiguousarray(data).view(np.uint8).ravel())


def replace_labels_data(layer, data: np.ndarray) -> None:
    """Replace a Labels layer's data and clear its undo/redo history.

    napari keeps the undo history when ``layer.data`` is replaced, so an old
    Ctrl-Z would paste stale pixels into the new data.
    """
    layer.data = data
    clear_history(layer)


def clear_history(layer) -> None:
    """Clear a Labels layer's undo/redo history, keeping whether it is editable and its mode.

    Toggling ``editable`` is the public way to reset it (napari 0.9).
    """
    mode, editable = layer.mode, layer.editable
    layer.editable = not editable
    layer.editable = editable
    layer.mode = mode


def boundary_colormap():
    """Labels colormap drawing boundary pixels (1) yellow and everything else transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "yellow"})


class BoundaryLink:
    """One boundary layer and the grains layer derived from it.

    Parameters
    ----------
    viewer
        The napari viewer holding the layers.
    boundaries, grains
        The boundary Labels layer (uint8, 1 = boundary) and the derived grains Labels layer.
    """

    def __init__(self, viewer, boundaries, grains):
        self.viewer = viewer
        self.boundaries = boundaries
        self.grains = grains
        self._model_checksum: int | None = None
        self._grains_checksum: int | None = None
        #: what a model last wrote (None: not a model result); edits are counted against it
        self.model_boundaries: np.ndarray | None = None
        #: tool edits since the last model result: (kind, index, values written)
        self.tool_edits: list[tuple[str, tuple, np.ndarray]] = []
        #: edit counts carried over from earlier model results (Net2 steps keep hand edits)
        self.carried_edits: dict[str, int] = dict.fromkeys(EDIT_KINDS, 0)
        #: pixels a Net2 step must keep as the user left them, and their values (see :meth:`clamp`)
        self.fixed_mask: np.ndarray | None = None
        self.fixed_values: np.ndarray | None = None
        #: the hand-edited pixels themselves (``fixed_mask`` without its margin)
        self.fixed_core: np.ndarray | None = None
        #: grain counts before and after the last rebuild from the boundary layer
        self.last_rebuild: tuple[int, int] = (0, 0)
        #: grains in the grains layer (its ids need not be consecutive after local rebuilds)
        self.grain_count = 0
        self._next_id = 1
        #: the boundary layer as the grains were last built from it (finds what an edit changed)
        self._built_from: np.ndarray | None = None
        #: grains removed by edits since the grains were last numbered afresh: an Undo gives them their ids back
        self._removed: dict[int, tuple[int, int, np.ndarray]] = {}
        self._debouncer = Debouncer(self.rebuild, REBUILD_DELAY_MS)
        for event in (boundaries.events.paint, boundaries.events.data, boundaries.events.set_data):
            event.connect(self._on_change)
        _LINKS[layer_key(boundaries)] = self
        viewer.layers.events.removed.connect(self._on_removed)

    # ----------------------------------------------------------------- creation

    @classmethod
    def create(
        cls,
        viewer,
        source,
        boundaries: np.ndarray,
        labels: np.ndarray | None = None,
        name: str | None = None,
        from_model: bool = True,
        grains_layer=None,
    ) -> BoundaryLink:
        """Add a boundary layer and its grains layer over the image layer ``source``.

        ``from_model``: the data is a model's result (later model results may
        replace it as long as nobody edited it). ``grains_layer``: the grains
        layer made beforehand by :meth:`add_grains_layer` (see :meth:`create_staged`).

        The layers are created with a small placeholder and filled in the next
        event-loop turns (:func:`run_staged`): creating a napari layer around a
        large array stalls the main thread far longer than replacing its data.
        """
        name_b, name_g = _layer_names(viewer, source, name)
        boundaries = np.asarray(boundaries, np.uint8)
        if labels is None:
            labels = boundaries_to_labels(boundaries)
        grains = grains_layer if grains_layer is not None else cls.add_grains_layer(viewer, source, name_g)
        with adding_layers(viewer):
            layer = viewer.add_labels(
                np.zeros((2, 2), np.uint8),
                colormap=boundary_colormap(),
                opacity=0.9,
                metadata={ROLE_KEY: "boundaries", "grainseg_source": source.name},
                **derived_layer_kwargs(source, name_b),
            )
        link = cls(viewer, layer, grains)
        link.write_model_result(boundaries, labels)
        if not from_model:
            link._model_checksum = None
            link.model_boundaries = None
        return link

    @staticmethod
    def add_grains_layer(viewer, source, name: str):
        """The (placeholder) grains layer of a new link over ``source``: filled, translucent, not editable."""
        # filled, translucent: the boundary layer draws the outlines, and two grains that
        # share a colour across a line show at once where a boundary has a gap (napari's
        # contour mode would also cost ~0.3 s of main-thread time per update at 2048²)
        with adding_layers(viewer):
            grains = viewer.add_labels(
                np.zeros((2, 2), np.uint32),
                opacity=GRAINS_OPACITY,
                metadata={ROLE_KEY: "grains", "grainseg_source": source.name, PENDING_KEY: True},
                **derived_layer_kwargs(source, name),
            )
        keep_read_only(grains)  # derived: edit the boundary layer
        return grains

    @classmethod
    def create_staged(
        cls,
        viewer,
        source,
        boundaries: np.ndarray,
        labels: np.ndarray | None = None,
        then: Callable[[BoundaryLink], None] | None = None,
    ) -> None:
        """:meth:`create`, one new layer per event-loop turn; ``then(link)`` once the link exists.

        Adding a napari Labels layer costs 0.1–0.2 s of main-thread time
        whatever its size (napari 0.9 builds its vispy visual and overlays);
        two in one turn were the longest stall while Net1's result arrived.
        Synchronous mode runs both at once.
        """
        made: dict = {}

        def grains():
            made["grains"] = cls.add_grains_layer(viewer, source, _layer_names(viewer, source)[1])

        def boundary_layer():
            grains_layer = made["grains"] if made["grains"] in viewer.layers else None  # None: closed meanwhile
            link = cls.create(viewer, source, boundaries, labels, grains_layer=grains_layer)
            if then is not None:
                then(link)

        run_staged(grains, boundary_layer)

    @classmethod
    def for_layer(cls, viewer, layer, create: bool = True) -> BoundaryLink | None:
        """The link of boundary layer ``layer``; with ``create``, link any 0/1 Labels layer."""
        link = _LINKS.get(layer_key(layer))
        if link is not None and link.alive:
            return link
        if not create:
            return None
        data = np.asarray(layer.data)
        if data.ndim != 2 or data.size == 0 or data.max() > 1:
            raise InputError(f"layer '{layer.name}' is not a boundary map (2-D, 0 = grain, 1 = boundary)")
        # named and attributed as a Net1 result's grains: "<image> boundaries" -> "<image> grains"
        base = layer.name.replace("boundaries", "grains", 1) if "boundaries" in layer.name else f"{layer.name} grains"
        name_g = _unique_name(viewer, base)
        source = layer.metadata.get("grainseg_source") or layer.name
        active = viewer.layers.selection.active  # e.g. the picks a tool was used with: stays active
        with adding_layers(viewer):
            grains = viewer.add_labels(
                boundaries_to_labels(data.astype(np.uint8)),
                opacity=GRAINS_OPACITY,
                metadata={ROLE_KEY: "grains", "grainseg_source": source},
                **derived_layer_kwargs(layer, name_g),
            )
        keep_read_only(grains)
        # under the boundary layer, as for a Net1 result: the yellow lines stay on top
        move_below(viewer, grains, layer)
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
        layer.metadata[ROLE_KEY] = "boundaries"
        link = cls(viewer, layer, grains)
        link._grains_checksum = checksum(layer.data)
        link._built(data.astype(np.uint8), grains.data)
        link.model_boundaries = data.astype(np.uint8)  # edits are counted from what was opened
        return link

    # ----------------------------------------------------------------- state

    @property
    def alive(self) -> bool:
        return self.boundaries in self.viewer.layers and self.grains in self.viewer.layers

    @property
    def edited(self) -> bool:
        """True when the boundary layer differs from what a model last wrote into it."""
        return self._model_checksum is not None and checksum(self.boundaries.data) != self._model_checksum

    @property
    def has_hand_edits(self) -> bool:
        """True when the layer holds hand edits: made since the last model result, or carried
        through Net2 steps (which keep them)."""
        return self.edited or any(self.carried_edits.values())

    def write_model_result(self, boundaries: np.ndarray, labels: np.ndarray, keep_edits: bool = False) -> None:
        """Replace both layers with a model's result; clears the boundary layer's undo history.

        ``keep_edits``: the result keeps the hand edits (a clamped Net2 step), so
        their counts carry over; otherwise the counts start again from zero.
        The two layers are updated in consecutive event-loop turns (:func:`run_staged`).
        """
        boundaries = np.asarray(boundaries, np.uint8)
        if keep_edits:
            counts = self.edit_counts()
            self.carried_edits = counts
        else:
            self.carried_edits = dict.fromkeys(EDIT_KINDS, 0)
            self.fixed_mask = self.fixed_values = self.fixed_core = None
        self.tool_edits = []
        self.model_boundaries = boundaries.copy()
        self._model_checksum = self._grains_checksum = checksum(boundaries)

        def grains():
            if self.alive:
                self.grains.metadata.pop(PENDING_KEY, None)
                self.grains.data = np.asarray(labels, np.uint32)
                self._built(boundaries, self.grains.data)
                self._notify()

        run_staged(lambda: replace_labels_data(self.boundaries, boundaries), grains)

    def edit_counts(self) -> dict[str, int]:
        """Hand edits in effect: merges, splits, deletions and painted boundary pixels.

        A tool use counts while most of its pixels (those no later tool use rewrote) still hold
        what it wrote: an undone one does not count, one partly painted over still does.
        Painted pixels are those that differ from the model result with the counted tool
        uses applied, i.e. that no tool use explains (a brush stroke across a deletion's
        erased boundary counts its own pixels only).
        """
        counts = dict(self.carried_edits)
        data = np.asarray(self.boundaries.data)
        model = self.model_boundaries
        expected = model.copy() if model is not None and model.shape == data.shape else None
        by_tool = np.zeros(data.shape, bool)
        for kind, index, values in reversed(self.tool_edits):  # a later edit owns the pixels it wrote
            own = ~by_tool[index]
            n_own = int(np.count_nonzero(own))
            if n_own == 0:
                continue
            kept = int(np.count_nonzero(data[index][own] == values[own]))
            if 2 * kept <= n_own:  # undone (or mostly painted over): not in effect
                continue
            counts[kind] += 1
            mine = tuple(i[own] for i in index)
            by_tool[mine] = True
            if expected is not None:
                expected[mine] = values[own]
        if expected is not None:
            counts["painted_px"] += int(np.count_nonzero(data != expected))
        return counts

    def clamp(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The pixels a Net2 step keeps fixed, and their values (boundary probability 0 or 1).

        Every pixel where the boundary layer differs from the last model
        result (hand edits), with a 1-px margin, is added to the fixed set of
        this layer; earlier fixed pixels stay fixed. Where a drawn line runs over a
        boundary the model already had, the pixels drawn by the model are not edits,
        so the model's boundary pixels within 5 px of drawn ones are fixed too (they
        are not counted as hand-edited): a later step cannot move them and cut the
        line. Where a boundary was removed (a merge, a deletion, an erased line), the
        grain that removal made is kept free of boundaries except within
        :data:`MERGED_GRAIN_MARGIN_PX` of its outline: fixing the erased pixels
        alone let a step draw the boundary again beside them, undoing the merge.
        None, None without edits.
        """
        from scipy import ndimage as ndi

        data = np.asarray(self.boundaries.data)
        model = self.model_boundaries
        if model is not None and model.shape == data.shape:
            core = data != model
            drawn = core & (data > 0)
            under = ndi.binary_dilation(drawn, np.ones((11, 11), bool)) & (data > 0) & (model > 0)
            changed = ndi.binary_dilation(core | under, np.ones((3, 3), bool))
            merged = self._merged_interiors(data, core & (data == 0))
            if changed.any() or merged.any():
                if self.fixed_mask is None or self.fixed_mask.shape != data.shape:
                    self.fixed_mask = np.zeros(data.shape, bool)
                    self.fixed_values = np.zeros(data.shape, np.float32)
                    self.fixed_core = np.zeros(data.shape, bool)
                merged &= ~changed  # the edits' own pixels keep their drawn values
                self.fixed_mask |= changed | merged
                self.fixed_core |= core
                self.fixed_values[changed] = data[changed] > 0
                self.fixed_values[merged] = 0
        return self.fixed_mask, self.fixed_values

    @staticmethod
    def _merged_interiors(data: np.ndarray, removed: np.ndarray) -> np.ndarray:
        """The interiors (more than the margin inside the outline) of the grains holding ``removed`` pixels."""
        from scipy import ndimage as ndi

        if not removed.any():
            return np.zeros(data.shape, bool)
        labels = boundaries_to_labels(data.astype(np.uint8, copy=False))
        ids = np.unique(labels[removed])
        grains = np.isin(labels, ids[ids > 0])
        size = 2 * MERGED_GRAIN_MARGIN_PX + 1
        return ndi.binary_erosion(grains, np.ones((size, size), bool), border_value=1)

    @property
    def hand_edited_px(self) -> int:
        """How many pixels a Net2 step keeps as the user drew them (without the 1-px margin)."""
        return 0 if self.fixed_core is None else int(np.count_nonzero(self.fixed_core))

    # ----------------------------------------------------------------- rebuild

    def _on_change(self, event=None) -> None:
        self._debouncer.trigger()

    def rebuild(self) -> bool:
        """Rebuild the grains from the boundary layer if it changed. Returns True if rebuilt.

        Around the change only where that gives the whole-image result
        (:func:`~napari_grainseg.segmentation.editing.rebuild_grains_near`), else the whole image.
        """
        if not self.alive:
            return False
        data = np.asarray(self.boundaries.data)
        crc = checksum(data)
        if crc == self._grains_checksum:
            return False
        before = self.grain_count
        if not self._rebuild_near_change(data):
            self._rebuild_whole(data)
        self._grains_checksum = crc
        self.last_rebuild = (before, self.grain_count)
        self._notify()
        return True

    def _built(self, boundaries: np.ndarray, labels: np.ndarray) -> None:
        """Record that the grains layer now holds ``labels``, built from ``boundaries`` (consecutive ids)."""
        self._built_from = np.array(boundaries, np.uint8, copy=True)
        self._removed = {}  # the ids were numbered anew
        self.grain_count = self._next_id = int(np.max(labels, initial=0))
        self._next_id += 1

    def _rebuild_whole(self, data: np.ndarray) -> None:
        """Build the grains of the whole boundary layer; after an edit, grains keep their ids
        (:func:`~napari_grainseg.segmentation.editing.carry_ids`), so colours stay put."""
        from napari_grainseg.segmentation.editing import carry_ids

        labels = boundaries_to_labels(data.astype(np.uint8, copy=False))
        old = np.asarray(self.grains.data)
        update = None
        if self._built_from is not None and old.shape == labels.shape:
            update = carry_ids(old, labels, next_id=self._next_id, earlier=self._removed)
        if update is None:  # numbered afresh
            self.grains.data = labels
            self._built(data, labels)
            return
        self.grains.data = update.labels
        self._built_from = np.array(data, np.uint8, copy=True)
        self._remember(update)
        self.grain_count = int(labels.max(initial=0))  # the build numbers its grains 1..n
        self._next_id = update.next_id

    def _remember(self, update) -> None:
        """Keep the grains ``update`` removed (an Undo gives them their ids back), forget those it restored."""
        for gid in update.restored:
            self._removed.pop(gid, None)
        self._removed.update(update.removed)
        total = sum(mask.size for _, _, mask in self._removed.values())
        while total > MAX_REMEMBERED_PX or len(self._removed) > MAX_REMEMBERED_GRAINS:  # the oldest first
            total -= self._removed.pop(next(iter(self._removed)))[2].size

    def _rebuild_near_change(self, data: np.ndarray) -> bool:
        """Update the grains layer in a window around what changed since the last build; False
        where that cannot give the whole-image result (the caller rebuilds everything)."""
        from napari_grainseg.segmentation.editing import bounding_box, rebuild_grains_near

        built, labels = self._built_from, np.asarray(self.grains.data)
        if built is None or built.shape != data.shape or labels.shape != data.shape:
            return False
        box = bounding_box(built != data)
        if box is None:
            return False
        update = rebuild_grains_near(labels, data, box, next_id=self._next_id, earlier=self._removed)
        if update is None:
            return False
        self._remember(update)
        r, c = np.nonzero(update.labels != labels[update.window])
        r0, c0 = update.window[0].start, update.window[1].start
        with self.grains.block_history():  # its "paint" event (docks re-measure) comes after the write
            self.grains.data_setitem((r + r0, c + c0), update.labels[r, c])  # redraws only those pixels
        clear_history(self.grains)  # derived: no undo history of its own (Ctrl-Z on it would desync it)
        built[box] = data[box]
        self.grain_count += update.count_change
        self._next_id = update.next_id
        return True

    def flush(self) -> None:
        """Make the grains current now (before an edit tool reads them or an export)."""
        self._debouncer.flush()
        self.rebuild()

    def _notify(self) -> None:
        for listener in list(_REBUILT_LISTENERS):
            method = listener()
            if method is None:
                _REBUILT_LISTENERS.remove(listener)
            else:
                method(self)

    def _on_removed(self, event) -> None:
        """The boundary layer was deleted: the link ends. Its grains layer stays until the user
        deletes it: removing it from here crashed napari's OpenGL drawing (a segfault in vispy on
        the next repaint, under software OpenGL) in a walkthrough of session 23."""
        if layer_key(event.value) == layer_key(self.boundaries):
            _LINKS.pop(layer_key(self.boundaries), None)

    # ----------------------------------------------------------------- edits

    def apply_grain_edit(
        self, labels_after: np.ndarray, kind: str | None = None, window: tuple[slice, slice] | None = None
    ) -> int:
        """Apply a grain edit as ONE undoable change of the boundary layer.

        ``labels_after`` is the result of a core editing operation on the
        current grains, or with ``window`` on ``grains[window]``
        (:func:`~napari_grainseg.segmentation.editing.grains_window`: on a large image the
        edit then costs milliseconds, not seconds); exactly the boundary pixels the operation switched
        are written with ``data_setitem`` inside ``block_history``.
        ``kind`` ("merges", "splits", "deletions") counts the edit for the summary.
        Returns the number of pixels changed.
        """
        from scipy import ndimage as ndi

        from napari_grainseg.segmentation.editing import boundary_edit

        if window is None:
            window = (slice(0, None), slice(0, None))
        # where the operation moved boundaries in grain space (2 px margin, so a thick
        # hand-drawn stroke around a removed boundary goes too); elsewhere the
        # boundary layer keeps exactly what was drawn
        moved = (np.asarray(self.grains.data)[window] == 0) != (np.asarray(labels_after) == 0)
        region = ndi.binary_dilation(moved, np.ones((5, 5), bool))
        index, values = boundary_edit(np.asarray(self.boundaries.data)[window], labels_after)
        keep = region[index]
        offsets = (window[0].start or 0, window[1].start or 0)
        index, values = tuple(i[keep] + offset for i, offset in zip(index, offsets)), values[keep]
        if index[0].size == 0:
            return 0
        with self.boundaries.block_history():
            self.boundaries.data_setitem(index, values)
        if kind in EDIT_KINDS:
            self.tool_edits.append((kind, index, np.asarray(values, np.uint8).copy()))
        self.flush()  # the grains follow at once, so tools can be chained
        return int(index[0].size)


#: Methods called with any link whose grains were rebuilt (weak references: a closed dock drops out).
_REBUILT_LISTENERS: list[weakref.WeakMethod] = []


def on_any_rebuild(method: Callable[[BoundaryLink], None]) -> None:
    """Call the bound ``method`` with every link after its grains are rebuilt or replaced (docks
    follow hand edits made with napari's own brush, which no dock button sees)."""
    _REBUILT_LISTENERS.append(weakref.WeakMethod(method))


def links() -> list[BoundaryLink]:
    """All live links (for widgets that list boundary layers)."""
    return [link for link in _LINKS.values() if link.alive]


def _layer_names(viewer, source, name: str | None = None) -> tuple[str, str]:
    """Free names for a new link's boundary and grains layers: "<image> boundaries", "<image> grains"."""
    name_b = _unique_name(viewer, name or f"{source.name} boundaries")
    base_g = name_b.replace("boundaries", "grains", 1) if "boundaries" in name_b else f"{name_b} grains"
    return name_b, _unique_name(viewer, base_g)


def _unique_name(viewer, name: str) -> str:
    if name not in viewer.layers:
        return name
    i = 2
    while f"{name} [{i}]" in viewer.layers:
        i += 1
    return f"{name} [{i}]"
