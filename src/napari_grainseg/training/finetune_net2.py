"""Fine-tuning Net2 on a user's corrections: refine the adapted Net1's map toward the corrected map.

The paper's idea for Net2 is to move Net1's boundary map toward a valid
microstructure. Trained on synthetic images only, that did not beat Net1 with a
good grain builder (docs/net2.md). Here Net2 learns it on the user's own
material instead: training pairs are (the adapted Net1's map of a corrected
crop, degraded as in Net2's training) -> the corrected boundaries of that crop.

Every batch comes from the same :class:`~napari_grainseg.training.corrections.CorrectionSampler`
as Net1's fine-tuning (augmented crops of the corrections mixed with synthetic
samples, ROI weights), so the two share scale, features and verified pixels.
The coarse map of a crop is the adapted Net1's output on the crop's features,
degraded (gaps, spurious fragments, blur) and mixed with the truth at a random
level exactly as :mod:`napari_grainseg.training.net2` does; the loss is the
masked boundary loss of Net1's fine-tuning. Deterministic on CPU: batch ``i`` is a
function of the seed and ``i`` only.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_grainseg.training.config import Net2TrainConfig
from napari_grainseg.training.corrections import CorrectionSampler

#: Seed stream of Net2's fine-tuning batches (Net1's uses 23).
NET2_BATCH_STREAM = 29


def degradation_config(base_info: dict) -> Net2TrainConfig:
    """The degradation, level and loss settings the base Net2 was trained with (its ``net2.json``).

    Unknown or retired keys are dropped; a base without a recorded config gets the defaults.
    """
    known = {f.name for f in dataclasses.fields(Net2TrainConfig)}
    recorded = {k: v for k, v in (base_info.get("train_config") or {}).items() if k in known}
    for key in ("patch_shape", "pool_shape", "val_shape", "gap_length", "blur_sigma"):
        if key in recorded:
            recorded[key] = tuple(recorded[key])
    recorded.pop("presets", None)
    return Net2TrainConfig(**recorded)


def net2_batch(
    sampler: CorrectionSampler,
    net1,
    step: int,
    *,
    seed: int,
    batch_size: int,
    synthetic_share: float,
    degrade: Net2TrainConfig,
) -> tuple[np.ndarray, ...]:
    """Batch ``step``: (states, conditions, t / T, targets, weights, unroll counts), float32 / int64.

    ``net1`` is an eval-mode Net1 (the adapted one) that draws the coarse maps.
    """
    import torch
    from skimage.morphology import skeletonize

    from napari_grainseg.training.net2 import degrade_coarse, mix_state

    rng = np.random.default_rng([seed, NET2_BATCH_STREAM, step])
    features, targets, weights = sampler.batch(rng, batch_size, synthetic_share)
    with torch.inference_mode():
        coarse_all = torch.sigmoid(net1(torch.from_numpy(features))).numpy()[:, 0]
    states, conds, ts, unrolls = [], [], [], []
    for f, target, coarse in zip(features, targets[:, 0], coarse_all):
        truth = skeletonize(target > 0.5)
        coarse = degrade_coarse(coarse, truth, rng, degrade)
        level = int(rng.integers(0, degrade.levels + 1))
        states.append(mix_state(target, coarse, level, rng, degrade)[None])
        conds.append(np.concatenate([coarse[None], f]))
        ts.append(level / degrade.levels)
        unrolls.append(int(rng.integers(1, degrade.max_unroll + 1)) if rng.random() < degrade.unroll_prob else 0)
    return (
        np.stack(states).astype(np.float32),
        np.stack(conds).astype(np.float32),
        np.asarray(ts, np.float32),
        targets.astype(np.float32),
        weights.astype(np.float32),
        np.asarray(unrolls, np.int64),
    )


def finetune_net2(
    sampler: CorrectionSampler,
    net1,
    config,
    *,
    steps: int,
    base_weights: str | Path | None = None,
    device="cpu",
    progress: Callable[[int, int, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
):
    """Adapt Net2 (from ``base_weights``, default the shipped Net2) to refine ``net1``'s maps of the corrections.

    Parameters
    ----------
    sampler
        The corrections' sampler used for Net1's fine-tuning (same scale, crops, ROI weights).
    net1
        The adapted Net1 (any mode: an eval-mode copy with folded BatchNorms draws the maps).
    config
        The :class:`~napari_grainseg.training.finetune.FinetuneConfig` of the run (seed, batch size,
        learning rate schedule, synthetic share, loss weights); ``steps`` replaces its step count.
    progress, cancel
        As for :func:`~napari_grainseg.training.finetune.finetune_net1`.

    Returns
    -------
    (model, info): the adapted Net2 (eval mode) and a JSON-ready record (steps, loss curve, time).
    """
    import torch

    from napari_grainseg.models.weights import file_sha256, load_net2, shipped_weights_dir
    from napari_grainseg.training.finetune import curve, inference_copy, masked_boundary_loss
    from napari_grainseg.training.loop import train as run_loop

    base_path = Path(base_weights) if base_weights is not None else shipped_weights_dir() / "net2.pt"
    model = load_net2(base_path, device=device, for_training=True)
    base_info = dict(getattr(model, "weights_info", {}))
    degrade = degradation_config(base_info)
    drawer = inference_copy(net1).to("cpu")
    run_config = dataclasses.replace(config, steps=steps, val_every=max(steps, 1), checkpoint_every=max(steps, 1))

    def batches(start: int):
        for step in range(start, steps):
            yield net2_batch(
                sampler,
                drawer,
                step,
                seed=config.seed,
                batch_size=config.batch_size,
                synthetic_share=config.synthetic_share,
                degrade=degrade,
            )

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def loss_fn(model, batch):
        from napari_grainseg.training.net2 import unroll_states

        states, conds, ts, targets, weights, unrolls = (torch.from_numpy(a).to(device) for a in batch)
        states, ts = unroll_states(model, states, conds, ts, unrolls)
        for m in norms:  # frozen statistics: the batch statistics of a few small crops would skew them
            m.eval()
        return masked_boundary_loss(model(states, conds, ts), targets, weights, degrade.pos_weight, config.dice_weight)

    losses: list[float] = []

    def callback(p):
        losses.append(p.loss)
        if progress:
            progress(p.step, p.steps, p.loss)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grainseg-finetune-net2-") as tmp:
        run = run_loop(
            run_config,
            model,
            batches,
            loss_fn,
            tmp,
            device=device,
            resume=False,
            bar=False,
            callback=callback,
            should_stop=cancel,
        )
    model.eval()
    model.weights_info = base_info
    info = {
        "base_net2": {"path": str(base_path), "sha256": file_sha256(base_path)},
        "steps": steps,
        "steps_done": int(run["step"]),
        "loss_curve": curve(losses),
        "train_seconds": round(time.monotonic() - t0, 2),
    }
    return model, info
