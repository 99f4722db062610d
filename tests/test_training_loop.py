"""The shared training loop (napari_grainseg.training.loop) on a tiny model and real tensors."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch

from napari_grainseg.errors import InputError
from napari_grainseg.training.config import LoopConfig
from napari_grainseg.training.loop import Export, lr_scheduler, train


def _model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
    )


def _batches(start: int):
    """Batch ``i`` depends on ``i`` only (a resumed run sees the same batches)."""
    step = start
    while True:
        g = torch.Generator().manual_seed(step)
        x = torch.rand(2, 1, 12, 12, generator=g)
        yield x, (x > 0.5).float()
        step += 1


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)


def _info(model):
    return {"model": "tiny"}


def _run(config, out, **kwargs):
    return train(
        config, _model, _batches, _loss, out, device="cpu", bar=False, export=Export("tiny.pt", _info), **kwargs
    )


def _weights(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("steps, warmup", [(6, 3), (4400, 50), (3000, 100), (10, 0), (10, 1), (5, 8)])
def test_lr_schedule_is_the_former_warmup_and_cosine(steps, warmup):
    """torch's schedulers give the factors the two hand-written ``_lr_factor`` copies gave."""

    def former(step):  # the removed function, verbatim
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    config = LoopConfig(steps=steps, warmup_steps=warmup, lr=3e-3)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = lr_scheduler(optimizer, config)
    for step in range(steps):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(config.lr * former(step), rel=1e-9, abs=1e-15)
        optimizer.step()
        scheduler.step()


def test_ctrl_c_saves_and_stops_and_the_run_resumes_identically(tmp_path):
    config = LoopConfig(steps=6, warmup_steps=2, lr=0.05, val_every=2, checkpoint_every=100, ema_decay=0.5)
    straight = _run(config, tmp_path / "a")
    assert straight["finished"] and straight["step"] == 6

    def interrupt(progress):
        if progress.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C

    handler = signal.getsignal(signal.SIGINT)
    paused = _run(config, tmp_path / "b", callback=interrupt)
    assert not paused["finished"] and paused["step"] == 3  # the step finished, then it stopped
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    assert not (tmp_path / "b" / "tiny.pt").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    resumed = _run(config, tmp_path / "b")
    assert resumed["finished"]
    a, b = _weights(tmp_path / "a" / "tiny.pt"), _weights(tmp_path / "b" / "tiny.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]  # one line per validation, none repeated
    info = json.loads((tmp_path / "b" / "tiny.json").read_text())
    assert info["model"] == "tiny" and info["trained_steps"] == 6 and info["train_config"]["ema_decay"] == 0.5


def test_should_stop_cancels_and_the_callback_sees_every_step(tmp_path):
    seen = []
    config = LoopConfig(steps=10, warmup_steps=0, val_every=100, checkpoint_every=100)
    summary = _run(config, tmp_path / "run", callback=seen.append, should_stop=lambda: len(seen) >= 3)
    assert [p.step for p in seen] == [1, 2, 3] and all(p.steps == 10 for p in seen)
    assert all(math.isfinite(p.loss) and p.metrics == {} for p in seen)
    assert summary["step"] == 3 and not summary["finished"] and "weights" not in summary
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # cancelled work is kept


def test_gradients_are_clipped(tmp_path):
    norms = []

    def loss(model, batch):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:  # the previous step's gradients, as the optimiser used them
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return 1e3 * _loss(model, batch)

    config = LoopConfig(steps=5, warmup_steps=0, grad_clip=0.01, val_every=100, checkpoint_every=100)
    train(config, _model, _batches, loss, tmp_path / "clip", device="cpu", bar=False)
    assert len(norms) == 4 and max(norms) <= 0.01 * (1 + 1e-4)
    norms.clear()
    train(LoopConfig(steps=2, warmup_steps=0), _model, _batches, loss, tmp_path / "free", device="cpu", bar=False)
    assert norms[0] > 0.1  # without clipping the same loss has far larger gradients


def test_keep_best_exports_the_selected_validation(tmp_path):
    scores = iter([3.0, 1.0, 2.0])
    config = LoopConfig(steps=6, warmup_steps=0, val_every=2, keep_best=True)
    summary = _run(config, tmp_path / "run", validate=lambda model: {"score": next(scores)}, select="score")
    info = json.loads((tmp_path / "run" / "tiny.json").read_text())
    assert summary["finished"] and info["selected_step"] == 4 and info["validation"]["score"] == 1.0
    best = torch.load(tmp_path / "run" / "best_model.pt", weights_only=True)
    exported = _weights(tmp_path / "run" / "tiny.pt")
    for name, value in best.items():
        if value.is_floating_point():
            torch.testing.assert_close(exported[name].float(), value, atol=2e-3, rtol=2e-3)  # fp16 on disk


def test_resume_refuses_another_config_data_or_an_old_checkpoint(tmp_path):
    config = LoopConfig(steps=2, warmup_steps=0)
    train(config, _model, _batches, _loss, tmp_path / "run", device="cpu", bar=False, identity={"data": "a"})
    with pytest.raises(InputError, match="different config"):
        train(
            LoopConfig(steps=3, warmup_steps=0),
            _model,
            _batches,
            _loss,
            tmp_path / "run",
            device="cpu",
            bar=False,
            identity={"data": "a"},
        )
    with pytest.raises(InputError, match="different config or data"):
        train(config, _model, _batches, _loss, tmp_path / "run", device="cpu", bar=False, identity={"data": "b"})
    # a checkpoint written before a field was added (here: without grad_clip) resumes at the field's default
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    ckpt["config"] = json.dumps({k: v for k, v in json.loads(ckpt["config"]).items() if k != "grad_clip"})
    (tmp_path / "older").mkdir()
    torch.save(ckpt, tmp_path / "older" / "checkpoint.pt")
    resumed = train(
        config, _model, _batches, _loss, tmp_path / "older", device="cpu", bar=False, identity={"data": "a"}
    )
    assert resumed["finished"] and resumed["step"] == 2
    # a checkpoint of the former loops (a LambdaLR schedule, no identity) is a clear error
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    optimizer = torch.optim.AdamW(_model().parameters())
    ckpt["scheduler"] = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0).state_dict()
    del ckpt["format"], ckpt["identity"]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(InputError, match="cannot be resumed by this version"):
        train(config, _model, _batches, _loss, tmp_path / "run", device="cpu", bar=False, identity={"data": "a"})


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("steps", 0, "steps must be >= 1"),
        ("lr", 0.0, "lr must be > 0"),
        ("ema_decay", 1.0, "ema_decay"),
        ("grad_clip", -1.0, "grad_clip must be >= 0"),
        ("warmup_steps", -1, "warmup_steps must be >= 0"),
    ],
)
def test_loop_config_checks_name_the_field(field, value, words):
    with pytest.raises(InputError, match=f"^training config: {words}"):
        LoopConfig(**{field: value})


