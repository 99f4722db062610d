"""The options of a segmentation, checked and resolved in one place, and the one model cache.

:class:`SegmentOptions` is what every entry point hands to
:func:`napari_grainseg.segmentation.pipeline.segment`: ``grainseg segment``,
``grainseg batch``, the napari segment widget and the evaluation runners. It
resolves Net2's ``"auto"`` step budget (:meth:`SegmentOptions.net2_budget`) and
a grain size given in nm against an image's pixel size
(:meth:`SegmentOptions.grain_size_for`); bad values are one-line
:class:`OptionError`\\ s that name the option.

:func:`cached_net1` and :func:`cached_net2` load a network once per weights
file and device in this process (a Dask worker, the napari session, an
evaluation run) and hand the same model to every later call;
:func:`release_models` forgets them.

Examples
--------
>>> opts = SegmentOptions(net2_steps=0, grain_size_nm=40.0)
>>> opts.net2_budget(), opts.grain_size_for(2.0)
(0, 20.0)
>>> SegmentOptions(threshold=1.5)
Traceback (most recent call last):
...
napari_grainseg.segmentation.options.OptionError: threshold must be between 0 and 1, got 1.5
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.grains import (
    DEFAULT_GRAIN_BUILDER,
    DEFAULT_MIN_GRAIN_AREA,
    DEFAULT_WATERSHED_H,
    check_grain_builder,
)
from napari_grainseg.segmentation.refine import DEFAULT_MAX_STEPS

__all__ = [
    "NET1_BACKENDS",
    "OptionError",
    "SegmentOptions",
    "cached_models",
    "cached_net1",
    "cached_net2",
    "net2_available",
    "net2_step_budget",
    "release_models",
]


class OptionError(InputError):
    """A segmentation option has a bad value; ``field`` names the :class:`SegmentOptions` field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def net2_step_budget(net2_steps: int | str) -> int:
    """Largest number of Net2 steps for a ``net2_steps`` setting: "auto" → 30, N → N, 0 → none.

    Examples
    --------
    >>> net2_step_budget("auto"), net2_step_budget("4"), net2_step_budget(0)
    (30, 4, 0)
    """
    bad = OptionError("net2_steps", f"Net2 steps must be 'auto' or a whole number >= 0, got {net2_steps!r}")
    if isinstance(net2_steps, str):
        text = net2_steps.strip().lower()
        if text == "auto":
            return DEFAULT_MAX_STEPS
        try:
            net2_steps = int(text)
        except ValueError:
            raise bad from None
    if isinstance(net2_steps, bool) or int(net2_steps) != net2_steps or net2_steps < 0:
        raise bad
    return int(net2_steps)


def net2_available() -> bool:
    """Whether Net2 weights are shipped with the package (``"auto"`` then uses Net2)."""
    from napari_grainseg.models.weights import shipped_weights_dir

    return (shipped_weights_dir() / "net2.pt").is_file()


