"""Training Net1 on the endless synthetic stream: reproducible, resumable, checkpointed.

Sample ``i`` of a run is ``synthetic.generate(seed=config.seed * 10**8 + i)``, so
the data never touches the disk, any sample can be regenerated, and a resumed
run sees exactly the samples it would have seen without the interruption.
Validation uses a fixed held-out set whose seeds (``VALIDATION_SEED_BASE``
onwards) never occur in training.

A run folder holds ``checkpoint.pt`` (written atomically every
``checkpoint_every`` steps and on Ctrl-C), ``log.jsonl`` (one line per
validation) and, at the end, ``net1.pt`` + ``net1.json`` (fp16 weights with the
exact config, git revision, hardware and final validation metrics).

Examples
--------
>>> config = TrainConfig(steps=20, batch_size=2)             # doctest: +SKIP
>>> train_net1(config, "runs/smoke", device="cpu")          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.training.config import UPSAMPLED_FINE, TrainConfig
from napari_grainseg.training.loop import Export, Progress, train
from napari_grainseg.training.loop import export_checkpoint as _export

__all__ = [
    "VALIDATION_SEED_BASE",
    "FINE_DIAMETERS_PX",
    "UPSAMPLED_FINE",
    "TrainConfig",
    "best_teacher_targets",
    "boundary_loss",
    "boundary_segments",
    "boundary_target",
    "evaluate_validation",
    "export_checkpoint",
    "make_example",
    "orientation_average",
    "pass_distillation_loss",
    "saddle_loss",
    "segment_passes",
    "train_net1",
    "training_seed",
    "upsampled_fine_sample",
    "validation_set",
]

#: First seed of the held-out validation samples; training seeds stay far below.
VALIDATION_SEED_BASE = 9_000_000_000


# --------------------------------------------------------------------------- data


def training_seed(config: TrainConfig, index: int) -> int:
    """Seed of training sample ``index`` (disjoint from validation seeds)."""
    return config.seed * 10**8 + index


def boundary_target(boundaries: np.ndarray, width: int) -> np.ndarray:
    """The 1-px boundary map dilated to ``width`` px (float32 0/1)."""
    import cv2

    b = boundaries.astype(np.uint8)
    if width > 1:
        b = cv2.dilate(b, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    return b.astype(np.float32)


#: Mean grain diameters (px, log-uniform) of :data:`UPSAMPLED_FINE` before enlarging.
FINE_DIAMETERS_PX: tuple[float, float] = (4.0, 10.0)


def upsampled_fine_sample(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(image, 1-px boundaries)`` of fine grains enlarged as the inference pipeline enlarges them.

    The training source :data:`UPSAMPLED_FINE`. Net1 v6 merged such grains: the randomised
    preset's small grains mostly have faint boundaries, and every boundary of an enlarged
    fine grain is soft. The grain size is drawn from ``FINE_DIAMETERS_PX``; the sample is generated at the
    size that :func:`~napari_grainseg.segmentation.inference.scale_for_grain_size` and
    :func:`~napari_grainseg.segmentation.inference.resample` (cubic) bring to ``shape``.
    The labels are enlarged by nearest neighbour, centred on the rendered edges, and their
    boundary pixels thinned back to 1 px, so the target stays exact at the enlarged scale.
    """
    from napari_grainseg.segmentation.inference import resample, scale_for_grain_size
    from napari_grainseg.synthetic import generate
    from napari_grainseg.training.corrections import thin_lines

    rng = np.random.default_rng([seed, 4711])
    lo, hi = FINE_DIAMETERS_PX
    diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    visible = {  # the boundaries must be visible at the native scale: contrast, sharpness, dose
        "contrast": float(rng.uniform(0.1, 0.3)),
        "blur_sigma": float(rng.uniform(0.3, max(0.5, diameter / 6))),
        "dose": float(np.exp(rng.uniform(np.log(200.0), np.log(3000.0)))),
        "boundary_darkening": float(rng.uniform(0.0, 0.3)),
        "similar_fraction": float(rng.uniform(0.0, 0.2)),
        "flat_shading": False,
    }
    factor = scale_for_grain_size(diameter)
    h, w = (int(np.ceil(n / factor)) + 2 for n in shape)
    sample = generate(seed=seed, shape=(h, w), preset="train", mean_diameter=diameter, **visible)
    image = resample(sample.image, factor)[: shape[0], : shape[1]]
    # The generator's 1-px boundary lies half a pixel before the rendered edge (on its low side),
    # which enlarging would turn into an offset of ~1 px: look the labels up half a native pixel
    # back, so the enlarged boundary band is centred on the edge. Native coordinate of output
    # pixel x: (x + 0.5) / factor - 0.5.
    rows, cols = (
        np.clip(np.floor((np.arange(n) + 0.5) / factor - 0.5).astype(np.intp), 0, m - 1)
        for n, m in zip(image.shape, sample.labels.shape)
    )
    boundaries = thin_lines(sample.labels[np.ix_(rows, cols)] == 0)
    return np.ascontiguousarray(image, dtype=np.float32), boundaries


