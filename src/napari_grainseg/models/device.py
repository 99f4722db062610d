"""Compute-device selection: CUDA, then Apple MPS, then CPU, with an explicit override."""

from __future__ import annotations

from napari_grainseg.errors import InputError

#: Accepted values of every ``device`` option (CLI ``--device``, napari selector).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def select_device(preference: str = "auto"):
    """Return the ``torch.device`` to run on.

    Parameters
    ----------
    preference
        ``"auto"`` picks CUDA when available, else MPS, else CPU. ``"cpu"``,
        ``"cuda"`` (or ``"cuda:N"``) and ``"mps"`` force a device; asking for
        one that this machine does not have raises :class:`InputError` rather
        than silently running elsewhere.
    """
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device '{preference}' requested but CUDA is not available on this machine (use --device auto or cpu)"
            )
        device = torch.device(pref)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device '{preference}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    if pref == "mps":
        if not _mps_available():
            raise InputError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    raise InputError(f"unknown device '{preference}': choose one of {', '.join(DEVICE_CHOICES)}")


def describe_device(device) -> str:
    """Human-readable name of a device, e.g. ``"cuda:0 (NVIDIA H100)"`` or ``"cpu (2 threads)"``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'' if n == 1 else 's'})"
    return str(device)


def release_memory(device) -> None:
    """Return cached GPU memory to the driver (no-op on CPU)."""
    import gc

    import torch

    gc.collect()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
