"""The whole segmentation of one micrograph: Net1 → Net2 refinement → closed grains → files.

This is the one place that chains the stages, used by ``grainseg segment``,
``grainseg demo``, ``grainseg batch``, the napari segment widget and the
evaluation runners, so every entry point produces the same result and the same
files. Its options are a :class:`~napari_grainseg.segmentation.options.SegmentOptions`.

Output files (a public contract; later stages add files but keep these):
``<stem>_boundaries.tif`` (uint8, 1 = boundary, 1 px wide, 8-connected, the
input's size), ``<stem>_grains.tif`` (uint32 labels, 0 = boundary, every closed
4-connected grain its own id), and the measurement report of
:func:`napari_grainseg.measure.report.write_report` (CSV, summary JSON, histogram, overlay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grainseg.models.device import net2_device_words
from napari_grainseg.segmentation.grains import DEFAULT_GRAIN_BUILDER, probability_to_labels
from napari_grainseg.segmentation.inference import BoundaryPrediction, predict_boundaries
from napari_grainseg.segmentation.options import SegmentOptions, net2_available, net2_step_budget

__all__ = ["Segmentation", "SegmentOptions", "net2_available", "net2_step_budget", "segment", "write_segmentation"]


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment`: the probability, the 1-px boundaries and the grain labels.

    ``refined`` is Net2's final boundary probability (None when Net2 did not
    run); ``refine_steps`` and ``refine_seconds`` count its steps and time
    (``refine_step_seconds``: the time of each step);
    ``grains`` names how the labels were built from the final map ("threshold"
    or "watershed", :func:`napari_grainseg.segmentation.grains.probability_to_labels`),
    ``grain_parameter`` the threshold or the watershed's basin depth; ``net2_device`` where
    Net2 ran (PyTorch; Net1's ``prediction.device`` may be OpenCV's).
    """

    prediction: BoundaryPrediction
    boundaries: np.ndarray
    labels: np.ndarray
    refined: np.ndarray | None = None
    refine_steps: int = 0
    refine_seconds: float = 0.0
    refine_converged: bool = False
    grains: str = DEFAULT_GRAIN_BUILDER
    refine_step_seconds: tuple[float, ...] = ()
    model: dict | None = None
    tta: bool = False
    grain_parameter: float | None = None
    net2_device: str | None = None

    @property
    def builder_words(self) -> str:
        """How the grains were built, for a status line (:func:`~napari_grainseg.segmentation.grains.builder_words`)."""
        from napari_grainseg.segmentation.grains import builder_words

        return builder_words(self.grains, self.grain_parameter)

    def info(self) -> dict:
        """JSON-ready facts about how the result was made (goes into the summary JSON)."""
        p = self.prediction
        info = {
            "device": p.device,
            "method": "net1+net2" if self.refine_steps else "net1",
            "net2_steps": self.refine_steps,
            "net1_scale": p.scale,
            "grain_size_hint_px" if p.grain_size_source == "hint" else "grain_size_estimate_px": p.grain_size_px,
            "seconds": round(p.seconds + self.refine_seconds, 3),
            "net1_seconds": round(p.seconds, 3),
            "tiles": p.n_tiles,
            "grains": self.grains,
        }
        if self.grain_parameter is not None:
            info["watershed_h" if self.grains == "watershed" else "threshold"] = self.grain_parameter
        if self.tta:
            info["tta"] = True  # recorded only when used: earlier summaries stay comparable
        if self.refine_steps:
            info |= {
                "net2_seconds": round(self.refine_seconds, 3),
                "net2_converged": self.refine_converged,
                "net2_device": self.net2_device,
            }
        return info | (self.model or {})


