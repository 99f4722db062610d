"""Net1 inference on micrographs of any size: grain-size rescaling, tiling, blended seams.

Pipeline of :func:`predict_boundaries`:

1. **Scale.** Net1 was trained on grains of ``TRAINED_GRAIN_RANGE_PX`` mean
   diameter. With a grain-size hint outside that range the image is resampled
   just inside that range. Without a hint, the grain size measured on a first
   native-scale pass decides; when it is out of range or undefined, Net1 also
   runs at 1/2 and 1/4 scale and keeps the scale where its boundaries are most
   confident (:func:`choose_scale`). When it is in range, a pass on an enlarged
   central crop checks that Net1 did not merge grains too fine to resolve; if it
   did, the image is enlarged until the measured size stops falling
   (:func:`finer_scale`).
2. **Features.** Edge thresholds and the intensity scaling are computed once on
   the whole (rescaled) image, so tiles agree.
3. **Tiles.** Images up to ``tile_size`` px on a side run in one pass; larger
   ones in overlapping tiles whose predictions are blended with weights that
   are zero near each cut (where zero padding distorts the network) and ramp
   up smoothly across the overlap, so there are no seams
   (:class:`~napari_grainseg.segmentation.tiling.TileGrid`).
4. The probability map is resampled back to the input's size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.validate import validate_image
from napari_grainseg.models.features import net1_features
from napari_grainseg.segmentation.edges import EdgeParams, resolve_edge_params
from napari_grainseg.segmentation.tiling import TileGrid, pad_to_multiple

#: Mean grain diameters (px) the shipped Net1 was trained on.
TRAINED_GRAIN_RANGE_PX: tuple[float, float] = (10.0, 64.0)
#: Mean grain diameters (px) that too small / too large grains are rescaled to.
RESCALED_GRAIN_SIZES_PX: tuple[float, float] = (14.0, 40.0)
#: Coarser scales tried when the native grain size is out of range (see :func:`choose_scale`).
PROBE_SCALES: tuple[float, ...] = (0.5, 0.25)
#: Finer scales tried, in order, when enlarging shows the native pass merged grains (:func:`finer_scale`).
FINER_SCALES: tuple[float, ...] = (1.5, 2.0, 3.0)
#: Side (input px) of the central crop the finer scales are probed on (a thin image's crop keeps this area).
FINER_PROBE_CROP = 128
#: Most pixels the finer search may enlarge an image to (larger images keep their native scale).
MAX_ENLARGED_PIXELS = 4096 * 4096
#: A larger enlargement is chosen over a smaller one only when its size is at least this much smaller.
FINER_MARGIN = 0.98
#: The native pass merged grains when the estimate at ``FINER_SCALES[0]`` is below this fraction of it.
MERGED_RATIO = 0.45
#: The first enlargement is evidence of merged grains only if its boundary confidence on the crop is at
#: most this much below the native crop's: fine grains enlarged give lines as sure as before, while
#: noise and texture enlarged give hesitant ones (docs/generalisation.md, sessions 20-21).
FINER_CONFIDENCE_DROP = 0.05
#: Enlarging further stops once the estimate falls by less than this factor (it is self-consistent).
CONSISTENT_RATIO = 0.75
#: A coarser probe scale must be this much more confident to be chosen.
PROBE_MARGIN = 0.01
#: Probe scales are used only while the resampled image is at least this many px on a side.
MIN_PROBE_SIZE = 32
#: Fewer closed grains than this (edge grains counted 1/2) give no size estimate.
MIN_GRAINS_FOR_ESTIMATE = 5
#: Images larger than this (px per side) are processed in tiles.
DEFAULT_TILE_SIZE = 1024
#: Overlap between neighbouring tiles (px); the blending margin is derived from it.
DEFAULT_OVERLAP = 128


@dataclass(frozen=True)
class BoundaryPrediction:
    """Net1's boundary probability for one micrograph.

    Attributes
    ----------
    probability : float32 (H, W) in [0, 1], at the input's size.
    scale : factor the image was resampled by before Net1 (1.0 = native).
    grain_size_px : the grain size that decided ``scale`` (hint or estimate),
        in input pixels; None when not needed.
    grain_size_source : ``"hint"``, ``"estimate"`` or ``"none"``.
    device : description of the device that ran the network.
    seconds : wall time of the prediction.
    n_tiles : number of tiles of the final pass.
    """

    probability: np.ndarray
    scale: float
    grain_size_px: float | None
    grain_size_source: str
    device: str
    seconds: float
    n_tiles: int


def scale_for_grain_size(grain_size_px: float) -> float:
    """Resampling factor that brings a mean grain diameter into the trained range (1.0 if inside).

    Grains are moved just inside the range (to ``RESCALED_GRAIN_SIZES_PX``),
    not to its middle: every resampling costs boundary localisation, so the
    smallest change that suffices is the best.
    """
    lo, hi = TRAINED_GRAIN_RANGE_PX
    if not (math.isfinite(grain_size_px) and grain_size_px > 0):
        raise InputError(f"grain size must be a positive number of pixels, got {grain_size_px}")
    if lo <= grain_size_px <= hi:
        return 1.0
    small_target, large_target = RESCALED_GRAIN_SIZES_PX
    return (small_target if grain_size_px < lo else large_target) / grain_size_px


def check_grain_size_fits(grain_size_px: float, shape: tuple[int, ...]) -> None:
    """Refuse a grain-size hint larger than the image itself (a wrong unit or pixel size).

    Such a hint would shrink the image to less than one grain across: a grain count of one or
    two, or, for absurd values, a smoothing wider than the image that runs for minutes.

    Examples
    --------
    >>> check_grain_size_fits(40.0, (256, 256))
    >>> check_grain_size_fits(1e4, (256, 256))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_grainseg.errors.InputError: a mean grain diameter of 1e+04 px does not fit in the 256x256 px image: ...
    """
    if grain_size_px > max(shape[:2]):
        raise InputError(
            f"a mean grain diameter of {grain_size_px:.3g} px does not fit in the {shape[0]}x{shape[1]} px "
            "image: check the grain size hint and its unit (and the pixel size)"
        )


def resample(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize a 2-D float image by ``scale`` (area averaging when shrinking, cubic when enlarging)."""
    if scale == 1.0:
        return image
    h, w = image.shape
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image.astype(np.float32), size, interpolation=interp)


