"""Saving and loading network weights: fp16 state dicts plus a JSON of how they were made.

Shipped weights live in ``napari_grainseg/data/weights/<name>.pt`` next to
``<name>.json`` (architecture, training config, git revision, metrics). They are
loaded with ``torch.load(..., weights_only=True, map_location=...)``: no pickled
code is ever executed, and a model trained on a GPU loads on a CPU.
"""

from __future__ import annotations

import io
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from napari_grainseg.errors import InputError
from napari_grainseg.io.atomic import atomic_open


def shipped_weights_dir() -> Path:
    """Folder of the weights shipped inside the package."""
    return Path(str(resources.files("napari_grainseg") / "data" / "weights"))


def save_weights(model, path: str | Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``model``'s weights as fp16 to ``path`` (.pt) and ``info`` to the matching .json.

    Floating-point tensors are stored as float16 (half the size; Net1's
    outputs change by < 1e-3); integer buffers (BatchNorm counters) are kept.
    Returns the two paths.
    """
    return save_state_dict(model.state_dict(), path, info)


def save_state_dict(state: dict, path: str | Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """:func:`save_weights` for a state dict (fp16 floating tensors, atomic writes, SHA-256 in ``info``)."""
    import torch

    path = Path(path)
    state = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in state.items()
    }
    buffer = io.BytesIO()  # saved through memory: a file's archive would be named after the temporary file,
    torch.save(state, buffer)  # so the same tensors would give different bytes (and SHA-256) on every save
    with atomic_open(path, "wb") as fh:
        fh.write(buffer.getvalue())
    info = dict(info, weights_sha256=file_sha256(path))
    meta_path = path.with_suffix(".json")
    with atomic_open(meta_path) as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return path, meta_path


def safe_torch_load(path: str | Path, device="cpu", *, what: str = "weights"):
    """``torch.load(path, weights_only=True)`` with a one-line :class:`InputError` for any bad file.

    Only tensors and plain containers load; a file holding anything else (a
    pickle that would run code, a foreign format, a truncated file) is refused
    without PyTorch's advice to retry with ``weights_only=False`` (wrong advice
    for a file of unknown origin).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{what} file not found: {path}" if not path.is_dir() else f"{what} {path} is a directory, not a file"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except MemoryError:
        raise InputError(f"cannot load {what} {path}: not enough memory") from None
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
            why = "it holds Python objects other than tensors (refused: loading them could run code)"
        else:
            why = "not a PyTorch weights file (corrupt or truncated?)"
        raise InputError(f"cannot load {what} {path}: {why}") from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
        AttributeError,
        TypeError,
        KeyError,
        IndexError,
        UnicodeDecodeError,
    ) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights_only" in first:
            first = "it holds objects other than tensors (refused)"
        raise InputError(f"cannot load {what} {path}: not a valid PyTorch file ({first[:120]})") from None


def load_checkpoint(path: str | Path, device="cpu", *, keys: tuple[str, ...] = ("config", "model", "step")) -> dict:
    """A training checkpoint (a dict with at least ``keys``; ``config`` a JSON string), checked.

    Raises
    ------
    InputError
        One line naming the checkpoint for a corrupt, hostile or incomplete file.
    """
    ckpt = safe_torch_load(path, device, what="checkpoint")
    if not isinstance(ckpt, dict):
        raise InputError(
            f"checkpoint {path} is not a grainseg training checkpoint (it holds a "
            f"{type(ckpt).__name__}, not a dict); delete it or use another --out folder"
        )
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise InputError(
            f"checkpoint {path} lacks {', '.join(missing)}: not a complete grainseg training "
            "checkpoint; delete it or use another --out folder"
        )
    if "config" in keys:
        try:
            config = json.loads(ckpt["config"])
        except (TypeError, ValueError):
            config = None
        if not isinstance(config, dict):
            raise InputError(
                f"checkpoint {path}: its config is not a JSON object; delete it or use another --out folder"
            )
    return ckpt


