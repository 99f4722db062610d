"""The "Learn from corrections" dock widget: adapt Net1 to the user's corrected boundary layers.

Thin: the choice of layers and of the verified region is read here; learning, the model
store, names, renaming and deleting are :mod:`napari_grainseg.models.store`. Learning runs
in a worker thread (:mod:`._threading`) with a progress bar, the loss and a Cancel button;
a cancelled run saves nothing. A new model lands in the user's model store and, unless it
scored worse than the shipped model on its held-out images (then it is flagged, not
chosen), becomes the segment dock's model: segmenting the next image is one click.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.models.device import DEVICE_CHOICES
from napari_grainseg.plugin._boundaries import ROLE_KEY, layer_key, links
from napari_grainseg.plugin._dock import (
    column,
    follow_image_renames,
    join_other_docks,
    link_of,
    qt_alive,
    same_layer,
    scroll_body,
    source_image,
    unless_closed,
)
from napari_grainseg.plugin._layers import adding_layers, derived_layer_kwargs, image_from_layer, pixel_size_of
from napari_grainseg.plugin._store_events import STORE_EVENTS, connect_weakly
from napari_grainseg.plugin._threading import Debouncer, create_worker

#: Default time budget (minutes): the CLI's 300 steps on 4 crops of 256² take about 1 min on 2 cores.
DEFAULT_MINUTES = 2.0
#: Delay between an edit of a boundary layer and the update of the default choice of layers (ms).
REFRESH_DELAY_MS = 400
#: What the Learn step does, shown on its button.
LEARN_TIP = (
    "Fine-tunes the shipped Net1 on the chosen corrected boundary layers (only inside the verified "
    "region when one is chosen) and keeps the new model in your model store. With two or more images, "
    "a quarter of them is held out to check the new model against the shipped one."
)
#: Rows the list of corrected layers shows at least / at most (it scrolls beyond).
LIST_ROWS = (2, 6)
LEARN_AGAIN_TIP = (
    "Learns again FROM THE SHIPPED MODEL on every corrected image the chosen stored model was trained "
    "on plus the chosen layers (never a fine-tune of a fine-tune, which drifts and forgets)."
)


@dataclass
class _Failure:
    message: str
    cancelled: bool = False


class _Run:
    """One learning run: written by the worker thread (step, loss), read by a main-thread timer."""

    POLL_MS = 150

    def __init__(self, name: str):
        self.name = name
        self.step, self.total, self.loss = 0, 0, float("nan")
        self.first_loss = float("nan")
        self.started: float | None = None  # time.monotonic() of the first step
        self.cancel = False
        self.worker = None
        self._timer = None

    @property
    def cancelled(self) -> bool:
        """Cancel pressed, or the viewer closing / napari quitting (they ask every worker to quit):
        learning would otherwise run on unseen and save a model the user walked away from."""
        return self.cancel or bool(getattr(self.worker, "abort_requested", False))

    def progress(self, step: int, total: int, loss: float) -> None:  # worker thread
        if self.started is None:
            self.started, self.first_loss = time.monotonic(), loss
        self.step, self.total, self.loss = step, total, loss

    def words(self, running: bool = True) -> str:
        """The loss line: the loss now and at the first step, the step, and (running) the time left."""
        text = f"{self.loss:.4f} (first step {self.first_loss:.4f}); step {self.step} of {self.total}"
        if running and self.started is not None and 1 < self.step < self.total:
            per_step = (time.monotonic() - self.started) / (self.step - 1)
            left = per_step * (self.total - self.step)
            text += f"; about {left:.0f} s left" if left < 90 else f"; about {left / 60:.0f} min left"
        return text


class LearnWidget(Container):
    """Learn a model from corrected boundary layers; rename or delete the learned models."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self._run: _Run | None = None
        self._user_picked = False  # the user chose the corrected layers: no more automatic choice
        self._setting = False
        self._delete_armed: str | None = None
        self._suggested = ""  # the model name this dock suggested (replaced while the user has not typed one)
        self._watched: set = set()
        self._edits = Debouncer(self._refresh_corrected, REFRESH_DELAY_MS)
        #: the fine-tuning config (None: the defaults of ``grainseg finetune``)
        self.config = None
        self.device = ComboBox(
            label="device",
            choices=list(DEVICE_CHOICES),
            value="auto",
            tooltip="where learning runs; auto: CUDA, else Apple MPS, else the CPU (the dock names the one in use)",
        )
        self.corrected = Select(
            label="corrected layers",
            choices=self._boundary_layers,
            tooltip="boundary layers you corrected by hand (chosen for you: the hand-edited ones); "
            "click to choose one, Ctrl-click to choose several",
        )
        self.corrected_info = Label(value="")
        self.region = ComboBox(
            label="verified region",
            choices=self._region_layers,
            tooltip="rectangles (Shapes) or a mask (Labels) of the part you checked; the rest is not learned "
            "from. None: all of each image",
        )
        self.region_button = PushButton(text="Draw verified region (rectangles)")
        self.minutes = FloatSpinBox(label="time budget (min)", value=DEFAULT_MINUTES, min=0.1, max=600.0, step=0.5)
        self.steps = SpinBox(
            label="steps (0: budget)",
            value=0,
            min=0,
            max=100_000,
            tooltip="0: as many steps as fit in the time budget; N: exactly N steps (the time budget is then not used)",
        )
        self.net2_steps = SpinBox(
            label="Net2 steps",
            value=0,
            min=0,
            max=100_000,
            tooltip="0: Net2 is not adapted (the shipped Net2 is kept). N: also adapt Net2 for N steps on your "
            "corrections; with held-out images the dock says whether it helped",
        )
        self.model_name = LineEdit(
            label="model name", value="", tooltip="a name, not a path: no / \\ : * ? \" < > |; not 'shipped'"
        )
        self.learn_button = PushButton(text="Learn", tooltip=LEARN_TIP)
        self.again_button = PushButton(text="Learn again", tooltip=LEARN_AGAIN_TIP)
        self.cancel_button = PushButton(text="Cancel")
        self.cancel_button.enabled = False
        buttons = Container(
            widgets=[self.learn_button, self.again_button, self.cancel_button], layout="horizontal", labels=False
        )
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.loss = Label(label="loss", value="")
        self.result = Label(label="held-out check", value="")
        self.stored_heading = Label(value="<b>Your learned models</b>")
        self.stored = ComboBox(label="stored models", choices=self._stored_models)
        self.stored_info = Label(value="")
        self.new_name = LineEdit(label="rename to", value="")
        self.rename_button = PushButton(text="Rename")
        self.delete_button = PushButton(text="Delete")
        manage = Container(widgets=[self.rename_button, self.delete_button], layout="horizontal", labels=False)
        self.status = Label(value="")
        self.body = column(
            [
                self.corrected,
                self.corrected_info,
                self.region,
                self.region_button,
                self.minutes,
                self.steps,
                self.net2_steps,
                self.device,
                self.model_name,
                buttons,
                self.progress,
                self.loss,
                self.status,  # next to the buttons: seen while learning, on a small screen too
                self.stored_heading,
                self.stored,
                self.result,  # the chosen stored model's held-out check
                self.stored_info,
                self.new_name,
                manage,
            ]
        )
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        join_other_docks(self, "Learn")
        self.learn_button.clicked.connect(lambda: self.learn())
        self.again_button.clicked.connect(lambda: self.learn(again=True))
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.region_button.clicked.connect(lambda: self.draw_region())
        self.rename_button.clicked.connect(lambda: self.rename())
        self.delete_button.clicked.connect(lambda: self.delete())
        self.corrected.changed.connect(self._on_corrected_changed)
        self.steps.changed.connect(self._update_controls)
        self.stored.changed.connect(self._on_stored_changed)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        follow_image_renames(viewer)  # its regions name their image
        connect_weakly(STORE_EVENTS.changed, self._on_store_changed)
        for widget in (self.progress, self.loss, self.result):  # shown once there is something to show
            widget.visible = False
        self._refresh_layers()
        self._on_stored_changed()
        self._update_controls()

    # ------------------------------------------------------------------ choices

    def _links(self) -> list:
        return [link for link in links() if link.boundaries in self._viewer.layers]

    def _boundary_layers(self, _widget=None) -> list:
        """Every boundary layer: made by Run Net1, or opened from a ``*_boundaries.tif``."""
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Labels) and layer.metadata.get(ROLE_KEY) == "boundaries"
        ]

    def _region_layers(self, _widget=None) -> list:
        out = [("none (all of each image)", None)]
        for layer in self._viewer.layers:
            role = layer.metadata.get(ROLE_KEY)
            if isinstance(layer, napari.layers.Shapes) and role not in ("split lines", "scale line"):
                out.append((layer.name, layer))
            elif isinstance(layer, napari.layers.Labels) and role not in ("boundaries", "grains"):
                out.append((layer.name, layer))
        return out

    def _stored_models(self, _widget=None) -> list:
        from napari_grainseg.models.store import list_models

        try:
            return [(m.label, m.name) for m in list_models()]
        except GrainsegError:
            return []

    def hand_edited_layers(self) -> list:
        """The boundary layers that hold hand edits (the default choice)."""
        return [link.boundaries for link in self._links() if link.has_hand_edits]

    @unless_closed
    def _refresh_layers(self, event=None) -> None:
        for layer in self._viewer.layers:  # follow edits: a layer edited by hand becomes a default choice
            if isinstance(layer, napari.layers.Labels) and layer_key(layer) not in self._watched:
                self._watched.add(layer_key(layer))
                for signal in (layer.events.paint, layer.events.data, layer.events.set_data):
                    signal.connect(self._edits.trigger)
        self.region.reset_choices()
        self._refresh_corrected()

    @unless_closed
    def _refresh_corrected(self) -> None:
        self._setting = True
        try:
            self.corrected.reset_choices()
            if not self._user_picked:
                self.corrected.value = self.hand_edited_layers()
        finally:
            self._setting = False
        self._describe_corrected()
        if self.model_name.value.strip() in ("", self._suggested):  # not typed by the user
            self._suggest_name()

    def _on_corrected_changed(self, _value=None) -> None:
        if not self._setting:
            self._user_picked = True
        self._describe_corrected()

    def _describe_corrected(self) -> None:
        """Say in words which layers are chosen (a chosen row is only faintly highlighted), and fit
        the list's height to its rows."""
        chosen = [layer.name for layer in self.corrected.value]
        n = len(self.corrected.choices)
        if not n:
            text = "no boundary layer yet: run Net1 on an image and correct its result"
        elif not chosen:
            text = "none chosen: click a layer above (Ctrl-click for several)"
        else:
            text = f"chosen: {', '.join(chosen)}"
            if not self._user_picked:
                text += " (the hand-edited layers)"
        self.corrected_info.value = text
        native = self.corrected.native
        rows = min(max(n, LIST_ROWS[0]), LIST_ROWS[1])
        height = rows * max(native.sizeHintForRow(0), native.fontMetrics().height() + 2) + 2 * native.frameWidth() + 4
        native.setFixedHeight(height)

    def _suggest_name(self) -> None:
        from napari_grainseg.models.store import unique_name

        chosen = list(self.corrected.value)
        image = source_image(self._viewer, chosen[0]) if chosen else None
        base = f"{image.name} model" if image is not None else "my model"
        try:
            self._suggested = unique_name(base.replace("/", " ").replace("\\", " ").strip(". ") or "my model")
        except GrainsegError:
            self._suggested = ""
        self.model_name.value = self._suggested

    # ------------------------------------------------------------------ inputs

    def draw_region(self):
        """Add a rectangles layer over the first chosen layer's image for the verified region."""
        self._disarm_delete()
        chosen = list(self.corrected.value)
        image = source_image(self._viewer, chosen[0]) if chosen else None
        if image is None:
            return self._fail("choose a corrected boundary layer first: the region is drawn over its image")
        with adding_layers(self._viewer):
            layer = self._viewer.add_shapes(
                ndim=2,
                edge_color="cyan",
                face_color=[0, 1, 1, 0.08],
                edge_width=2 * float(np.mean(image.scale)),
                metadata={ROLE_KEY: "verified region", "grainseg_source": image.name},
                **derived_layer_kwargs(image, f"{image.name} verified region"),
            )
        layer.mode = "add_rectangle"
        self._viewer.layers.selection.active = layer
        self.region.reset_choices()
        self.region.value = next(c for c in self.region.choices if c is not None and same_layer(c, layer))
        others = [layer.name for layer in chosen[1:]]
        self.status.value = f"draw rectangles over the part of '{image.name}' you checked, then press Learn" + (
            f" (the other chosen layers are learned from whole: {', '.join(others)})" if others else ""
        )
        return layer

    def region_mask(self, image) -> np.ndarray | None:
        """The verified region over image layer ``image`` (None: all of it)."""
        from skimage.draw import polygon

        layer = self.region.value
        shape = np.asarray(image.data).shape[:2]
        if layer is None:
            return None
        if isinstance(layer, napari.layers.Labels):
            data = np.asarray(layer.data)
            if data.shape != shape:
                raise InputError(f"verified region '{layer.name}' is {data.shape}, image '{image.name}' is {shape}")
            mask = data != 0
        else:
            mask = np.zeros(shape, bool)
            for vertices, kind in zip(layer.data, layer.shape_type):
                if kind not in ("rectangle", "polygon"):
                    raise InputError(f"verified region '{layer.name}' holds a {kind}: draw rectangles or polygons")
                world = np.array([layer.data_to_world(v) for v in np.asarray(vertices)])
                pixels = np.array([image.world_to_data(w) for w in world])[:, -2:]
                rr, cc = polygon(pixels[:, 0], pixels[:, 1], shape)
                mask[rr, cc] = True
        if not mask.any():
            raise InputError(f"verified region '{layer.name}' covers nothing of '{image.name}'")
        return mask

    def corrected_images(self) -> list:
        """The chosen layers as :class:`~napari_grainseg.models.store.CorrectedImage` (read on the main thread)."""
        from napari_grainseg.models.store import CorrectedImage

        if not self._user_picked:
            self._refresh_corrected()
        out = []
        for layer in self.corrected.value:
            link = link_of(layer)
            if link is not None:
                link.flush()  # the grains and the data are current
            image = source_image(self._viewer, layer)
            if image is None:
                source = layer.metadata.get("grainseg_source")
                raise InputError(
                    f"'{layer.name}': its micrograph "
                    + (f"'{source}' is not open: open it too" if source else "is not known")
                )
            data = image_from_layer(image)
            boundaries = np.asarray(layer.data)
            if boundaries.shape != data.shape:
                raise InputError(f"'{layer.name}' is {boundaries.shape}, its image '{image.name}' is {data.shape}")
            roi = self.region_mask(image) if self.region_applies_to(image) else None
            out.append(CorrectedImage(data, boundaries.copy(), roi, layer.name, pixel_size_of(image)))
        return out

    def region_applies_to(self, image) -> bool:
        """Whether the chosen verified region restricts image layer ``image``: a region drawn with
        the button belongs to the image it was drawn over (the other chosen images are learned from
        whole); any other Shapes or Labels layer restricts every chosen image."""
        region = self.region.value
        if region is None:
            return False
        source = region.metadata.get("grainseg_source") if region.metadata.get(ROLE_KEY) == "verified region" else None
        return source is None or source == image.name

    # ------------------------------------------------------------------ learning

    @property
    def busy(self) -> bool:
        return self._run is not None

    def learn(self, again: bool = False):
        """Start learning in a worker (``again``: from the chosen stored model's images too). Returns the worker."""
        from napari_grainseg.models.device import resolve_device
        from napari_grainseg.models.store import new_model_path, unique_name

        self._disarm_delete()
        if self.busy:
            show_warning("napari-grainseg: learning is running: wait, or press Cancel")
            return None
        try:
            again_from = None
            if again:
                again_from = self.stored.value
                if not again_from:
                    raise InputError("no stored model to learn again from: learn one first")
                if self.model_name.value.strip() == self._suggested:  # not typed: named after its model
                    self.model_name.value = unique_name(again_from)
            name = self.model_name.value
            new_model_path(name)  # a bad or taken name fails before any work
            corrected = self.corrected_images()
            if not corrected and again_from is None:
                raise InputError(
                    "no corrected layer chosen: click one under 'corrected layers'"
                    if self.corrected.choices
                    else "no boundary layer to learn from: run Net1 on an image and correct its result first"
                )
            device = resolve_device(self.device.value)  # the CPU without importing torch: the worker imports it
        except GrainsegError as exc:
            return self._fail(exc)
        run = _Run(name.strip())
        steps = int(self.steps.value) or None
        net2 = int(self.net2_steps.value)
        worker = create_worker(
            self._learn_job, run, corrected, again_from, steps, float(self.minutes.value), device, net2
        )
        run.worker = worker
        worker.returned.connect(lambda out: self._learn_done(run, out))
        worker.errored.connect(lambda exc: self._fail(f"learning failed: {exc}"))
        worker.finished.connect(lambda: self._learn_finished(run))
        self._run = run
        self._update_controls()
        self.progress.value, self.loss.value = 0, "starting..."
        self.progress.visible = self.loss.visible = True
        what = f"{len(corrected)} layer{'s' if len(corrected) != 1 else ''}"
        what += f" + the images of '{again_from}'" if again_from else ""
        budget = f"{steps} steps" if steps else f"{self.minutes.value:g} min"
        self.status.value = f"learning '{run.name}' from {what} ({budget}) on {device}..."
        self._start_timer(run)
        worker.start()
        return worker

    def _learn_job(self, run: _Run, corrected, again_from, steps, minutes, device, net2_steps=0):
        """Worker thread: :func:`~napari_grainseg.models.store.learn_model`."""
        import pandas  # noqa: F401 - imported by napari's first layer update: not on the main thread later

        from napari_grainseg.models.store import LearnCancelled, learn_model
        from napari_grainseg.plugin._segment_widget import leave_a_core_for_the_viewer

        leave_a_core_for_the_viewer(device)  # imports torch here, in the worker, not in the viewer's thread
        try:
            return learn_model(
                run.name,
                corrected,
                again_from=again_from,
                steps=steps,
                minutes=None if steps else minutes,
                net2_steps=net2_steps or None,
                config=self.config,
                device=device,
                progress=run.progress,
                cancel=lambda: run.cancelled,
            )
        except LearnCancelled:
            return _Failure("learning cancelled: nothing saved", cancelled=True)
        except GrainsegError as exc:
            return _Failure(str(exc))

    def _start_timer(self, run: _Run) -> None:
        from napari_grainseg.plugin import _threading

        if _threading.SYNCHRONOUS:
            return
        from qtpy.QtCore import QTimer

        run._timer = QTimer()
        run._timer.setInterval(run.POLL_MS)
        run._timer.timeout.connect(lambda: self._show_progress(run))
        run._timer.start()

    @unless_closed
    def _show_progress(self, run: _Run) -> None:
        if not run.total:
            return
        if self.progress.max != run.total:
            self.progress.max = run.total
        self.progress.value = min(run.step, run.total)
        self.loss.value = run.words(running=self._run is run)

    def cancel(self) -> None:
        """Stop learning after the current step; nothing is saved."""
        if self._run is not None:
            self._run.cancel = True
            self.status.value = f"cancelling '{self._run.name}' (after the current step)..."

    @unless_closed
    def _learn_done(self, run: _Run, out) -> None:
        self._show_progress(run)
        if isinstance(out, _Failure):
            if out.cancelled:
                self.status.value = f"'{run.name}': {out.message}"
                if run.total:
                    self.loss.value = f"cancelled at step {run.step} of {run.total}"
                show_info(f"napari-grainseg: {out.message}")
            else:
                self._fail(out.message)
            return
        path, info = out
        n = len(info.get("training_images", []))
        self.status.value = (
            f"learned '{path.name}' from {n} corrected image{'s' if n != 1 else ''}: {info['steps_done']} steps "
            f"in {info['train_seconds']:.0f} s on {info['device']}; saved in the model store"
        )
        self.loss.value = run.words(running=False)
        worse = bool(info.get("worse_than_base")) and bool(info.get("heldout"))
        if worse:
            message = (
                f"napari-grainseg: '{path.name}' scored WORSE than the shipped model on its held-out images; "
                "it is kept but not chosen for segmenting. Check the corrections, or correct more images and "
                "learn again."
            )
            show_warning(message)
            STORE_EVENTS.changed.emit("")
        else:
            show_info(f"napari-grainseg: learned '{path.name}'; Run Net1 (Segment grains) now uses it")
            STORE_EVENTS.changed.emit(str(path))
        from napari_grainseg.models.model_dir import magnification_warning

        if warning := magnification_warning(info):
            show_warning(f"napari-grainseg: '{path.name}': {warning}")
        self.stored.value = path.name  # its held-out check is shown under 'stored models'
        self._user_picked = False  # the hand-edited layers are the default again for the next model
        self._refresh_corrected()
        self._suggest_name()

    def _learn_finished(self, run: _Run) -> None:
        if run._timer is not None:
            run._timer.stop()
            run._timer = None
        if self._run is run:
            self._run = None
        if qt_alive(self):  # else the viewer was closed while learning
            self._update_controls()

    def _update_controls(self, _value=None) -> None:
        """Enable what can be pressed now: Learn again, Rename and Delete need a stored model and
        no run; the time budget counts only when steps is 0."""
        busy, stored = self.busy, bool(self.stored.choices)
        self.learn_button.enabled = not busy
        self.again_button.enabled = not busy and stored
        self.cancel_button.enabled = busy
        self.rename_button.enabled = self.delete_button.enabled = not busy and stored
        self.minutes.enabled = int(self.steps.value) == 0

    # ------------------------------------------------------------------ the store

    def _on_store_changed(self, _path: str = "") -> None:
        current = self.stored.value
        self.stored.reset_choices()
        if current in self.stored.choices:
            self.stored.value = current
        self._on_stored_changed()

    def _on_stored_changed(self, _value=None) -> None:
        from napari_grainseg.models.store import list_models

        self._disarm_delete()
        name = self.stored.value
        model = next((m for m in list_models() if m.name == name), None) if name else None
        self._update_controls()
        self.result.visible = model is not None
        if model is None:
            self.result.value = ""
            self.stored_info.value = "no learned model yet" if not self.stored.choices else ""
            return
        images = f"{model.n_images} corrected image" + ("s" if model.n_images != 1 else "")
        self.result.value = model.verdict
        self.stored_info.value = f"learned from {images}; folder {model.path}"
        self.new_name.value = model.name

    def rename(self) -> bool:
        """Rename the chosen stored model to the name in 'rename to'."""
        from napari_grainseg.models.store import rename_model

        old = self.stored.value
        self._disarm_delete()
        try:
            if not old:
                raise InputError("no stored model chosen")
            if not self.new_name.value.strip():
                raise InputError("type the new name under 'rename to'")
            new = rename_model(old, self.new_name.value)
        except GrainsegError as exc:
            return self._fail(exc)
        self.status.value = f"renamed '{old}' to '{new.name}'"
        STORE_EVENTS.renamed.emit(str(new.parent / old), str(new))
        self._select_after_change(new.name)
        return True

    def delete(self) -> bool:
        """Delete the chosen stored model: the first press asks, the second deletes."""
        from napari_grainseg.models.store import delete_model

        name = self.stored.value
        if not name:
            return self._fail("no stored model chosen")
        if self._delete_armed != name:
            self._delete_armed = name
            self.delete_button.text = "Delete: sure?"
            self.status.value = f"press Delete again to delete '{name}' for good (the shipped model stays)"
            return False
        try:
            delete_model(name)
        except GrainsegError as exc:
            self._disarm_delete()
            return self._fail(exc)
        self._disarm_delete()
        self.status.value = f"deleted '{name}'"
        self._select_after_change(None)
        return True

    def _disarm_delete(self) -> None:
        self._delete_armed = None
        self.delete_button.text = "Delete"

    def _select_after_change(self, name: str | None) -> None:
        self.stored.reset_choices()
        if name is not None and name in self.stored.choices:
            self.stored.value = name
        STORE_EVENTS.changed.emit("")
        self._on_stored_changed()

    @unless_closed
    def _fail(self, exc: BaseException | str):
        message = str(exc)
        show_error(message)
        self.status.value = f"error: {message}"
        return None
