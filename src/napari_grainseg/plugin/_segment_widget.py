"""The "Segment grains" dock widget: Net1, then Net2 refinement steps shown live.

Net1 writes a boundary probability Image layer and an editable boundary Labels
layer (see :mod:`._boundaries`); Net2 (:func:`napari_grainseg.segmentation.refine.refine`)
refines that probability step by step: Step, Run, Pause, Stop. All network
work runs in napari thread workers; results are applied on the main thread to
the layers of the image they were computed from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton
from napari.utils.notifications import show_error, show_info, show_warning

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.models.device import DEVICE_CHOICES
from napari_grainseg.plugin._boundaries import ROLE_KEY, BoundaryLink, checksum, layer_key
from napari_grainseg.plugin._dock import (
    column,
    derived_layer,
    follow_active,
    follow_image_renames,
    is_micrograph,
    join_other_docks,
    qt_alive,
    same_layer,
    scroll_body,
    source_image,
    suggest_reader_for_calibrated_tiffs,
    unless_closed,
)
from napari_grainseg.plugin._layers import (
    CALIBRATION_KEY,
    adding_layers,
    calibration_record,
    derived_layer_kwargs,
    helper_layers_of,
    pixel_size_of,
)
from napari_grainseg.plugin._notify import read_image
from napari_grainseg.plugin._store_events import STORE_EVENTS, connect_weakly
from napari_grainseg.plugin._threading import create_worker, run_staged
from napari_grainseg.segmentation.grains import (
    DEFAULT_GRAIN_BUILDER,
    DEFAULT_WATERSHED_H,
    GRAIN_BUILDERS,
    MAX_WATERSHED_H,
    builder_words,
    one_grain_reason,
)
from napari_grainseg.segmentation.options import SegmentOptions

#: The model choice that means the shipped weights.
SHIPPED = "shipped"
#: The dock's starting boundary probability threshold, for grains by threshold.
THRESHOLD = 0.5
#: During a Net2 run, layers are redrawn at most this often (s); every step updates the counter.
LIVE_UPDATE_INTERVAL_S = 0.5
#: What Net2 does and its measured effect, shown on its buttons.
NET2_EFFECT = (
    "Net2 refines Net1's map step by step. Measured effect with Net1 v13 and grains by watershed "
    "(docs/generalisation.md): on real hand-traced crops it made grains worse (VI 4.04 vs 3.33, grain "
    "count error 627 % vs 209 %); on an independently written bright-field renderer VI was level (1.47 "
    "vs 1.44) and the grain count and mean size closer (count error 10 % vs 19 %, mean-ECD error 6 % vs 13 %). "
    "Use it to explore, and check the result."
)
#: Most Net2 steps of one run.
MAX_NET2_STEPS = 30
#: What the Net2 line calls the refinement phases.
PHASE_WORDS = {"scheduled": "guided by Net1", "fixed-point": "settling"}


class _Cancelled(Exception):
    """Raised from a progress callback when the user cancels."""


@dataclass
class _Failure:
    message: str
    cancelled: bool = False


class _Net1Progress:
    """Tiles done / total, written by the worker thread and shown by a main-thread timer.

    napari's progress bar and the status line are only touched on the main
    thread; the bar is determinate (tiles) once the first tile is counted.
    After :meth:`stopping` the status line is the Stop's: the count no longer writes it.

    The worker also sets :attr:`device_words` once its model is loaded (how Net1 runs:
    e.g. through OpenCV on the CPU); ``on_device`` is then called on the main thread.
    """

    POLL_MS = 150

    def __init__(self, source, status: Label, model_words: str, device_words: str, on_device=None):
        self.done, self.total = 0, 0
        self.source, self.status, self.model_words = source, status, model_words
        self.desc = f"Net1 on {source.name}"
        self.device_words = device_words  # the device until the worker says how the model runs there
        self._device_shown = device_words
        self.on_device = on_device
        self.ended = False
        self._bar = None
        self._timer = None
        self._stopping = False

    @property
    def prefix(self) -> str:
        """The start of the status line while Net1 runs."""
        return f"Net1 running on {self.source.name} ({self.device_words}, {self.model_words})"

    def __call__(self, done: int, total: int) -> None:  # worker thread
        self.done, self.total = done, total

    def start(self) -> None:
        from napari.utils import progress
        from qtpy.QtCore import QTimer

        from napari_grainseg.plugin import _threading

        if _threading.SYNCHRONOUS:
            return
        self._bar = progress(total=0, desc=self.desc)
        self._timer = QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self.show)
        self._timer.start()

    def show(self) -> None:
        if not qt_alive(self.status):  # the viewer was closed
            self.close()
            return
        if self.device_words != self._device_shown:
            self._device_shown = self.device_words
            if self.on_device is not None:
                self.on_device()
            if not self._stopping and not self.total:
                self.status.value = self.prefix + "..."
        if self._bar is None or not self.total:
            return
        if self._bar.total != self.total:
            self._bar.total = self.total
        if self.done > self._bar.n:
            self._bar.update(self.done - self._bar.n)
        if self._stopping:  # "stopping Net1 ..." stays until the worker ends
            return
        if self.done >= self.total:  # the network is done; the grains are built in one pass (seconds to a minute)
            tiles = f"{self.total} tile{'' if self.total == 1 else 's'}"
            self.status.value = f"{self.prefix}: {tiles} done, building grains..."
        else:
            self.status.value = f"{self.prefix}: tile {self.done} of {self.total}"

    @property
    def tiles_done(self) -> bool:
        return bool(self.total) and self.done >= self.total

    def stopping(self) -> None:
        """Stop was pressed: leave the status line to the Stop's message (the bar still counts)."""
        self._stopping = True

    def close(self) -> None:
        self.ended = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class _SourceState:
    """What the widget knows about one micrograph layer."""

    probability: object | None = None  # Image layer
    link: BoundaryLink | None = None
    scale: float = 1.0  # Net1's resampling factor, reused by Net2
    steps_done: int = 0  # Net2 steps applied since Net1
    extra: dict = field(default_factory=dict)
    net2_text: str = ""  # the Net2 line shown while this image is selected
    net2_grains: int | None = None  # grains after the last Net2 step drawn (None: none since Net1)
    drawing: bool = False  # a new result's layers are being added (staged)
    devices: dict = field(default_factory=dict)  # how the result in its layers was made: {"Net1": ..., "Net2": ...}


def duration_words(seconds: float) -> str:
    """A run time as the status lines say it: "40 ms" under 0.1 s (never "0.0 s"), else "1.23 s"."""
    return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.2f} s"


