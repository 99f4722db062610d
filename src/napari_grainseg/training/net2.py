"""Training Net2, the boundary-map refiner: reproducible, resumable, checkpointed.

Data. A *pool* of synthetic images (seeds ``training_seed(config, i)``, disjoint
from Net1's training seeds when ``config.seed`` differs) is generated once per
run together with the REAL output of a given Net1 on each image; it is cached
in the run folder (``pool_cache``), keyed by the pool settings and the Net1
weights' SHA-256. Every training example is a random crop of a pool image,
flipped/rotated, degraded afresh:

- the coarse map ``c`` is Net1's probability, made worse at random
  (cold-diffusion style) by breaking boundary segments (gaps of
  ``gap_length`` px), adding spurious fragments and blurring — so Net2 also
  learns to close gaps that a better Net1 would leave rarely;
- the state at degradation level t in 0..T mixes the truth ``x0`` (1-px
  boundaries dilated to ``target_width``) and ``c`` with a smooth random mask
  of mean t / T (SegRefiner-style mixing in blobs; sometimes a uniform blend,
  which is exactly what the sampler of :mod:`napari_grainseg.segmentation.refine` produces);
  at t = 0 the state is the truth lightly mixed and blurred, so the
  fixed-point steps learn to keep a clean map and fix small leftovers.

Net2 sees the state, the cached features (``c`` and the image's edge maps and
intensity) and t / T, and predicts ``x0`` with Net1's loss
(:func:`napari_grainseg.training.net1.boundary_loss`). The blind ablation sees the
state only.

A run folder holds ``checkpoint.pt``, ``log.jsonl`` and at the end ``net2.pt`` +
``net2.json`` (fp16 weights, config, git revision, metrics and ``net1_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.io.atomic import atomic_open, atomic_path
from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.refine import DEFAULT_TOL, closed_start, schedule_level, schedule_state, with_watershed_candidates
from napari_grainseg.training.net1 import (
    VALIDATION_SEED_BASE,
    _main_thread,
    boundary_loss,
    boundary_target,
    check_config_fields,
    git_revision,
    read_config,
    training_seed,
)

#: Most refinement steps a validation image gets (refine() allows more; validation must stay quick).
VALIDATION_MAX_STEPS = 12

#: Offset of Net2's validation seeds from :data:`~napari_grainseg.training.net1.VALIDATION_SEED_BASE`
#: (Net1's validation uses the first few seeds after the base).
NET2_VALIDATION_OFFSET = 500_000


@dataclass(frozen=True)
class Net2TrainConfig:
    """Everything that determines a Net2 training run (saved with the weights).

    Attributes
    ----------
    steps, batch_size, lr, weight_decay, warmup_steps : optimisation (AdamW, cosine schedule).
    seed : selects the pool images (``seed * 1e8 + i``), crops, degradations and initialisation.
    pool_size, pool_shape, presets : the synthetic images whose Net1 outputs are cached
        (pool image i uses ``presets[i % len(presets)]``; validation alternates the same way).
    patch_shape : training crop (multiple of 8).
    levels : T, the number of degradation levels (= scheduled steps of the image model).
    target_width, pos_weight, dice_weight : target and loss, as for Net1.
    cldice_weight : weight of the soft clDice term (:func:`~napari_grainseg.training.net1.cldice_loss`),
        which prices gaps and spurious lines by centreline length; 0 = off.
    topology_weight, topology_min_px : weight of an extra cross-entropy on the
        pixels where the thresholded prediction gets the grains wrong
        (:func:`topology_errors`): the gap pixels through which two true grains
        leak into one predicted region, and the spurious boundary pixels that cut
        one true grain in two (regions of at least ``topology_min_px`` px count).
        A pixel loss prices a 5 px gap that merges two grains like any 5 px of
        boundary; this term prices what the grains pay for it; 0 = off.
    gap_prob, gaps_per_100px, gap_length : extra gaps cut into the coarse map.
    fragment_prob, fragments_per_10k_px : spurious fragments added to the coarse map.
    segment_drop_prob, segment_drop_fraction, segment_residue : whole boundary
        segments (the boundary between one pair of grains, junction to junction)
        erased from the coarse map: with probability ``segment_drop_prob`` a
        fraction drawn from [0, ``segment_drop_fraction``] of the crop's segments
        is scaled down to a random ``segment_residue`` of its value. Net1's real
        misses are whole low-contrast segments, not short breaks; 0 = off.
    blur_prob, blur_sigma : blur of the coarse map.
    uniform_mix_prob : probability that the mixing mask is a uniform blend.
    unroll_prob, max_unroll : probability that an example's state is replaced by
        the model's own prediction after 1..``max_unroll`` steps (without
        gradient), then trained at t = 0: this teaches the fixed-point steps to
        map Net2's own outputs to the truth, so the iteration settles instead of
        drifting.
    val_size, val_shape, val_every, checkpoint_every, threads : validation and bookkeeping.
    keep_best : export the weights of the validation with the lowest refined VI
        (early stopping on the held-out set) instead of the last step's; the
        refinement's VI does not fall steadily with the training loss.
    ema_decay : exponential moving average of the weights (and BatchNorm
        statistics), 0 = off. Validation, ``keep_best`` and the export use the
        averaged weights, which swing less from one validation to the next than
        the raw ones (an iterated refiner amplifies small weight changes).
    architecture : Net2 architecture (see :class:`~napari_grainseg.models.net2.Net2Config`);
        ``scheduled_steps`` is set from ``levels`` for the image model.
    """

    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 1
    pool_size: int = 300
    pool_shape: tuple[int, int] = (128, 256)
    presets: tuple[str, ...] = ("train", "tem")
    patch_shape: tuple[int, int] = (96, 96)
    levels: int = 4
    target_width: int = 3
    pos_weight: float = 2.0
    dice_weight: float = 1.0
    cldice_weight: float = 0.0
    topology_weight: float = 0.0
    topology_min_px: int = 20
    gap_prob: float = 0.8
    gaps_per_100px: float = 0.4
    gap_length: tuple[int, int] = (3, 10)
    fragment_prob: float = 0.5
    fragments_per_10k_px: float = 3.0
    segment_drop_prob: float = 0.0
    segment_drop_fraction: float = 0.2
    segment_residue: tuple[float, float] = (0.0, 0.3)
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    uniform_mix_prob: float = 0.3
    unroll_prob: float = 0.5
    max_unroll: int = 5
    val_size: int = 8
    val_shape: tuple[int, int] = (192, 256)
    val_every: int = 500
    checkpoint_every: int = 100
    threads: int = 0
    keep_best: bool = True
    ema_decay: float = 0.0
    architecture: dict[str, Any] = field(default_factory=lambda: {"conditioning": "image", "base_channels": 8,
                                                                   "depth": 3, "residual": 0.5})

    def __post_init__(self) -> None:
        check_config_fields(self, "net2 training config",
                            counts=("steps", "batch_size", "pool_size", "val_size", "val_every",
                                    "checkpoint_every", "levels"),
                            shapes=("patch_shape", "pool_shape", "val_shape"), architecture=self.net2_config,
                            presets=tuple(self.presets), ranges=("gap_length", "blur_sigma", "segment_residue"))
        if any(p > s for p, s in zip(self.patch_shape, self.pool_shape)):
            raise InputError("net2 training config: patch_shape must fit inside pool_shape")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"net2 training config: ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (0.0 <= self.segment_drop_prob <= 1.0 and 0.0 <= self.segment_drop_fraction <= 1.0
                and self.segment_residue[1] <= 1.0):
            raise InputError("net2 training config: segment_drop_prob and segment_drop_fraction must be in [0, 1] "
                             f"and segment_residue a range inside [0, 1], got {self.segment_drop_prob}, "
                             f"{self.segment_drop_fraction}, {self.segment_residue}")
        if self.cldice_weight < 0:
            raise InputError(f"net2 training config: cldice_weight must be >= 0, got {self.cldice_weight}")
        if self.topology_weight < 0 or self.topology_min_px < 1:
            raise InputError("net2 training config: topology_weight must be >= 0 and topology_min_px >= 1, got "
                             f"{self.topology_weight}, {self.topology_min_px}")

    @classmethod
    def from_json(cls, path: str | Path) -> Net2TrainConfig:
        """Read a config file (JSON object with any subset of the fields)."""
        return read_config(cls, path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def net2_config(self):
        """The :class:`~napari_grainseg.models.net2.Net2Config` this run trains."""
        from napari_grainseg.models.net2 import Net2Config

        arch = dict(self.architecture)
        arch["scheduled_steps"] = 0 if arch.get("conditioning", "image") == "blind" else self.levels
        return Net2Config(**arch)


# --------------------------------------------------------------------------- pool


def _pool_example(seed: int, shape: tuple[int, int], preset: str, net1, target_width: int,
                  decoder: bool = False) -> dict:
    """One cached image: Net2's condition (real Net1 output + edges + intensity [+ Net1's decoder
    features]) and the truth."""
    from napari_grainseg.segmentation.inference import run_net1, run_net1_with_decoder
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.synthetic import generate

    sample = generate(seed=seed, shape=tuple(shape), preset=preset)
    features = net1_features(sample.image)
    if decoder:
        prob, maps = run_net1_with_decoder(net1, features, "cpu")
        condition = [prob[None], features, maps]
    else:
        condition = [run_net1(net1, features, "cpu")[None], features]
    return {"condition": np.concatenate(condition).astype(np.float16),
            "truth": sample.boundaries.astype(bool),
            "target": boundary_target(sample.boundaries, target_width).astype(bool),
            "labels": sample.labels}


def _pool_key(config: Net2TrainConfig, net1_sha: str, kind: str, size: int, shape) -> str:
    parts = [kind, config.seed, size, list(shape), list(config.presets), config.target_width, net1_sha]
    decoder_channels = config.net2_config().net1_features
    if decoder_channels:  # keys of pools without them stay as they were
        parts.append(decoder_channels)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def build_pool(config: Net2TrainConfig, net1, net1_sha: str, cache: Path | None, *, validation: bool = False,
               progress: bool = True) -> dict[str, np.ndarray]:
    """The pool (or validation set) as stacked arrays, loaded from ``cache`` when it matches."""
    from tqdm import tqdm

    arch = config.net2_config()
    arch.check_net1(net1)  # before minutes of generation
    size, shape = (config.val_size, config.val_shape) if validation else (config.pool_size, config.pool_shape)
    key = _pool_key(config, net1_sha, "val" if validation else "pool", size, shape)
    path = None if cache is None else Path(cache) / f"net2_{'val' if validation else 'pool'}_{key}.npz"
    if path is not None and path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if validation:
        seeds = [VALIDATION_SEED_BASE + NET2_VALIDATION_OFFSET + i for i in range(size)]
    else:
        seeds = [training_seed(config, i) for i in range(size)]
    presets = [config.presets[i % len(config.presets)] for i in range(size)]
    rows = [_pool_example(s, shape, p, net1, config.target_width, arch.net1_features > 0)
            for s, p in tqdm(list(zip(seeds, presets)), desc="Net2 validation set" if validation else "Net2 pool",
                             unit="image", disable=not progress)]
    pool = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **pool)
    return pool


# --------------------------------------------------------------------------- degradation


def _smooth_uniform(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """A smooth random field with (approximately) uniform marginals in [0, 1]."""
    from scipy import ndimage, special

    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    field_ /= max(float(field_.std()), 1e-6)
    return (0.5 * (1 + special.erf(field_ / math.sqrt(2)))).astype(np.float32)


def boundary_segments(truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the pixels of 1-px boundaries by the pair of grains they separate.

    Returns ``(segments, n)``: an int32 (H, W) image in which every boundary
    pixel carries the id (1..n) of the grain pair around it (junction pixels
    go to one of their pairs) and every other pixel 0. A boundary between two
    grains that meet twice (around a third) is one segment.

    Examples
    --------
    >>> truth = np.zeros((9, 9), bool); truth[4, :] = True; truth[:4, 4] = True
    >>> boundary_segments(truth)[1]                # three grains meet: three pairs
    3
    """
    from scipy import ndimage

    truth = np.asarray(truth, bool)
    grains, n_grains = ndimage.label(~truth)
    big = np.int64(n_grains + 1)
    low = ndimage.minimum_filter(np.where(grains > 0, grains, big), size=3)
    high = ndimage.maximum_filter(grains, size=3)
    pair = np.where(truth & (low < big) & (high > 0) & (low != high), low * big + high, 0)
    ids, inverse = np.unique(pair, return_inverse=True)  # ids[0] is 0: a pair needs a grain pixel beside it
    return inverse.reshape(pair.shape).astype(np.int32), int(np.count_nonzero(ids))