def read_weights_info(path: str | Path) -> dict:
    """The JSON next to a weights file, checked: a dict with an ``architecture`` dict."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise InputError(f"weights info file not found: {meta_path} (it must sit next to the weights)")
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"weights info {meta_path} is not a text (JSON) file") from None
    except ValueError as exc:
        raise InputError(f"weights info {meta_path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(f"cannot read weights info {meta_path}: {exc.strerror or exc}") from None
    if not isinstance(info, dict):
        raise InputError(f"weights info {meta_path} must hold a JSON object, not a {type(info).__name__}")
    arch = info.get("architecture")
    if not isinstance(arch, dict):
        raise InputError(
            f'weights info {meta_path} has no "architecture" object'
            + ("" if arch is None else f" (it is a {type(arch).__name__})")
        )
    return info


def load_state(path: str | Path, device="cpu") -> tuple[dict, dict]:
    """Load a weights file and its JSON info; tensors are float32 on ``device``.

    Raises
    ------
    InputError
        One line for a missing, corrupt or hostile weights file, or a missing,
        invalid or incomplete JSON info file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"weights file not found: {path}" if not path.is_dir() else f"weights {path} is a directory, not a file"
        )
    from napari_grainseg.models.device import apply_cpu_threads_to_torch

    info = read_weights_info(path)
    state = safe_torch_load(path, device)
    apply_cpu_threads_to_torch()  # torch may have been imported just now
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and hasattr(v, "is_floating_point") for k, v in state.items()
    ):
        raise InputError(f"cannot load weights {path}: not a state dict of tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, info


def _config(cls, info: dict, path: Path, model: str):
    """The architecture config of ``info`` with one-line errors (unknown key, wrong model, bad value).

    ``cls.from_dict`` builds it when the class has one (Net2: retired options at their off value).
    """
    import dataclasses

    arch = info["architecture"]
    name = model.capitalize()  # Net1, Net2
    if info.get("model") not in (None, model):
        raise InputError(
            f"weights {path} are {str(info.get('model')).capitalize()} weights, not {name} weights "
            f"(give them with the right option: --weights for net1, --net2-weights for net2)"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    if model == "net2":
        from napari_grainseg.models import net2

        known |= set(getattr(net2, "RETIRED_OPTIONS", {}))
    unknown = sorted(set(arch) - known)
    if unknown:
        raise InputError(
            f"weights {path} are not {name} weights: unknown architecture "
            f"key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        )
    try:
        return cls.from_dict(arch) if hasattr(cls, "from_dict") else cls(**arch)
    except (TypeError, ValueError, InputError) as exc:
        raise InputError(f"weights {path}: invalid {name} architecture {arch}: {' '.join(str(exc).split())}") from None


def average_weights(
    paths: list[str | Path],
    out: str | Path,
    coefficients: list[float] | None = None,
    provenance: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the weighted average of several weights files of one architecture (a "model soup").

    Averaging the weights of two runs continued from the same start (Wortsman et al.,
    ICML 2022) keeps much of what each learnt: the shipped Net1 (v13) is the mean of v11 and
    v12. Floating
    tensors (weights, BatchNorm statistics) are averaged; integer buffers (BatchNorm
    counters) are taken from the first file. The info JSON records every source's path,
    SHA-256, coefficient and training config, and the command that reproduces the file.

    Parameters
    ----------
    paths
        Two or more ``.pt`` files with their ``.json`` info, same model and architecture.
    out
        The averaged ``.pt`` (its ``.json`` beside it).
    coefficients
        One non-negative weight per file, normalised to sum 1; default: equal.
    provenance
        More keys for the info JSON (the CLI records the git revision).

    Raises
    ------
    InputError
        Fewer than two files, unreadable files, different models, architectures or
        tensor shapes, bad coefficients, or an ``out`` that is not a ``.pt`` file or would
        replace one of the inputs or their info JSON.
    """
    from napari_grainseg.io.outputs import check_not_an_input

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError(f"averaging needs at least two weights files, got {len(paths)}")
    out = Path(out)
    if out.suffix.lower() != ".pt":
        raise InputError(f"--out {out}: the averaged weights need a .pt name (their .json goes beside them)")
    check_not_an_input([out, out.with_suffix(".json")], [q for p in paths for q in (p, p.with_suffix(".json"))])
    coefficients = [1.0] * len(paths) if coefficients is None else [float(c) for c in coefficients]
    if len(coefficients) != len(paths):
        raise InputError(f"give one coefficient per weights file: {len(coefficients)} for {len(paths)} files")
    if not all(math.isfinite(c) and c >= 0 for c in coefficients) or sum(coefficients) <= 0:
        raise InputError(f"coefficients must be finite, non-negative and not all zero, got {coefficients}")
    total = sum(coefficients)
    coefficients = [c / total for c in coefficients]
    loaded = [load_state(p) for p in paths]
    first_state, first_info = loaded[0]
    for path, (state, info) in zip(paths[1:], loaded[1:]):
        for key in ("model", "architecture"):
            if info.get(key) != first_info.get(key):
                raise InputError(
                    f"cannot average {paths[0]} and {path}: different {key} ({first_info.get(key)} vs {info.get(key)})"
                )
        if state.keys() != first_state.keys() or any(state[k].shape != first_state[k].shape for k in state):
            raise InputError(f"cannot average {paths[0]} and {path}: their tensors differ")
    states = [state for state, _ in loaded]
    average = {
        key: sum(c * state[key] for c, state in zip(coefficients, states)) if tensor.is_floating_point() else tensor
        for key, tensor in first_state.items()
    }
    keep = ("model", "architecture", "input_channels", "parameters")
    info = {k: first_info[k] for k in keep if k in first_info}
    info["averaged_from"] = [
        {
            "path": str(p),
            "weights_sha256": file_sha256(p),
            "coefficient": c,
            "train_config": i.get("train_config"),
            "trained_steps": i.get("trained_steps"),
        }
        for p, c, (_, i) in zip(paths, coefficients, loaded)
    ]
    import torch

    info["torch"] = torch.__version__
    info.update(provenance or {})
    info["reproduce"] = (
        "grainseg average-weights "
        + " ".join(str(p) for p in paths)
        + ("" if len(set(coefficients)) == 1 else " --coefficients " + " ".join(f"{c:g}" for c in coefficients))
        + " --out OUT.pt"
    )
    return save_state_dict(average, out, info)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (recorded with weights so a Net2 can name the Net1 it was trained against)."""
    from napari_grainseg.io.outputs import file_record

    return file_record(path)["sha256"]


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
    try:
        model = Net1(_config(Net1Config, info, path, "net1"))
    except InputError:
        raise
    except Exception as exc:  # e.g. a negative width: torch refuses to build the layers
        raise InputError(
            f"weights {path}: cannot build Net1 {info['architecture']}: {' '.join(str(exc).split())[:160]}"
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"weights {path} do not fit Net1 {info['architecture']}: {str(exc).splitlines()[0]}") from exc
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
        model = Net2(_config(Net2Config, info, path, "net2"))
        model.load_state_dict(state)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"weights {path} are not Net2 weights ({info.get('architecture')}): {str(exc).splitlines()[0]}"
        ) from exc
    model.weights_info = info
    model = model.to(device).eval()
    return model if for_training else fold_batchnorm(model)
