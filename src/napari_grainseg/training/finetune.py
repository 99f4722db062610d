"""Fine-tuning Net1 on a user's corrected micrographs (learning from corrections).

Starts from the shipped weights (or another base), trains with Adam at a small
learning rate on augmented crops of the corrections mixed with synthetic
samples (so the model does not forget what it knew), with the project's own
:func:`~napari_grainseg.training.net1.boundary_loss` restricted to the verified
part of each image (ROI). With two or more images, part of them is held out and
the adapted model is scored against the base model there; an adapted model that
scores worse is flagged (``worse_than_base``), not silently used.

Deterministic on CPU: the same corrections, config and seed give the same weights.

The optimisation runs on the shared training loop (:func:`napari_grainseg.training.loop.train`:
schedule, progress, cancel, Ctrl-C, checkpoint in a run folder); this module brings the
data (:class:`~napari_grainseg.training.corrections.CorrectionSampler`, batch ``i`` a
function of the seed and ``i`` only) and the loss.

Examples
--------
>>> from napari_grainseg.training.corrections import load_corrections         # doctest: +SKIP
>>> corr = load_corrections(["a.tif", "b.tif"], boundaries=["a_b.tif", "b_b.tif"])  # doctest: +SKIP
>>> result = finetune_net1(corr, FinetuneConfig(steps=300))                   # doctest: +SKIP
>>> result.heldout["worse_than_base"]                                          # doctest: +SKIP
False
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.training.config import LoopConfig
from napari_grainseg.training.corrections import Correction, CorrectionSampler, correction_grain_sizes

#: Metrics of the held-out comparison (lower is better except F1).
HELDOUT_METRICS: tuple[str, ...] = (
    "f1_2px",
    "vi",
    "vi_split",
    "vi_merge",
    "abs_grain_count_error",
    "abs_mean_ecd_error",
)


@dataclass(frozen=True)
class FinetuneConfig(LoopConfig):
    """Everything that determines a fine-tuning run (saved in ``model.json``).

    Attributes
    ----------
    (the shared loop's, :class:`~napari_grainseg.training.config.LoopConfig`; fine-tuning defaults:
    300 steps of 8 crops, lr 1e-3 without weight decay (Adam), a 20-step warm-up, then the loop's
    cosine to 2 %)
    patch : crop size in px (multiple of 8).
    synthetic_share, synthetic_samples, synthetic_preset : the synthetic mix against forgetting
        (a pool of ``synthetic_samples`` pre-generated samples, augmented like the corrections).
    pos_weight, dice_weight, target_width : the loss and target of Net1's training.
    holdout : share of the images held out for the check against the base model (with >= 2 images,
        at least one); 0 trains on all of them without a check.
    net2_steps : steps of Net2's fine-tuning after Net1's (0: Net2 is not adapted;
        :mod:`napari_grainseg.training.finetune_net2`).
    seed : crops, augmentation, synthetic samples and the held-out choice.
    """

    WHAT: ClassVar[str] = "fine-tuning config"

    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    val_every: int = 50
    checkpoint_every: int = 100
    patch: int = 128
    synthetic_share: float = 0.25
    synthetic_samples: int = 16
    synthetic_preset: str = "train"
    pos_weight: float = 3.0
    dice_weight: float = 1.0
    target_width: int = 3
    holdout: float = 0.25
    net2_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seed", "synthetic_samples", "patch", "net2_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{self.WHAT}: {name} must be a whole number, got {value!r}")
        super().__post_init__()
        if self.patch < 32 or self.patch % 8:
            raise InputError(f"{self.WHAT}: patch must be a multiple of 8 >= 32, got {self.patch}")
        if not self.lr < 1:
            raise InputError(f"{self.WHAT}: lr must be between 0 and 1, got {self.lr}")
        for name in ("synthetic_share", "holdout"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"{self.WHAT}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.seed < 0:
            raise InputError(f"{self.WHAT}: seed must be >= 0, got {self.seed}")
        if self.net2_steps < 0:
            raise InputError(f"{self.WHAT}: net2_steps must be >= 0, got {self.net2_steps}")


@dataclass
class FinetuneResult:
    """What :func:`finetune_net1` returns.

    Attributes
    ----------
    model : the adapted Net1 (BatchNorm kept, eval mode).
    info : JSON-ready record of the run (config, scale, loss curve, held-out figures, split).
    heldout : the held-out comparison (empty when nothing was held out).
    net2 : the adapted Net2 (eval mode), or None when Net2 was not adapted.
    """

    model: Any
    info: dict
    heldout: dict = field(default_factory=dict)
    net2: Any = None


# --------------------------------------------------------------------------- loss


def masked_boundary_loss(logits, target, weight, pos_weight: float, dice_weight: float):
    """:func:`~napari_grainseg.training.net1.boundary_loss` counting only pixels of weight > 0.

    Weighted BCE averaged over the weighted pixels plus soft Dice over them; with
    all weights 1 it equals ``boundary_loss``. Pixels of weight 0 (outside the
    ROI, padding) contribute nothing, not even a gradient.
    """
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none", pos_weight=torch.tensor(pos_weight, device=logits.device)
    )
    total = weight.sum().clamp_min(1.0)
    prob = torch.sigmoid(logits) * weight
    t = target * weight
    inter = (prob * t).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + t.sum(dim=(1, 2, 3)) + 1)
    return (bce * weight).sum() / total + dice_weight * dice.mean()


# --------------------------------------------------------------------------- fine-tuning


def split_heldout(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, held out): with n >= 2 and ``holdout`` > 0, round(n * holdout) images, at least 1."""
    if n < 2 or holdout <= 0:
        return list(range(n)), []
    n_hold = min(n - 1, max(1, round(n * holdout)))
    order = np.random.default_rng(seed).permutation(n)
    held = sorted(int(i) for i in order[:n_hold])
    return [i for i in range(n) if i not in held], held