#: The eight symmetries of the square (90° turns ``k``, then a left-right flip) used by test-time
#: augmentation, in an order whose first 1, 2, 4 and 8 each form a group (identity; + half turn;
#: + both flips; + the quarter turns and transposes): an average over such a prefix is unchanged by
#: every symmetry in it, which training's teachers use (``training.net1.orientation_average``).
DIHEDRAL: tuple[tuple[int, bool], ...] = (
    (0, False), (2, False), (0, True), (2, True), (1, False), (3, False), (1, True), (3, True),
)  # fmt: skip


def run_net1(model, features: np.ndarray, device, *, tta: bool = False) -> np.ndarray:
    """Net1 probability for a (C, H, W) feature array of any H, W (padded internally).

    ``tta=True`` averages the probabilities of the eight turned and flipped copies
    (:data:`DIHEDRAL`), each mapped back: eight times the work for a map that does
    not depend on the image's orientation. The edge features are computed once; they
    are themselves orientation-free (gradient magnitude, Laplacian, Canny lines).
    """
    padded, (h, w) = pad_to_multiple(features, model.config.multiple)
    if not tta:
        return _probability(model, padded, device)[:h, :w]
    total = np.zeros(padded.shape[1:], np.float32)
    for k, flip in DIHEDRAL:
        xt = np.rot90(padded, k, axes=(1, 2))
        xt = xt[:, :, ::-1] if flip else xt
        p = _probability(model, xt, device)
        p = p[:, ::-1] if flip else p
        total += np.rot90(p, -k)
    return (total / len(DIHEDRAL))[:h, :w]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow (``1 / (1 + exp(-x))`` warns for large negative x)."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)