def drop_segments(coarse: np.ndarray, truth: np.ndarray, rng: np.random.Generator, fraction: float,
                  residue: tuple[float, float], width: int = 3) -> np.ndarray:
    """Erase a ``fraction`` of the whole boundary segments (:func:`boundary_segments`) from ``coarse``.

    Every chosen segment, widened by ``width`` px, is scaled by its own factor
    drawn from ``residue``: from gone (0) to a faint trace. This is the miss
    Net1 makes on a low-contrast pair of grains, which a short gap does not mimic.
    """
    from scipy import ndimage

    segments, n = boundary_segments(truth)
    k = int(round(fraction * n))
    if k == 0:
        return coarse
    chosen = rng.choice(np.arange(1, n + 1), size=k, replace=False)
    factor = np.ones(n + 1, np.float32)
    factor[chosen] = rng.uniform(*residue, size=k)
    # each pixel near a chosen segment takes the factor of the nearest boundary pixel
    distance, (iy, ix) = ndimage.distance_transform_edt(segments == 0, return_indices=True)
    scale = np.where(distance <= width, factor[segments[iy, ix]], 1.0).astype(np.float32)
    return coarse * scale


def degrade_coarse(coarse: np.ndarray, truth: np.ndarray, rng: np.random.Generator,
                   config: Net2TrainConfig) -> np.ndarray:
    """Make a coarse map worse: gaps in true boundaries, spurious fragments, blur (cold diffusion).

    Parameters
    ----------
    coarse
        Net1's probability (H, W).
    truth
        True 1-px boundaries (H, W) bool: gaps are cut where they are.
    """
    import cv2
    from scipy import ndimage

    out = coarse.astype(np.float32).copy()
    h, w = out.shape
    if rng.random() < config.gap_prob:
        ys, xs = np.nonzero(truth)
        n = rng.poisson(config.gaps_per_100px * ys.size / 100) if ys.size else 0
        lo, hi = config.gap_length
        for i in rng.choice(ys.size, size=min(n, ys.size), replace=False) if n else ():
            radius = rng.integers(lo, hi + 1) / 2
            cv2.circle(out, (int(xs[i]), int(ys[i])), int(math.ceil(radius)), 0.0, thickness=-1)
    if rng.random() < config.fragment_prob:
        n = rng.poisson(config.fragments_per_10k_px * h * w / 1e4)
        for _ in range(n):
            y, x = rng.uniform(0, h), rng.uniform(0, w)
            length, angle = rng.uniform(4, 20), rng.uniform(0, math.pi)
            end = (int(x + length * math.cos(angle)), int(y + length * math.sin(angle)))
            cv2.line(out, (int(x), int(y)), end, float(rng.uniform(0.4, 1.0)), thickness=int(rng.integers(1, 3)))
    if config.segment_drop_prob > 0 and rng.random() < config.segment_drop_prob:
        out = drop_segments(out, truth, rng, rng.uniform(0, config.segment_drop_fraction), config.segment_residue)
    if rng.random() < config.blur_prob:
        out = ndimage.gaussian_filter(out, rng.uniform(*config.blur_sigma))
    return np.clip(out, 0.0, 1.0)