def working_scale(
    corrections: list[Correction], grain_size_px: float | None
) -> tuple[float, float | None, str, list[float | None]]:
    """(scale, grain size, source, each image's grain size): the resampling of the corrections for
    fine-tuning (:func:`~napari_grainseg.models.model_dir.adapted_scale`: large grains to 24 px).

    ``grain_size_px`` (a hint) wins; otherwise the grain size is the median of the images' sizes
    measured on the corrected boundaries themselves (known exactly, unlike at inference). Each
    image's size (None where none can be measured) is returned either way: images at different
    magnifications share one training scale.
    """
    from napari_grainseg.models.model_dir import adapted_scale

    sizes = correction_grain_sizes(corrections)
    measured = [size for size in sizes if size is not None]
    if grain_size_px is not None:
        return adapted_scale(grain_size_px), float(grain_size_px), "hint", sizes
    if not measured:
        return 1.0, None, "none", sizes
    size = float(np.median(measured))
    return adapted_scale(size), size, "corrections", sizes


def finetune_net1(
    corrections: list[Correction],
    config: FinetuneConfig = FinetuneConfig(),
    *,
    base_weights: str | Path | None = None,
    base_net2_weights: str | Path | None = None,
    grain_size_px: float | None = None,
    device="cpu",
    max_minutes: float | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    evaluate_heldout: bool = True,
    until_time: bool = False,
    tune_builder: bool = True,
    run_dir: str | Path | None = None,
) -> FinetuneResult:
    """Adapt Net1 to corrected micrographs.

    Parameters
    ----------
    corrections
        From :func:`~napari_grainseg.training.corrections.load_corrections` (or built in memory).
    config
        Steps, learning rate, augmentation, synthetic mix, held-out share, seed.
    base_weights
        Net1 weights to start from; default: the shipped weights.
    base_net2_weights
        Net2 weights to start from when ``config.net2_steps`` > 0; default: the shipped Net2.
    grain_size_px
        Mean grain diameter of the corrected images in px (a hint); default: measured on the corrections.
    device
        ``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"`` or a ``torch.device``.
    max_minutes
        Stop after this much training time (the result is then not reproducible step for step).
    until_time
        With ``max_minutes``: train for that long instead of ``config.steps`` steps (the
        number of steps that fit is measured on two steps first; the schedule runs over them).
    tune_builder
        Choose the grain builder and its parameter for the adapted model on the training
        images (:func:`tune_grain_builder`; ``info["grain_builder"]``).
    run_dir
        The training loop's run folder (checkpoint, log): an interrupted run with the same
        corrections and config resumes from it. Default: a temporary folder.
    progress
        ``progress(step, steps, loss)`` after each step (Net2's steps, if any, follow Net1's in the count).
    cancel
        Polled after each step; True stops training (the model so far is returned).
    evaluate_heldout
        Score the held-out images with the base and the adapted model.
    """
    import dataclasses

    import torch

    from napari_grainseg.models.device import describe_device
    from napari_grainseg.models.weights import file_sha256, load_net1, shipped_weights_dir
    from napari_grainseg.training.loop import prepare_device
    from napari_grainseg.training.loop import train as run_loop

    if not corrections:
        raise InputError("no corrected images to learn from")
    dev = prepare_device(config, device)
    train_idx, held_idx = split_heldout(len(corrections), config.holdout, config.seed)
    train = [corrections[i] for i in train_idx]
    scale, grain_size, grain_source, image_sizes = working_scale(corrections, grain_size_px)
    from napari_grainseg.models.model_dir import inference_grain_size

    hint = inference_grain_size(grain_size) if grain_size is not None else None  # predicts at ``scale``
    grain_size_nm = recorded_grain_size_nm(grain_source, grain_size, corrections, image_sizes)
    # each image as the product predicts it: calibrated ones at their own scale (the grain size in nm)
    base_sizes, adapted_hints = image_scales(corrections, grain_size, grain_size_nm)
    t_prep = time.monotonic()
    sampler = CorrectionSampler(
        train,
        scale,
        patch=config.patch,
        target_width=config.target_width,
        synthetic=config.synthetic_samples if config.synthetic_share > 0 else 0,
        synthetic_preset=config.synthetic_preset,
        seed=config.seed,
    )
    prep_seconds = time.monotonic() - t_prep
    base_path = Path(base_weights) if base_weights is not None else shipped_weights_dir() / "net1.pt"
    model = load_net1(base_path, device=dev, for_training=True)
    base_info = dict(getattr(model, "weights_info", {}))

    def batches(start: int):
        for step in range(start, config.steps):
            yield sampler.batch(
                np.random.default_rng([config.seed, 23, step]), config.batch_size, config.synthetic_share
            )

    def loss_fn(model, batch):
        f, t, w = (torch.from_numpy(a).to(dev) for a in batch)
        return masked_boundary_loss(model(f), t, w, config.pos_weight, config.dice_weight)

    if until_time and max_minutes is not None:  # a time budget: as many steps as fit, measured
        config = dataclasses.replace(config, steps=_steps_in(max_minutes, model, loss_fn, batches))
    losses: list[float] = []
    stopped = {"why": None}

    total = config.steps + config.net2_steps

    def callback(p):
        losses.append(p.loss)
        if progress:
            progress(p.step, total, p.loss)

    def should_stop() -> bool:
        if cancel is not None and cancel():
            stopped["why"] = "cancelled"
            return True
        return False

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grainseg-finetune-") as tmp:
        run = run_loop(
            config,
            model,
            batches,
            loss_fn,
            run_dir or tmp,
            device=dev,
            resume=run_dir is not None,
            max_minutes=max_minutes,
            bar=False,
            callback=callback,
            should_stop=should_stop,
        )
    train_seconds = time.monotonic() - t0
    model.eval()
    done = int(run["step"])
    if run["finished"]:
        why = "done"
    elif stopped["why"]:
        why = stopped["why"]
    elif max_minutes is not None and train_seconds > 60 * max_minutes:
        why = "time"
    else:
        why = "interrupted"
    model.weights_info = base_info
    info = {
        "config": config.to_dict(),
        "steps_done": done,
        "stopped": why,
        "base_net1": {
            "path": str(base_path),
            "sha256": file_sha256(base_path),
            "shipped": base_path.resolve() == (shipped_weights_dir() / "net1.pt").resolve(),
        },
        "working_scale": scale,
        "grain_size_px": grain_size,
        "grain_size_source": grain_source,
        "grain_size_nm": grain_size_nm,
        # one per image, in order (None: no size measured), as corrections_pixel_sizes_nm
        "corrections_grain_sizes_px": [None if size is None else round(size, 2) for size in image_sizes],
        "inference_grain_size_px": hint,
        "loss_curve": curve(losses),
        "train_images": train_idx,
        "heldout_images": held_idx,
        "steps": config.steps,
        "prepare_seconds": round(prep_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "device": describe_device(dev),
    }
    net2 = None
    if done and config.net2_steps and why == "done":
        from napari_grainseg.training.finetune_net2 import finetune_net2

        net2, info["net2"] = finetune_net2(
            sampler,
            model,
            config,
            steps=config.net2_steps,
            base_weights=base_net2_weights,
            device=dev,
            progress=None if progress is None else (lambda s, _n, loss: progress(config.steps + s, total, loss)),
            cancel=should_stop,
        )
        if info["net2"]["steps_done"] < config.net2_steps:
            net2, info["stopped"] = None, stopped["why"] or "interrupted"
            info["net2"]["kept"] = False
    heldout: dict = {}
    if done and tune_builder:
        train_hints = [adapted_hints[i] for i in train_idx]
        info["grain_builder"] = tune_grain_builder(model, train, device=dev, grain_size_px=train_hints)
    if held_idx and evaluate_heldout and done:
        base = load_net1(base_path, device=dev)
        heldout = compare_on(
            corrections,
            held_idx,
            base,
            model,
            device=dev,
            grain_size_px=[base_sizes[i] for i in held_idx],
            adapted_grain_size_px=[adapted_hints[i] for i in held_idx],
            tuned=info.get("grain_builder"),
            adapted_net2=net2,
        )
        info["heldout"] = heldout
    return FinetuneResult(model=model, info=info, heldout=heldout, net2=net2)


def _steps_in(minutes: float, model, loss_fn, batches) -> int:
    """How many steps fit in ``minutes``: two steps on a copy of the model are timed."""
    import torch

    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.0)
    source = iter(batches(0))
    t0 = time.monotonic()
    for _ in range(2):
        optimizer.zero_grad()
        loss_fn(probe, next(source)).backward()
    per_step = (time.monotonic() - t0) / 2
    return max(10, int(60 * minutes / max(per_step, 1e-3)))