def _probability(model, padded: np.ndarray, device) -> np.ndarray:
    """Net1's probability (H, W) of one padded (C, H, W) feature array, by either kind of Net1:
    one through OpenCV (:mod:`~napari_grainseg.models.net1_opencv`: numpy in and out, no torch)
    or a PyTorch model on ``device``."""
    if hasattr(model, "logits"):
        return _sigmoid(model.logits(padded[None])[0, 0])
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(padded))[None].to(device)
        return torch.sigmoid(model(x))[0, 0].float().cpu().numpy()


def predict_probability(
    image: np.ndarray,
    model,
    device,
    *,
    edge_params: EdgeParams | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    progress: Callable[[int, int], None] | None = None,
    tta: bool = False,
) -> tuple[np.ndarray, int]:
    """Net1 probability of ``image`` at its own scale, tiled when larger than ``tile_size``.

    Returns the probability map and the number of tiles. ``progress(done, total)``
    is called after every tile (raise from it to cancel). ``tta``: see :func:`run_net1`.
    """
    grid = TileGrid(image.shape, tile_size, overlap)
    params = resolve_edge_params(image, edge_params or EdgeParams())
    prob = grid.blend(lambda window: run_net1(model, net1_features(image[window], params), device, tta=tta), progress)
    return prob, len(grid)


def estimate_grain_size(probability: np.ndarray, threshold: float = 0.5) -> float | None:
    """Mean grain diameter (px) of the grains in a boundary probability map.

    Returns None when fewer than ``MIN_GRAINS_FOR_ESTIMATE`` grains are closed:
    too few to estimate a size from (the image is then processed at native scale).

    Uses the equivalent-circle diameter of the grain count over the image area
    (``sqrt(4 A / (pi N))``), which counts edge grains by half as in Jeffries'
    planimetric rule so that large grains in small images are not underestimated.
    """
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    try:
        labels = boundaries_to_labels(probability, threshold=threshold)
    except InputError:
        return None
    diameter, n_equiv = equivalent_grain_diameter(labels)
    return None if n_equiv < MIN_GRAINS_FOR_ESTIMATE else diameter


def equivalent_grain_diameter(labels: np.ndarray) -> tuple[float, float]:
    """``(sqrt(4 A / (pi N)), N)`` of a label image, edge grains counted by half in ``N``.

    The grain-size definition of :func:`estimate_grain_size`, for any label image (e.g. a truth).

    Examples
    --------
    >>> labels = np.zeros((10, 10), np.uint32); labels[:, :5], labels[:, 5:] = 1, 2
    >>> d, n = equivalent_grain_diameter(labels)          # two edge grains: N = 1
    >>> round(d, 2), n
    (11.28, 1.0)
    """
    from napari_grainseg.segmentation.grains import border_grains

    n_total = int(labels.max())
    n_border = int(np.count_nonzero(border_grains(labels))) if n_total else 0
    n_equiv = (n_total - n_border) + 0.5 * n_border
    return float(math.sqrt(4 * labels.size / (math.pi * max(n_equiv, 0.5)))), float(n_equiv)


def boundary_confidence(probability: np.ndarray, threshold: float = 0.5) -> float:
    """Mean probability along the skeleton of the boundaries: high when Net1 draws sharp, sure lines.

    At a scale where grains fall in the trained size range Net1's lines are
    crisp; too fine a scale (texture, noise) or too coarse a one (grains a few
    pixels wide) gives faint, hesitant lines.
    """
    from skimage.morphology import skeletonize

    skeleton = skeletonize(probability > threshold)
    return float(probability[skeleton].mean()) if skeleton.any() else 0.0