def mix_state(x0: np.ndarray, coarse: np.ndarray, level: int, rng: np.random.Generator,
              config: Net2TrainConfig) -> np.ndarray:
    """The training state at degradation level ``level`` (0..T): truth and coarse map mixed.

    The mask has mean ``level / T``: smooth blobs with a random edge softness, or
    (``uniform_mix_prob``) a uniform blend. At level 0 the truth is lightly
    mixed (up to 0.5 / T) and sometimes blurred, like Net2's own predictions.
    """
    from scipy import ndimage

    big_t = config.levels
    a = level / big_t if level else rng.uniform(0, 0.5 / big_t)
    if rng.random() < config.uniform_mix_prob:
        mask = np.float32(a)
    else:
        u = _smooth_uniform(rng, x0.shape, rng.uniform(3, 12))
        tau = rng.uniform(0.02, 0.3)
        mask = 1 / (1 + np.exp(-(a - u) / tau))
    clean = x0
    if rng.random() < 0.5:
        clean = ndimage.gaussian_filter(x0, rng.uniform(0.3, 1.0))
    return (mask * coarse + (1 - mask) * clean).astype(np.float32)


def make_batch(pool: dict, step: int, config: Net2TrainConfig) -> tuple[np.ndarray, ...]:
    """Training batch ``step`` (deterministic): states, conditions, t / T, targets and unroll counts."""
    rng = np.random.default_rng([config.seed, step])
    arch = config.net2_config()
    ph, pw = config.patch_shape
    states, conds, ts, targets, unrolls = [], [], [], [], []
    n_pool, h, w = pool["truth"].shape
    for _ in range(config.batch_size):
        i = rng.integers(n_pool)
        y, x = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
        cond = pool["condition"][i, :, y:y + ph, x:x + pw].astype(np.float32)
        truth = pool["truth"][i, y:y + ph, x:x + pw]
        x0 = pool["target"][i, y:y + ph, x:x + pw].astype(np.float32)
        k, flip = int(rng.integers(4)), rng.random() < 0.5
        if ph != pw:
            k = 2 * (k % 2)  # a quarter turn would swap the sides of a non-square crop
        cond, truth, x0 = (_orient(a, k, flip) for a in (cond, truth, x0))
        coarse = degrade_coarse(cond[0], truth, rng, config)
        cond = np.concatenate([coarse[None], cond[1:]])
        if arch.watershed_candidates:
            cond = with_watershed_candidates(cond)  # from the degraded map, as at inference
        if arch.closed_start:
            coarse = closed_start(coarse, cond[-1] if arch.watershed_candidates else None)
        level = int(rng.integers(0, config.levels + 1))
        states.append(mix_state(x0, coarse, level, rng, config)[None])
        conds.append(cond)
        ts.append(level / config.levels)
        targets.append(x0[None])
        unrolls.append(int(rng.integers(1, config.max_unroll + 1)) if rng.random() < config.unroll_prob else 0)
    return (np.stack(states), np.stack(conds), np.asarray(ts, np.float32), np.stack(targets),
            np.asarray(unrolls, np.int64))