def grain_count_words(state: _SourceState) -> str:
    """E.g. "17 grains": the count after the last Net2 step drawn."""
    n = state.net2_grains
    return f"{n} grain{'' if n == 1 else 's'}"


@dataclass
class _Refinement:
    """A running (or paused) Net2 refinement."""

    source: object
    worker: object = None
    budget: int | None = None  # steps left before pausing; None = run to convergence
    device: object = "cpu"  # where Net2 runs (PyTorch)
    last_draw: float = 0.0
    pending: tuple | None = None  # last step not drawn yet
    steps_at_start: int = 0
    cancelled: bool = False
    interrupted: bool = False  # cancelled while a step was computing (not while paused)
    start_checksum: int | None = None  # the boundary layer when the refinement started
    kept_fixed_px: int = 0  # hand-edited boundary pixels Net2 keeps as they are
    grain_settings: tuple = ()  # ("grains by", its basin depth or threshold) the run builds its grains with


def leave_a_core_for_the_viewer(device) -> None:
    """On the CPU, run torch on all cores but one, so the viewer's thread keeps a core to react.

    Imports torch: call it in the worker that will run torch, not in the viewer's thread.

    With every core busy in the worker the main thread waits for CPU time and for
    the GIL (torch re-takes it between operations): the viewer stalls.
    """
    import torch

    from napari_grainseg.models.device import available_cores

    cores = available_cores()
    if getattr(device, "type", str(device)) == "cpu" and cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


def net2_status(weights: str | Path | None = None) -> str | None:
    """None when Net2 can run, else the reason it cannot (shown to the user)."""
    from napari_grainseg.models.weights import shipped_weights_dir

    path = Path(weights) if weights else shipped_weights_dir() / "net2.pt"
    if not path.is_file():
        return f"Net2 weights not found ({path}): Net2 is not available"
    return None


_LABELS_WARM = False


def warm_up_labels_layers() -> None:
    """Make one tiny napari Labels layer (not shown) the first time a segment dock opens.

    napari's first Labels layer in a process costs several times the later ones (imports,
    colour tables, compiled helpers: measured 4.6 s cold against 0.3 s warm on a loaded 2-core
    machine). Paid here, when the dock opens, it no longer stalls the viewer when Net1's first
    result arrives.
    """
    global _LABELS_WARM
    if _LABELS_WARM:
        return
    from napari.layers import Labels

    Labels(np.zeros((2, 2), np.uint8))
    _LABELS_WARM = True