def make_example(
    seed: int, shape: tuple[int, int], preset: str, target_width: int, overrides: dict[str, Any] | None = None
):
    """One (features, target, true 1-px boundaries) triple from the synthetic generator.

    ``preset`` is a generator preset or :data:`UPSAMPLED_FINE`; ``overrides`` fix generator knobs.
    """
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.synthetic import generate

    if preset == UPSAMPLED_FINE:
        image, boundaries = upsampled_fine_sample(seed, tuple(shape))
    else:
        sample = generate(seed=seed, shape=tuple(shape), preset=preset, **(overrides or {}))
        image, boundaries = sample.image, sample.boundaries
    return net1_features(image), boundary_target(boundaries, target_width)[None], boundaries


#: Boundary segments shorter than this (px) are left out of the saddle term: the stubs
#: between two junctions close together, where the 3 x 3 ridge already touches the junction.
MIN_SEGMENT_PX = 4


def boundary_segments(boundaries: np.ndarray, min_length: int = MIN_SEGMENT_PX) -> np.ndarray:
    """Number the boundary segments of a 1-px boundary map: one id per run between two grains.

    Grains are the 4-connected regions off the boundary. A boundary pixel whose 3 x 3 window
    touches exactly two grains belongs to the segment between them; junctions (three or more
    grains), their neighbours and dangling lines (one grain) belong to none, so the segments
    come apart at the junctions. Returns int32 ids 1..n (0: no segment), segments shorter than
    ``min_length`` px dropped.

    Examples
    --------
    >>> b = np.zeros((21, 21), bool); b[10, :] = True; b[:, 10] = True   # a cross: four grains
    >>> int(boundary_segments(b).max())
    4
    """
    from scipy import ndimage

    boundaries = np.asarray(boundaries, dtype=bool)
    grains, _ = ndimage.label(~boundaries)
    h, w = boundaries.shape
    padded = np.pad(grains, 1)
    window = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1)
    window.sort(axis=-1)
    new = (window[..., 1:] != window[..., :-1]) & (window[..., 1:] > 0)
    distinct = (window[..., 0] > 0) + new.sum(axis=-1)
    junctions = ndimage.binary_dilation(boundaries & (distinct >= 3), np.ones((3, 3), bool))
    segments, _ = ndimage.label(boundaries & (distinct == 2) & ~junctions, np.ones((3, 3), int))
    kept = np.bincount(segments.ravel()) >= min_length
    kept[0] = False
    renumber = np.where(kept, np.cumsum(kept), 0).astype(np.int32)  # consecutive ids 1..n
    return renumber[segments]


class _SyntheticSamples:
    """Map-style dataset: item ``i`` is training sample ``i`` of the run (deterministic).

    An item is ``(features, target)``, with the :func:`boundary_segments` of its truth
    (``(1, H, W)`` int32) added when the run's saddle or pass-distillation term is on.
    """

    def __init__(self, config: TrainConfig):
        self.config = config

    def __len__(self) -> int:
        return self.config.steps * self.config.batch_size

    def __getitem__(self, index: int):
        c = self.config
        features, target, boundaries = make_example(
            training_seed(c, index), c.patch_shape, c.sample_preset(index), c.target_width, c.generator_overrides
        )
        if c.needs_segments:
            return features, target, boundary_segments(boundaries)[None]
        return features, target