def unroll_states(model, states, conds, ts, unrolls):
    """Replace the states of examples with ``unrolls > 0`` by the model's own iterates (no gradient).

    An example with ``n`` unrolls starts at its level t, takes one step there
    and ``n - 1`` fixed-point steps, and is then trained at t = 0.
    """
    import torch

    chosen = torch.nonzero(unrolls > 0).flatten()
    if chosen.numel() == 0:
        return states, ts
    states, ts = states.clone(), ts.clone()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        s, c, t, n = states[chosen], conds[chosen], ts[chosen], unrolls[chosen]
        for k in range(int(n.max())):
            active = n > k
            new = torch.sigmoid(model(s, c, t))
            s = torch.where(active.view(-1, 1, 1, 1), new, s)
            t = torch.where(active, torch.zeros_like(t), t)
        states[chosen], ts[chosen] = s, t
    model.train(was_training)
    return states, ts


def topology_errors(probability: np.ndarray, target: np.ndarray, min_px: int = 20) -> np.ndarray:
    """Pixels where the thresholded ``probability`` gets the grains wrong, as a bool mask.

    The true grains are the 4-connected regions outside the ``target`` band, the
    predicted ones the regions below 0.5. A predicted region that covers at
    least ``min_px`` px of two true grains is a false merge: its pixels on the
    true band at least 2 px from any predicted boundary (the gap it leaks
    through, not the band's edge beside a drawn line) are returned. A true grain
    covered by two predicted regions of at least ``min_px`` px each is a false
    split: the predicted boundary pixels inside it are returned.

    Examples
    --------
    >>> target = np.zeros((20, 40), bool); target[:, 19:22] = True     # two grains
    >>> pred = target.astype(np.float32); pred[5:12, 19:22] = 0          # a 7 px gap
    >>> int(topology_errors(pred, target).sum())    # the gap's middle 5 rows of the 3 px band
    15
    """
    from scipy import ndimage

    four = ndimage.generate_binary_structure(2, 1)
    band = np.asarray(target) >= 0.5
    drawn = np.asarray(probability) >= 0.5
    grains, n_true = ndimage.label(~band, four)
    regions, n_pred = ndimage.label(~drawn, four)
    errors = np.zeros(band.shape, bool)
    if n_true == 0 or n_pred == 0:
        return errors
    both = (grains > 0) & (regions > 0)
    overlap = np.zeros((n_pred + 1, n_true + 1), np.int64)
    np.add.at(overlap, (regions[both], grains[both]), 1)
    big = overlap >= min_px
    merged = np.flatnonzero(big.sum(axis=1) >= 2)
    if merged.size:
        far = ndimage.distance_transform_edt(~drawn) >= 2
        errors |= band & far & np.isin(regions, merged)
    split = np.flatnonzero(big.sum(axis=0) >= 2)
    if split.size:
        errors |= drawn & ~band & np.isin(grains, split)
    return errors


