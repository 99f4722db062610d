"""The training loop shared by Net1, Net2 and fine-tuning: one place for the bookkeeping.

:func:`train` takes a model (or a function that builds it), a batch source, a loss
function and a :class:`~napari_grainseg.training.config.LoopConfig`, and owns
everything else:

- seeding (torch is seeded with ``config.seed`` before the model is built), threads;
- AdamW with torch's own schedulers: linear warm-up then cosine to 2 % of the rate;
- gradient clipping (``grad_clip``) and an exponential moving average of the weights
  (``ema_decay``; validated and exported instead of the raw weights);
- a checkpoint (model, optimiser, scheduler, average, step, metrics) written atomically
  every ``checkpoint_every`` steps, on Ctrl-C (SIGINT: the current step finishes, the
  checkpoint is written, the function returns) and when ``should_stop()`` turns true;
  a later call with the same config resumes from it bit-identically
  (``torch.load(..., weights_only=True)``: no pickled code runs);
- validation every ``val_every`` steps through a hook, one JSON line per validation
  in ``log.jsonl``, and ``keep_best`` on a chosen metric;
- a progress callback after every step and an optional tqdm bar;
- at the last step, the weights exported as fp16 with the config, git revision,
  hardware and metrics (:func:`~napari_grainseg.models.weights.save_weights`).

A run folder holds ``checkpoint.pt``, ``log.jsonl``, ``summary.json`` and, when
finished, ``<weights_name>`` + its ``.json``.

Examples
--------
>>> def batches(start):                                  # doctest: +SKIP
...     return (make_batch(step) for step in range(start, config.steps))
>>> train(config, lambda: Net1(), batches, lambda model, batch: loss(model, batch),
...       "runs/x", export=Export("net1.pt", lambda model: {"model": "net1"}))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_grainseg.errors import InputError
from napari_grainseg.io.atomic import atomic_open, atomic_path
from napari_grainseg.training.config import LoopConfig, config_from_dict

#: The cosine ends at this fraction of the learning rate.
FINAL_LR_FRACTION = 0.02
#: Version of the checkpoint layout (the loops before this one wrote none).
CHECKPOINT_FORMAT = 2


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives after every step.

    Attributes
    ----------
    step, steps : steps done and the run's total.
    loss : the step's loss; ``running_loss`` its exponential average (0.95).
    metrics : the latest validation (empty before the first).
    """

    step: int
    steps: int
    loss: float
    running_loss: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Export:
    """How a finished run writes its weights.

    Attributes
    ----------
    weights_name : file name in the run folder (``net1.pt``).
    info : ``model -> dict`` of what describes the model (``model``, ``architecture``,
        ``parameters``, inputs, ``reproduce``); the loop adds the config, git revision,
        steps, time, hardware, torch version and validation metrics.
    """

    weights_name: str
    info: Callable[[Any], dict[str, Any]]


def git_revision() -> str | None:
    """The git commit of the source tree, with ``-dirty`` when it has local changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def prepare_device(config: LoopConfig, device="auto"):
    """The torch device for ``device`` (a name or a ``torch.device``), with the config's threads set."""
    import torch

    from napari_grainseg.models.device import select_device

    if config.threads:
        torch.set_num_threads(config.threads)
    return select_device(device) if isinstance(device, str) else device


def lr_scheduler(optimizer, config: LoopConfig):
    """Linear warm-up over ``warmup_steps`` (from 1 / warmup_steps of the rate), then a cosine
    to :data:`FINAL_LR_FRACTION` of it at step ``steps`` (torch's LinearLR, CosineAnnealingLR
    and SequentialLR)."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    warmup = config.warmup_steps
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, config.steps - warmup), eta_min=FINAL_LR_FRACTION * base_lr)
    if warmup == 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _same_config(saved_json: str, config: LoopConfig) -> bool:
    """Whether a checkpoint's config is ``config``; a field added since it was written counts at its default."""
    try:
        saved = config_from_dict(type(config), json.loads(saved_json), "checkpoint")
    except InputError:
        return False
    return json.loads(json.dumps(saved.to_dict())) == json.loads(json.dumps(config.to_dict()))


