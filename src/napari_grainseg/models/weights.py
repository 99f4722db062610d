"""Saving and loading network weights: fp16 state dicts plus a JSON of how they were made.

Shipped weights live in ``napari_grainseg/data/weights/<name>.pt`` next to
``<name>.json`` (architecture, training config, git revision, metrics). They are
loaded with ``torch.load(..., weights_only=True, map_location=...)``: no pickled
code is ever executed, and a model trained on a GPU loads on a CPU.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from napari_grainseg.io.atomic import atomic_open, atomic_path
from napari_grainseg.errors import InputError


def shipped_weights_dir() -> Path:
    """Folder of the weights shipped inside the package."""
    return Path(str(resources.files("napari_grainseg") / "data" / "weights"))


def save_weights(model, path: str | Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``model``'s weights as fp16 to ``path`` (.pt) and ``info`` to the matching .json.

    Floating-point tensors are stored as float16 (half the size; Net1's
    outputs change by < 1e-3); integer buffers (BatchNorm counters) are kept.
    Returns the two paths.
    """
    import torch

    path = Path(path)
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    info = dict(info, weights_sha256=file_sha256(path))
    meta_path = path.with_suffix(".json")
    with atomic_open(meta_path) as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return path, meta_path


def load_state(path: str | Path, device="cpu") -> tuple[dict, dict]:
    """Load a weights file and its JSON info; tensors are float32 on ``device``."""
    import torch

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    if not meta_path.is_file():
        raise InputError(f"weights info file not found: {meta_path} (it must sit next to the weights)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise InputError(f"cannot load weights {path}: {exc}") from exc
    info = json.loads(meta_path.read_text(encoding="utf-8"))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, info


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (recorded with weights so a Net2 can name the Net1 it was trained against)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_net1(path: str | Path | None = None, device="cpu", *, for_training: bool = False):
    """Net1 with trained weights, in eval mode on ``device``.

    Parameters
    ----------
    path
        A ``.pt`` file written by :func:`save_weights`; default: the weights
        shipped with the package.
    device
        ``torch.device`` or string.
    for_training
        Keep the batch normalisations as layers (to fine-tune the weights);
        by default they are folded into the convolutions for faster inference
        (:func:`~napari_grainseg.models.net1.fold_batchnorm`).
    """
    from napari_grainseg.models.net1 import Net1, Net1Config, fold_batchnorm

    path = Path(path) if path is not None else shipped_weights_dir() / "net1.pt"
    state, info = load_state(path, device)
    model = Net1(Net1Config(**info["architecture"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"weights {path} do not fit Net1 {info['architecture']}: "
                         f"{str(exc).splitlines()[0]}") from exc
    model.weights_info = info
    model.weights_path = str(path)
    model = model.to(device).eval()
    return model if for_training else fold_batchnorm(model)


def load_net2(path: str | Path | None = None, device="cpu", *, for_training: bool = False):
    """Net2 (the refiner) with trained weights, in eval mode on ``device``.

    Parameters
    ----------
    path
        A ``.pt`` file written by :func:`save_weights`; default: the weights
        shipped with the package (``net2.pt``; its ``.json`` records the
        SHA-256 of the Net1 weights it was trained against, ``net1_sha256``).
    device
        ``torch.device`` or string.
    for_training
        Keep the batch normalisations as layers (see :func:`load_net1`).
    """
    from napari_grainseg.models.net1 import fold_batchnorm
    from napari_grainseg.models.net2 import Net2, Net2Config

    path = Path(path) if path is not None else shipped_weights_dir() / "net2.pt"
    state, info = load_state(path, device)
    try:
        model = Net2(Net2Config.from_dict(info["architecture"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"weights {path} are not Net2 weights ({info.get('architecture')}): "
                         f"{str(exc).splitlines()[0]}") from exc
    model.weights_info = info
    model = model.to(device).eval()
    return model if for_training else fold_batchnorm(model)