def topology_loss(logits, targets, min_px: int = 20):
    """Cross-entropy on the pixels of :func:`topology_errors`, averaged over all pixels.

    Averaged over all pixels, not over the error pixels: the term then fades as
    the errors go; averaged over the errors only, it stays as large however few
    are left, and (trained so, ``topology_weight`` 1, session 7) the map settled
    at 0.5 everywhere, where the thresholded errors flip back and forth.
    """
    import torch
    import torch.nn.functional as F

    prob = torch.sigmoid(logits.detach()).cpu().numpy()
    mask = np.stack([topology_errors(p[0], t[0], min_px) for p, t in zip(prob, targets.cpu().numpy())])[:, None]
    mask = torch.from_numpy(mask).to(logits.device, logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * mask).mean()


def _orient(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if flip else a)


# --------------------------------------------------------------------------- validation


def _validation_grains(boundary_map: np.ndarray, watershed: bool = False) -> np.ndarray:
    """Grains of a boundary map for scoring (by threshold, or by watershed of the map); a map
    with no closed grain (an early or diverging model can draw boundary everywhere) scores as
    one region, i.e. everything merged."""
    from napari_grainseg.segmentation.grains import probability_to_labels

    try:
        return probability_to_labels(boundary_map, "watershed" if watershed else "threshold")
    except InputError:
        return np.zeros(boundary_map.shape, np.uint32)