def _positive_or_none(field: str, value) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise OptionError(field, f"{field.replace('_', ' ')} must be a finite number > 0, got {value}")


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment a micrograph; checked when made (picklable, for Dask workers).

    Attributes
    ----------
    net2_steps
        ``0`` (default): Net1 only; ``"auto"``: refine with Net2 until converged
        (at most 30 steps), Net1 only when no Net2 weights are at hand; ``N``: at
        most N steps. The default follows evidence our generator did not draw: on
        real hand-traced crops Net2 made grains worse (docs/generalisation.md).
        Stored as ``"auto"`` or an int (``" Auto "`` and ``"3"`` are accepted).
    grain_size_px, grain_size_nm
        Expected mean grain diameter, in pixels or in nm (at most one); None:
        estimated per image. A size in nm needs the image's pixel size.
    grains
        How closed grains are built from the final boundary map: ``"watershed"`` (default) or
        ``"threshold"`` (:func:`napari_grainseg.segmentation.grains.probability_to_labels`).
    threshold
        Boundary probability threshold (``grains="threshold"``).
    min_grain_area
        Smallest grain kept (px, >= 1); smaller ones are merged into neighbours.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
    weights, net2_weights
        Net1 / Net2 weights files; None: the shipped weights.
    tta
        Test-time augmentation: Net1 averages the eight turned and flipped copies of
        each tile (8× Net1's time; measured effect in docs/generalisation.md).
    watershed_h
        Depth of the basins that become grains with ``grains="watershed"`` (an adapted
        model directory recommends its own, tuned on its corrections).
    model_grain_size_px, model_grain_size_nm
        An adapted model's scale: the mean grain diameter of its corrections in px and in nm
        (None when they were not all calibrated; corrections at several magnifications agree in
        nm). With them :meth:`grain_size_for` gives each image the hint the model was adapted
        at, converted by that image's pixel size
        (:func:`~napari_grainseg.models.model_dir.model_grain_size_hint`).
    backend
        How Net1 runs: ``"auto"`` (default) runs it through OpenCV's DNN module when the
        device is the CPU and the weights have a current ONNX export (the shipped ones do;
        :mod:`~napari_grainseg.models.net1_opencv`: about twice as fast, and no torch
        import), else through PyTorch; ``"torch"`` always uses PyTorch.

    Raises
    ------
    OptionError
        For a bad value, naming the option.
    """

    net2_steps: int | str = 0
    grain_size_px: float | None = None
    grain_size_nm: float | None = None
    grains: str = DEFAULT_GRAIN_BUILDER
    threshold: float = 0.5
    min_grain_area: int = DEFAULT_MIN_GRAIN_AREA
    device: Any = "auto"
    weights: str | Path | None = None
    net2_weights: str | Path | None = None
    watershed_h: float = DEFAULT_WATERSHED_H
    tta: bool = False
    backend: str = "auto"
    model_grain_size_px: float | None = None
    model_grain_size_nm: float | None = None

    def __post_init__(self) -> None:
        budget = net2_step_budget(self.net2_steps)  # resolved once: "auto" or a whole number
        auto = isinstance(self.net2_steps, str) and self.net2_steps.strip().lower() == "auto"
        object.__setattr__(self, "net2_steps", "auto" if auto else budget)
        if self.grain_size_px is not None and self.grain_size_nm is not None:
            raise OptionError("grain_size_px", "give the grain size in px or in nm, not both")
        _positive_or_none("grain_size_px", self.grain_size_px)
        _positive_or_none("grain_size_nm", self.grain_size_nm)
        try:
            check_grain_builder(self.grains)
        except InputError as exc:
            raise OptionError("grains", str(exc)) from None
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise OptionError("threshold", f"threshold must be between 0 and 1, got {self.threshold}")
        _positive_or_none("watershed_h", self.watershed_h)
        _positive_or_none("model_grain_size_px", self.model_grain_size_px)
        _positive_or_none("model_grain_size_nm", self.model_grain_size_nm)
        if not isinstance(self.tta, bool):
            raise OptionError("tta", f"tta must be True or False, got {self.tta!r}")
        if self.backend not in NET1_BACKENDS:
            raise OptionError("backend", f"backend must be one of {', '.join(NET1_BACKENDS)}, got {self.backend!r}")
        if (
            isinstance(self.min_grain_area, bool)
            or int(self.min_grain_area) != self.min_grain_area
            or self.min_grain_area < 1
        ):
            raise OptionError(
                "min_grain_area", f"min grain area must be a whole number >= 1, got {self.min_grain_area}"
            )

    @property
    def net2_auto(self) -> bool:
        """Whether the Net2 budget is ``"auto"``."""
        return self.net2_steps == "auto"

    def net2_budget(self, model_given: bool = False) -> int:
        """Net2 steps to run (0: Net1 only).

        ``N`` gives N. ``"auto"`` gives 30 when Net2 weights are at hand (a
        loaded model, ``model_given``; a ``net2_weights`` file; or shipped
        weights), else 0.
        """
        budget = net2_step_budget(self.net2_steps)
        if budget and self.net2_auto and not (model_given or self.net2_weights is not None or net2_available()):
            return 0
        return budget

    def grain_size_for(
        self, pixel_size_nm: float | None, *, where: str = "the image", fix: str = "give its pixel size"
    ) -> float | None:
        """The grain-size hint in pixels of an image with ``pixel_size_nm`` (None: estimate it).

        A size in nm is divided by the pixel size; without one it is an
        :class:`OptionError` naming ``where`` (the image) and ``fix`` (what to do).
        With an adapted model's scale (``model_grain_size_px``) the hint is the one the model
        was adapted at: the given size, else the corrections' size converted by the pixel sizes.
        """
        if self.grain_size_nm is None:
            size = self.grain_size_px
        elif pixel_size_nm is None:
            raise OptionError(
                "grain_size_nm", f"a grain size in nm needs a pixel size, but {where} is not calibrated: {fix}"
            )
        else:
            size = self.grain_size_nm / pixel_size_nm
        if self.model_grain_size_px is None:
            return size
        from napari_grainseg.models.model_dir import model_grain_size_hint

        scale = {"grain_size_px": self.model_grain_size_px, "grain_size_nm": self.model_grain_size_nm}
        return model_grain_size_hint(scale, grain_size_px=size, pixel_size_nm=pixel_size_nm)

    def compute_device(self):
        """:attr:`device` resolved (``"auto"`` picks CUDA, MPS or the CPU): a name, or the ``torch.device`` given.

        The CPU is answered without importing torch (:func:`~napari_grainseg.models.device.resolve_device`).
        """
        from napari_grainseg.models.device import resolve_device

        return resolve_device(self.device) if isinstance(self.device, str) else self.device

    def net1(self, device):
        """Net1 of :attr:`weights` on ``device`` by :attr:`backend`, from the model cache."""
        return cached_net1(self.weights, device, backend=self.backend)

    def net2(self, device):
        """Net2 of :attr:`net2_weights` on ``device``, from the model cache."""
        return cached_net2(self.net2_weights, device)


# --------------------------------------------------------------------------- model cache

#: Values of :attr:`SegmentOptions.backend`.
NET1_BACKENDS: tuple[str, ...] = ("auto", "torch")

_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _cache_key(kind: str, weights: str | Path | None, device) -> tuple[str, str, str]:
    return kind, str(Path(weights).resolve()) if weights else "<shipped>", str(device)


def _cached(kind: str, weights: str | Path | None, device, load: Callable[[], Any]):
    key = _cache_key(kind, weights, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load()
        return _MODELS[key]


def cached_net1(weights: str | Path | None, device, *, backend: str = "auto"):
    """Net1 for ``(weights, device)`` (None: shipped weights), loaded once per process.

    On the CPU with ``backend="auto"`` it is the OpenCV Net1 of the weights' ONNX export
    (:class:`~napari_grainseg.models.net1_opencv.OpenCVNet1`) when a current one exists,
    else the PyTorch model; ``backend="torch"`` always gives the PyTorch model (cached
    as kind ``"net1:torch"`` on the CPU).
    """
    from napari_grainseg.models.weights import load_net1

    if str(device) != "cpu":
        return _cached("net1", weights, device, lambda: load_net1(weights, device=device))
    if backend == "torch":
        return _cached("net1:torch", weights, device, lambda: load_net1(weights, device=device))

    def opencv_or_torch():
        from napari_grainseg.models.net1_opencv import load_opencv_net1

        model = load_opencv_net1(weights)  # None: the weights have no current ONNX export
        return model if model is not None else load_net1(weights, device=device)

    return _cached("net1", weights, device, opencv_or_torch)


def cached_net2(weights: str | Path | None, device):
    """Net2 for ``(weights, device)`` (None: shipped weights), loaded once per process."""
    from napari_grainseg.models.weights import load_net2

    return _cached("net2", weights, device, lambda: load_net2(weights, device=device))


def cached_models() -> list[tuple[str, str, str]]:
    """``(kind, weights, device)`` of every model in the cache (kind ``"net1"``, ``"net1:torch"`` or ``"net2"``)."""
    with _MODELS_LOCK:
        return sorted(_MODELS)


def release_models() -> set[str]:
    """Forget every cached model; returns the devices they were on (to release their memory)."""
    with _MODELS_LOCK:
        devices = {key[2] for key in _MODELS}
        _MODELS.clear()
    return devices
