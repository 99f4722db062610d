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
import json
import math
import platform
import signal
import subprocess
import time
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.io.atomic import atomic_open, atomic_path
from napari_grainseg.errors import InputError

#: First seed of the held-out validation samples; training seeds stay far below.
VALIDATION_SEED_BASE = 9_000_000_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved with the weights).

    Attributes
    ----------
    steps : total optimiser steps.
    batch_size : samples per step.
    patch_shape : (height, width) of each synthetic training image in px.
    preset : synthetic preset; ``"train"`` randomises every realism knob. A tuple of
        names mixes presets: sample ``i`` uses ``preset[i % len(preset)]`` (e.g.
        ``("train", "train", "tem")`` spends a third of the samples on the default look).
    lr, weight_decay : AdamW; the learning rate follows a cosine schedule
        after ``warmup_steps`` of linear warm-up.
    target_width : boundary targets are the 1-px true boundaries dilated to
        this width (odd), which gives the thin lines enough pixels to learn and
        is thinned back to 1 px after prediction.
    pos_weight : weight of boundary pixels in the BCE term (they are rare).
    dice_weight : weight of the soft Dice term (overlap of the thin structure).
    seed : selects the training samples and the weight initialisation.
    val_size, val_shape, val_every : held-out validation set and its cadence.
    checkpoint_every : steps between checkpoints.
    num_workers : DataLoader processes generating samples (0 = in the main process).
    threads : torch intra-op threads (0 = torch's default).
    architecture : Net1 architecture (see :class:`~napari_grainseg.models.net1.Net1Config`).
    init_weights : a Net1 weights file to start from (fine-tuning, e.g. continuing the shipped
        model with more steps); None starts from a random initialisation. A
        narrower model of the same depth is widened to ``architecture`` first
        (:func:`~napari_grainseg.models.net1.widen_net1`), so training starts
        from what it already computes.
    """

    steps: int = 4000
    batch_size: int = 8
    patch_shape: tuple[int, int] = (128, 256)
    preset: str | tuple[str, ...] = "train"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    target_width: int = 3
    pos_weight: float = 3.0
    dice_weight: float = 1.0
    seed: int = 0
    val_size: int = 24
    val_shape: tuple[int, int] = (192, 384)
    val_every: int = 250
    checkpoint_every: int = 100
    num_workers: int = 1
    threads: int = 0
    architecture: dict[str, Any] = field(default_factory=lambda: {"in_channels": 4, "base_channels": 8,
                                                                   "depth": 4})
    init_weights: str | None = None

    def __post_init__(self) -> None:
        check_config_fields(self, "training config", counts=("steps", "batch_size", "val_size", "val_every",
                                                             "checkpoint_every"),
                            shapes=("patch_shape", "val_shape"), architecture=self.net1_config,
                            presets=(self.preset,) if isinstance(self.preset, str) else tuple(self.preset))

    def sample_preset(self, index: int) -> str:
        """The synthetic preset of training sample ``index``."""
        return self.preset if isinstance(self.preset, str) else self.preset[index % len(self.preset)]

    def net1_config(self):
        """The :class:`~napari_grainseg.models.net1.Net1Config` this run trains."""
        from napari_grainseg.models.net1 import Net1Config

        return Net1Config(**self.architecture)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a config file (JSON object with any subset of the fields)."""
        return read_config(cls, path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number_pair(value) -> tuple | None:
    """``value`` as a tuple if it is two real numbers, else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def check_config_fields(config, what: str, *, counts: tuple[str, ...], shapes: tuple[str, ...],
                        architecture: Callable[[], Any], presets: tuple[str, ...],
                        ranges: tuple[str, ...] = ()) -> None:
    """Checks shared by the training configs: counts >= 1, image shapes two multiples of 8 >= 32,
    ``ranges`` two numbers 0 <= low <= high, an odd ``target_width`` >= 1, an ``architecture``
    the network accepts (``architecture()`` builds the network's config from it) and at least
    one synthetic preset, all known. Raises :class:`InputError` naming ``what`` and the field."""
    from napari_grainseg.synthetic.presets import PRESETS

    if not presets or any(name not in PRESETS for name in presets):
        raise InputError(f"{what}: preset must name synthetic presets ({', '.join(PRESETS)}), got {presets!r}")
    for name in counts:
        if getattr(config, name) < 1:
            raise InputError(f"{what}: {name} must be >= 1, got {getattr(config, name)}")
    if config.target_width < 1 or config.target_width % 2 == 0:
        raise InputError(f"{what}: target_width must be odd and >= 1, got {config.target_width}")
    for name in shapes:
        shape = _number_pair(getattr(config, name))
        if shape is None or min(shape) < 32 or any(s % 8 for s in shape):
            raise InputError(f"{what}: {name} must be two multiples of 8 >= 32, got {getattr(config, name)}")
    for name in ranges:
        pair = _number_pair(getattr(config, name))
        if pair is None or not 0 <= pair[0] <= pair[1]:
            raise InputError(f"{what}: {name} must be two numbers 0 <= low <= high, got {getattr(config, name)}")
    try:
        architecture()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: architecture {config.architecture}: {exc}") from None


def read_config(cls, path: str | Path):
    """Build the config dataclass ``cls`` from a JSON file holding any subset of its fields.

    JSON lists become tuples (shapes, ranges); unknown fields, a value of the
    wrong type (a string for a number, a number for a shape), a missing file or
    invalid JSON raise :class:`InputError` naming the file and the field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"config file {path}: unknown field(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _json_matches(value, hints[name]):
            as_list = " (a JSON list)" if "tuple" in str(fields[name].type) else ""
            raise InputError(f"config file {path}: {name} must be {fields[name].type}{as_list}, "
                             f"got {json.dumps(value)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _json_matches(value, hint) -> bool:
    """Whether a JSON ``value`` can fill a config field annotated ``hint`` (an int fills a
    float; a list fills a tuple, element by element; true/false fill only a bool)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_json_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_json_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_json_matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict)  # an architecture: its own config checks the fields
    return True


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


def make_example(seed: int, shape: tuple[int, int], preset: str, target_width: int):
    """One (features, target, true 1-px boundaries) triple from the synthetic generator."""
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.synthetic import generate

    sample = generate(seed=seed, shape=tuple(shape), preset=preset)
    features = net1_features(sample.image)
    return features, boundary_target(sample.boundaries, target_width)[None], sample.boundaries


class _SyntheticSamples:
    """Map-style dataset: item ``i`` is training sample ``i`` of the run (deterministic)."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def __len__(self) -> int:
        return self.config.steps * self.config.batch_size

    def __getitem__(self, index: int):
        c = self.config
        features, target, _ = make_example(training_seed(c, index), c.patch_shape, c.sample_preset(index),
                                           c.target_width)
        return features, target


def validation_set(config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The fixed held-out validation examples: half the (first) training preset, half the "tem" preset."""
    presets = (config.sample_preset(0), "tem")
    return [make_example(VALIDATION_SEED_BASE + i, config.val_shape, presets[i % 2], config.target_width)
            for i in range(config.val_size)]


# --------------------------------------------------------------------------- loss


def boundary_loss(logits, target, pos_weight: float, dice_weight: float, cldice_weight: float = 0.0):
    """Weighted binary cross-entropy plus soft Dice on the boundary class, optionally plus soft clDice.

    ``cldice_weight`` adds :func:`cldice_loss`, which scores the centrelines:
    a gap in a thin line costs its length whatever the line's width, and a
    spurious line costs its length too.
    """
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    loss = bce + dice_weight * dice.mean()
    if cldice_weight:
        loss = loss + cldice_weight * cldice_loss(prob, target)
    return loss


def soft_skeleton(x, iterations: int = 5):
    """Differentiable skeleton of a (N, 1, H, W) map in [0, 1] (Shit et al. 2021, clDice).

    Repeated soft erosions (min-pooling); what each opening removes is the
    centreline at that depth. ``iterations`` must reach the half-width of the
    thickest line (3 px targets need 2).
    """
    import torch
    import torch.nn.functional as F

    def erode(a):
        return torch.minimum(-F.max_pool2d(-a, (3, 1), 1, (1, 0)), -F.max_pool2d(-a, (1, 3), 1, (0, 1)))

    def dilate(a):
        return F.max_pool2d(a, 3, 1, 1)

    skeleton = F.relu(x - dilate(erode(x)))
    for _ in range(iterations):
        x = erode(x)
        delta = F.relu(x - dilate(erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def cldice_loss(prob, target, iterations: int = 5, smooth: float = 1.0):
    """Soft clDice loss: 1 - harmonic mean of topology precision and sensitivity.

    Precision: the share of the predicted centreline inside the true boundary
    (spurious lines lower it); sensitivity: the share of the true centreline
    covered by the prediction (gaps lower it).
    """
    skel_pred, skel_true = soft_skeleton(prob, iterations), soft_skeleton(target, iterations)
    dims = (1, 2, 3)
    precision = ((skel_pred * target).sum(dims) + smooth) / (skel_pred.sum(dims) + smooth)
    sensitivity = ((skel_true * prob).sum(dims) + smooth) / (skel_true.sum(dims) + smooth)
    return (1 - 2 * precision * sensitivity / (precision + sensitivity)).mean()


# --------------------------------------------------------------------------- loop


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def git_revision() -> str | None:
    """The git commit of the source tree, with ``-dirty`` when it has local changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def evaluate_validation(model, examples, device, config: TrainConfig) -> dict[str, float]:
    """Mean loss and pixel-level F1 (boundary within 2 px) of ``model`` on the validation set."""
    import torch
    from scipy import ndimage

    model.eval()
    losses, f1s = [], []
    with torch.inference_mode():
        for features, target, true_b in examples:
            x = torch.from_numpy(features)[None].to(device)
            t = torch.from_numpy(target)[None].to(device)
            logits = model(x)
            losses.append(float(boundary_loss(logits, t, config.pos_weight, config.dice_weight)))
            pred = _thin(torch.sigmoid(logits)[0, 0].cpu().numpy() > 0.5)
            dist_true = ndimage.distance_transform_edt(~true_b)
            dist_pred = ndimage.distance_transform_edt(~pred)
            precision = float((dist_true[pred] <= 2).mean()) if pred.any() else 0.0
            recall = float((dist_pred[true_b] <= 2).mean()) if true_b.any() else 1.0
            f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    model.train()
    return {"val_loss": float(np.mean(losses)), "val_f1_2px": float(np.mean(f1s))}


def _thin(mask: np.ndarray) -> np.ndarray:
    from skimage.morphology import thin

    return thin(mask)


def train_net1(config: TrainConfig, out_dir: str | Path, device: str = "auto", resume: bool = True,
               max_minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
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
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from napari_grainseg.models.device import describe_device, select_device
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.net1 import Net1, count_parameters
    from napari_grainseg.models.weights import load_checkpoint, save_weights

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    revision_at_start = git_revision()
    dev = select_device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = Net1(config.net1_config()).to(dev)
    if config.init_weights:
        from napari_grainseg.models.net1 import widen_net1
        from napari_grainseg.models.weights import load_net1

        start = load_net1(config.init_weights, device=dev, for_training=True)
        same_but_width = dataclasses.replace(start.config, base_channels=model.config.base_channels) == model.config
        if not same_but_width or start.config.base_channels > model.config.base_channels:
            raise InputError(f"init_weights {config.init_weights} has architecture {start.config.to_dict()}, "
                             f"the config asks for {model.config.to_dict()} (only widening is supported)")
        if start.config != model.config:  # grow the trained model, keeping what it computes
            start = widen_net1(start, model.config.base_channels, seed=config.seed)
        model.load_state_dict(start.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    ckpt_path = out_dir / "checkpoint.pt"
    step, best, elapsed_before = 0, {}, 0.0
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, dev, keys=("config", "model", "optimizer", "scheduler", "step",
                                                     "elapsed_s", "metrics"))
        if json.loads(ckpt["config"]) != json.loads(json.dumps(config.to_dict())):
            raise InputError(f"{ckpt_path} was made with a different config; use another --out "
                             "folder or the same config to resume")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
        best = json.loads(ckpt["metrics"])
    val_examples = validation_set(config)
    samples = _SyntheticSamples(config)
    start_index = step * config.batch_size
    loader = DataLoader(samples, batch_size=config.batch_size,
                        sampler=range(start_index, len(samples)), num_workers=config.num_workers,
                        persistent_workers=False, prefetch_factor=4 if config.num_workers else None)
    t0 = time.monotonic()
    stop = {"now": False}

    def _request_stop(signum, frame):  # finish the step, checkpoint, exit
        stop["now"] = True

    old_handler = signal.signal(signal.SIGINT, _request_stop) if _main_thread() else None

    def _checkpoint():
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": torch.tensor(step),
            "elapsed_s": torch.tensor(elapsed_before + time.monotonic() - t0),
            "config": json.dumps(config.to_dict()), "metrics": json.dumps(best),
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc=f"Net1 on {describe_device(dev)}",
               unit="step", dynamic_ncols=True)
    model.train()
    running = None
    try:
        for features, target in loader:
            features, target = features.to(dev), target.to(dev)
            loss = boundary_loss(model(features), target, config.pos_weight, config.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running = float(loss) if running is None else 0.95 * running + 0.05 * float(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", **({"val_f1": f"{best['val_f1_2px']:.3f}"} if best else {}))
            if step % config.val_every == 0 or step == config.steps:
                best = evaluate_validation(model, val_examples, dev, config) | {"step": step,
                                                                                 "train_loss": running}
                with open(out_dir / "log.jsonl", "a", encoding="utf-8") as log:
                    log.write(json.dumps(best) + "\n")
            if step % config.checkpoint_every == 0 or step == config.steps:
                _checkpoint()
            out_of_time = max_minutes is not None and time.monotonic() - t0 > 60 * max_minutes
            if stop["now"] or out_of_time or step >= config.steps:
                break
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    _checkpoint()
    summary = {"step": step, "steps": config.steps, "finished": step >= config.steps,
               "elapsed_s": elapsed_before + time.monotonic() - t0, "metrics": best,
               "device": describe_device(dev), "checkpoint": str(ckpt_path)}
    if step >= config.steps:
        info = {
            "model": "net1", "architecture": model.config.to_dict(), "parameters": count_parameters(model),
            "input_channels": list(NET1_CHANNELS),
            "train_config": config.to_dict(), "git_revision": revision_at_start,
            "trained_steps": step, "train_seconds": round(summary["elapsed_s"], 1),
            "hardware": f"{describe_device(dev)}; {platform.processor() or platform.machine()}",
            "torch": torch.__version__, "validation": best,
            "reproduce": "grainseg train net1 --config <train_config above, as a JSON file> --out DIR",
        }
        weights, meta = save_weights(model, out_dir / "net1.pt", info)
        summary["weights"] = str(weights)
    with atomic_open(out_dir / "summary.json") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def export_checkpoint(checkpoint: str | Path, weights_path: str | Path) -> Path:
    """Write the model of a (possibly unfinished) training checkpoint as a weights file.

    Lets a long run be inspected, or its current state used, without stopping it.
    """

    from napari_grainseg.models.net1 import Net1, count_parameters
    from napari_grainseg.models.weights import load_checkpoint, save_weights

    ckpt = load_checkpoint(checkpoint, "cpu", keys=("config", "model", "step", "metrics"))
    config = TrainConfig(**{k: tuple(v) if k.endswith("_shape") else v
                            for k, v in json.loads(ckpt["config"]).items()})
    model = Net1(config.net1_config())
    model.load_state_dict(ckpt["model"])
    info = {"model": "net1", "architecture": model.config.to_dict(), "parameters": count_parameters(model),
            "train_config": config.to_dict(), "trained_steps": int(ckpt["step"]),
            "validation": json.loads(ckpt["metrics"]), "exported_from": str(checkpoint),
            "unfinished": int(ckpt["step"]) < config.steps}
    return save_weights(model, weights_path, info)[0]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
