"""Edge-detector fusion: Sobel, Laplacian-of-Gaussian and Canny maps as one RGB image.

The method of Saleh et al. (2025): a grayscale micrograph is contrast-stretched
(1st/99th percentile), median filtered (7x7), and three classical edge
detectors run on it with automatic thresholds in the spirit of MATLAB's
``edge`` defaults. The binary maps are stacked as an RGB image
(R = Sobel, G = LoG, B = Canny, each 0/255) which is the input of Net1.

Everything works at the image's own size and aspect ratio (no resizing).
Thresholds are image-wide statistics: :func:`resolve_edge_params` computes
them once for a whole image, so tiles of a large image processed separately
use the same thresholds and agree at their seams.

Examples
--------
>>> import numpy as np
>>> step = np.zeros((32, 64), np.float32); step[:, 32:] = 1
>>> rgb = fuse_edges(step)
>>> rgb.shape, rgb.dtype
((32, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.validate import validate_image
from napari_grainseg.segmentation.tiling import halo_windows, row_blocks

#: Channel order of the fused image.
CHANNELS: tuple[str, str, str] = ("sobel", "log", "canny")


@dataclass(frozen=True)
class EdgeParams:
    """Parameters of edge fusion. ``None`` thresholds are chosen automatically.

    Attributes
    ----------
    stretch_percentiles
        Lower and upper percentiles mapped to 0 and 1 by the contrast stretch.
    stretch_limits
        Explicit intensity limits (low, high) for the stretch; overrides the
        percentiles (set by :func:`resolve_edge_params` for tiled processing).
    median_size
        Side of the square median filter in pixels (odd, >= 1; 1 disables it).
    sobel_threshold
        Gradient-magnitude threshold of the Sobel detector; auto:
        ``sqrt(4 * mean(|grad|^2))`` as MATLAB.
    sobel_thinning
        Keep only local maxima across the edge (MATLAB's default thinning).
    log_sigma
        Standard deviation of the Laplacian-of-Gaussian in pixels.
    log_threshold
        Minimum jump of the LoG response across a zero crossing; auto:
        ``0.75 * mean(|LoG|)`` as MATLAB.
    canny_sigma
        Gaussian smoothing of the Canny detector in pixels (MATLAB: sqrt(2)).
    canny_high
        High hysteresis threshold on the gradient magnitude; auto: the 70th
        percentile of the magnitude (MATLAB's 64-bin histogram rule).
    canny_low_ratio
        Low threshold as a fraction of the high one (MATLAB: 0.4).
    """

    stretch_percentiles: tuple[float, float] = (1.0, 99.0)
    stretch_limits: tuple[float, float] | None = None
    median_size: int = 7
    sobel_threshold: float | None = None
    sobel_thinning: bool = True
    log_sigma: float = 2.0
    log_threshold: float | None = None
    canny_sigma: float = math.sqrt(2.0)
    canny_high: float | None = None
    canny_low_ratio: float = 0.4

    def __post_init__(self) -> None:
        lo, hi = self.stretch_percentiles
        if not 0 <= lo < hi <= 100:
            raise InputError(f"stretch percentiles must satisfy 0 <= low < high <= 100, got {lo}, {hi}")
        if self.stretch_limits is not None and not self.stretch_limits[0] < self.stretch_limits[1]:
            raise InputError(f"stretch limits must be increasing, got {self.stretch_limits}")
        if self.median_size < 1 or self.median_size % 2 == 0:
            raise InputError(f"median filter size must be an odd number >= 1, got {self.median_size}")
        for name in ("log_sigma", "canny_sigma"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name.replace('_', ' ')} must be > 0, got {getattr(self, name)}")
        for name in ("sobel_threshold", "log_threshold", "canny_high"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):  # inf: a blank map
                raise InputError(f"{name.replace('_', ' ')} must be a finite number >= 0, got {value}")
        if not 0 < self.canny_low_ratio <= 1:
            raise InputError(f"canny low ratio must be in (0, 1], got {self.canny_low_ratio}")

    def replace(self, **changes) -> EdgeParams:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EdgeMaps:
    """The three binary edge maps of one image, with the parameters that made them.

    ``params`` has every automatic threshold filled in, so the same maps can be
    reproduced (or a tile of the same image processed consistently).
    """

    sobel: np.ndarray
    log: np.ndarray
    canny: np.ndarray
    preprocessed: np.ndarray
    params: EdgeParams

    def fused(self) -> np.ndarray:
        """The RGB uint8 image R = Sobel, G = LoG, B = Canny with values 0/255."""
        return np.stack([self.sobel, self.log, self.canny], axis=-1).astype(np.uint8) * 255


# --------------------------------------------------------------------------- preprocessing


def stretch_limits(image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Intensity limits for the contrast stretch: the given percentiles of ``image``.

    Falls back to the full range when the percentiles coincide (images that are
    mostly one value), so the stretch never divides by zero. Images larger than
    :data:`TILED_STATS_MIN_PX` use :func:`blockwise_percentiles` (the same
    values, without a full-size copy).
    """
    if image.size > TILED_STATS_MIN_PX:
        lo, hi = blockwise_percentiles(image, percentiles)
    else:
        lo, hi = np.percentile(image, percentiles)
    if not hi > lo:
        lo, hi = float(np.min(image)), float(np.max(image))
    return float(lo), float(hi)


# --------------------------------------------------------------------------- large images

#: Images with more pixels than this get their automatic parameters from
#: block-by-block statistics (:func:`blockwise_percentiles`, :func:`_tiled_filter_statistics`):
#: no temporary of the image's size is made, so memory does not grow with the
#: image beyond the image itself. Smaller images use the direct computation.
TILED_STATS_MIN_PX = 4096 * 4096
#: Side of the tiles of the tiled filter statistics.
STATS_TILE_SIZE = 1024
_GATHER_MAX = 1 << 20


def _order_statistic(image: np.ndarray, k: int) -> float:
    """The ``k``-th smallest value (0-based) of ``image``, exactly, by histogram refinement.

    Each pass histograms the values inside the current range (2**16 bins, in
    float64) and narrows the range to the bin holding rank ``k``; once the range
    holds few values, or a single distinct one, they are gathered and
    partitioned. Memory: one block of the image and the histogram.
    """
    lo, hi, closed = -math.inf, math.inf, True  # the range; is hi itself inside?
    below = 0  # number of values < lo

    def inside(block):  # compared in float64: bin edges need not be float32 values
        a, b = np.float64(lo), np.float64(hi)
        return block[(block >= a) & ((block <= b) if closed else (block < b))]

    for _ in range(64):
        count, vmin, vmax = 0, math.inf, -math.inf
        for b in row_blocks(image):
            v = inside(b)
            if v.size:
                count += v.size
                vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
        if vmin == vmax:
            return vmin
        lo, hi, closed = vmin, vmax, True  # tighten to the values actually inside
        if count <= _GATHER_MAX:
            break
        counts = np.zeros(1 << 16, np.int64)
        for b in row_blocks(image):
            c, edges = np.histogram(inside(b).astype(np.float64), bins=counts.size, range=(lo, hi))
            counts += c
        cum = np.cumsum(counts)
        j = int(np.searchsorted(cum, k - below, side="right"))
        below += int(cum[j - 1]) if j else 0
        lo, hi, closed = float(edges[j]), float(edges[j + 1]), j == counts.size - 1
    values = np.concatenate([inside(b) for b in row_blocks(image)])
    return float(np.partition(values, k - below)[k - below])


def blockwise_percentiles(image: np.ndarray, percentiles) -> tuple[float, ...]:
    """Percentiles of ``image`` (numpy's default linear method) without copying it.

    Exact order statistics from :func:`_order_statistic`, interpolated as
    ``np.percentile`` does; used for images too large for a full-size copy.
    """
    n = image.size
    out = []
    for q in percentiles:
        v = q / 100.0 * (n - 1)
        k = int(math.floor(v))
        t = v - k
        a = _order_statistic(image, k)
        b = _order_statistic(image, min(k + 1, n - 1)) if t > 0 else a
        out.append(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))
    return tuple(out)


def _stats_halo(params: EdgeParams) -> int:
    """Pixels around a tile that every filter of the threshold statistics reads."""
    reach = max(math.ceil(3 * params.log_sigma), math.ceil(4 * params.canny_sigma) + 1, 1)
    return params.median_size // 2 + reach + 2


def _tiled_filter_statistics(image: np.ndarray, params: EdgeParams) -> dict[str, float]:
    """The automatic thresholds of :func:`resolve_edge_params`, computed tile by tile.

    Each tile is preprocessed and filtered with a halo wide enough that its
    inner pixels get the values of the whole-image filters; sums and maxima are
    accumulated in float64. Canny's histogram rule needs the image-wide maximum
    first, so its magnitude is computed in a second pass.
    """
    halo = _stats_halo(params)
    tiles = halo_windows(image.shape, STATS_TILE_SIZE, halo)
    sums = {"sobel": 0.0, "log": 0.0}
    peak = 0.0
    for outer, inner in tiles:
        pre = preprocess(image[outer], params)
        if params.sobel_threshold is None:
            gx, gy = _sobel_gradients(pre)
            sums["sobel"] += float(np.sum((gx * gx + gy * gy)[inner], dtype=np.float64))
        if params.log_threshold is None:
            sums["log"] += float(np.sum(np.abs(_log_response(pre, params.log_sigma)[inner]), dtype=np.float64))
        if params.canny_high is None:
            peak = max(peak, float(_canny_magnitude(pre, params.canny_sigma)[inner].max()))
    changes: dict[str, float] = {}
    if params.sobel_threshold is None:
        changes["sobel_threshold"] = math.sqrt(4.0 * sums["sobel"] / image.size)
    if params.log_threshold is None:
        changes["log_threshold"] = 0.75 * sums["log"] / image.size
    if params.canny_high is None:
        if peak <= 0:
            changes["canny_high"] = 0.0
        else:
            counts = np.zeros(64, np.int64)
            for outer, inner in tiles:
                mag = _canny_magnitude(preprocess(image[outer], params), params.canny_sigma)[inner]
                counts += np.histogram(mag / peak, bins=64, range=(0.0, 1.0))[0]
            index = int(np.argmax(np.cumsum(counts) > 0.7 * image.size)) + 1
            changes["canny_high"] = index / 64 * peak
    return changes


def preprocess(image: np.ndarray, params: EdgeParams = EdgeParams()) -> np.ndarray:
    """Contrast-stretch to [0, 1] and median filter, as the paper does before edge detection.

    The stretched image is quantised to 8 bits before the median filter, as in
    MATLAB (``imadjust`` then ``medfilt2`` on uint8), which also lets OpenCV run
    the 7x7 median in constant time per pixel.

    Returns
    -------
    float32 array in [0, 1] of the same shape.
    """
    lo, hi = params.stretch_limits or stretch_limits(image, params.stretch_percentiles)
    scaled = (np.asarray(image, np.float32) - lo) * (255.0 / (hi - lo))
    u8 = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if params.median_size > 1:
        u8 = cv2.medianBlur(u8, params.median_size)
    return u8.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- responses


def _sobel_gradients(pre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # MATLAB: fspecial('sobel') / 8 with replicated borders.
    gx = cv2.Sobel(pre, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(pre, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    return gx, gy


def _log_response(pre: np.ndarray, sigma: float) -> np.ndarray:
    # MATLAB: fspecial('log', ceil(3 sigma) * 2 + 1, sigma), made zero-sum.
    half = math.ceil(3 * sigma)
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    r2 = (x * x + y * y) / (2 * sigma**2)
    g = np.exp(-r2)
    g /= g.sum()
    kernel = g * (x * x + y * y - 2 * sigma**2) / sigma**4
    kernel -= kernel.mean()
    return cv2.filter2D(pre, cv2.CV_32F, kernel.astype(np.float32), borderType=cv2.BORDER_REPLICATE)


def _canny_magnitude(pre: np.ndarray, sigma: float) -> np.ndarray:
    # Derivative-of-Gaussian gradient, as MATLAB's Canny.
    ksize = 2 * math.ceil(4 * sigma) + 1
    smooth = cv2.GaussianBlur(pre, (ksize, ksize), sigma, borderType=cv2.BORDER_REPLICATE)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy)


def _canny_high_threshold(magnitude: np.ndarray, fraction_not_edges: float = 0.7) -> float:
    """MATLAB's rule: the 64-bin histogram bin below which ``fraction_not_edges`` of pixels lie."""
    peak = float(magnitude.max())
    if peak <= 0:
        return 0.0
    counts, _ = np.histogram(magnitude / peak, bins=64, range=(0.0, 1.0))
    index = int(np.argmax(np.cumsum(counts) > fraction_not_edges * magnitude.size)) + 1
    return index / 64 * peak


# --------------------------------------------------------------------------- thresholds


def resolve_edge_params(image: np.ndarray, params: EdgeParams = EdgeParams()) -> EdgeParams:
    """Fill every automatic (``None``) threshold of ``params`` from the whole image.

    Call this once on a full image, then run :func:`detect_edges` on its tiles
    with the returned parameters: all tiles then use identical thresholds.
    Images above :data:`TILED_STATS_MIN_PX` pixels are processed tile by tile
    (same statistics up to float rounding, memory independent of the image size).
    """
    image = validate_image(image)
    limits = params.stretch_limits or stretch_limits(image, params.stretch_percentiles)
    params = params.replace(stretch_limits=limits)
    if None not in (params.sobel_threshold, params.log_threshold, params.canny_high):
        return params
    if image.size > TILED_STATS_MIN_PX:
        return params.replace(**_tiled_filter_statistics(image, params))
    pre = preprocess(image, params)
    changes: dict[str, float] = {}
    if params.sobel_threshold is None:
        gx, gy = _sobel_gradients(pre)
        changes["sobel_threshold"] = math.sqrt(4.0 * float(np.mean(gx * gx + gy * gy)))
    if params.log_threshold is None:
        changes["log_threshold"] = 0.75 * float(np.mean(np.abs(_log_response(pre, params.log_sigma))))
    if params.canny_high is None:
        magnitude = _canny_magnitude(pre, params.canny_sigma)
        changes["canny_high"] = _canny_high_threshold(magnitude)
    return params.replace(**changes)


# --------------------------------------------------------------------------- detectors


def sobel_edges(pre: np.ndarray, threshold: float, thinning: bool = True) -> np.ndarray:
    """Sobel edges of a preprocessed image: gradient magnitude above ``threshold``.

    With ``thinning``, keep a pixel only where the squared magnitude is a local
    maximum across the dominant gradient direction (x or y), as MATLAB does.
    """
    gx, gy = _sobel_gradients(pre)
    mag2 = gx * gx + gy * gy
    strong = mag2 > threshold * threshold
    if not thinning:
        return strong
    pad = np.pad(mag2, 1, mode="edge")
    left, right = pad[1:-1, :-2], pad[1:-1, 2:]
    up, down = pad[:-2, 1:-1], pad[2:, 1:-1]
    ax, ay = np.abs(gx), np.abs(gy)
    along_x = (ax >= ay) & (mag2 >= left) & (mag2 > right)
    along_y = (ay >= ax) & (mag2 >= up) & (mag2 > down)
    return strong & (along_x | along_y)


def log_edges(pre: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Laplacian-of-Gaussian edges: zero crossings whose jump exceeds ``threshold``.

    As in MATLAB the edge pixel is the negative side of a +/- crossing, so a
    step edge gives a 1-px line on its bright side.
    """
    b = _log_response(pre, sigma)
    # Round-off (~1e-18) in flat regions must not count as a sign.
    b[np.abs(b) < 1e-6 * float(np.abs(b).max(initial=0.0))] = 0.0
    edges = np.zeros(b.shape, bool)
    for axis in (0, 1):
        first = b[:-1, :] if axis == 0 else b[:, :-1]
        second = b[1:, :] if axis == 0 else b[:, 1:]
        jump = np.abs(first - second) > threshold
        neg_pos = (first < 0) & (second > 0) & jump  # edge at ``first``
        pos_neg = (first > 0) & (second < 0) & jump  # edge at ``second``
        if axis == 0:
            edges[:-1, :] |= neg_pos
            edges[1:, :] |= pos_neg
        else:
            edges[:, :-1] |= neg_pos
            edges[:, 1:] |= pos_neg
    # Exact zeros between opposite signs (MATLAB's 2 x threshold rule).
    zero = b == 0
    if zero.any():
        pad = np.pad(b, 1, mode="edge")
        for a, c in ((pad[1:-1, :-2], pad[1:-1, 2:]), (pad[:-2, 1:-1], pad[2:, 1:-1])):
            edges |= zero & (a * c < 0) & (np.abs(a - c) > 2 * threshold)
    return edges


def canny_edges(pre: np.ndarray, sigma: float, high: float, low_ratio: float = 0.4) -> np.ndarray:
    """Canny edges: non-maximum suppression and hysteresis between ``low_ratio * high`` and ``high``."""
    from skimage.feature import canny

    if high <= 0:
        return np.zeros(pre.shape, bool)
    # skimage smooths with the same Gaussian and differentiates with an
    # unnormalised Sobel (8x ours), so the thresholds are scaled by 8. It never
    # marks the outermost pixels: pad by reflection so edges reach the border.
    pad = 2
    edges = canny(
        np.pad(pre, pad, mode="reflect"),
        sigma=sigma,
        low_threshold=low_ratio * high * 8,
        high_threshold=high * 8,
        mode="nearest",
    )
    return edges[pad:-pad, pad:-pad]


def detect_edges(image: np.ndarray, params: EdgeParams = EdgeParams()) -> EdgeMaps:
    """Run preprocessing and the three edge detectors on a 2-D micrograph.

    Parameters
    ----------
    image
        2-D micrograph (any real dtype; RGB with equal channels accepted).
    params
        Edge parameters; ``None`` thresholds are computed from this image.

    Returns
    -------
    EdgeMaps
        Binary Sobel, LoG and Canny maps, the preprocessed image and the
        resolved parameters.
    """
    image = validate_image(image)
    params = resolve_edge_params(image, params)
    pre = preprocess(image, params)
    return EdgeMaps(
        sobel=sobel_edges(pre, params.sobel_threshold, params.sobel_thinning),
        log=log_edges(pre, params.log_sigma, params.log_threshold),
        canny=canny_edges(pre, params.canny_sigma, params.canny_high, params.canny_low_ratio),
        preprocessed=pre,
        params=params,
    )


def fuse_edges(image: np.ndarray, params: EdgeParams = EdgeParams()) -> np.ndarray:
    """The fused edge image (H, W, 3) uint8: R = Sobel, G = LoG, B = Canny, values 0/255."""
    return detect_edges(image, params).fused()