def segment(
    image: np.ndarray,
    options: SegmentOptions | None = None,
    *,
    pixel_size_nm: float | None = None,
    model=None,
    net2_model=None,
    progress: Callable[[int, int], None] | None = None,
    **option_values,
) -> Segmentation:
    """Segment a micrograph into grains with Net1 (and Net2 refinement steps, when asked).

    The default, chosen on evidence our generator did not draw, is Net1 then grains by
    watershed; Net2 runs only with ``net2_steps`` other than 0 (see ``SegmentOptions``).

    Parameters
    ----------
    image
        2-D micrograph.
    options
        How to segment (:class:`~napari_grainseg.segmentation.options.SegmentOptions`);
        or give its fields as keywords (``net2_steps=0, grain_size_px=20, ...``), not both.
        The default ``grains="watershed"`` works on the whole image at once; at 4096²
        the field's peak is still elsewhere (1.50 GB against 1.48 GB by threshold,
        ``benchmarks/bench_memory.py --grains``), and it costs about 0.2 s per 1024² field.
    pixel_size_nm
        The image's pixel size, for a grain size given in nm.
    model, net2_model
        Loaded Net1 / Net2; default: the options' weights from the model cache
        (:func:`~napari_grainseg.segmentation.options.cached_net1`).
    progress
        ``progress(done, total)`` after each Net1 tile (raise from it to cancel).

    Examples
    --------
    >>> result = segment(image, net2_steps=0, grain_size_px=20)                  # doctest: +SKIP
    >>> result = segment(image, SegmentOptions(grains="watershed"))               # doctest: +SKIP
    """
    if options is None:
        options = SegmentOptions(**option_values)
    elif option_values:
        raise TypeError(f"give either options or option keywords, not both: {', '.join(option_values)}")
    grain_size_px = options.grain_size_for(pixel_size_nm)  # before Net1 runs
    budget = options.net2_budget(model_given=net2_model is not None)
    dev = options.compute_device()
    if model is None:
        model = options.net1(dev)
    prediction = predict_boundaries(
        image, model, device=dev, grain_size_px=grain_size_px, progress=progress, tta=options.tta
    )
    boundary_map, refined, n_steps, step_seconds, converged = prediction.probability, None, 0, (), False
    net2_device = None
    if budget:
        from napari_grainseg.segmentation.refine import refine_to_end

        if net2_model is None:
            net2_model = options.net2(dev)
        run = refine_to_end(
            image, prediction.probability, model=net2_model, device=dev, max_steps=budget, scale=prediction.scale
        )
        n_steps, converged, refined, step_seconds = run.steps, run.converged, run.state, run.step_seconds
        net2_device = net2_device_words(dev)
        boundary_map = refined if refined is not None else prediction.probability
    labels = probability_to_labels(
        boundary_map,
        options.grains,
        threshold=options.threshold,
        min_grain_area=options.min_grain_area,
        watershed_h=options.watershed_h,
        net1_scale=prediction.scale,
    )
    from napari_grainseg.models.model_dir import model_record

    return Segmentation(
        prediction=prediction,
        boundaries=labels == 0,
        labels=labels,
        refined=refined,
        refine_steps=n_steps,
        refine_seconds=sum(step_seconds, 0.0),
        refine_converged=converged,
        grains=options.grains,
        grain_parameter=options.watershed_h if options.grains == "watershed" else options.threshold,
        refine_step_seconds=step_seconds,
        model=model_record(model, net2_model if n_steps else None),
        tta=options.tta,
        net2_device=net2_device,
    )


def write_segmentation(
    out_dir: str | Path,
    stem: str,
    image: np.ndarray,
    result: Segmentation,
    pixel_size_nm: float | None = None,
    extra: dict | None = None,
    **report_options,
) -> dict[str, Path]:
    """Write the boundary and label TIFFs plus the measurement report, atomically. Returns the paths.

    ``report_options`` (``min_area``, ``exclude``, ``svg``...) go to
    :func:`napari_grainseg.measure.report.write_report`.
    """
    from napari_grainseg.measure.report import write_report, write_tiff

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "boundaries": write_tiff(out_dir / f"{stem}_boundaries.tif", result.boundaries.astype(np.uint8), pixel_size_nm),
        "grains": write_tiff(out_dir / f"{stem}_grains.tif", result.labels.astype(np.uint32), pixel_size_nm),
    }
    paths.update(
        write_report(
            out_dir,
            stem,
            image=image,
            labels=result.labels,
            boundaries=result.boundaries,
            pixel_size_nm=pixel_size_nm,
            extra={**result.info(), **(extra or {})},
            **report_options,
        )
    )
    return paths
