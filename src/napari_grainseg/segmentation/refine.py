"""Net2 refinement: step Net1's boundary map towards a clean one, one visible step at a time.

The schedule (a deterministic cold-diffusion / SegRefiner-style sampler):

1. Heavy image features — Net1's probability ``c``, the edge maps and the
   intensity — are computed once (:func:`net2_condition`).
2. **Scheduled steps** t = T ... 1: Net2 predicts the clean map
   ``x0 = Net2(s_t, features, t / T)`` and the next state is the degradation
   of that prediction at level t - 1, ``s_{t-1} = a c + (1 - a) x0`` with
   ``a = (t - 1) / T`` — the expected value of the training degradation that
   mixes the truth with Net1's map. After step T the state is Net2's own
   prediction.
3. **Fixed-point steps** at t = 0: ``s <- Net2(s, features, 0)`` until the
   mean absolute change is below ``tol`` (0.3 % of full scale, the paper's
   criterion) or ``max_steps`` is reached.

The image-blind ablation (the paper's scheme) has T = 0: fixed-point steps only.

Every step yields a :class:`RefineStep` with the state at the input image's
size, so a viewer can show it; closing the generator cancels the refinement.

Examples
--------
>>> from napari_grainseg.segmentation.inference import predict_boundaries            # doctest: +SKIP
>>> pred = predict_boundaries(image)                                     # doctest: +SKIP
>>> for step in refine(image, pred.probability, scale=pred.scale):      # doctest: +SKIP
...     print(step.step, step.phase, f"{step.change:.4f}")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.validate import validate_image
from napari_grainseg.segmentation.edges import EdgeParams, resolve_edge_params
from napari_grainseg.segmentation.tiling import TileGrid, Window, pad_to_multiple, row_slices

#: Default convergence threshold: mean absolute change per step, as a fraction of full scale.
DEFAULT_TOL = 0.003
#: Default largest number of steps.
DEFAULT_MAX_STEPS = 30
#: Images larger than this (px per side, at Net2's scale) are refined in tiles.
REFINE_TILE_SIZE = 1024
#: Overlap of neighbouring tiles (px); larger than Net2's receptive field (about 40 px).
REFINE_OVERLAP = 128


@dataclass(frozen=True)
class RefineStep:
    """One refinement step.

    Attributes
    ----------
    step : 1-based step number.
    state : float32 (H, W) boundary probability in [0, 1] at the input image's size.
    change : mean |state - previous state| (fraction of full scale 1.0); the
        previous state of step 1 is Net1's probability.
    phase : ``"scheduled"`` (t = T ... 1) or ``"fixed-point"`` (t = 0).
    converged : True on the fixed-point step whose change fell below the threshold.
    seconds : wall time of this step (the feature computation counts to step 1).
    """

    step: int
    state: np.ndarray
    change: float
    phase: str
    converged: bool
    seconds: float


def net2_condition(image: np.ndarray, probability: np.ndarray, edge_params: EdgeParams | None = None) -> np.ndarray:
    """Net2's cached image features at the image's own scale: (5, H, W) float32.

    Channels (:data:`~napari_grainseg.models.net2.NET2_CONDITION_CHANNELS`):
    Net1's probability, Sobel, LoG, Canny and the contrast-stretched intensity.
    Training computes them the same way.
    """
    from napari_grainseg.models.features import net1_features

    params = resolve_edge_params(image, edge_params or EdgeParams())
    features = net1_features(image, params)
    return np.concatenate([np.asarray(probability, np.float32)[None], features]).astype(np.float32)


def _mean_abs_difference(a: np.ndarray, b: np.ndarray, rows: int = 512) -> float:
    """mean(|a - b|) over bands of ``rows`` rows, without an image-sized temporary."""
    total = 0.0
    for band in row_slices(a.shape, rows=rows):
        total += float(np.abs(a[band] - b[band]).sum(dtype=np.float64))
    return total / a.size


def _key(window: Window) -> tuple[int, int]:
    """A tile's window as a dictionary key (its top-left corner)."""
    return window[0].start, window[1].start


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if array.shape == tuple(shape):
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _check_inputs(
    image: np.ndarray, probability: np.ndarray, max_steps: int, tol: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    image = validate_image(image)
    probability = np.asarray(probability)
    if probability.shape != image.shape:
        raise InputError(f"probability has shape {probability.shape} but the image has shape {image.shape}")
    if not np.issubdtype(probability.dtype, np.floating) or not np.all(np.isfinite(probability)):
        raise InputError("probability must be a finite float map in [0, 1]")
    if int(max_steps) != max_steps or max_steps < 1:
        raise InputError(f"max_steps must be a positive integer, got {max_steps}")
    if not 0 < tol < 1:
        raise InputError(f"tol must be between 0 and 1, got {tol}")
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a positive number, got {scale}")
    return image, np.clip(probability, 0.0, 1.0).astype(np.float32)


def schedule_level(step: int, total: int) -> int:
    """Degradation level t of refinement step ``step`` (1, 2, ...): T, T − 1, ..., 1, then 0.

    Steps after the T scheduled ones are fixed-point steps at t = 0.

    Examples
    --------
    >>> [schedule_level(step, 4) for step in range(1, 7)]
    [4, 3, 2, 1, 0, 0]
    """
    return max(total - step + 1, 0)


def schedule_state(prediction: np.ndarray, coarse: np.ndarray, t: int, total: int) -> np.ndarray:
    """The sampler's next state from Net2's clean-map ``prediction`` at level ``t``.

    At a scheduled step (t > 0) it is a·``coarse`` + (1 − a)·``prediction`` with
    a = (t − 1) / T, the expected state of the training degradation at level
    t − 1; at t = 0 it is the prediction. Returns a float32 array in [0, 1]
    (``prediction`` itself is changed in place when it is float32).
    """
    state = np.asarray(prediction, np.float32)
    if t > 0:
        a = (t - 1) / total
        state *= 1 - a
        state += a * coarse
    return np.clip(state, 0.0, 1.0, out=state)


class _StepRunner:
    """Net2 on one image at its working scale: padded cached features, tiled when large."""

    def __init__(
        self,
        model,
        image: np.ndarray,
        coarse: np.ndarray,
        device,
        edge_params: EdgeParams | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        """Compute and pad the cached condition of every tile (never the whole image at once).

        ``image`` and ``coarse`` (Net1's map) are at the working scale. Edge
        thresholds and intensity limits are resolved on the whole image first, so
        tiles agree. With several tiles the conditions are kept in float16 (edge
        maps are 0/1; probabilities and intensities lose < 1e-3), half the memory.
        ``progress(done, total)`` is called after every tile, here and in each step.
        """
        self.model, self.device, self.progress = model, device, progress
        self.blind = model.config.conditioning == "blind"
        self.shape = image.shape
        self.grid = TileGrid(image.shape, REFINE_TILE_SIZE, REFINE_OVERLAP)
        self.tiles = self.grid.windows()
        params = resolve_edge_params(image, edge_params or EdgeParams())
        store = np.float32 if len(self.tiles) == 1 else np.float16
        self.conditions = {}  # tile corner -> its padded condition tensor
        for done, window in enumerate(self.tiles, 1):
            tile = net2_condition(image[window], coarse[window], params)
            padded, _ = pad_to_multiple(tile, model.config.multiple)
            self.conditions[_key(window)] = self._tensor(padded.astype(store))
            if progress:
                progress(done, len(self.tiles))

    def _tensor(self, array: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))[None].to(self.device)

    def __call__(self, state: np.ndarray, t_frac: float) -> np.ndarray:
        """Net2's clean-map prediction (probability) for a state at the working scale."""
        return self.grid.blend(
            lambda window: self._run(state[window], self.conditions[_key(window)], t_frac), self.progress
        )

    def _run(self, state: np.ndarray, cond, t_frac: float) -> np.ndarray:
        import torch

        padded, (h, w) = pad_to_multiple(state[None], self.model.config.multiple)
        with torch.inference_mode():
            s = self._tensor(padded)
            logits = self.model(
                s, None if self.blind else cond.float(), torch.tensor([t_frac], dtype=torch.float32, device=self.device)
            )
            return torch.sigmoid(logits)[0, 0, :h, :w].float().cpu().numpy()


def refine(
    image: np.ndarray,
    probability: np.ndarray,
    *,
    model=None,
    device="auto",
    max_steps: int = DEFAULT_MAX_STEPS,
    tol: float = DEFAULT_TOL,
    scale: float = 1.0,
    edge_params: EdgeParams | None = None,
    fixed_mask: np.ndarray | None = None,
    fixed_values: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[RefineStep]:
    """Refine Net1's boundary probability with Net2, yielding after every step.

    Parameters
    ----------
    image
        2-D micrograph.
    probability
        Net1's boundary probability, same shape as ``image``.
    model
        A loaded Net2; default: the shipped weights on ``device``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
    max_steps
        Stop after this many steps even if not converged.
    tol
        Convergence threshold on the mean absolute change of a fixed-point step.
    scale
        The resampling factor Net1 used (``BoundaryPrediction.scale``); Net2 runs
        at the same scale and every yielded state is resized back to the input.
    edge_params
        Edge-fusion parameters of the cached features (as for Net1).
    fixed_mask, fixed_values
        Optional, image-sized: pixels kept fixed (hand corrections) and their
        values in [0, 1]. At every step the state is set to ``fixed_values``
        where ``fixed_mask``, before and after the network step, at the working
        scale (so a step never undoes a correction).
    progress
        Called as ``progress(done, total)`` after every tile, first while the image's
        features are cached (before step 1), then in every step. Raise from it to
        cancel: the exception leaves the generator and the step is not finished, so a
        step on a large image stops within one tile (about 0.4 s per 1024² tile on
        2 CPU cores) instead of at its end.

    Yields
    ------
    RefineStep
        After every step; the generator ends after the converged step or after
        ``max_steps``. Deterministic. ``close()`` cancels safely.
    """
    from napari_grainseg.models.device import release_memory, select_device
    from napari_grainseg.segmentation.inference import resample

    image, probability = _check_inputs(image, probability, max_steps, tol, scale)
    dev = select_device(device) if isinstance(device, str) else device
    if model is None:
        from napari_grainseg.models.weights import load_net2

        model = load_net2(device=dev)
    t_start = time.perf_counter()
    work_image = resample(image, scale)
    coarse = _resize(probability, work_image.shape)
    runner = _StepRunner(model, work_image, coarse, dev, edge_params, progress)
    total = model.config.scheduled_steps
    clamp = None
    if fixed_mask is not None:
        if fixed_values is None or np.shape(fixed_mask) != image.shape or np.shape(fixed_values) != image.shape:
            raise InputError(f"fixed_mask and fixed_values must both have the image's shape {image.shape}")
        if np.any(fixed_mask):
            mask = _resize(np.asarray(fixed_mask, np.float32), work_image.shape) > 0.5
            clamp = (mask, _resize(np.asarray(fixed_values, np.float32), work_image.shape)[mask])
            coarse = coarse.copy()
            coarse[clamp[0]] = clamp[1]
    state, previous = coarse, probability
    try:
        for step in range(1, int(max_steps) + 1):
            t = schedule_level(step, total)
            # runner gives a new array, so schedule_state may change it in place
            state = schedule_state(runner(state, t / total if total else 0.0), coarse, t, total)
            if clamp is not None:
                state[clamp[0]] = clamp[1]
            out = _resize(state, image.shape)  # the same array at scale 1 (never changed afterwards)
            if clamp is not None and out is not state:  # exact at the image's size too
                out[fixed_mask] = np.asarray(fixed_values, np.float32)[fixed_mask]
            change = _mean_abs_difference(out, previous)
            previous = out
            converged = t == 0 and change < tol
            now = time.perf_counter()
            yield RefineStep(
                step=step,
                state=out,
                change=change,
                phase="scheduled" if t > 0 else "fixed-point",
                converged=converged,
                seconds=now - t_start,
            )
            t_start = time.perf_counter()
            if converged:
                return
    finally:
        if getattr(dev, "type", "cpu") != "cpu":
            release_memory(dev)


@dataclass(frozen=True)
class Refinement:
    """:func:`refine` run to its end: the last state and what it took.

    Attributes
    ----------
    state : the refined map (the last step's state); None when no step ran.
    steps : number of steps run.
    converged : whether the last step met the convergence test.
    step_seconds : wall time of each step.
    """

    state: np.ndarray | None
    steps: int
    converged: bool
    step_seconds: tuple[float, ...]


def refine_to_end(image: np.ndarray, probability: np.ndarray, **kwargs) -> Refinement:
    """Run :func:`refine` to its end (``kwargs`` as for it), keeping only the last state.

    The one loop over Net2's steps for callers that want the result, not each step
    (the pipeline, held-out checks of fine-tuning).
    """
    state, steps, converged, seconds = None, 0, False, []
    for step in refine(image, probability, **kwargs):
        state, steps, converged = step.state, step.step, step.converged
        seconds.append(step.seconds)
    return Refinement(state, steps, converged, tuple(seconds))