def curve(losses: list[float], points: int = 100) -> list[list[float]]:
    """The loss curve as at most ``points`` [step, mean loss over the steps since the last point] pairs."""
    if not losses:
        return []
    every = max(1, math.ceil(len(losses) / points))
    return [
        [min(i + every, len(losses)), round(float(np.mean(losses[i : i + every])), 5)]
        for i in range(0, len(losses), every)
    ]


# --------------------------------------------------------------------------- scoring


def per_image(hint: float | Sequence[float | None] | None, n: int) -> list[float | None]:
    """A grain-size hint given once for ``n`` images, or already one per image, as a list of ``n``."""
    if hint is None or np.isscalar(hint):
        return [hint] * n
    hints = list(hint)
    if len(hints) != n:
        raise ValueError(f"{len(hints)} grain-size hints for {n} images")
    return hints


def image_scales(
    corrections: list[Correction], grain_size_px: float | None, grain_size_nm: float | None
) -> tuple[list[float | None], list[float | None]]:
    """Per correction: the grain size the base model is given and the hint the adapted model is
    given, as ``segment --model`` and napari would for that image (a calibrated image at its own
    scale, by the grain size in nm; otherwise the corrections' grain size in px)."""
    from napari_grainseg.models.model_dir import corrections_grain_size, model_grain_size_hint

    scale = {"grain_size_px": grain_size_px, "grain_size_nm": grain_size_nm}
    sizes = [corrections_grain_size(scale, c.pixel_size_nm) for c in corrections]
    hints = [model_grain_size_hint(scale, pixel_size_nm=c.pixel_size_nm) for c in corrections]
    return sizes, hints