def test_every_kept_config_and_recorded_train_config_loads():
    """The configs in configs/ and the train_config recorded with every kept weights file (shipped
    and the chain that initialised them) are read by today's config classes, so each run can be
    repeated with the command its JSON names."""
    from pathlib import Path

    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.training.config import Net2TrainConfig, TrainConfig, config_from_dict

    root = Path(__file__).resolve().parents[1]
    configs = sorted((root / "configs").glob("*.json"))
    assert {p.name for p in configs} == {
        "net1.json",
        "net1_v3.json",
        "net1_v4.json",
        "net1_v5.json",
        "net1_v6.json",
        "net1_v7.json",
        "net1_v9.json",
        "net1_v10.json",
        "net1_v11.json",
        "net1_v12.json",
        "net1_v14.json",
        "net1_v15.json",
        "net1_v16.json",
        "net1_v17.json",
        "net2.json",
        "net2_blind.json",
    }
    for path in configs:
        config = (Net2TrainConfig if path.name.startswith("net2") else TrainConfig).from_json(path)
        assert config.steps >= 1500
    recorded = [
        path
        for path in (*shipped_weights_dir().glob("*.json"), *(root / "configs" / "weights").rglob("*.json"))
        if not path.name.endswith(".onnx.json")  # the record of an ONNX export, not of a training
    ]
    assert len(recorded) == 21  # 3 shipped, 11 Net1 versions, 7 leave-one-concept-out models
    n_averaged = 0
    for path in recorded:
        info = json.loads(path.read_text())
        cls = Net2TrainConfig if info.get("model") == "net2" else TrainConfig
        # an averaged model (Net1 v8, v13) records the training of each of its sources
        runs = info["averaged_from"] if "averaged_from" in info else [info]
        n_averaged += "averaged_from" in info
        for run in runs:
            assert config_from_dict(cls, run["train_config"], str(path)).to_dict()["steps"] == run["trained_steps"]
    assert n_averaged == 3  # the shipped net1.json, configs/weights/net1_v8.json and net1_v13.json
