"""The whole segmentation of one micrograph: Net1 → Net2 refinement → closed grains → files.

This is the one place that chains the stages, used by ``grainseg segment``,
``grainseg demo`` and (later) batch processing, so every entry point produces
the same result and the same files.

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

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.grains import DEFAULT_MIN_GRAIN_AREA, check_grain_builder, probability_to_labels
from napari_grainseg.segmentation.inference import BoundaryPrediction, predict_boundaries
from napari_grainseg.segmentation.refine import DEFAULT_MAX_STEPS


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment`: the probability, the 1-px boundaries and the grain labels.

    ``refined`` is Net2's final boundary probability (None when Net2 did not
    run); ``refine_steps`` and ``refine_seconds`` count its steps and time;
    ``grains`` names how the labels were built from the final map ("threshold"
    or "watershed", :func:`napari_grainseg.segmentation.grains.probability_to_labels`).
    """

    prediction: BoundaryPrediction
    boundaries: np.ndarray
    labels: np.ndarray
    refined: np.ndarray | None = None
    refine_steps: int = 0
    refine_seconds: float = 0.0
    refine_converged: bool = False
    grains: str = "threshold"
    model: dict | None = None

    def info(self) -> dict:
        """JSON-ready facts about how the result was made (goes into the summary JSON)."""
        p = self.prediction
        info = {"device": p.device, "method": "net1+net2" if self.refine_steps else "net1",
                "net2_steps": self.refine_steps, "net1_scale": p.scale,
                "grain_size_hint_px" if p.grain_size_source == "hint" else "grain_size_estimate_px":
                    p.grain_size_px,
                "seconds": round(p.seconds + self.refine_seconds, 3), "net1_seconds": round(p.seconds, 3),
                "tiles": p.n_tiles, "grains": self.grains}
        if self.refine_steps:
            info |= {"net2_seconds": round(self.refine_seconds, 3), "net2_converged": self.refine_converged}
        return info | (self.model or {})


def net2_step_budget(net2_steps: int | str) -> int:
    """Largest number of Net2 steps for a ``net2_steps`` setting: "auto" → 30, N → N, 0 → none."""
    if isinstance(net2_steps, str):
        text = net2_steps.strip().lower()
        if text == "auto":
            return DEFAULT_MAX_STEPS
        try:
            net2_steps = int(text)
        except ValueError:
            raise InputError(f"Net2 steps must be 'auto' or a whole number >= 0, got {net2_steps!r}") from None
    if isinstance(net2_steps, bool) or int(net2_steps) != net2_steps or net2_steps < 0:
        raise InputError(f"Net2 steps must be 'auto' or a whole number >= 0, got {net2_steps!r}")
    return int(net2_steps)


def net2_available() -> bool:
    """Whether Net2 weights are shipped with the package (``"auto"`` then uses Net2)."""
    from napari_grainseg.models.weights import shipped_weights_dir

    return (shipped_weights_dir() / "net2.pt").is_file()


def segment(image: np.ndarray, *, model=None, device="auto", grain_size_px: float | None = None,
            threshold: float = 0.5, min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
            progress: Callable[[int, int], None] | None = None, net2_steps: int | str = "auto",
            net2_model=None, grains: str = "threshold", watershed_h: float = 0.1) -> Segmentation:
    """Segment a micrograph into grains with Net1, refined by Net2.

    Parameters
    ----------
    image
        2-D micrograph.
    model, device, grain_size_px, progress
        See :func:`napari_grainseg.segmentation.inference.predict_boundaries`.
    threshold
        Boundary probability threshold (``grains="threshold"``).
    min_grain_area
        Smallest grain kept (px); smaller ones are merged into neighbours.
    net2_steps
        ``"auto"``: refine with Net2 until converged (at most 30 steps) — Net1
        only when no Net2 weights are shipped and none are given; ``N``: at most
        N steps; ``0``: Net1 only.
    net2_model
        A loaded Net2; default: the shipped weights.
    grains
        How closed grains are built from the final boundary probability:
        ``"threshold"`` (pixels at or above ``threshold``) or ``"watershed"``
        (every basin of the map becomes a grain, so faint boundaries a
        threshold leaves open are still closed along their ridge; on the
        synthetic test sets it merges fewer grains after Net1 alone, see
        docs/benchmarks.md). It works on the whole image at once: a 4096² field
        peaks at 2.7 GB instead of 0.94 GB (``benchmarks/bench_memory.py --grains``),
        so beyond about 4096² prefer the threshold.
    watershed_h
        Depth of the basins that become grains with ``grains="watershed"`` (an adapted model
        directory recommends its own, tuned on its corrections).
    """
    from napari_grainseg.models.device import select_device

    check_grain_builder(grains)  # before Net1 runs
    budget = net2_step_budget(net2_steps)
    if isinstance(net2_steps, str) and net2_steps.strip().lower() == "auto" and net2_model is None \
            and not net2_available():
        budget = 0
    dev = select_device(device) if isinstance(device, str) else device
    prediction = predict_boundaries(image, model, device=dev, grain_size_px=grain_size_px, progress=progress)
    boundary_map, refined, n_steps, seconds, converged = prediction.probability, None, 0, 0.0, False
    if budget:
        from napari_grainseg.segmentation.refine import refine

        if net2_model is None:
            from napari_grainseg.models.weights import load_net2

            net2_model = load_net2(device=dev)
        for step in refine(image, prediction.probability, model=net2_model, device=dev, max_steps=budget,
                           scale=prediction.scale):
            n_steps, seconds, converged = step.step, seconds + step.seconds, step.converged
            refined = step.state
        boundary_map = refined
    labels = probability_to_labels(boundary_map, grains, threshold=threshold, min_grain_area=min_grain_area,
                                   watershed_h=watershed_h)
    from napari_grainseg.models.model_dir import model_record

    return Segmentation(prediction=prediction, boundaries=labels == 0, labels=labels, refined=refined,
                        refine_steps=n_steps, refine_seconds=seconds, refine_converged=converged, grains=grains,
                        model=model_record(model, net2_model if n_steps else None))


def write_segmentation(out_dir: str | Path, stem: str, image: np.ndarray, result: Segmentation,
                       pixel_size_nm: float | None = None, extra: dict | None = None,
                       **report_options) -> dict[str, Path]:
    """Write the boundary and label TIFFs plus the measurement report, atomically. Returns the paths.

    ``report_options`` (``min_area``, ``exclude``, ``svg``...) go to
    :func:`napari_grainseg.measure.report.write_report`.
    """
    from napari_grainseg.measure.report import write_report, write_tiff

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "boundaries": write_tiff(out_dir / f"{stem}_boundaries.tif", result.boundaries.astype(np.uint8)),
        "grains": write_tiff(out_dir / f"{stem}_grains.tif", result.labels.astype(np.uint32)),
    }
    paths.update(write_report(out_dir, stem, image=image, labels=result.labels, boundaries=result.boundaries,
                              pixel_size_nm=pixel_size_nm, extra={**result.info(), **(extra or {})},
                              **report_options))
    return paths