def inference_copy(model):
    """An eval-mode copy of a training Net1 with the BatchNorms folded (for prediction)."""
    from napari_grainseg.models.net1 import fold_batchnorm

    return fold_batchnorm(copy.deepcopy(model).eval())


def score_images(
    model,
    corrections: list[Correction],
    *,
    device="cpu",
    grain_size_px: float | Sequence[float | None] | None = None,
    builders: dict | tuple[str, ...] = ("threshold", "watershed"),
    net2=None,
) -> dict[str, list[dict]]:
    """Per builder, per image: :func:`~napari_grainseg.evaluation.metrics.evaluate_prediction` against
    the corrected truth (inside the ROI's bounding box when there is a ROI).

    ``builders``: names of grain builders, or ``{name: {"grains": builder, parameters...}}``
    (an empty dict: the builder ``name`` with its defaults). ``net2``: refine Net1's map with
    this Net2 until converged (:func:`~napari_grainseg.segmentation.refine.refine`) before building grains."""
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.segmentation.grains import probability_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    if _has_batchnorm(model):  # a training model: predict with a folded copy
        model = inference_copy(model)
    if not isinstance(builders, dict):
        builders = {b: {} for b in builders}
    out: dict[str, list[dict]] = {b: [] for b in builders}
    for c, hint in zip(corrections, per_image(grain_size_px, len(corrections))):
        pred = predict_boundaries(c.image, model, device=device, grain_size_px=hint)
        prob = pred.probability if net2 is None else refined_map(c.image, pred, net2, device)
        truth = c.labels()
        box = np.s_[:, :] if c.roi is None else _bbox(c.roi)
        for b, setting in builders.items():
            setting = dict(setting)
            setting.setdefault("net1_scale", pred.scale)
            labels = probability_to_labels(prob[box], setting.pop("grains", b), **setting)
            out[b].append(evaluate_prediction(labels == 0, labels, truth[box] == 0, truth[box]))
    return out