def train(
    config: LoopConfig,
    model,
    batches: Callable[[int], Iterable],
    loss_fn: Callable[[Any, Any], Any],
    out_dir: str | Path,
    *,
    device="auto",
    export: Export | None = None,
    validate: Callable[[Any], dict[str, float]] | None = None,
    select: str | None = None,
    identity: dict[str, Any] | None = None,
    resume: bool = True,
    max_minutes: float | None = None,
    bar: bool = True,
    desc: str = "training",
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``config.steps`` steps (or until stopped); returns a summary dict.

    Parameters
    ----------
    config
        The loop's settings (a :class:`LoopConfig` or a subclass); saved in the checkpoint,
        which a resumed run must match.
    model
        A ``torch.nn.Module``, or a function of no arguments that builds it (called after
        ``torch.manual_seed(config.seed)``, so the initialisation is reproducible).
    batches
        ``batches(start_step)`` gives the batches from step ``start_step`` on (a resumed run
        starts there); batch ``i`` should depend on ``i`` only, for bit-identical resumes.
    loss_fn
        ``loss_fn(model, batch)`` -> scalar loss tensor (moves the batch to the device).
    out_dir
        Run folder (created).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
    export
        How the finished run writes its weights; None writes none.
    validate
        ``validate(model) -> {metric: value}``, called every ``val_every`` steps and at the
        last step on the weights that would be exported (the average with ``ema_decay``).
    select
        The metric (lower is better) that ``keep_best`` selects on.
    identity
        Values that must match for a checkpoint to be resumed (e.g. the hash of the data's
        source), stored with the checkpoint and in the exported info.
    resume
        Continue from ``out_dir/checkpoint.pt`` if there is one.
    max_minutes
        Stop cleanly (checkpoint written) after this much wall time.
    bar, desc
        Show a tqdm progress bar with this description.
    callback
        Called with a :class:`Progress` after every step (e.g. a GUI's progress bar).
    should_stop
        Polled after every step; True stops cleanly like Ctrl-C (e.g. a GUI's Cancel).
    """
    import torch
    from tqdm import tqdm

    from napari_grainseg.models.device import describe_device
    from napari_grainseg.models.weights import load_checkpoint, safe_torch_load, save_weights

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    revision_at_start = git_revision()
    dev = prepare_device(config, device)
    identity = dict(identity or {})
    torch.manual_seed(config.seed)
    if not isinstance(model, torch.nn.Module):
        model = model()
    model = model.to(dev)
    ema = None
    if config.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    scored = ema.module if ema is not None else model  # the weights that are validated and exported
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config)
    keep_best = bool(config.keep_best and select and validate)
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best_model.pt"
    step, latest, lowest, elapsed_before = 0, {}, {}, 0.0
    config_json = json.dumps(config.to_dict())
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, dev, keys=("config", "model", "step", "elapsed_s"))
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise InputError(
                f"{ckpt_path} cannot be resumed by this version (checkpoint format "
                f"{ckpt.get('format', 1)}, not {CHECKPOINT_FORMAT}); use another --out folder"
            )
        if not _same_config(ckpt["config"], config) or json.loads(ckpt.get("identity", "{}")) != json.loads(
            json.dumps(identity)
        ):
            raise InputError(
                f"{ckpt_path} was made with a different config or data; use another --out "
                "folder, or the same config and data to resume"
            )
        try:
            model.load_state_dict(ckpt["model"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise InputError(
                f"{ckpt_path} cannot be resumed by this version ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); use another --out folder"
            ) from None
        step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
        latest = json.loads(ckpt["metrics"])
        lowest = json.loads(ckpt.get("lowest", "{}"))
    t0 = time.monotonic()
    stop = {"now": False}

    def _request_stop(signum, frame):  # finish the step, checkpoint, return
        stop["now"] = True

    old_handler = signal.signal(signal.SIGINT, _request_stop) if _main_thread() else None

    def _checkpoint():
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": torch.tensor(step),
            "elapsed_s": torch.tensor(elapsed_before + time.monotonic() - t0),
            "config": config_json,
            "metrics": json.dumps(latest),
            "lowest": json.dumps(lowest),
            "identity": json.dumps(identity),
            "format": CHECKPOINT_FORMAT,
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    progress_bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not bar,
        unit="step",
        dynamic_ncols=True,
        desc=f"{desc} on {describe_device(dev)}",
    )
    model.train()
    running = None
    try:
        source: Iterator = iter(batches(step)) if step < config.steps else iter(())
        for batch in source:
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{running:.4f}")
            if step % config.val_every == 0 or step == config.steps:
                metrics = {}
                if validate is not None:
                    was_training = scored.training
                    scored.eval()
                    metrics = validate(scored)
                    scored.train(was_training)
                latest = dict(metrics) | {"step": step, "train_loss": running}
                with open(out_dir / "log.jsonl", "a", encoding="utf-8") as log:
                    log.write(json.dumps(latest) + "\n")
                if keep_best and (not lowest or latest[select] < lowest[select]):
                    lowest = latest
                    with atomic_path(best_path) as tmp:
                        torch.save(scored.state_dict(), tmp)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _checkpoint()
            if callback is not None:
                callback(Progress(step=step, steps=config.steps, loss=value, running_loss=running, metrics=latest))
            out_of_time = max_minutes is not None and time.monotonic() - t0 > 60 * max_minutes
            if stop["now"] or out_of_time or step >= config.steps or (should_stop is not None and should_stop()):
                break
    finally:
        progress_bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    _checkpoint()
    summary = {
        "step": step,
        "steps": config.steps,
        "finished": step >= config.steps,
        "elapsed_s": elapsed_before + time.monotonic() - t0,
        "metrics": latest,
        "device": describe_device(dev),
        "checkpoint": str(ckpt_path),
        "train_loss": running,
    }
    if step >= config.steps and export is not None:
        use_best = bool(keep_best and lowest and best_path.is_file())
        selected = lowest if use_best else latest
        if use_best:
            model.load_state_dict(safe_torch_load(best_path, dev, what="best model"))
        elif ema is not None:
            model.load_state_dict(scored.state_dict())
        info = {
            **export.info(model),
            **identity,
            "train_config": config.to_dict(),
            "git_revision": revision_at_start,
            "trained_steps": step,
            "train_seconds": round(summary["elapsed_s"], 1),
            "hardware": f"{describe_device(dev)}; {platform.processor() or platform.machine()}",
            "torch": torch.__version__,
            "validation": selected,
        }
        if keep_best:
            info["selected_step"] = selected.get("step", step)
        weights, _ = save_weights(model, out_dir / export.weights_name, info)
        summary["weights"] = str(weights)
    with atomic_open(out_dir / "summary.json") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def export_checkpoint(
    checkpoint: str | Path,
    weights_path: str | Path,
    config_cls: type,
    build_model: Callable[[Any], Any],
    info: Callable[[Any], dict[str, Any]],
) -> Path:
    """Write the model of a (possibly unfinished) training checkpoint as a weights file.

    Lets a long run be inspected, or its current state used, without stopping it. With
    weight averaging the averaged weights are written (those a finished run exports).
    ``build_model(config)`` builds the untrained model; ``info(model)`` describes it.
    """

    from napari_grainseg.models.weights import load_checkpoint, save_weights

    ckpt = load_checkpoint(checkpoint, "cpu", keys=("config", "model", "step", "metrics"))
    config = config_from_dict(config_cls, json.loads(ckpt["config"]), f"checkpoint {checkpoint}")
    model = build_model(config)
    if "ema" in ckpt:
        model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"})
    else:
        model.load_state_dict(ckpt["model"])
    identity = json.loads(ckpt.get("identity", "{}"))
    step = int(ckpt["step"])
    meta = {
        **info(model),
        **identity,
        "train_config": config.to_dict(),
        "trained_steps": step,
        "validation": json.loads(ckpt["metrics"]),
        "exported_from": str(checkpoint),
        "unfinished": step < config.steps,
    }
    return save_weights(model, weights_path, meta)[0]