def choose_scale(image: np.ndarray, model, device, **run) -> tuple[float, float | None, np.ndarray | None, int]:
    """Pick the resampling factor for an image of unknown grain size.

    Net1 first runs at native scale. When the mean grain diameter measured on
    its result lies in the trained range, the result is kept (one pass, no
    resampling loss) unless :func:`finer_scale` finds that Net1 merged grains
    too fine to resolve there. Otherwise (no closed grains, or sizes out of
    range) Net1 also runs at the coarser ``PROBE_SCALES`` (while the image stays
    at least ``MIN_PROBE_SIZE`` px on a side) and the scale whose boundaries are
    most confident (:func:`boundary_confidence`; a coarser scale must win by
    ``PROBE_MARGIN``) is kept; the grain size measured there decides whether a
    further resampling is needed.

    Returns
    -------
    scale, grain size estimate (input px, or None), probability at ``scale``
    (None when a new pass is needed), number of tiles of that probability.
    """
    lo, hi = TRAINED_GRAIN_RANGE_PX
    prob, n_tiles = predict_probability(image, model, device, **run)
    estimate = estimate_grain_size(prob)
    if estimate is not None and lo <= estimate <= hi:
        finer = finer_scale(image, prob, estimate, model, device, **run)
        if finer is not None:
            return finer[0], finer[1], None, 0
        return 1.0, estimate, prob, n_tiles
    best = (1.0, boundary_confidence(prob), prob, n_tiles)
    for s in PROBE_SCALES:
        if min(image.shape) * s < MIN_PROBE_SIZE:
            break
        prob, n_tiles = predict_probability(resample(image, s), model, device, **run)
        confidence = boundary_confidence(prob)
        if confidence > best[1] + PROBE_MARGIN:
            best = (s, confidence, prob, n_tiles)
    s, _, prob, n_tiles = best
    estimate = estimate_grain_size(prob)
    if estimate is None:
        return s, None, prob, n_tiles
    if lo <= estimate <= hi:
        return s, estimate / s, prob, n_tiles
    return scale_for_grain_size(estimate / s), estimate / s, None, 0


def finer_scale(
    image: np.ndarray, native_probability: np.ndarray, native_size: float, model, device, **run
) -> tuple[float, float] | None:
    """The enlargement at which Net1's grain size is self-consistent, when the native pass merged grains.

    A network that resolves the grains measures about the same size on an
    enlarged image; one that merged grains too fine for it measures a much
    smaller size once they are enlarged (6 px grains: about a third). So Net1
    runs on a central crop of about ``FINER_PROBE_CROP``² px (as wide as needed
    to keep that area in a thin image) enlarged by ``FINER_SCALES[0]``; when the
    size measured there (in input px) is below ``MERGED_RATIO`` of the native
    one, and its boundaries are nearly as sure as the native ones there (boundary
    confidence at most ``FINER_CONFIDENCE_DROP`` lower: an enlarged noisy or textured
    image also measures small "grains", but with hesitant lines; with test-time
    augmentation the native confidence comes from one more single pass on the crop,
    as the enlarged one does), the crop is
    enlarged further along ``FINER_SCALES`` until the size
    falls by less than ``CONSISTENT_RATIO``, and the scale that resolved most
    grains is returned (a larger one only if its size is smaller by more than
    ``FINER_MARGIN``: enlarging costs time and localisation). The native size is
    measured on the same crop, or is ``native_size`` (the whole image's) when
    the crop holds too few closed grains. Scales that would enlarge the image
    beyond ``MAX_ENLARGED_PIXELS`` are not tried. The check costs one pass on
    the enlarged crop (without test-time augmentation: it only measures a size).

    Returns
    -------
    ``(scale, grain size in input px)``, or None when the native pass is consistent
    (or the crop has too few grains to tell, or no finer scale fits).
    """
    h, w = image.shape
    scales = [s for s in FINER_SCALES if h * w * s * s <= MAX_ENLARGED_PIXELS]
    if not scales:
        return None
    ch, cw = probe_crop_shape(h, w)
    window = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
    native = estimate_grain_size(native_probability[window]) or native_size
    crop = image[window]
    native_was_averaged = bool(run.get("tta", False))
    run = dict(run, tta=False)

    def pass_at(scale: float) -> tuple[float | None, np.ndarray]:
        """Grain size (input px) measured on the crop enlarged by ``scale``, and that pass's map."""
        prob, _ = predict_probability(resample(crop, scale), model, device, **run)
        estimate = estimate_grain_size(prob)
        return (None if estimate is None else estimate / scale), prob

    first, enlarged = pass_at(scales[0])
    if first is None or first >= MERGED_RATIO * native:
        return None
    # like with like: one pass each (a map averaged over 8 orientations draws softer lines)
    native_crop = (
        predict_probability(crop, model, device, **run)[0] if native_was_averaged else native_probability[window]
    )
    if boundary_confidence(enlarged) < boundary_confidence(native_crop) - FINER_CONFIDENCE_DROP:
        return None  # the smaller size comes from hesitant lines: texture or noise, not resolved grains
    best = previous = (scales[0], first)
    for scale in scales[1:]:
        size = pass_at(scale)[0]
        if size is None:
            break
        if size < FINER_MARGIN * best[1]:
            best = (scale, size)
        if size >= CONSISTENT_RATIO * previous[1]:
            break
        previous = (scale, size)
    return best