class SegmentWidget(Container):
    """Run Net1 and step Net2 on the selected micrograph.

    Attributes ``net1_weights`` / ``net2_weights`` (paths, default None =
    the shipped weights) choose other trained networks.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self.net1_weights: str | None = None
        self.net2_weights: str | None = None
        #: the chosen learned model's directory and model.json (None: the shipped model / the weights above)
        self.model_dir: Path | None = None
        self._settings_before_model: dict | None = None  # the builder settings a learned model replaced
        self._settings_of_model: dict | None = None  # ... and those it set (the user may change them after)
        self.model_info: dict | None = None
        self._states: dict[int, _SourceState] = {}
        self._refinement: _Refinement | None = None
        self._net1_worker = None
        self._net1_tiles: _Net1Progress | None = None  # the running Net1's tile count
        self.image = ComboBox(
            label="image",
            choices=self._image_layers,
            tooltip="the micrograph to segment (follows the layer selected in the layer list); its results "
            "are the layers named after it",
        )
        self.pixel_size = FloatSpinBox(
            label="pixel size (nm)",
            value=0.0,
            min=0.0,
            max=1e6,
            step=0.01,
            tooltip="0 = not calibrated; set it and press Apply",
        )
        self.pixel_size.native.setDecimals(6)  # HRTEM pixels are 0.01-0.1 nm: 2 decimals rounded 0.125 to 0.12
        self.apply_pixel_size = PushButton(
            text="Apply pixel size",
            tooltip="calibrate the chosen image and every layer made from it to the pixel size above: sizes are "
            "then in nm and ASTM G is computed. Every reported size scales with it: check it against the "
            "scale bar (or use 'Set scale from a line')",
        )
        self.line_length = FloatSpinBox(
            label="scale line (nm)",
            value=0.0,
            min=0.0,
            max=1e9,
            step=1.0,
            tooltip="length of a line drawn along the scale bar, in nm",
        )
        self.scale_line_button = PushButton(
            text="Set scale from a line",
            tooltip="first press: draw a line along the scale bar; enter its length; press again",
        )
        self.device = ComboBox(
            label="device",
            choices=list(DEVICE_CHOICES),
            value="auto",
            tooltip="where the networks run: auto picks a CUDA GPU, then Apple MPS, then the CPU; the line below "
            "says what ran. Results are the same on every device up to rounding",
        )
        self.device_label = Label(label="in use", value="")
        self.model = ComboBox(
            label="model",
            choices=self._model_choices,
            value=SHIPPED,
            tooltip="the shipped model, or one learned from your corrections (Learn from corrections dock); "
            "a learned model brings its own scale and grain builder",
        )
        self.model_label = Label(label="model check", value="")
        self.grain_size = FloatSpinBox(
            label="grain size hint",
            value=0.0,
            min=0.0,
            max=1e6,
            step=1.0,
            tooltip="expected mean grain diameter; 0 = estimate it",
        )
        self.grain_size_unit = ComboBox(
            label="hint unit",
            choices=["px", "nm"],
            value="px",
            tooltip="the unit of the grain size hint: nm needs the image's pixel size (set it above)",
        )
        self.grains = ComboBox(
            label="grains by",
            choices=list(GRAIN_BUILDERS),
            value=DEFAULT_GRAIN_BUILDER,
            tooltip="how grains are built from the boundary probability: watershed (the default: every "
            "basin deeper than the basin depth below is a grain, so faint boundaries close and shallow "
            "texture lines are ignored; closer to hand tracing than the threshold on every test set, real "
            "hand-traced crops included), or threshold it (docs/generalisation.md)",
        )
        self.basin_depth = FloatSpinBox(
            label="basin depth",
            value=DEFAULT_WATERSHED_H,
            min=0.01,
            max=MAX_WATERSHED_H,
            step=0.05,
            tooltip="grains by watershed. Higher: fewer, larger grains (faint lines and texture ignored); "
            "lower: more grains. 0.4-0.5 suits real etched or textured micrographs, 0.1 very fine grains "
            f"(default {DEFAULT_WATERSHED_H}; docs/generalisation.md). Technically: how far below the lowest "
            "ridge around it a basin of the boundary probability must reach to become a grain. A learned "
            "model sets its own; changing it ends a paused Net2 run (the next Step starts from where it was).",
        )
        self.threshold = FloatSpinBox(
            label="threshold",
            value=THRESHOLD,
            min=0.05,
            max=0.95,
            step=0.05,
            tooltip="grains by threshold: pixels whose boundary probability is at or above it are boundary. "
            "Lower: more, smaller grains (faint boundaries kept); higher: fewer, larger grains. A learned "
            "model sets its own; changing it ends a paused Net2 run (the next Step starts from where it was).",
        )
        self.grains.changed.connect(self._on_grains_changed)
        self.tta = CheckBox(
            text="average 8 orientations (TTA)",
            value=False,
            tooltip="test-time augmentation: Net1 runs on the eight turned and flipped copies and averages "
            "them; 8x Net1's time, measured effect in docs/generalisation.md",
        )
        self.run_net1_button = PushButton(
            text="Run Net1",
            tooltip="boundaries and grains of the chosen image with the settings above (seconds per megapixel "
            "on a CPU). The image is resampled to Net1's working scale from the grain size hint (estimated "
            "when 0): a wrong hint gives too many or too few grains. A boundary layer you corrected is "
            "never overwritten: the new result goes into new layers and the corrected ones are hidden",
        )
        self.step_button = PushButton(text="Net2 Step", tooltip=NET2_EFFECT)
        self.run_button = PushButton(text="Net2 Run", tooltip=NET2_EFFECT)
        self.pause_button = PushButton(
            text="Pause",
            tooltip="pause a Net2 Run after the step being computed; Step or Run goes on from there. Edits "
            "made to the boundary layer meanwhile are kept fixed by the next steps",
        )
        self.stop_button = PushButton(
            text="Stop",
            tooltip="stop Net1 (at the end of the current tile; its result is dropped and nothing changes) or "
            "Net2 (the step being computed is dropped; the steps already shown stay in the layers)",
        )
        net2_row = Container(
            widgets=[self.step_button, self.run_button, self.pause_button, self.stop_button],
            layout="horizontal",
            labels=False,
            label="Net2",
        )
        self.net2_label = Label(label="last step", value="")
        self.release_button = PushButton(
            text="Release model memory",
            tooltip="free the loaded networks and the GPU memory they hold (e.g. for another program); the "
            "layers are kept, and the next run loads the networks again (a few seconds)",
        )
        self.status = Label(value="")
        self.body = column(
            [
                self.image,
                self.pixel_size,
                self.apply_pixel_size,
                self.line_length,
                self.scale_line_button,
                self.device,
                self.device_label,
                self.model,
                self.model_label,
                self.grain_size,
                self.grain_size_unit,
                self.grains,
                self.basin_depth,
                self.threshold,
                self.tta,
                self.run_net1_button,
                net2_row,
                self.net2_label,
                self.release_button,
                self.status,
            ]
        )
        self._on_grains_changed()  # the builder's parameter row only
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        join_other_docks(self, "Segment")
        warm_up_labels_layers()
        self.image.changed.connect(self._on_image_changed)
        self.apply_pixel_size.clicked.connect(lambda: self.set_pixel_size())
        self.scale_line_button.clicked.connect(lambda: self.scale_from_line())
        self.device.changed.connect(self._update_device_label)
        self.model.changed.connect(self._on_model_changed)
        connect_weakly(STORE_EVENTS.changed, self.refresh_models)
        connect_weakly(STORE_EVENTS.renamed, self._on_model_renamed)
        self.run_net1_button.clicked.connect(lambda: self.run_net1())
        self.step_button.clicked.connect(lambda: self.net2_step())
        self.run_button.clicked.connect(lambda: self.net2_run())
        self.pause_button.clicked.connect(lambda: self.net2_pause())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.release_button.clicked.connect(lambda: self.release_memory())
        viewer.layers.events.inserted.connect(self.image.reset_choices)
        viewer.layers.events.removed.connect(self.image.reset_choices)
        viewer.layers.events.removed.connect(lambda _event: self._show_device())  # a deleted result
        follow_active(viewer, self.image, lambda layer: source_image(viewer, layer))
        suggest_reader_for_calibrated_tiffs(viewer)
        follow_image_renames(viewer)  # the layers made from an image stay its own when it is renamed
        self._on_image_changed(self.image.value)
        self._update_device_label()
        self._on_model_changed()

    # ------------------------------------------------------------------ inputs

    def _image_layers(self, _widget=None) -> list:
        return [layer for layer in self._viewer.layers if is_micrograph(layer)]

    def _on_image_changed(self, layer) -> None:
        size = pixel_size_of(layer) if layer is not None else None
        self.pixel_size.value = round(size, 6) if size else 0.0
        state = self._states.get(layer_key(layer)) if layer is not None else None
        self.net2_label.value = state.net2_text if state is not None else ""
        self._show_device()

    def set_pixel_size(self, value: float | None = None) -> bool:
        """Calibrate the selected image (and its derived layers): scale in nm, units nm."""
        from napari_grainseg.io.readers import unusual_pixel_size_note, validate_pixel_size

        source = self.image.value
        try:
            if source is None:
                raise InputError("no image layer selected: open a micrograph first")
            nm = validate_pixel_size(self.pixel_size.value if value is None or isinstance(value, bool) else value)
        except GrainsegError as exc:
            return self._fail(exc)
        for layer in [source, *self._derived_layers(source)]:
            layer.scale = (nm, nm)
            layer.units = ("nm", "nm")
            layer.metadata[CALIBRATION_KEY] = calibration_record("set by user in napari", nm)
        self.pixel_size.value = nm
        self.status.value = f"{source.name}: {nm:g} nm/px"
        self._viewer.reset_view()  # the image, now in nm, whole in view (it was left zoomed into a corner)
        note = unusual_pixel_size_note(nm)
        if note:
            show_warning(f"napari-grainseg: {note}")
        return True

    def scale_line_layer(self, create: bool = True):
        """The Shapes layer holding the scale line of the selected image (made on demand)."""
        source = self.image.value
        if source is None:
            return None
        layer = derived_layer(self._viewer, source.name, "scale line")  # by its image: it may have been renamed
        if layer is not None or not create:
            return layer
        name = f"{source.name} scale line"
        with adding_layers(self._viewer):
            layer = self._viewer.add_shapes(
                ndim=2,
                edge_color="orange",
                edge_width=2 * float(np.mean(source.scale)),
                metadata={ROLE_KEY: "scale line", "grainseg_source": source.name},
                **derived_layer_kwargs(source, name),
            )
        layer.mode = "add_line"
        return layer

    def scale_from_line(self) -> float | None:
        """Calibrate from the last line drawn along the scale bar and its length in nm.

        Without a line yet, makes the line layer and asks for one. Returns the
        pixel size set (nm), else None.
        """
        from napari_grainseg.io.readers import validate_pixel_size

        try:
            source = self.image.value
            if source is None:
                raise InputError("no image layer selected: open a micrograph first")
            layer = self.scale_line_layer(create=False)
            if layer is None or len(layer.data) == 0:
                layer = self.scale_line_layer()
                self._viewer.layers.selection.active = layer
                layer.mode = "add_line"
                self.status.value = (
                    "draw a line along the scale bar, enter its length in nm, then press 'Set scale from a line' again"
                )
                return None
            if self.line_length.value <= 0:
                raise InputError("enter the scale line's length in nm (the scale bar's label)")
            line = np.asarray(layer.data[-1], float)
            length_px = float(np.sum(np.hypot(*np.diff(line[:, -2:], axis=0).T)))
            if length_px < 2:
                raise InputError(f"the scale line is {length_px:.1f} px long: draw it along the whole scale bar")
            nm = validate_pixel_size(self.line_length.value / length_px)
        except GrainsegError as exc:
            self._fail(exc)
            return None
        if not self.set_pixel_size(nm):
            return None
        self.status.value = (
            f"{source.name}: {nm:.4g} nm/px from a {length_px:.1f} px line of {self.line_length.value:g} nm"
        )
        return nm

    def _derived_layers(self, source) -> list:
        """The layers made from image layer ``source`` (they name it in ``grainseg_source``), and the
        picks and split lines of its boundary layers."""
        state = self._states.get(layer_key(source))
        layers = [layer for layer in self._viewer.layers if layer.metadata.get("grainseg_source") == source.name]
        for boundaries in [layer for layer in layers if layer.metadata.get(ROLE_KEY) == "boundaries"]:
            layers += [helper for helper in helper_layers_of(self._viewer, boundaries) if helper not in layers]
        if state and state.probability is not None and state.probability not in layers:
            layers.append(state.probability)
        return layers

    def _update_device_label(self, _value=None) -> str | None:
        """The device choice changed: check it (an error when this machine lacks it), then show the line."""
        from napari_grainseg.models.device import resolve_device

        try:
            resolve_device(self.device.value)
        except GrainsegError as exc:
            self.device_label.value = "not available"
            self._fail(exc)
            return None
        return self._show_device()

    def _show_device(self) -> str:
        """Set the "in use" line for the chosen image: how the result in its layers was made (Net1 and
        Net2, each as it ran), Net1 while it runs on it, or that nothing ran on it yet. Returns it."""
        from napari_grainseg.models.device import describe_device, resolve_device

        source = self.image.value
        tiles = self._net1_tiles
        state = self._states.get(layer_key(source)) if source is not None else None
        if tiles is not None and not tiles.ended and same_layer(tiles.source, source):
            text = f"Net1 running: {tiles.device_words}"
        elif state is not None and state.devices and self._deleted_boundaries(source) is None:
            text = "; ".join(f"{net}: {words}" for net, words in state.devices.items())
        else:
            gone = state is not None and state.devices  # its result's layers were deleted
            why = "its result was deleted" if gone else "nothing run on this image yet"
            try:
                text = f"{why}: it would run on {describe_device(resolve_device(self.device.value))}"
            except GrainsegError:
                text = "not available"
        self.device_label.value = text
        return text

    def grain_size_px(self, source) -> float | None:
        """The grain-size hint in pixels of ``source`` (None = estimate)."""
        value = float(self.grain_size.value)
        if value <= 0:
            return None
        unit = "grain_size_px" if self.grain_size_unit.value == "px" else "grain_size_nm"
        return SegmentOptions(**{unit: value}).grain_size_for(
            pixel_size_of(source), where=f"'{source.name}'", fix="enter its pixel size above (or give the hint in px)"
        )

    def _read_source(self):
        """The selected layer and its validated 2-D float image (warnings shown)."""
        source = self.image.value
        return source, read_image(source)

    @unless_closed
    def _fail(self, exc: BaseException | str) -> bool:
        message = str(exc)
        show_error(message)
        self.status.value = f"error: {message}"
        return False

    @property
    def busy(self) -> bool:
        return self._net1_worker is not None or (self._refinement is not None and not self._refinement_paused())

    def _refinement_paused(self) -> bool:
        r = self._refinement
        return r is not None and r.worker is not None and r.worker.is_paused

    # ------------------------------------------------------------------ models

    def _model_choices(self, _widget=None) -> list[tuple[str, str]]:
        """ "shipped" and the models of the user's model store (newest first)."""
        from napari_grainseg.models.store import list_models

        try:
            stored = list_models()
        except GrainsegError as exc:  # an unusable store folder: the shipped model still works
            show_warning(str(exc))
            stored = []
        return [(SHIPPED, SHIPPED)] + [(m.label, str(m.path)) for m in stored]

    def refresh_models(self, selected: str | None = None) -> None:
        """Read the model store again (a model was learned, renamed or deleted).

        ``selected``: a model directory to choose (a new model); the current choice is kept
        while it exists, else the shipped model is chosen.
        """
        current = self.model.value
        self.model.reset_choices()
        values = list(self.model.choices)
        want = selected if selected in values else current if current in values else SHIPPED
        if self.model.value != want:
            self.model.value = want

    def _on_model_renamed(self, old: str, new: str) -> None:
        """Keep the chosen model chosen under its new name."""
        self.refresh_models(new if self.model_dir is not None and str(self.model_dir) == old else None)

    def _grain_settings(self) -> tuple:
        """What the grains are built with: "grains by" and its parameter (basin depth or threshold)."""
        now = self._builder_settings()
        return now["grains"], now["basin_depth" if now["grains"] == "watershed" else "threshold"]

    def _on_grains_changed(self, value=None) -> None:
        """Show the chosen builder's parameter only: the basin depth for the watershed, else the threshold."""
        watershed = (self.grains.value if value is None else value) == "watershed"
        self.basin_depth.visible, self.threshold.visible = watershed, not watershed

    def _on_model_changed(self, value=None) -> None:
        from napari_grainseg.models.store import StoredModel

        value = self.model.value if value is None else value
        if not value or value == SHIPPED:
            self.model_dir, self.model_info = None, None
            self.model_label.value = "shipped model" + self._restore_settings()
            return
        from napari_grainseg.models.model_dir import read_model_info

        try:
            info = read_model_info(value)
        except GrainsegError as exc:
            self.model_dir = self.model_info = None
            self._fail(exc)
            self.model.value = SHIPPED
            return
        if self.model_dir is None and self._settings_before_model is None:  # the user's, to restore
            self._settings_before_model = self._builder_settings()
        self.model_dir, self.model_info = Path(value), info
        stored = StoredModel.of(value, info)
        rec = info.get("recommended") or {}
        switched = ""
        if rec.get("grains") in GRAIN_BUILDERS:
            before = self._builder_settings()
            self.grains.value = rec["grains"]
            if rec["grains"] == "watershed" and "watershed_h" in rec:
                self.basin_depth.value = float(rec["watershed_h"])
            if rec["grains"] == "threshold" and "threshold" in rec:
                self.threshold.value = float(rec["threshold"])
            changed = self._describe_settings(before)
            if changed:  # say why the settings changed under the user's eyes
                switched = f"; {changed} (the model's choice, made on your corrections)"
        self._settings_of_model = self._builder_settings()  # what the user may change after
        self.model_label.value = stored.verdict + switched
        from napari_grainseg.models.model_dir import grain_size_advice

        advice = grain_size_advice(info)  # the scale it runs at unless a hint is given
        if advice:
            self.model_label.value += f"; {advice}"
        if rec.get("net2_steps") == "auto":
            self.model_label.value += "; its adapted Net2 helped there: step Net2 after Net1"
        if stored.worse_than_base:
            show_warning(
                f"napari-grainseg: model '{stored.name}' scored worse than the shipped model on its held-out "
                "images; check its results (or learn again with more corrections)"
            )

    def _builder_widgets(self) -> dict:
        """The grain builder's controls, by setting name."""
        return {"grains": self.grains, "basin_depth": self.basin_depth, "threshold": self.threshold}

    def _builder_settings(self) -> dict:
        """The grain builder and its parameters as the dock shows them."""
        return {
            key: widget.value if key == "grains" else float(widget.value)
            for key, widget in self._builder_widgets().items()
        }

    def _describe_settings(self, before: dict) -> str:
        """What differs from ``before`` among the builder settings, in words ('' when nothing does)."""
        now = self._builder_settings()
        words = []
        if now["grains"] != before["grains"]:
            words.append(f"'grains by' set to {now['grains']}")
        for key, name in (("basin_depth", "basin depth"), ("threshold", "threshold")):
            if now[key] != before[key]:
                words.append(f"{name} {before[key]:g} -> {now[key]:g}")
        return ", ".join(words)

    def _restore_settings(self) -> str:
        """Back on the shipped model: the builder settings the dock had before a learned model
        changed them, and the words that say so ('' when there is nothing to restore). A setting
        the user changed while the learned model was chosen is the user's: it stays."""
        saved, self._settings_before_model = self._settings_before_model, None
        if saved is None:
            return ""
        before = self._builder_settings()
        model_set = self._settings_of_model or before
        for key, widget in self._builder_widgets().items():
            if before[key] == model_set[key]:  # still what the model set: the user's own value returns
                widget.value = saved[key]
        changed = self._describe_settings(before)
        return f"; your settings are back: {changed}" if changed else ""

    def _options(
        self, device, grains: str, hint: float | None = None, pixel_size_nm: float | None = None
    ) -> SegmentOptions:
        """The segmentation options of this widget (Net1 only: Net2 is stepped here, not by the pipeline).

        With a learned model chosen: its weights, its scale (the corrections' grain size unless a
        hint is given) and its tuned grain-builder parameter
        (:func:`~napari_grainseg.models.model_dir.model_segment_options`). The basin depth and the
        threshold are the dock's (set to the model's tuned ones when the model is chosen, then the
        user's to change).
        """
        depth, threshold = float(self.basin_depth.value), float(self.threshold.value)
        if self.model_dir is not None:
            from dataclasses import replace

            from napari_grainseg.models.model_dir import model_segment_options

            options = model_segment_options(
                self.model_dir,
                self.model_info,
                grains=grains,
                grain_size_px=hint,
                pixel_size_nm=pixel_size_nm,
                net2_steps=0,
                device=device,
                tta=bool(self.tta.value),
            )
            return replace(options, watershed_h=depth, threshold=threshold)
        return SegmentOptions(
            net2_steps=0,
            grain_size_px=hint,
            grains=grains,
            threshold=threshold,
            watershed_h=depth,
            device=device,
            tta=bool(self.tta.value),
            weights=self.net1_weights,
            net2_weights=self.net2_weights,
        )

    def release_memory(self) -> None:
        """Drop the cached networks (the package's model cache) and return cached GPU memory to the driver."""
        from napari_grainseg.models.device import release_memory
        from napari_grainseg.segmentation.options import release_models

        devices = release_models()
        for device in devices or {"cpu"}:
            release_memory(device)
        self.status.value = "model memory released"
        show_info("napari-grainseg: model memory released")

    # ------------------------------------------------------------------ Net1

    def run_net1(self):
        """Run Net1 on the selected image in a worker. Returns the worker (None on bad input)."""
        from napari_grainseg.models.device import describe_device, resolve_device

        if self.busy:
            show_warning("napari-grainseg is busy: wait, or press Stop")
            return None
        try:
            source, data = self._read_source()
            hint = self.grain_size_px(source)
            device = resolve_device(self.device.value)
            options = self._options(device, self.grains.value, hint, pixel_size_of(source))  # widgets: this thread
        except GrainsegError as exc:
            self._fail(exc)
            return None
        self._detach_refinement()  # a paused Net2 (nothing runs: see busy) ends quietly, its steps kept
        holder: dict = {}
        # on the CPU the worker says how Net1 runs once its model is loaded (OpenCV or PyTorch, threads)
        words = "cpu" if str(device) == "cpu" else describe_device(device)
        tiles = _Net1Progress(source, self.status, self._model_words(), words, on_device=self._show_device)
        holder["progress"] = tiles
        self._net1_tiles = tiles
        self._show_device()
        worker = create_worker(self._net1_job, data, device, options, holder)
        holder["worker"] = worker
        model_size = None  # the learned model's own grain size, when it decides the scale
        if hint is None and self.model_dir is not None:
            from napari_grainseg.models.model_dir import corrections_grain_size

            model_size = corrections_grain_size(self.model_info or {}, pixel_size_of(source))
        # the tile count stops before the result's status is written: its timer could otherwise
        # fire between the result and the worker's end and put "tile n of n" back for good
        worker.returned.connect(
            lambda result: tiles.close() or holder.update(delivered=True) or self._net1_done(source, result, model_size)
        )
        worker.errored.connect(lambda exc: tiles.close() or self._fail(f"Net1 failed: {exc}"))
        worker.finished.connect(lambda: self._net1_finished(tiles, source, worker, holder.get("delivered", False)))
        self._net1_worker = worker
        self.status.value = tiles.prefix + "..."
        tiles.start()
        worker.start()
        return worker

    def _model_words(self) -> str:
        return f"model '{self.model_dir.name}'" if self.model_dir is not None else "shipped model"

    def _net1_job(self, data: np.ndarray, device, options: SegmentOptions, holder: dict):
        """Worker thread: Net1 probability, closed grains and 1-px boundaries."""
        import pandas  # noqa: F401 - napari imports it when the first Labels layer is made: not on the main thread

        from napari_grainseg.models.device import describe_device
        from napari_grainseg.segmentation.grains import boundaries_to_labels
        from napari_grainseg.segmentation.pipeline import segment

        def stop_if_asked():
            worker = holder.get("worker")
            if worker is not None and worker.abort_requested:
                raise _Cancelled

        def progress(done, total):
            holder["progress"](done, total)
            stop_if_asked()

        try:
            model = options.net1(device)  # loaded here, in the worker (the first time)
            if not hasattr(model, "logits"):  # PyTorch, not OpenCV: keep a core for the viewer (GIL)
                leave_a_core_for_the_viewer(device)
            holder["progress"].device_words = describe_device(device, model)  # as the result will say
            result = segment(data, options, model=model, progress=progress)
            stop_if_asked()  # Stop pressed while the grains were built: the result is dropped
            boundaries = result.boundaries.astype(np.uint8)
            return result, boundaries, boundaries_to_labels(boundaries)  # the grains layer's numbering
        except _Cancelled:
            return _Failure("Net1 cancelled", cancelled=True)
        except GrainsegError as exc:
            return _Failure(str(exc))

    def _net1_finished(self, tiles: _Net1Progress, source, worker, delivered: bool = False) -> None:
        self._net1_worker = None
        tiles.close()
        if not qt_alive(self):  # the viewer was closed while Net1 ran
            return
        self._show_device()  # no longer "running": the image's last result (or none)
        # a stopped worker emits no result (threaded): say so here; but a Stop that came after the
        # last tile, with the result already shown, cancelled nothing
        if worker.abort_requested and not delivered:
            self._net1_cancelled(source)

    def _net1_cancelled(self, source) -> None:
        self.status.value = f"Net1 cancelled on {source.name}: nothing changed"
        show_info(f"napari-grainseg: Net1 cancelled on '{source.name}'")

    @unless_closed
    def _net1_done(self, source, out, model_size: float | None = None) -> None:
        if isinstance(out, _Failure):
            if out.cancelled:
                self._net1_cancelled(source)
            else:
                self._fail(out.message)
            return
        result, boundaries, labels = out
        if source not in self._viewer.layers:
            show_warning(f"layer '{source.name}' was closed while Net1 ran: result dropped")
            return
        state = self._states.setdefault(layer_key(source), _SourceState())
        state.scale = result.prediction.scale
        state.steps_done = 0
        state.extra = result.info()
        state.devices = {"Net1": result.prediction.device}  # how Net1 ran: e.g. "cpu (OpenCV DNN, 2 threads)"
        run_staged(
            lambda: self._put_probability(source, state, result.prediction.probability),
            lambda: self._write_boundaries(source, state, boundaries, labels),
        )
        p = result.prediction
        self._show_device()
        if model_size is not None and p.grain_size_source == "hint":
            # the corrections' grain size, not the internal hint that resamples to the model's scale
            size = f", grain size {model_size:.1f} px (the model's)"
        else:
            size = f", grain size {p.grain_size_px:.1f} px ({p.grain_size_source})" if p.grain_size_px else ""
        resampled = f", image resampled ×{p.scale:.2g}" if p.scale != 1.0 else ""
        model = result.model.get("model", "shipped") if result.model else "shipped"
        n = int(labels.max())
        self.status.value = (
            f"Net1: '{source.name}', {n} grain{'' if n == 1 else 's'} ({result.builder_words}) "
            f"in {duration_words(p.seconds)} on {p.device}{size}{resampled}, model '{model}'"
        )
        if n == 1:
            self.status.value += "; " + one_grain_reason(p.probability, result.grains, result.grain_parameter)
        state.net2_text, state.net2_grains = "", None
        if same_layer(self.image.value, source):
            self.net2_label.value = ""

    def _put_probability(self, source, state: _SourceState, probability: np.ndarray) -> None:
        layer = state.probability
        if layer is not None and layer in self._viewer.layers:
            layer.data = probability
            return
        kwargs = derived_layer_kwargs(source, f"{source.name} boundary probability")
        # created small, filled in the next event-loop turn (see BoundaryLink.create)
        with adding_layers(self._viewer):
            state.probability = self._viewer.add_image(
                np.zeros((2, 2), np.float32),
                colormap="magma",
                blending="additive",
                contrast_limits=(0.0, 1.0),
                opacity=0.6,
                visible=False,  # the boundary layer shows the result; this one on demand
                metadata={ROLE_KEY: "probability", "grainseg_source": source.name, "grainseg_derived": True},
                **kwargs,
            )
        layer = state.probability
        run_staged(lambda: setattr(layer, "data", probability))

    def _write_boundaries(
        self, source, state: _SourceState, boundaries: np.ndarray, labels: np.ndarray, net2: bool = False
    ) -> BoundaryLink | None:
        """Write a model result; hand-corrected boundary layers are never overwritten.

        A Net2 step (``net2``) was computed with the hand edits clamped, so it
        goes into the same layer and the edits carry over. A new Net1 result
        over an edited layer goes into new layers; the old ones are hidden.
        """
        link = state.link
        if net2 and (link is None or not link.alive):  # its layer was deleted while the step was drawn
            return None
        if link is not None and link.alive and (net2 or not link.has_hand_edits):
            link.write_model_result(boundaries, labels, keep_edits=net2)
            link.boundaries.metadata["grainseg_info"] = dict(state.extra)
            return link
        made: dict = {}

        def linked(new: BoundaryLink) -> None:
            made["link"] = new
            state.drawing = False
            new.boundaries.metadata["grainseg_info"] = dict(state.extra)
            if link is not None and link.alive:
                link.boundaries.visible = link.grains.visible = False
                for helper in helper_layers_of(self._viewer, link.boundaries):  # its picks and split lines
                    helper.visible = False
                show_info(
                    f"'{link.boundaries.name}' has hand corrections: kept it (hidden), the new result is in "
                    f"'{new.boundaries.name}'"
                )
            state.link = new
            self._viewer.layers.selection.active = new.boundaries

        state.drawing = True  # until the new layers exist (one per event-loop turn)
        BoundaryLink.create_staged(self._viewer, source, boundaries, labels, then=linked)
        return made.get("link")  # None until the next turns (threaded)

    def link_for(self, source) -> BoundaryLink | None:
        """The current boundary link of image layer ``source`` (None before Net1)."""
        state = self._states.get(layer_key(source))
        return state.link if state else None

    # ------------------------------------------------------------------ Net2

    def net2_step(self):
        """Run one Net2 step (starts a refinement, or continues a paused one)."""
        return self._net2_go(budget=1)

    def net2_run(self):
        """Run Net2 until it converges (or Pause / Stop)."""
        return self._net2_go(budget=None)

    def net2_pause(self) -> None:
        """Pause the running refinement after the current step."""
        r = self._refinement
        if r is not None:
            r.budget = 0

    def stop(self) -> None:
        """Cancel whatever runs: Net1 (at the next tile) or the Net2 refinement."""
        if self._net1_worker is not None:
            self._net1_worker.quit()
            tiles = self._net1_tiles
            self.status.value = (
                "stopping Net1 (the grains are being built; the result will be dropped)..."
                if tiles is not None and tiles.tiles_done
                else "stopping Net1 (at the end of the current tile)..."
            )
            if tiles is not None:  # its timer wrote "tile n of m" over this within 150 ms
                tiles.stopping()
        self._stop_refinement()

    def _stop_refinement(self) -> None:
        r = self._refinement
        if r is not None and r.worker is not None:
            r.cancelled = True
            r.interrupted = not self._refinement_paused()  # a step was computing
            r.worker.quit()
            if r.interrupted:  # a step cannot be cut short: it ends, then is dropped
                self.status.value = f"stopping Net2 on '{r.source.name}' (the step being computed will be dropped)..."

    def _net2_go(self, budget: int | None):
        reason = net2_status(self.net2_weights)
        if reason is not None:
            show_warning(reason)
            self.net2_label.value = "not available"
            return None
        r = self._refinement
        source = self.image.value
        deleted = self._deleted_boundaries(source)
        if deleted is not None:  # Net2 refines a result whose layer (and the hand edits in it) is gone
            if r is not None and same_layer(r.source, source):
                self._detach_refinement()  # its clamp holds the deleted layer's edits: never applied
            self._fail(
                f"'{deleted}' was deleted, and with it Net1's result on '{source.name}' (and its hand edits): "
                f"run Net1 on '{source.name}' again, then step Net2"
            )
            return None
        if (
            r is not None
            and self._refinement_paused()
            and (
                not same_layer(r.source, self.image.value)
                or self._edited(r)
                or r.grain_settings != self._grain_settings()
            )
        ):
            # another image, hand edits since the last step, or another "grains by", basin depth or threshold:
            # continue from the layer as it is now, with the dock's settings
            self._detach_refinement()
            r = None
        if r is not None:
            if self._refinement_paused():
                r.budget = budget
                r.worker.resume()
            else:
                r.budget = budget  # Step while running: stop after the next step
            return r.worker
        if self._net1_worker is not None:
            show_warning("Net1 is still running: wait for it, then step Net2")
            return None
        from napari_grainseg.models.device import resolve_device

        source = self.image.value
        try:
            if source is None:
                raise InputError("no image layer selected: open a micrograph first")
            state = self._states.get(layer_key(source))
            if state is None or state.probability is None or state.probability not in self._viewer.layers:
                raise InputError(f"run Net1 on '{source.name}' first: Net2 refines Net1's result")
            if state.drawing:
                raise InputError(f"Net1's result on '{source.name}' is still being drawn: press Step again")
            _, data = self._read_source()
            device = resolve_device(self.device.value)  # the CPU without importing torch: the worker imports it
            options = self._options(device, self.grains.value)  # widgets are read here, not in the worker
        except GrainsegError as exc:
            self._fail(exc)
            return None
        start = np.asarray(state.probability.data, np.float32)
        fixed_mask = fixed_values = None
        link = state.link
        start_crc = None
        if link is not None and link.alive:
            link.flush()
            fixed_mask, fixed_values = link.clamp()  # hand edits stay as drawn through every step
            if fixed_mask is not None:  # the worker's own copies: the link's grow with later edits
                fixed_mask, fixed_values = fixed_mask.copy(), fixed_values.copy()
            start_crc = checksum(link.boundaries.data)
        r = _Refinement(
            source=source,
            budget=budget,
            device=device,
            steps_at_start=state.steps_done,
            start_checksum=start_crc,
            grain_settings=self._grain_settings(),
        )
        worker = create_worker(
            self._net2_job,
            data,
            start,
            state.scale,
            device,
            options,
            r,
            fixed_mask,
            fixed_values,
            progress={"total": MAX_NET2_STEPS, "desc": f"Net2 on {source.name}"},
        )
        r.worker = worker
        worker.yielded.connect(lambda out: self._net2_yielded(r, out))
        worker.returned.connect(lambda out: self._net2_returned(r, out))
        worker.finished.connect(lambda: self._refinement_finished(r))
        self._refinement = r
        self.net2_label.value = "starting..."
        if fixed_mask is not None:
            r.kept_fixed_px = int(link.hand_edited_px)
            self.status.value = (
                f"Net2 continues from '{link.boundaries.name}' as edited: "
                f"{link.hand_edited_px} hand-edited px kept fixed"
            )
        worker.start()
        return worker

    def _deleted_boundaries(self, source) -> str | None:
        """The name of ``source``'s result boundary layer if the user deleted it, else None."""
        state = self._states.get(layer_key(source)) if source is not None else None
        link = state.link if state is not None else None
        if link is None or link.boundaries in self._viewer.layers:
            return None
        return link.boundaries.name

    def _edited(self, r: _Refinement) -> bool:
        """True when the boundary layer of ``r``'s image was edited since Net2 last wrote it."""
        state = self._states.get(layer_key(r.source))
        link = state.link if state is not None else None
        return link is not None and link.alive and link.edited and checksum(link.boundaries.data) != r.start_checksum

    def _detach_refinement(self) -> None:
        """End the current (paused) refinement without drawing anything more from it."""
        r = self._refinement
        if r is not None:
            r.pending = None
            r.worker.quit()
            self._refinement = None

    def _net2_job(
        self, data, start, scale, device, options: SegmentOptions, r: _Refinement, fixed_mask=None, fixed_values=None
    ):
        """Worker thread: Net2 steps; each yields (step, boundaries, labels) computed here."""
        import torch  # here, in the worker: the first import takes ~0.7 s

        from napari_grainseg.segmentation.grains import boundaries_to_labels, probability_to_labels
        from napari_grainseg.segmentation.refine import refine

        def asked_to_stop() -> bool:
            return r.cancelled or (r.worker is not None and r.worker.abort_requested)

        def stop_at_tile(*_tiles):
            """Stop (or a detached run) ends the step at the next tile: it is dropped anyway."""
            if asked_to_stop():
                raise _Cancelled

        def stopped():
            # napari's progress bar cancels by quitting the worker, not through Stop: say so too
            r.interrupted = r.interrupted or not r.cancelled
            r.cancelled = True

        leave_a_core_for_the_viewer(device)
        try:
            with torch.inference_mode():
                model = options.net2(device)
            steps = refine(
                data,
                start,
                model=model,
                device=device,
                max_steps=MAX_NET2_STEPS,
                scale=scale,
                fixed_mask=fixed_mask,
                fixed_values=fixed_values,
                progress=stop_at_tile,
            )
        except GrainsegError as exc:
            return _Failure(str(exc))
        try:
            while True:
                try:
                    with torch.inference_mode():
                        step = next(steps)
                except StopIteration:
                    return None
                except _Cancelled:
                    return stopped()
                except GrainsegError as exc:
                    return _Failure(str(exc))
                if asked_to_stop():  # not the grains of a step that will be dropped
                    return stopped()
                boundaries = (
                    probability_to_labels(
                        step.state,
                        options.grains,
                        threshold=options.threshold,
                        watershed_h=options.watershed_h,
                        net1_scale=scale,
                    )
                    == 0
                ).astype(np.uint8)
                if fixed_mask is not None:  # the hand-edited pixels exactly as the user left them
                    boundaries[fixed_mask] = fixed_values[fixed_mask] > 0.5
                if asked_to_stop():
                    return stopped()
                labels = boundaries_to_labels(boundaries)  # numbered as the grains layer's rebuilds
                if r.budget is not None:
                    r.budget -= 1
                    if r.budget <= 0 and not step.converged:
                        r.worker.pause()
                yield step, boundaries, labels
                if step.converged:
                    return None
        finally:
            steps.close()

    @unless_closed
    def _net2_yielded(self, r: _Refinement, out) -> None:
        if r.interrupted:  # Stop pressed while this step was computing: dropped, as the dock says
            return
        step = out[0]
        total = r.steps_at_start + step.step
        state_text = "converged" if step.converged else PHASE_WORDS.get(step.phase, step.phase)
        took = duration_words(step.seconds)
        n = int(out[2].max())
        grains = builder_words(*r.grain_settings)
        text = (
            f"step {total}: {n} grain{'' if n == 1 else 's'} ({grains}), change {step.change * 100:.3f} % "
            f"({state_text}, {took})"
        )
        state = self._states.get(layer_key(r.source))
        if state is not None:
            state.net2_text = text
        if same_layer(self.image.value, r.source):
            self.net2_label.value = text
        r.pending = out
        now = time.perf_counter()
        if step.converged or r.budget is not None and r.budget <= 0 or now - r.last_draw >= LIVE_UPDATE_INTERVAL_S:
            self._draw_step(r)

    def _draw_step(self, r: _Refinement) -> None:
        """Put the last computed step into the layers of the image it was computed from."""
        if r.pending is None:
            return
        step, boundaries, labels = r.pending
        r.pending = None
        source = r.source
        state = self._states.get(layer_key(source))
        if source not in self._viewer.layers or state is None:
            return
        deleted = self._deleted_boundaries(source)
        if deleted is not None:  # deleted while Net2 ran: the result is not made again
            if self._refinement is r:
                self._detach_refinement()
            self.status.value = f"Net2 stopped: '{deleted}' was deleted; run Net1 on '{source.name}' to start again"
            state.net2_text = f"step {r.steps_at_start + step.step} dropped ('{deleted}' was deleted)"
            if same_layer(self.image.value, source):
                self.net2_label.value = state.net2_text
            return
        if self._edited(r):  # edited while Net2 ran: never overwrite a hand correction
            if self._refinement is r:
                self._detach_refinement()
            self.status.value = (
                f"Net2 stopped: '{state.link.boundaries.name}' was edited; press Step to "
                "continue from it (the edits are kept fixed)"
            )
            kept = state.steps_done
            state.net2_text = (  # not the dropped step's line, as if it had been drawn
                f"{kept} step{'' if kept == 1 else 's'} shown; step {r.steps_at_start + step.step} dropped "
                "(the layer was edited)"
            )
            if same_layer(self.image.value, source):
                self.net2_label.value = state.net2_text
            return
        from napari_grainseg.models.device import net2_device_words

        state.steps_done = r.steps_at_start + step.step
        # Net2 runs in PyTorch (loaded by now, in the worker), not through OpenCV like Net1: say which ran
        net2_words = net2_device_words(r.device)
        state.extra = dict(state.extra, method="net1+net2", net2_steps=state.steps_done, net2_device=net2_words)
        state.devices = {**state.devices, "Net2": net2_words}
        state.net2_grains = int(labels.max())
        if same_layer(self.image.value, source):  # it said Net1's count; a paused refinement never finishes
            self._show_device()
            kept = f"; {r.kept_fixed_px} hand-edited px kept fixed" if r.kept_fixed_px else ""
            self.status.value = f"Net2: '{source.name}' after step {state.steps_done}, {grain_count_words(state)}{kept}"
        run_staged(
            lambda: self._put_probability(source, state, step.state),
            lambda: self._write_boundaries(source, state, boundaries, labels, net2=True),
        )
        r.last_draw = time.perf_counter()

    @unless_closed
    def _net2_returned(self, r: _Refinement, out) -> None:
        if isinstance(out, _Failure):
            self._fail(out.message)

    @unless_closed
    def _refinement_finished(self, r: _Refinement) -> None:
        self._draw_step(r)  # the last step always lands, even when stopped between redraws
        if self._refinement is r:
            self._refinement = None
            state = self._states.get(layer_key(r.source))
            if state is not None:
                steps = f"{state.steps_done} step{'' if state.steps_done == 1 else 's'}"
                grains = f", {grain_count_words(state)}" if state.net2_grains is not None else ""
                if r.interrupted:
                    self.status.value = (
                        f"Net2 cancelled on '{r.source.name}' after {steps} (the unfinished step was dropped)"
                    )
                    show_info(f"napari-grainseg: Net2 cancelled on '{r.source.name}' after {steps}")
                elif r.cancelled:  # Stop after single steps: nothing was running
                    self.status.value = f"Net2 stopped on '{r.source.name}' after {steps}{grains}"
                else:
                    self.status.value = f"Net2: {steps} on '{r.source.name}'{grains}"