def net1_baselines(val: dict) -> dict[str, float]:
    """The bars Net2 must clear on the validation images: VI of Net1 alone
    (``val_vi_net1``) and of Net1 + watershed (``val_vi_net1_watershed``)."""
    from napari_grainseg.evaluation.metrics import segmentation_scores

    vi_net1, vi_watershed = [], []
    for probability, truth_labels in zip(val["condition"][:, 0], val["labels"]):
        probability = probability.astype(np.float32)
        vi_net1.append(segmentation_scores(_validation_grains(probability), truth_labels)["vi"])
        vi_watershed.append(segmentation_scores(_validation_grains(probability, watershed=True), truth_labels)["vi"])
    return {"val_vi_net1": float(np.mean(vi_net1)), "val_vi_net1_watershed": float(np.mean(vi_watershed))}


def evaluate_net2(model, val: dict, config: Net2TrainConfig, device,
                  baselines: dict[str, float] | None = None) -> dict[str, float]:
    """Validation: loss at every level (fixed degradations) and VI of the full refinement.

    Beside the refined VI it reports the bars Net2 must clear on the same images
    (:func:`net1_baselines`; pass them to skip recomputing what does not change
    between validations).
    """
    import torch

    from napari_grainseg.evaluation.metrics import segmentation_scores

    model.eval()
    rng = np.random.default_rng([config.seed, 10**9])
    losses, vi_net2, vi_net2_watershed, steps_used = [], [], [], []
    blind = model.config.conditioning == "blind"
    total = model.config.scheduled_steps
    with torch.inference_mode():
        for i in range(val["truth"].shape[0]):
            cond = val["condition"][i].astype(np.float32)
            if model.config.watershed_candidates:
                cond = with_watershed_candidates(cond)
            x0 = val["target"][i].astype(np.float32)
            if model.config.closed_start:
                start = closed_start(cond[0], cond[-1] if model.config.watershed_candidates else None)
            else:
                start = cond[0]
            for level in range(config.levels + 1):
                state = mix_state(x0, start, level, rng, config)
                logits = model(torch.from_numpy(state)[None, None].to(device),
                               None if blind else torch.from_numpy(cond)[None].to(device),
                               torch.tensor([level / config.levels], device=device))
                losses.append(float(boundary_loss(logits, torch.from_numpy(x0)[None, None].to(device),
                                                  config.pos_weight, config.dice_weight, config.cldice_weight)))
            state, coarse, n = start, start, 0
            c_t = None if blind else torch.from_numpy(cond)[None].to(device)
            for n in range(1, VALIDATION_MAX_STEPS + 1):  # refine()'s schedule, on the cached condition
                t = schedule_level(n, total)
                x0_hat = torch.sigmoid(model(torch.from_numpy(state)[None, None].to(device), c_t,
                                             torch.tensor([t / total if total else 0.0], device=device)))
                new = schedule_state(x0_hat[0, 0].cpu().numpy(), coarse, t, total)
                change = float(np.mean(np.abs(new - state)))
                state = new
                if t == 0 and change < DEFAULT_TOL:
                    break
            steps_used.append(n)
            vi_net2.append(segmentation_scores(_validation_grains(state), val["labels"][i])["vi"])
            vi_net2_watershed.append(segmentation_scores(_validation_grains(state, watershed=True),
                                                         val["labels"][i])["vi"])
    model.train()
    return {"val_loss": float(np.mean(losses)), **(baselines or net1_baselines(val)),
            "val_vi_refined": float(np.mean(vi_net2)),
            "val_vi_refined_watershed": float(np.mean(vi_net2_watershed)),
            "val_steps": float(np.mean(steps_used))}