def probe_crop_shape(height: int, width: int, side: int = FINER_PROBE_CROP) -> tuple[int, int]:
    """Shape of a central crop of about ``side``² px: square when the image allows, else as long as needed.

    Examples
    --------
    >>> probe_crop_shape(1024, 1024), probe_crop_shape(40, 2000), probe_crop_shape(2000, 40), probe_crop_shape(60, 90)
    ((128, 128), (40, 410), (410, 40), (60, 90))
    """
    area = side * side
    if height < side:
        return height, min(width, -(-area // height))
    if width < side:
        return min(height, -(-area // width)), width
    return side, side


def predict_boundaries(
    image: np.ndarray,
    model=None,
    *,
    device="auto",
    grain_size_px: float | None = None,
    edge_params: EdgeParams | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    progress: Callable[[int, int], None] | None = None,
    tta: bool = False,
) -> BoundaryPrediction:
    """Boundary probability of a micrograph of any size with Net1.

    Parameters
    ----------
    image
        2-D micrograph.
    model
        A loaded Net1 (PyTorch, or :class:`~napari_grainseg.models.net1_opencv.OpenCVNet1`);
        default: the shipped weights on ``device`` from the model cache (through OpenCV on the CPU).
    device
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
    grain_size_px
        Expected mean grain diameter in input pixels; None to estimate it.
    edge_params
        Edge-fusion parameters (thresholds resolved on the whole rescaled image).
    tile_size, overlap
        Tiling of large images.
    progress
        ``progress(done, total)`` after each tile.
    tta
        Average the eight turned and flipped copies (:func:`run_net1`); 8× the network's time.

    Examples
    --------
    >>> from napari_grainseg.io.samples import interconnect_tem     # doctest: +SKIP
    >>> pred = predict_boundaries(interconnect_tem().data)       # doctest: +SKIP
    >>> pred.probability.shape                                   # doctest: +SKIP
    (154, 1166)
    """
    from napari_grainseg.models.device import describe_device, resolve_device

    t0 = time.perf_counter()
    image = validate_image(image)
    dev = resolve_device(device) if isinstance(device, str) else device
    if model is None:
        from napari_grainseg.segmentation.options import cached_net1

        model = cached_net1(None, dev)
    run = dict(edge_params=edge_params, tile_size=tile_size, overlap=overlap, progress=progress, tta=tta)
    if grain_size_px is not None:
        check_grain_size_fits(grain_size_px, image.shape)
        scale, estimate, source, prob, n_tiles = scale_for_grain_size(grain_size_px), grain_size_px, "hint", None, 0
    else:
        scale, estimate, prob, n_tiles = choose_scale(image, model, dev, **run)
        source = "estimate" if estimate is not None else "none"
    if prob is None:
        prob, n_tiles = predict_probability(resample(image, scale), model, dev, **run)
    if prob.shape != image.shape:
        prob = cv2.resize(prob, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return BoundaryPrediction(
        probability=np.ascontiguousarray(np.clip(prob, 0.0, 1.0, out=prob)),
        scale=float(scale),
        grain_size_px=None if estimate is None else float(estimate),
        grain_size_source=source,
        device=describe_device(dev, model),
        seconds=time.perf_counter() - t0,
        n_tiles=n_tiles,
    )
