"""Compute-device selection: CUDA, then Apple MPS, then CPU, with an explicit override."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from napari_grainseg.errors import InputError

#: Accepted values of every ``device`` option (CLI ``--device``, napari selector).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def accelerator_may_exist() -> bool:
    """Whether this machine may have a GPU torch could use, answered without importing torch.

    False only when no GPU driver is present (no NVIDIA or ROCm device files on Linux, no
    ``nvcuda`` library on Windows, not an Apple-silicon Mac): then ``"auto"`` is the CPU and
    the CPU path need not pay torch's import. With torch already imported, torch answers.
    """
    import platform

    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available() or _mps_available())
    system = platform.system()
    if system == "Darwin":
        return platform.machine() == "arm64"
    if system == "Windows":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))


def resolve_device(preference: str = "auto") -> str:
    """The device to run on as a name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), checked.

    Like :func:`select_device`, but the CPU (asked for, or ``"auto"`` on a machine without
    a GPU driver) is answered without importing torch, so a CPU run that needs no torch
    (Net1 through OpenCV, :mod:`~napari_grainseg.models.net1_opencv`) never loads it.
    """
    pref = (preference or "auto").strip().lower()
    if pref == "cpu" or (pref == "auto" and not accelerator_may_exist()):
        return "cpu"
    return str(select_device(pref))


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


def net2_device_words(device) -> str:
    """Where Net2 runs, for status lines and the summary JSON, e.g. ``"cpu (2 threads), PyTorch"``
    (Net2 always runs in PyTorch, while Net1 may run through OpenCV)."""
    return f"{describe_device(device)}, PyTorch"


def describe_device(device, model=None) -> str:
    """Human-readable name of a device, e.g. ``"cuda:0 (NVIDIA H100)"`` or ``"cpu (2 threads)"``.

    ``model``: the network that runs there; one with its own ``describe()`` (Net1 through
    OpenCV: ``"cpu (OpenCV DNN, 2 threads)"``) says how it runs, without importing torch.
    """
    if model is not None and hasattr(model, "describe"):
        return model.describe()
    if str(device) == "cpu":  # a name or a torch.device: no torch import needed
        torch = sys.modules.get("torch")
        return cpu_description(int(torch.get_num_threads()) if torch is not None else cpu_threads())  # torch's
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


_CPU_THREADS: int | None = None
_FORK_GUARD: list[int] = []


def set_opencv_threads(n: int) -> None:
    """OpenCV's thread count, changed only when it differs (each change rebuilds its thread pool)."""
    import cv2

    if cv2.getNumThreads() != n:
        cv2.setNumThreads(n)


def cpu_description(threads: int, how: str = "") -> str:
    """The device line of a CPU run, e.g. ``"cpu (2 threads)"`` or ``"cpu (OpenCV DNN, 1 thread)"``."""
    return f"cpu ({how + ', ' if how else ''}{threads} thread{'' if threads == 1 else 's'})"


def _opencv_pool_to_one_thread_across_fork() -> None:
    """Make a ``fork()`` of this process safe for OpenCV: a child cannot resize the thread pool
    it inherits (``cv2.setNumThreads`` waits forever on the parent's workers), so OpenCV runs
    on one thread while the process forks and gets its count back in the parent after it."""
    import cv2

    def before() -> None:
        _FORK_GUARD.append(cv2.getNumThreads())
        set_opencv_threads(1)

    def after_in_parent() -> None:
        set_opencv_threads(_FORK_GUARD.pop() if _FORK_GUARD else 1)

    def after_in_child() -> None:
        _FORK_GUARD.clear()

    os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)


def set_cpu_threads(n: int) -> None:
    """Use ``n`` CPU threads in OpenCV and torch (if loaded, and when it is loaded later).

    One setting for both: a batch worker's share of the cores, say. Net1 through OpenCV
    (:mod:`~napari_grainseg.models.net1_opencv`) reads it back with :func:`cpu_threads`.
    """
    global _CPU_THREADS
    _CPU_THREADS = int(n)
    set_opencv_threads(_CPU_THREADS)
    apply_cpu_threads_to_torch()


def apply_cpu_threads_to_torch() -> None:
    """Give torch the count of :func:`set_cpu_threads`, if one was set and torch is loaded."""
    torch = sys.modules.get("torch")
    if _CPU_THREADS is not None and torch is not None and torch.get_num_threads() != _CPU_THREADS:
        torch.set_num_threads(_CPU_THREADS)


@contextlib.contextmanager
def restored_cpu_threads() -> Iterator[None]:
    """Give OpenCV and torch (if loaded) their thread counts back on leaving (e.g. after an in-process batch)."""
    import cv2

    global _CPU_THREADS
    saved, n_cv = _CPU_THREADS, cv2.getNumThreads()
    torch = sys.modules.get("torch")
    n_torch = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        _CPU_THREADS = saved
        set_opencv_threads(n_cv)
        torch = sys.modules.get("torch")
        if torch is not None and n_torch is not None:
            torch.set_num_threads(n_torch)


def cpu_threads() -> int:
    """CPU threads for Net1 through OpenCV (and the measurement's second thread): :func:`set_cpu_threads`'
    count, else ``OMP_NUM_THREADS``, else every core this process may run on.

    OpenCV itself ignores ``OMP_NUM_THREADS``; following the variable keeps one setting for
    OpenCV and torch (e.g. ``OMP_NUM_THREADS=1`` in benchmarks). torch's own count is not
    followed: napari lowers it to leave the viewer a core (torch re-takes the GIL between
    operations), which OpenCV, holding no GIL during a pass, does not need.
    """
    if _CPU_THREADS is not None:
        return _CPU_THREADS
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity (a container's share, ``taskset``)
    where the system says, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


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


_opencv_pool_to_one_thread_across_fork()