# --------------------------------------------------------------------------- loop


def _lr_factor(step: int, config: Net2TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_net2(config: Net2TrainConfig, out_dir: str | Path, *, net1_weights: str | Path | None = None,
               device: str = "auto", resume: bool = True, max_minutes: float | None = None,
               pool_cache: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train Net2 against a given Net1; returns a summary dict. Resumes from ``out_dir/checkpoint.pt``.

    Parameters
    ----------
    config
        The run's configuration. A resumed run must use the same config and Net1.
    out_dir
        Run folder (created).
    net1_weights
        The Net1 whose outputs are the coarse maps; default: the shipped Net1.
        Its SHA-256 is recorded with the weights (``net1_sha256``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (for Net2; Net1 runs on the CPU once per pool image).
    resume
        Continue from the checkpoint in ``out_dir`` if there is one.
    max_minutes
        Stop cleanly (checkpoint written) after this much wall time.
    pool_cache
        Folder for the cached pool and validation set (default: ``out_dir``);
        runs with the same pool settings and Net1 share it.
    progress
        Show tqdm progress bars.
    """
    import torch
    from tqdm import tqdm

    from napari_grainseg.models.device import describe_device, select_device
    from napari_grainseg.models.net2 import NET2_CONDITION_CHANNELS, Net2, count_parameters
    from napari_grainseg.models.weights import file_sha256, load_checkpoint, load_net1, save_weights, shipped_weights_dir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    revision_at_start = git_revision()
    dev = select_device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    net1_path = Path(net1_weights) if net1_weights is not None else shipped_weights_dir() / "net1.pt"
    net1 = load_net1(net1_path, device="cpu")
    net1_sha = file_sha256(net1_path)
    cache = Path(pool_cache) if pool_cache is not None else out_dir
    pool = build_pool(config, net1, net1_sha, cache, progress=progress)
    val = build_pool(config, net1, net1_sha, cache, validation=True, progress=progress)
    del net1
    baselines = net1_baselines(val)  # fixed for the run: scored once, logged with every validation
    torch.manual_seed(config.seed)
    model = Net2(config.net2_config()).to(dev)
    ema = None
    if config.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    scored = ema.module if ema is not None else model  # the weights that are validated and exported
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best_model.pt"
    step, latest, lowest, elapsed_before = 0, {}, {}, 0.0
    config_json = json.dumps(config.to_dict())
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, dev, keys=("config", "model", "step"))
        if json.loads(ckpt["config"]) != json.loads(config_json) or ckpt.get("net1_sha256") != net1_sha:
            raise InputError(f"{ckpt_path} was made with a different config or Net1; use another --out "
                             "folder, or the same config and Net1 to resume")
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
        latest = json.loads(ckpt["metrics"])
        lowest = json.loads(ckpt["lowest"]) if "lowest" in ckpt else {}
    t0 = time.monotonic()
    stop = {"now": False}

    def _request_stop(signum, frame):
        stop["now"] = True

    old_handler = signal.signal(signal.SIGINT, _request_stop) if _main_thread() else None

    def _checkpoint():
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": torch.tensor(step),
                 "elapsed_s": torch.tensor(elapsed_before + time.monotonic() - t0),
                 "config": config_json, "metrics": json.dumps(latest), "net1_sha256": net1_sha,
                 "lowest": json.dumps(lowest)}
        if ema is not None:
            state["ema"] = ema.state_dict()
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    kind = model.config.conditioning
    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"Net2 ({kind}) on {describe_device(dev)}")
    model.train()
    running = None
    try:
        while step < config.steps:
            states, conds, ts, targets, unrolls = (torch.from_numpy(a).to(dev)
                                                   for a in make_batch(pool, step, config))
            states, ts = unroll_states(model, states, conds, ts, unrolls)
            logits = model(states, conds, ts)
            loss = boundary_loss(logits, targets, config.pos_weight, config.dice_weight, config.cldice_weight)
            if config.topology_weight:
                loss = loss + config.topology_weight * topology_loss(logits, targets, config.topology_min_px)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}",
                            **({"val_vi": f"{latest['val_vi_refined']:.3f}"} if latest else {}))
            if step % config.val_every == 0 or step == config.steps:
                latest = evaluate_net2(scored, val, config, dev, baselines) | {"step": step, "train_loss": running}
                with open(out_dir / "log.jsonl", "a", encoding="utf-8") as log:
                    log.write(json.dumps(latest) + "\n")
                if not lowest or latest["val_vi_refined"] < lowest["val_vi_refined"]:
                    lowest = latest
                    with atomic_path(best_path) as tmp:
                        torch.save(scored.state_dict(), tmp)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _checkpoint()
            if stop["now"] or (max_minutes is not None and time.monotonic() - t0 > 60 * max_minutes):
                break
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    _checkpoint()
    summary = {"step": step, "steps": config.steps, "finished": step >= config.steps,
               "elapsed_s": elapsed_before + time.monotonic() - t0, "metrics": latest,
               "device": describe_device(dev), "checkpoint": str(ckpt_path), "train_loss": running}
    if step >= config.steps:
        use_best = bool(config.keep_best and lowest and best_path.is_file())
        selected = lowest if use_best else latest
        if use_best:
            model.load_state_dict(torch.load(best_path, map_location=dev, weights_only=True))
        elif ema is not None:
            model.load_state_dict(scored.state_dict())
        info = {
            "model": "net2", "architecture": model.config.to_dict(), "parameters": count_parameters(model),
            "condition_channels": [] if kind == "blind" else [
                "state", *NET2_CONDITION_CHANNELS,
                *(["watershed_candidates"] if model.config.watershed_candidates else []), "t/T"],
            "train_config": config.to_dict(), "git_revision": revision_at_start,
            "net1_sha256": net1_sha, "net1_weights": str(net1_path),
            "trained_steps": step, "train_seconds": round(summary["elapsed_s"], 1),
            "hardware": f"{describe_device(dev)}; {platform.processor() or platform.machine()}",
            "torch": torch.__version__,
            "validation": selected, "selected_step": selected.get("step", step),
            "reproduce": "grainseg train net2 --config <this file's train_config as JSON> "
                         "--net1-weights <the Net1 with net1_sha256> --out DIR",
        }
        weights, _ = save_weights(model, out_dir / "net2.pt", info)
        summary["weights"] = str(weights)
    with atomic_open(out_dir / "summary.json") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def export_net2_checkpoint(checkpoint: str | Path, weights_path: str | Path) -> Path:
    """Write the model of a (possibly unfinished) Net2 checkpoint as a weights file."""

    from napari_grainseg.models.net2 import Net2, count_parameters
    from napari_grainseg.models.weights import load_checkpoint, save_weights

    ckpt = load_checkpoint(checkpoint, "cpu", keys=("config", "model", "step"))
    config = Net2TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in json.loads(ckpt["config"]).items()})
    model = Net2(config.net2_config())
    if "ema" in ckpt:  # the averaged weights are the ones a finished run would export
        model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"})
    else:
        model.load_state_dict(ckpt["model"])
    info = {"model": "net2", "architecture": model.config.to_dict(), "parameters": count_parameters(model),
            "train_config": config.to_dict(), "trained_steps": int(ckpt["step"]),
            "net1_sha256": ckpt.get("net1_sha256"), "validation": json.loads(ckpt["metrics"]),
            "exported_from": str(checkpoint), "unfinished": int(ckpt["step"]) < config.steps}
    return save_weights(model, weights_path, info)[0]