def refined_map(image: np.ndarray, prediction, net2, device="cpu") -> np.ndarray:
    """Net2's map of ``image`` refined from Net1's ``prediction`` until converged (at Net1's scale)."""
    from napari_grainseg.segmentation.refine import refine_to_end

    if _has_batchnorm(net2):
        net2 = inference_copy(net2)
    run = refine_to_end(image, prediction.probability, model=net2, device=device, scale=prediction.scale)
    return run.state if run.state is not None else prediction.probability


def _has_batchnorm(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def _bbox(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean of :data:`HELDOUT_METRICS` over images (absolute values of the signed errors)."""
    from napari_grainseg.evaluation.metrics import metric_values

    out = {}
    for key in HELDOUT_METRICS:
        values = [v for v in metric_values(rows, key) if np.isfinite(v)]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def compare_on(
    corrections: list[Correction],
    indices: list[int],
    base,
    adapted,
    *,
    device="cpu",
    grain_size_px: float | Sequence[float | None] | None = None,
    adapted_grain_size_px: float | Sequence[float | None] | None = None,
    tuned: dict | None = None,
    adapted_net2=None,
) -> dict:
    """Held-out figures of the base and the adapted model with both grain builders, and the verdict.

    ``adapted_net2`` adds the adapted Net1 refined by the adapted Net2 (``"adapted_net2"``, same
    builders as the adapted model) and ``net2_helps``: whether it beats the adapted Net1 alone on
    VI with the recommended builder.

    ``tuned`` (from :func:`tune_grain_builder`) adds the adapted model with its tuned builder
    (``"tuned"``). ``worse_than_base`` is True when the adapted model's VI with the builder it
    recommends (the tuned one, else its better default builder) is higher than the base
    model's best VI on the held-out images. The base model predicts with the grain-size
    hint ``grain_size_px``, the adapted one with ``adapted_grain_size_px`` (its working scale); each
    is one hint for all images or one per image (of ``indices``).
    """
    images = [corrections[i] for i in indices]
    figures = {}
    runs = [("base", base, None), ("adapted", adapted, None)]
    if adapted_net2 is not None:
        runs.append(("adapted_net2", adapted, adapted_net2))
    for name, model, net2 in runs:
        settings = {"threshold": {}, "watershed": {}}
        if name != "base" and tuned:
            settings["tuned"] = {k: v for k, v in tuned.items() if k != "vi"}
        hint = grain_size_px if name == "base" else adapted_grain_size_px
        per = score_images(model, images, device=device, grain_size_px=hint, builders=settings, net2=net2)
        figures[name] = {b: summarise(rows) for b, rows in per.items()}
    base_best = min(figures["base"].values(), key=lambda f: f["vi"])
    chosen = "tuned" if tuned else min(figures["adapted"], key=lambda b: figures["adapted"][b]["vi"])
    out = {
        "images": [corrections[i].name for i in indices],
        "n_images": len(indices),
        **figures,
        "best_grains": chosen,
        "worse_than_base": bool(figures["adapted"][chosen]["vi"] > base_best["vi"]),
    }
    if adapted_net2 is not None:
        out["net2_helps"] = bool(figures["adapted_net2"][chosen]["vi"] < figures["adapted"][chosen]["vi"])
    return out


# --------------------------------------------------------------------------- a model directory from files

#: Default number of optimiser steps of ``grainseg finetune``.
DEFAULT_STEPS = FinetuneConfig.steps
#: Grain builder recommended for an adapted model when none was tuned on its corrections.
DEFAULT_ADAPTED_GRAINS = "watershed"


def _file_record(c: Correction) -> dict:
    from napari_grainseg.models.weights import file_sha256

    rec = {"name": c.name, "pixel_size_nm": c.pixel_size_nm}
    if not c.sources:  # an in-memory correction (napari): its arrays' hashes
        import hashlib

        rec["image_sha256"] = hashlib.sha256(np.ascontiguousarray(c.image).tobytes()).hexdigest()
        rec["target_sha256"] = hashlib.sha256(np.packbits(c.boundaries).tobytes()).hexdigest()
    for key in ("image", "target", "roi"):
        if c.sources.get(key):
            rec[key] = c.sources[key]
            rec[f"{key}_sha256"] = file_sha256(c.sources[key])
    if c.sources.get("kind"):
        rec["kind"] = c.sources["kind"]
    return rec


def recorded_corrections(model_dir: str | Path, log: Callable[[str], None] | None = None) -> list[Correction]:
    """The corrections a model directory was trained on, read again from their recorded paths.

    A recorded file that is missing is an :class:`InputError`; one whose content changed since
    (another SHA-256) is used as it is now, with a note through ``log``. Each keeps the pixel size
    it was learned with (models before session 23 record one for all images, or none).
    """
    from napari_grainseg.models.model_dir import read_model_info
    from napari_grainseg.models.weights import file_sha256
    from napari_grainseg.training.corrections import load_corrections

    info = read_model_info(model_dir)
    out = []
    for rec in info.get("training_images", []):
        image_changed = False
        if not rec.get("image") or not rec.get("target"):
            raise InputError(
                f"{model_dir}: training image {rec.get('name')} was not recorded with its files "
                "(made in napari?); it cannot be read again"
            )
        for key in ("image", "target", "roi"):
            if rec.get(key) and not Path(rec[key]).is_file():
                raise InputError(
                    f"{model_dir}: recorded {key} file {rec[key]} is missing; restore it or start "
                    "a new model without --from"
                )
            if rec.get(key) and file_sha256(rec[key]) != rec.get(f"{key}_sha256"):
                image_changed |= key == "image"
                if log:
                    log(f"note: {rec[key]} changed since {model_dir} was made; using it as it is now")
        kind = rec.get("kind", "boundaries")
        (loaded,) = load_corrections(
            [rec["image"]], **{kind: [rec["target"]]}, rois=[rec["roi"]] if rec.get("roi") else None
        )
        if not image_changed:  # the pixel size it was learned with (a changed image: its file's, as it is now)
            loaded.pixel_size_nm = rec.get("pixel_size_nm", info.get("pixel_size_nm"))
        out.append(loaded)
    return out


def recorded_grain_size_nm(
    grain_source: str,
    grain_size_px: float | None,
    corrections: list[Correction],
    sizes: list[float | None] | None = None,
) -> float | None:
    """The grain size in nm an adapted model records: measured on calibrated corrections
    (:func:`corrections_grain_size_nm`; ``sizes``: their grain sizes in px when known), or a hint
    in px times the pixel size all the images share."""
    if grain_source == "corrections":
        return corrections_grain_size_nm(corrections, sizes)
    pixel_sizes = {c.pixel_size_nm for c in corrections}
    if grain_size_px and len(pixel_sizes) == 1 and None not in pixel_sizes:
        return grain_size_px * pixel_sizes.pop()
    return None


def corrections_grain_size_nm(corrections: list[Correction], sizes: list[float | None] | None = None) -> float | None:
    """The median over the corrections of each one's grain size times its pixel size: their grain
    size in nm, which images of one material at different magnifications share. None unless every
    correction with a measurable grain size is calibrated.

    Examples
    --------
    >>> lines = np.zeros((128, 128), bool); lines[::16] = lines[:, ::16] = True   # 16 px cells
    >>> at_2nm = Correction(np.zeros((128, 128), np.float32), lines, pixel_size_nm=2.0)
    >>> round(corrections_grain_size_nm([at_2nm]))
    41
    >>> corrections_grain_size_nm([at_2nm, Correction(at_2nm.image, lines)]) is None   # one uncalibrated
    True
    """
    sizes = correction_grain_sizes(corrections) if sizes is None else sizes
    pairs = [(size, c.pixel_size_nm) for size, c in zip(sizes, corrections) if size]
    if not pairs or any(not nm for _, nm in pairs):
        return None
    return float(np.median([size * nm for size, nm in pairs]))


def adapt_and_save(
    images=(),
    *,
    labels=None,
    boundaries=None,
    rois=None,
    out,
    from_dir=None,
    corrections: list[Correction] | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int | None = None,
    holdout: float | None = None,
    net2_steps: int | None = None,
    device="auto",
    pixel_size_nm: float | None = None,
    grain_size_px: float | None = None,
    progress=None,
    cancel=None,
    log: Callable[[str], None] | None = None,
    config: FinetuneConfig | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict]:
    """Read corrections, fine-tune Net1 from the base model, write a model directory; returns (dir, model.json).

    ``out`` is checked before any work (:func:`~napari_grainseg.models.model_dir.check_model_destination`):
    an existing model there is replaced only with ``overwrite``.

    ``from_dir`` adds the corrections recorded in that model directory and reuses its base
    model and config ("learn again": always from the base, never from the adapted weights).
    ``corrections`` adds in-memory corrections (e.g. napari layers; recorded by name and hash
    of their arrays, not by path). ``steps=None`` with ``minutes`` trains for that long.
    ``net2_steps`` > 0 also adapts Net2 (recommended for segmenting only when it helped on
    the held-out images). ``pixel_size_nm`` calibrates the ``images`` given (over their files'
    calibration); without new images, the recorded ones. Every other correction keeps its own.
    """
    import dataclasses

    from napari_grainseg.models.model_dir import check_model_destination, read_model_info, save_model_dir
    from napari_grainseg.models.weights import file_sha256, shipped_weights_dir
    from napari_grainseg.training.corrections import load_corrections

    check_model_destination(out, overwrite=overwrite)  # before the (long) training
    base_path = shipped_weights_dir() / "net1.pt"
    config = config or FinetuneConfig()
    all_corr: list[Correction] = []
    if from_dir is not None:
        previous = read_model_info(from_dir)
        base = previous.get("base_model", {})
        if not base.get("shipped", True):
            base_path = Path(base["path"])
            if not base_path.is_file() or file_sha256(base_path) != base.get("sha256"):
                raise InputError(f"{from_dir}: its base model {base_path} is missing or changed")
        elif base.get("sha256") and base["sha256"] != file_sha256(base_path):
            if log:
                log(
                    f"note: {from_dir} was adapted from another version of the shipped model; "
                    "learning again from this version's shipped model"
                )
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        config = FinetuneConfig(**{k: v for k, v in previous.get("config", {}).items() if k in known})
        all_corr += recorded_corrections(from_dir, log)
        if grain_size_px is None and previous.get("grain_size_source") == "hint":
            grain_size_px = previous.get("grain_size_px")
    if images:
        new = load_corrections(images, labels=labels, boundaries=boundaries, rois=rois)
        if pixel_size_nm is not None:  # the images given now: it wins over their files' calibration
            new = [dataclasses.replace(c, pixel_size_nm=pixel_size_nm) for c in new]
        seen = {c.sources.get("image") for c in new}
        all_corr = [c for c in all_corr if c.sources.get("image") not in seen] + new
    new_corr = list(corrections or [])  # an image corrected anew replaces its recorded correction
    renewed = {c.sources.get("image") for c in new_corr if c.sources.get("image")}
    all_corr = [c for c in all_corr if c.sources.get("image") not in renewed] + new_corr
    if not all_corr:
        raise InputError("no corrected images to learn from")
    if pixel_size_nm is not None and not images:  # learning again without new images: the recorded ones
        all_corr = [dataclasses.replace(c, pixel_size_nm=pixel_size_nm) for c in all_corr]
    pixel_sizes = [c.pixel_size_nm for c in all_corr]
    replace = {k: v for k, v in (("seed", seed), ("holdout", holdout), ("net2_steps", net2_steps)) if v is not None}
    if steps is not None:
        replace["steps"] = steps
    config = dataclasses.replace(config, **replace)
    until_time = steps is None and minutes is not None
    if log:
        log(
            f"learning from {len(all_corr)} corrected image(s)"
            + (
                f", {len(all_corr) - len(split_heldout(len(all_corr), config.holdout, config.seed)[0])} held out"
                if len(all_corr) > 1 and config.holdout
                else ""
            )
        )
    result = finetune_net1(
        all_corr,
        config,
        base_weights=base_path,
        grain_size_px=grain_size_px,
        device=device,
        max_minutes=minutes,
        progress=progress,
        cancel=cancel,
        until_time=until_time,
    )
    info = result.info
    held = info.get("heldout") or {}
    net2_path = shipped_weights_dir() / "net2.pt"
    record = {
        "base_model": {
            "name": "shipped" if info["base_net1"]["shipped"] else Path(base_path).name,
            "shipped": info["base_net1"]["shipped"],
            "path": info["base_net1"]["path"],
            "sha256": info["base_net1"]["sha256"],
        },
        "training_images": [
            _file_record(c) | {"role": "heldout" if i in info["heldout_images"] else "train"}
            for i, c in enumerate(all_corr)
        ],
        "steps": info["steps"],
        "steps_done": info["steps_done"],
        "stopped": info["stopped"],
        "seed": config.seed,
        "config": info["config"],
        "loss_curve": info["loss_curve"],
        "train_seconds": info["train_seconds"],
        "device": info["device"],
        "working_scale": info["working_scale"],
        "grain_size_px": info["grain_size_px"],
        "corrections_grain_sizes_px": info["corrections_grain_sizes_px"],
        "inference_grain_size_px": info["inference_grain_size_px"],
        "grain_size_source": info["grain_size_source"],
        # one pixel size when the images share it; the grain size in nm lets each calibrated image
        # run at its own scale, also when the corrections were taken at several magnifications
        "pixel_size_nm": pixel_sizes[0] if len(set(pixel_sizes)) == 1 else None,
        "corrections_pixel_sizes_nm": pixel_sizes,
        "grain_size_nm": info["grain_size_nm"],
        "heldout": held or None,
        "worse_than_base": bool(held.get("worse_than_base", False)),
        "recommended": {
            k: v for k, v in (info.get("grain_builder") or {"grains": DEFAULT_ADAPTED_GRAINS}).items() if k != "vi"
        }
        # Net2 by default only where the held-out images showed that the adapted Net2 helps
        | {"net2_steps": "auto" if result.net2 is not None and held.get("net2_helps") else 0},
        "net2": (
            {"adapted": True, "base": info["net2"]["base_net2"]}
            | {k: info["net2"][k] for k in ("steps", "steps_done", "loss_curve", "train_seconds")}
            if result.net2 is not None
            else {"adapted": False, "source": "shipped" if net2_path.is_file() else None}
        ),
        "learned_from": str(Path(from_dir).resolve()) if from_dir is not None else None,
    }
    out = save_model_dir(
        out,
        result.model,
        record,
        net2_weights=net2_path if net2_path.is_file() else None,
        net2=result.net2,
        overwrite=overwrite,
    )
    return out, read_model_info(out)


# --------------------------------------------------------------------------- grain builder of an adapted model

#: Grain builders tried on the corrections: (builder, parameter name, values).
BUILDER_GRID: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("threshold", "threshold", (0.3, 0.4, 0.5)),
    ("watershed", "watershed_h", (0.1, 0.2, 0.3, 0.4, 0.5)),  # real textures favour deep basins
)


def tune_grain_builder(
    model, corrections: list[Correction], *, device="cpu", grain_size_px: float | Sequence[float | None] | None = None
) -> dict:
    """The grain builder and its parameter with the lowest mean VI on ``corrections`` (the training images).

    After fine-tuning the model draws fewer, fainter lines, so the shipped defaults (threshold 0.5,
    watershed depth 0.2) may no longer fit it; the corrections themselves say which setting does.
    The watershed smooths at the scale Net1 ran at, as in the product.
    Returns ``{"grains", "threshold" or "watershed_h", "vi"}`` (VI measured on images the model was
    trained on: optimistic, for choosing only). ``grain_size_px``: one hint for all images, or one
    each (each image at the scale the product will predict it at).
    """
    from napari_grainseg.evaluation.metrics import segmentation_scores
    from napari_grainseg.segmentation.grains import probability_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    if _has_batchnorm(model):
        model = inference_copy(model)
    hints = per_image(grain_size_px, len(corrections))
    preds = [predict_boundaries(c.image, model, device=device, grain_size_px=h) for c, h in zip(corrections, hints)]
    truths = [c.labels() for c in corrections]
    boxes = [np.s_[:, :] if c.roi is None else _bbox(c.roi) for c in corrections]
    best = None
    for builder, name, values in BUILDER_GRID:
        for value in values:
            vi = float(
                np.mean(
                    [
                        segmentation_scores(
                            probability_to_labels(p.probability[b], builder, net1_scale=p.scale, **{name: value}), t[b]
                        )["vi"]
                        for p, t, b in zip(preds, truths, boxes)
                    ]
                )
            )
            if best is None or vi < best["vi"] - 1e-9:
                best = {"grains": builder, name: value, "vi": vi}
    return best
