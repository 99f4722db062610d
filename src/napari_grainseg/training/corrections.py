"""A user's corrected micrographs as fine-tuning data (numpy only, no torch).

A correction is a micrograph plus either a grain label image (each grain a
positive id; 0 = boundary; a boundary also lies wherever two ids meet) or a
boundary mask (non-zero = boundary, lines of any width), and optionally a mask
of the verified part (ROI; the loss ignores the rest).

Every target is thinned to the boundary's centre line (a 3-8 px brush stroke
teaches the centre, not the brush width), the image is resampled to Net1's
working scale (grains inside the trained size range), and the network input
features are computed on the WHOLE resampled image and only then cropped:
inference resolves the edge thresholds and the intensity stretch on the whole
image, so training crops must see the same features.

:class:`CorrectionSampler` draws augmented crops (flips, 90° turns, intensity,
crops, small rescales) and mixes in synthetic samples against forgetting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_grainseg.errors import InputError

#: Small rescales of the augmentation (factors of the working scale); features are precomputed for each.
AUGMENT_SCALES: tuple[float, ...] = (0.85, 0.92, 1.0, 1.08, 1.17)
#: Crops are redrawn (at most this often) until a quarter of their pixels are verified (ROI).
_CROP_TRIES = 20


@dataclass
class Correction:
    """One corrected micrograph at its native scale.

    Attributes
    ----------
    image : float32 (H, W) micrograph.
    boundaries : bool (H, W) 1-px centre lines of the true boundaries.
    roi : bool (H, W) verified part, or None (all of it).
    name : a name for messages (the image's file name).
    sources : paths of the files it was read from (``image``, ``target``, ``roi``), when read from files.
    pixel_size_nm : the image's pixel size (from its file or its napari layer), or None.
    """

    image: np.ndarray
    boundaries: np.ndarray
    roi: np.ndarray | None = None
    name: str = "image"
    sources: dict = field(default_factory=dict)
    pixel_size_nm: float | None = None

    def labels(self) -> np.ndarray:
        """Closed grain labels of the corrected boundaries (0 = boundary)."""
        from napari_grainseg.segmentation.grains import boundaries_to_labels

        return boundaries_to_labels(self.boundaries, min_grain_area=1)


# --------------------------------------------------------------------------- targets


def thin_lines(mask: np.ndarray) -> np.ndarray:
    """Centre lines (1 px, 8-connected) of a boundary mask with lines of any width.

    The mask is extended past the image border (edge values) before thinning, so a line
    that runs into the border keeps running into it instead of shrinking back.
    """
    from skimage.morphology import skeletonize

    pad = 8
    mask = np.pad(np.asarray(mask, bool), pad, mode="edge")
    return np.ascontiguousarray(skeletonize(mask)[pad:-pad, pad:-pad])


def boundaries_from_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """1-px boundaries of a grain label image: its 0 pixels and every place where two ids meet.

    Raises :class:`InputError` when the image is not 2-D integer or has fewer than two grains.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{name}: a label image must be 2-D, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"{name}: a label image must hold whole-number grain ids, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise InputError(f"{name}: grain ids must be >= 0 (0 = boundary)")
    ids = np.unique(labels)
    if np.count_nonzero(ids) < 2:
        raise InputError(f"{name}: a label image needs at least two grains, found {np.count_nonzero(ids)}")
    mark = labels == 0
    for a, b, sl_a, sl_b in (
        (labels[:, :-1], labels[:, 1:], np.s_[:, :-1], np.s_[:, 1:]),
        (labels[:-1, :], labels[1:, :], np.s_[:-1, :], np.s_[1:, :]),
    ):
        meet = (a != b) & (a > 0) & (b > 0)
        mark[sl_a] |= meet & (a < b)  # the smaller id's pixel becomes boundary: a line 1 px wide
        mark[sl_b] |= meet & (b < a)
    return thin_lines(mark)


def boundaries_from_mask(mask: np.ndarray, name: str = "boundaries") -> np.ndarray:
    """1-px centre lines of a boundary mask (non-zero = boundary). All-zero masks are an InputError."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., :3].max(axis=-1)
    if mask.ndim != 2:
        raise InputError(f"{name}: a boundary mask must be 2-D, got shape {mask.shape}")
    b = mask != 0
    if not b.any():
        raise InputError(f"{name}: the boundary mask is all zero (no boundary to learn from)")
    if b.all():
        raise InputError(f"{name}: the boundary mask is boundary everywhere (no grain to learn from)")
    return thin_lines(fill_small_holes(b))


def fill_small_holes(mask: np.ndarray, max_area: int | None = None) -> np.ndarray:
    """``mask`` with its holes smaller than the smallest grain kept (``DEFAULT_MIN_GRAIN_AREA``) filled.

    Hand-drawn and anti-aliased strokes leave pin holes inside wide lines; thinned, each
    would become a tiny closed loop, i.e. a spurious grain in the target.
    """
    from scipy import ndimage

    from napari_grainseg.segmentation.grains import DEFAULT_MIN_GRAIN_AREA

    max_area = DEFAULT_MIN_GRAIN_AREA if max_area is None else max_area
    holes, n = ndimage.label(~mask, structure=ndimage.generate_binary_structure(2, 1))
    if n == 0:
        return mask
    areas = np.bincount(holes.ravel())
    small = areas < max_area
    small[0] = False
    return mask | small[holes]


# --------------------------------------------------------------------------- files


def read_target(path: str | Path, what: str) -> np.ndarray:
    """A label image, boundary mask or ROI mask from a file, as stored (no intensity scaling).

    An RGB(A) mask (lines painted in colour) becomes its brightest channel.
    """
    from napari_grainseg.io.readers import read_array

    array = read_array(path, what, mask=what != "labels")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].max(axis=-1)
    if array.ndim != 2:
        raise InputError(f"{what} {path} must be a 2-D image, got shape {array.shape}")
    return array


def load_corrections(images, *, labels=None, boundaries=None, rois=None) -> list[Correction]:
    """Read corrected micrographs from files; the target files come in the same order and shape.

    Exactly one of ``labels`` (grain label images) and ``boundaries`` (boundary masks) is given;
    ``rois`` (optional) are masks of the verified parts (non-zero = verified).
    Every problem (missing file, count or shape mismatch, a label image with one grain,
    an all-zero mask) is an :class:`InputError` naming the file.
    """
    from napari_grainseg.io.readers import read_micrograph

    images = [Path(p) for p in images]
    if not images:
        raise InputError("no images given")
    if (labels is None) == (boundaries is None):
        raise InputError("give the corrections either as --labels or as --boundaries (one of them)")
    targets = [Path(p) for p in (labels if labels is not None else boundaries)]
    kind = "labels" if labels is not None else "boundaries"
    if len(targets) != len(images):
        raise InputError(
            f"{len(images)} images but {len(targets)} --{kind} files: give one per image, in the same order"
        )
    if rois is not None and len(rois) != len(images):
        raise InputError(f"{len(images)} images but {len(rois)} --roi masks: give one per image, in the same order")
    for image_path, target_path in zip(images, targets):  # every file before reading any
        for p, what in ((image_path, "image"), (target_path, kind)):
            if not p.is_file():
                raise InputError(f"{what} file not found: {p}")
    for p in rois or ():
        if not Path(p).is_file():
            raise InputError(f"roi file not found: {p}")
    out = []
    for i, (image_path, target_path) in enumerate(zip(images, targets)):
        micrograph = read_micrograph(image_path)
        target = read_target(target_path, kind)
        if target.shape != micrograph.data.shape:
            raise InputError(
                f"{target_path} has shape {target.shape} but its image {image_path} has {micrograph.data.shape}"
            )
        lines = (
            boundaries_from_labels(target, str(target_path))
            if kind == "labels"
            else boundaries_from_mask(target, str(target_path))
        )
        roi = None
        sources = {"image": str(image_path.resolve()), "target": str(target_path.resolve()), "kind": kind}
        if rois is not None:
            roi_path = Path(rois[i])
            roi = read_target(roi_path, "roi") != 0
            if roi.shape != micrograph.data.shape:
                raise InputError(
                    f"{roi_path} has shape {roi.shape} but its image {image_path} has {micrograph.data.shape}"
                )
            if not roi.any():
                raise InputError(f"{roi_path}: the ROI mask is all zero (nothing verified)")
            sources["roi"] = str(roi_path.resolve())
        image = micrograph.data.astype(np.float32)
        out.append(Correction(image, lines, roi, image_path.name, sources, micrograph.pixel_size_nm))
    return out


def correction_grain_sizes(corrections: list[Correction]) -> list[float | None]:
    """The mean grain diameter (px) of each image's corrected grains (:func:`estimate_grain_size`
    on the truth, inside the ROI's bounding box when there is a ROI; None where it finds none)."""
    from napari_grainseg.segmentation.inference import estimate_grain_size

    def box(c):
        if c.roi is None:
            return c.boundaries
        ys, xs = np.nonzero(c.roi)
        return c.boundaries[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    return [estimate_grain_size(box(c).astype(np.float32)) for c in corrections]


# --------------------------------------------------------------------------- resampled data


def resample_lines(lines: np.ndarray, scale: float) -> np.ndarray:
    """1-px boundary lines resampled by ``scale`` and thinned again."""
    import cv2

    if scale == 1.0:
        return lines
    h, w = lines.shape
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    # a line drawn 3 px wide survives shrinking; then back to its centre
    wide = cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    return thin_lines(cv2.resize(wide, size, interpolation=cv2.INTER_LINEAR) >= 0.5)


def resample_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1.0:
        return mask
    h, w = mask.shape
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0


@dataclass
class PreparedImage:
    """One correction at one augmentation scale: whole-image features, target and loss weight."""

    features: np.ndarray  # (4, H, W) float32
    target: np.ndarray  # (1, H, W) float32, lines dilated to the target width
    weight: np.ndarray  # (1, H, W) float32, 1 inside the ROI, 0 outside


def prepare(correction: Correction, scale: float, target_width: int) -> PreparedImage:
    """Resample a correction by ``scale``, compute Net1's features on the whole image, build the target."""
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.segmentation.inference import resample
    from napari_grainseg.training.net1 import boundary_target

    image = resample(correction.image, scale)
    lines = resample_lines(correction.boundaries, scale)
    if lines.shape != image.shape:  # rounding of the two resizes agrees, but be safe
        import cv2

        lines = thin_lines(cv2.resize(lines.astype(np.uint8), image.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0)
    roi = np.ones(image.shape, bool) if correction.roi is None else resample_mask(correction.roi, scale)
    if roi.shape != image.shape:
        import cv2

        roi = cv2.resize(roi.astype(np.uint8), image.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    return PreparedImage(net1_features(image), boundary_target(lines, target_width)[None], roi.astype(np.float32)[None])


def pad_to(array: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the last two axes of (C, H, W) up to ``size`` (zero weight is set by the caller)."""
    h, w = array.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        array = np.pad(array, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
    return array


class CorrectionSampler:
    """Deterministic augmented training crops from corrections, mixed with synthetic samples.

    Parameters
    ----------
    corrections : the corrected images used for training.
    working_scale : resampling factor that brings their grains into Net1's trained range.
    patch : crop size (px, a multiple of 8).
    target_width : width of the boundary target (as Net1 was trained).
    synthetic : number of pre-generated synthetic samples to mix in (0 = none).
    synthetic_preset : their preset.
    seed : every draw derives from it.
    """

    def __init__(
        self,
        corrections: list[Correction],
        working_scale: float,
        *,
        patch: int = 128,
        target_width: int = 3,
        synthetic: int = 16,
        synthetic_preset: str = "train",
        seed: int = 0,
    ):
        from napari_grainseg.training.net1 import make_example

        self.patch = patch
        self.prepared = [[prepare(c, working_scale * s, target_width) for s in AUGMENT_SCALES] for c in corrections]
        self.synthetic = []
        for i in range(synthetic):
            features, target, _ = make_example(
                7_000_000_000 + seed * 1000 + i, (patch, patch), synthetic_preset, target_width
            )
            self.synthetic.append(PreparedImage(features, target, np.ones_like(target)))
        self.weights = np.array([float(p[AUGMENT_SCALES.index(1.0)].weight.sum()) for p in self.prepared])

    def batch(self, rng: np.random.Generator, size: int, synthetic_share: float):
        """``size`` (features, target, weight) crops as stacked float32 arrays."""
        n_syn = min(len(self.synthetic), int(round(size * synthetic_share))) if self.synthetic else 0
        feats, targets, weights = [], [], []
        for k in range(size):
            if k < n_syn:
                item = self.synthetic[int(rng.integers(len(self.synthetic)))]
                f, t, w = item.features, item.target, item.weight
            else:
                i = int(rng.choice(len(self.prepared), p=self.weights / self.weights.sum()))
                item = self.prepared[i][int(rng.integers(len(AUGMENT_SCALES)))]
                f, t, w = self._crop(item, rng)
                f = _jitter_intensity(f, rng)
            stack = _flip_turn(np.concatenate([f, t, w]), rng)
            f, t, w = stack[:4], stack[4:5], stack[5:6]
            feats.append(f)
            targets.append(t)
            weights.append(w)
        return np.stack(feats), np.stack(targets), np.stack(weights)

    def _crop(self, item: PreparedImage, rng: np.random.Generator):
        p = self.patch
        stack = np.concatenate([item.features, item.target, item.weight])
        h, w = stack.shape[-2:]
        if h < p or w < p:  # a small image: reflect-padded, the padding carries no weight
            stack = pad_to(stack, p)
            stack[-1] *= _inside(h, w, p)
            h, w = stack.shape[-2:]
        best = None
        for _ in range(_CROP_TRIES):
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            crop = stack[:, y : y + p, x : x + p]
            share = float(crop[-1].mean())
            if best is None or share > best[0]:
                best = (share, crop)
            if share >= 0.25:
                break
        crop = best[1]
        return crop[:4], crop[4:5], crop[5:6]


def _inside(h: int, w: int, p: int) -> np.ndarray:
    """1 on the original (h, w) pixels of a padded (p', p') array, 0 on the padding."""
    m = np.zeros((max(h, p), max(w, p)), np.float32)
    m[:h, :w] = 1
    return m


def _flip_turn(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(4))
    if k:
        stack = np.rot90(stack, k, axes=(1, 2))
    if rng.random() < 0.5:
        stack = stack[:, :, ::-1]
    return np.ascontiguousarray(stack)


def _jitter_intensity(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast and offset of the intensity channel (the edge maps are rank-based and binary)."""
    out = features.copy()
    gamma = math.exp(rng.uniform(-0.3, 0.3))
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
    out[3] = np.clip((np.clip(out[3], 0, 1) ** gamma - 0.5) * gain + 0.5 + offset, 0, 1)
    return out