def validation_set(config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The fixed held-out validation examples: half the (first) training preset, half the "tem" preset."""
    presets = (config.sample_preset(0), "tem")
    return [
        make_example(
            VALIDATION_SEED_BASE + i, config.val_shape, presets[i % 2], config.target_width, config.generator_overrides
        )
        for i in range(config.val_size)
    ]


# --------------------------------------------------------------------------- loss


def boundary_loss(logits, target, pos_weight: float, dice_weight: float, *, per_sample: bool = False):
    """Weighted binary cross-entropy plus soft Dice on the boundary class.

    The mean over the batch, or with ``per_sample`` each sample's loss, shape ``(N,)`` (to compare
    teachers sample by sample, :func:`best_teacher_targets`).
    """
    import torch
    import torch.nn.functional as F

    weight = torch.tensor(pos_weight, device=logits.device)
    if per_sample:
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight, reduction="none").mean(
            dim=(1, 2, 3)
        )
    else:
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + dice_weight * (dice if per_sample else dice.mean())


def segment_passes(prob, segments):
    """The lowest point of the ridge along each true boundary segment: ``(passes, keys)``.

    ``prob`` is a boundary probability ``(N, 1, H, W)``, max-pooled over 3 x 3 first (the ridge's
    height within a pixel of the true line: the predicted ridge may lie beside it); ``segments``
    are :func:`boundary_segments` ids of the same shape. A segment's lowest point is the pass a
    watershed merges its two grains across. ``passes`` holds one value per segment present, in
    the order of ``keys`` (``sample * (max id + 1) + id``); the gradient of a pass goes only to
    its pixel. Both are empty when there are no segments.
    """
    import torch
    import torch.nn.functional as F

    ridge = F.max_pool2d(prob, kernel_size=3, stride=1, padding=1)
    ids = segments.long()
    n = int(ids.amax()) + 1 if ids.numel() else 1
    on = ids > 0
    batch = torch.arange(ids.shape[0], device=ids.device).view(-1, 1, 1, 1).expand_as(ids)
    keys = (batch * n + ids)[on]
    lowest = torch.ones(ids.shape[0] * n, dtype=ridge.dtype, device=ridge.device)
    lowest = lowest.scatter_reduce(0, keys, ridge[on], reduce="amin", include_self=True)
    present = torch.zeros_like(lowest, dtype=torch.bool)
    present[keys] = True
    return lowest[present], torch.nonzero(present).flatten()


def saddle_loss(logits, segments):
    """Mean over the boundary segments of ``-log`` of the lowest probability along each.

    ``segments`` are :func:`boundary_segments` ids, ``(N, 1, H, W)``. See :func:`segment_passes`:
    only each segment's pass receives the gradient. Zero when there are no segments.
    """
    import torch

    passes, _ = segment_passes(torch.sigmoid(logits), segments)
    if not passes.numel():
        return logits.sum() * 0.0
    return -torch.log(passes.clamp_min(1e-4)).mean()


def pass_distillation_loss(logits, teacher_probs, segments):
    """Raise each true boundary segment's pass to the highest teacher's, where it is below it.

    For every segment (:func:`segment_passes`) the target is the highest of the teachers' passes
    on it (``teacher_probs``: a list of ``(N, 1, H, W)`` probabilities, no gradient); the loss is
    the mean, over the segments whose student pass is below that target, of
    ``log(target / student pass)``. Unlike :func:`saddle_loss`, which pushes every pass toward 1,
    including boundaries the image does not show, this asks only for a ridge some teacher already
    draws from the same pixels. Zero when no segment is below its target.
    """
    import torch

    student, _ = segment_passes(torch.sigmoid(logits), segments)
    with torch.no_grad():
        target = torch.stack([segment_passes(p, segments)[0] for p in teacher_probs]).amax(dim=0)
    below = student < target
    if not bool(below.any()):
        return logits.sum() * 0.0
    return (torch.log(target[below].clamp_min(1e-4)) - torch.log(student[below].clamp_min(1e-4))).mean()


def orientation_average(model, features, n: int, first=None):
    """Mean probability of ``model`` over the first ``n`` of the square's symmetries
    (:data:`~napari_grainseg.segmentation.inference.DIHEDRAL`, whose prefixes of 1, 2, 4 and 8 are
    groups), each mapped back.

    ``features`` is ``(N, C, H, W)`` with H and W multiples of the model's stride (a quarter turn
    swaps them). ``first``: the model's probability on ``features`` as they are, if already
    computed. With ``n = 8`` this is the product's test-time augmentation
    (:func:`napari_grainseg.segmentation.inference.run_net1` with ``tta=True``).
    """
    import torch

    from napari_grainseg.segmentation.inference import DIHEDRAL

    with torch.no_grad():
        total = torch.sigmoid(model(features)) if first is None else first.clone()
        for k, flip in DIHEDRAL[1:n]:
            x = torch.rot90(features, k, dims=(2, 3))
            prob = torch.sigmoid(model(x.flip(3) if flip else x))
            total += torch.rot90(prob.flip(3) if flip else prob, -k, dims=(2, 3))
    return total / n


def best_teacher_targets(teachers, features, target, pos_weight: float, dice_weight: float, orientations: int = 1):
    """Per sample, the probability map of the teacher whose boundary loss against ``target`` is lowest.

    Returns ``(soft_targets, choice, probs)``: ``(N, 1, H, W)`` probabilities, the ``(N,)`` index of
    the chosen teacher and every teacher's probabilities as they are (a list, for
    :func:`pass_distillation_loss`). Two teachers that are each better on other kinds of image (one
    trained on the bright-field look, one on randomised looks) can so both be distilled into one
    student, each on the images where it is right. ``orientations`` > 1: the teacher is chosen on
    the sample as it is, and its soft target is then its :func:`orientation_average` over that many
    turned and flipped copies (its test-time augmentation).
    """
    import torch

    with torch.no_grad():
        probs, losses = [], []
        for teacher in teachers:
            logits = teacher(features)
            probs.append(torch.sigmoid(logits))
            losses.append(boundary_loss(logits, target, pos_weight, dice_weight, per_sample=True))
        choice = torch.stack(losses).argmin(dim=0)
        soft = torch.stack(probs)[choice, torch.arange(features.shape[0], device=features.device)]
        if orientations > 1:
            for index, teacher in enumerate(teachers):
                chosen = choice == index
                if chosen.any():
                    soft[chosen] = orientation_average(teacher, features[chosen], orientations, probs[index][chosen])
    return soft, choice, probs


# --------------------------------------------------------------------------- training


def evaluate_validation(model, examples, device, config: TrainConfig) -> dict[str, float]:
    """Mean loss and pixel-level F1 (boundary within 2 px) of ``model`` on the validation set."""
    import torch
    from scipy import ndimage
    from skimage.morphology import thin

    model.eval()
    losses, f1s = [], []
    with torch.inference_mode():
        for features, target, true_b in examples:
            x = torch.from_numpy(features)[None].to(device)
            t = torch.from_numpy(target)[None].to(device)
            logits = model(x)
            losses.append(float(boundary_loss(logits, t, config.pos_weight, config.dice_weight)))
            pred = thin(torch.sigmoid(logits)[0, 0].cpu().numpy() > 0.5)
            dist_true = ndimage.distance_transform_edt(~true_b)
            dist_pred = ndimage.distance_transform_edt(~pred)
            precision = float((dist_true[pred] <= 2).mean()) if pred.any() else 0.0
            recall = float((dist_pred[true_b] <= 2).mean()) if true_b.any() else 1.0
            f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    model.train()
    return {"val_loss": float(np.mean(losses)), "val_f1_2px": float(np.mean(f1s))}


def _initial_model(config: TrainConfig, device):
    """A fresh Net1, or ``config.init_weights`` (widened to the config's width if narrower)."""
    from napari_grainseg.models.net1 import Net1, widen_net1
    from napari_grainseg.models.weights import load_net1

    model = Net1(config.net1_config()).to(device)
    if config.init_weights:
        start = load_net1(config.init_weights, device=device, for_training=True)
        same_but_width = dataclasses.replace(start.config, base_channels=model.config.base_channels) == model.config
        if not same_but_width or start.config.base_channels > model.config.base_channels:
            raise InputError(
                f"init_weights {config.init_weights} has architecture {start.config.to_dict()}, "
                f"the config asks for {model.config.to_dict()} (only widening is supported)"
            )
        if start.config != model.config:  # grow the trained model, keeping what it computes
            start = widen_net1(start, model.config.base_channels, seed=config.seed)
        model.load_state_dict(start.state_dict())
    return model


def _teacher(path: str, device):
    """A frozen Net1 to distil from (eval mode, no gradients)."""
    from napari_grainseg.models.weights import load_net1

    teacher = load_net1(path, device=device)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _export_info(model) -> dict[str, Any]:
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.net1 import count_parameters

    return {
        "model": "net1",
        "architecture": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input_channels": list(NET1_CHANNELS),
        "reproduce": "grainseg train net1 --config <train_config above, as a JSON file> --out DIR",
    }


def train_net1(
    config: TrainConfig,
    out_dir: str | Path,
    device: str = "auto",
    resume: bool = True,
    max_minutes: float | None = None,
    progress: bool = True,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train Net1; returns a summary dict. Resumes from ``out_dir/checkpoint.pt`` when present.

    Parameters
    ----------
    config
        The run's configuration. A resumed run must use the same config.
    out_dir
        Run folder (created).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    resume
        Continue from the checkpoint in ``out_dir`` if there is one.
    max_minutes
        Stop cleanly (checkpoint written) after this much wall time; run the
        command again to continue.
    progress
        Show a tqdm progress bar.
    callback, should_stop
        See :func:`napari_grainseg.training.loop.train`.
    """
    from torch.utils.data import DataLoader

    from napari_grainseg.models.weights import file_sha256
    from napari_grainseg.training.loop import prepare_device

    dev = prepare_device(config, device)
    teachers = [_teacher(path, dev) for path in config.teachers]  # before the data: a bad teacher fails fast
    # a teacher is named by its path; its bytes are what a resumed run and the weights' record must match
    identity = {"teachers_sha256": [file_sha256(path) for path in config.teachers]} if config.teachers else None
    val_examples = validation_set(config)
    samples = _SyntheticSamples(config)

    def batches(start_step: int):
        return DataLoader(
            samples,
            batch_size=config.batch_size,
            sampler=range(start_step * config.batch_size, len(samples)),
            num_workers=config.num_workers,
            persistent_workers=False,
            prefetch_factor=4 if config.num_workers else None,
        )

    def loss_fn(model, batch):
        import torch.nn.functional as F

        features, target, *segments = (t.to(dev) for t in batch)
        logits = model(features)
        loss = boundary_loss(logits, target, config.pos_weight, config.dice_weight)
        if segments and config.saddle_weight > 0:
            loss = loss + config.saddle_weight * saddle_loss(logits, segments[0])
        if teachers and (config.distill_weight > 0 or config.pass_distill_weight > 0):
            soft, _, probs = best_teacher_targets(
                teachers, features, target, config.pos_weight, config.dice_weight, config.teacher_orientations
            )
            if config.distill_weight > 0:
                loss = loss + config.distill_weight * F.binary_cross_entropy_with_logits(logits, soft)
            if config.pass_distill_weight > 0:
                loss = loss + config.pass_distill_weight * pass_distillation_loss(logits, probs, segments[0])
        return loss

    return train(
        config,
        lambda: _initial_model(config, dev),
        batches,
        loss_fn,
        out_dir,
        device=dev,
        export=Export("net1.pt", _export_info),
        validate=lambda model: evaluate_validation(model, val_examples, dev, config),
        identity=identity,
        resume=resume,
        max_minutes=max_minutes,
        bar=progress,
        desc="Net1",
        callback=callback,
        should_stop=should_stop,
    )


def export_checkpoint(checkpoint: str | Path, weights_path: str | Path) -> Path:
    """Write the model of a (possibly unfinished) Net1 training checkpoint as a weights file.

    Lets a long run be inspected, or its current state used, without stopping it.
    """
    from napari_grainseg.models.net1 import Net1

    return _export(checkpoint, weights_path, TrainConfig, lambda config: Net1(config.net1_config()), _export_info)
