"""Net1 on the CPU without PyTorch: its weights exported to ONNX and run by OpenCV's DNN module.

Why: on a CPU a whole ``grainseg segment`` run spent about as long importing torch and
loading the weights as running Net1, and OpenCV's convolutions run Net1 about twice as fast
as torch's on one or two threads (``benchmarks/bench_net1.py``). OpenCV is already a core
dependency, so the default CPU path imports no torch at all.

The export is a derived file: ``net1.onnx`` beside ``net1.pt``, with ``net1.onnx.json``
recording the SHA-256 of the weights it was made from. An export whose source hash does
not match its ``.pt`` is stale and never used (:func:`load_opencv_net1` returns None and
the caller runs PyTorch). ``grainseg export-onnx`` (or :func:`export_net1_onnx`) writes it;
that needs the ``onnx`` package (``pip install napari-grainseg[export]``), running it does not.

Examples
--------
>>> net = load_opencv_net1()                       # the shipped weights' export # doctest: +SKIP
>>> net.logits(features[None]).shape                # (1, 1, H, W)           # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError

__all__ = ["ONNX_OPSET", "OpenCVNet1", "export_net1_onnx", "load_opencv_net1", "onnx_paths"]

#: ONNX operator set of the export (OpenCV 4.x and 5.x read it).
ONNX_OPSET = 13


def onnx_paths(weights_path: str | Path) -> tuple[Path, Path]:
    """``(export, its record)`` that belong to a Net1 weights file: ``net1.onnx``, ``net1.onnx.json``."""
    weights_path = Path(weights_path)
    onnx = weights_path.with_suffix(".onnx")
    return onnx, onnx.with_name(onnx.name + ".json")


class OpenCVNet1:
    """A Net1 run by OpenCV's DNN module on the CPU (same outputs as the PyTorch model to ~1e-5).

    Has what inference reads from a Net1: ``config`` (its :class:`~napari_grainseg.models.net1_config.Net1Config`),
    ``weights_info`` and ``weights_path``; :meth:`logits` replaces the forward pass.
    One instance may be shared by threads: calls are serialised (an OpenCV ``Net`` holds its
    buffers).
    """

    def __init__(self, onnx_path: str | Path, weights_path: str | Path, info: dict[str, Any]):
        import cv2

        from napari_grainseg.models.net1_config import Net1Config

        try:
            self.config = Net1Config(**info["architecture"])
        except TypeError as exc:
            arch = info["architecture"]
            raise InputError(f"weights {weights_path}: invalid Net1 architecture {arch}: {exc}") from None
        self.weights_info = info
        self.weights_path = str(weights_path)
        self.onnx_path = str(onnx_path)
        try:
            self._net = cv2.dnn.readNetFromONNX(str(onnx_path))
        except cv2.error as exc:
            raise InputError(f"cannot read the ONNX export {onnx_path}: {str(exc).strip().splitlines()[-1]}") from None
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._lock = threading.Lock()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Boundary logits (N, 1, H, W) float32 of features (N, C, H, W); H, W multiples of ``config.multiple``."""
        from napari_grainseg.models.device import cpu_threads, set_opencv_threads

        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            set_opencv_threads(cpu_threads())
            self._net.setInput(x)
            return np.asarray(self._net.forward(), dtype=np.float32)

    def describe(self) -> str:
        """The device line shown to the user, e.g. ``"cpu (OpenCV DNN, 2 threads)"``."""
        from napari_grainseg.models.device import cpu_description, cpu_threads

        return cpu_description(cpu_threads(), "OpenCV DNN")


def load_opencv_net1(weights_path: str | Path | None = None) -> OpenCVNet1 | None:
    """The OpenCV Net1 of a weights file (default: the shipped one), or None when it has no current export.

    None when ``net1.onnx`` or its record is missing, or the record's ``source_sha256`` is not
    the SHA-256 of the weights file (a stale export must never stand in for new weights).
    """
    from napari_grainseg.models.weights import file_sha256, read_weights_info, shipped_weights_dir

    weights_path = Path(weights_path) if weights_path is not None else shipped_weights_dir() / "net1.pt"
    onnx, record_path = onnx_paths(weights_path)
    if not (weights_path.is_file() and onnx.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("source_sha256") != file_sha256(weights_path):
        return None
    info = read_weights_info(weights_path)
    info.setdefault("weights_sha256", record["source_sha256"])
    return OpenCVNet1(onnx, weights_path, info)


def export_net1_onnx(weights_path: str | Path | None = None, onnx_path: str | Path | None = None) -> Path:
    """Export Net1 weights (default: the shipped ones) to ONNX for :class:`OpenCVNet1`; returns the export.

    BatchNorm is folded into the convolutions first (as for PyTorch inference); height and
    width stay free. The record next to the export holds the weights' SHA-256, the versions
    used, and the largest logit difference between PyTorch and OpenCV on a seeded check input
    (an export that differs by more than 1e-3 is refused). Needs the ``onnx`` package. An
    ``onnx_path`` that does not end in ``.onnx``, or would replace the weights or their info
    JSON, is refused.
    """
    import cv2
    import torch

    from napari_grainseg.io.atomic import atomic_open, atomic_path
    from napari_grainseg.io.outputs import check_not_an_input
    from napari_grainseg.models.weights import file_sha256, load_net1, shipped_weights_dir

    try:
        import onnx
    except ImportError:
        raise InputError("exporting to ONNX needs the onnx package: pip install 'napari-grainseg[export]'") from None
    shipped = weights_path is None
    weights_path = Path(weights_path) if weights_path is not None else shipped_weights_dir() / "net1.pt"
    default_onnx, _ = onnx_paths(weights_path)
    onnx_path = Path(onnx_path) if onnx_path is not None else default_onnx
    record_path = onnx_path.with_name(onnx_path.name + ".json")
    if onnx_path.suffix.lower() != ".onnx":
        raise InputError(f"--out {onnx_path}: an ONNX export needs a .onnx name")
    check_not_an_input([onnx_path, record_path], [weights_path, weights_path.with_suffix(".json")])
    model = load_net1(weights_path, device="cpu")
    m = model.config.multiple
    example = torch.zeros(1, model.config.in_channels, 4 * m, 6 * m)
    with atomic_path(onnx_path) as tmp, torch.inference_mode():
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
        check = torch.from_numpy(np.random.default_rng(0).normal(size=(1, model.config.in_channels, 96, 160)))
        expected = model(check.float()).numpy()
        net = cv2.dnn.readNetFromONNX(str(tmp))
        net.setInput(check.float().numpy())
        diff = float(np.abs(net.forward() - expected).max())
        if not diff <= 1e-3:
            raise InputError(f"the ONNX export of {weights_path} differs from PyTorch by {diff:.2g} (limit 1e-3)")
    record = {
        "source": weights_path.name,
        "source_sha256": file_sha256(weights_path),
        "onnx_sha256": file_sha256(onnx_path),
        "opset": ONNX_OPSET,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opencv": cv2.__version__,
        "check_max_abs_logit_difference": diff,
        "reproduce": "grainseg export-onnx" + ("" if shipped else f" {weights_path.name}  (in the weights' folder)"),
    }
    with atomic_open(record_path) as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return onnx_path
