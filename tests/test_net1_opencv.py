"""Net1 on the CPU through OpenCV's DNN module: same results as PyTorch, no torch import, never stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_grainseg.cli import main
from napari_grainseg.errors import InputError
from napari_grainseg.io.readers import read_micrograph
from napari_grainseg.models.device import accelerator_may_exist, cpu_threads, restored_cpu_threads, set_cpu_threads
from napari_grainseg.models.features import net1_features
from napari_grainseg.models.net1_opencv import OpenCVNet1, export_net1_onnx, load_opencv_net1, onnx_paths
from napari_grainseg.models.weights import file_sha256, load_net1, shipped_weights_dir
from napari_grainseg.segmentation.inference import run_net1
from napari_grainseg.segmentation.options import SegmentOptions, cached_net1, release_models
from napari_grainseg.segmentation.pipeline import segment
from napari_grainseg.synthetic import generate


@pytest.fixture
def shipped_copy(tmp_path):
    """The shipped Net1 weights, info, ONNX export and its record, copied to a folder of their own."""
    src = shipped_weights_dir() / "net1.pt"
    for path in (src, src.with_suffix(".json"), *onnx_paths(src)):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "net1.pt"


def test_shipped_export_is_current_and_loads():
    weights = shipped_weights_dir() / "net1.pt"
    onnx, record_path = onnx_paths(weights)
    record = json.loads(record_path.read_text())
    # fails when the weights are retrained without running `grainseg export-onnx`
    assert record["source_sha256"] == file_sha256(weights)
    assert record["onnx_sha256"] == file_sha256(onnx)
    assert record["check_max_abs_logit_difference"] < 1e-3
    net = load_opencv_net1()
    assert isinstance(net, OpenCVNet1)
    assert net.config.multiple == load_net1().config.multiple
    assert net.weights_info["weights_sha256"] == record["source_sha256"]


@pytest.mark.parametrize("tta", [False, True])
def test_opencv_probability_matches_pytorch_on_real_and_synthetic_images(sample_path, tta):
    torch_net, cv_net = load_net1(), load_opencv_net1()
    real = read_micrograph(sample_path).data[:, :300]  # 154 x 300: not a multiple of 8 (padded)
    synthetic = generate(seed=11, shape=(120, 200), preset="tem").image
    for image in (real, synthetic):
        features = net1_features(image)
        p_torch = run_net1(torch_net, features, "cpu", tta=tta)
        p_cv = run_net1(cv_net, features, "cpu", tta=tta)
        assert p_cv.shape == p_torch.shape == image.shape and p_cv.dtype == np.float32
        assert np.abs(p_cv - p_torch).max() < 1e-4
        assert 0.02 < (p_cv > 0.5).mean() < 0.5  # a real boundary map, not a constant


def test_default_segment_runs_without_importing_torch_and_matches_pytorch(sample_path):
    code = f"""
import sys
from napari_grainseg.io.readers import read_micrograph
from napari_grainseg.segmentation.pipeline import segment
from napari_grainseg.segmentation.options import SegmentOptions
result = segment(read_micrograph({str(sample_path)!r}).data, SegmentOptions(device="cpu"))
print(int(result.labels.max()), result.prediction.device, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n_grains, *device, torch_loaded = out.stdout.split()
    assert " ".join(device).startswith("cpu (OpenCV DNN,") and torch_loaded == "False"
    by_torch = segment(read_micrograph(sample_path).data, SegmentOptions(device="cpu", backend="torch"))
    assert int(n_grains) == int(by_torch.labels.max()) > 5


def test_auto_device_is_resolved_without_torch_on_a_machine_without_gpu():
    if accelerator_may_exist():
        pytest.skip("this machine may have a GPU: auto asks torch")
    code = "import sys; from napari_grainseg.models.device import resolve_device, describe_device; " + (
        "print(resolve_device('auto'), describe_device('cpu'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "cpu" and out.stdout.split()[-1] == "False"


def test_stale_or_missing_export_is_never_used(shipped_copy, tmp_path):
    release_models()
    assert isinstance(cached_net1(shipped_copy, "cpu"), OpenCVNet1)
    assert not isinstance(cached_net1(shipped_copy, "cpu", backend="torch"), OpenCVNet1)
    release_models()
    # new weights beside the old export (e.g. retrained without exporting): the export is stale
    old = np.frombuffer(shipped_copy.read_bytes(), np.uint8)
    changed = old.copy()
    changed[-200] ^= 1  # one bit of the last tensor's bytes
    shipped_copy.write_bytes(changed.tobytes())
    assert load_opencv_net1(shipped_copy) is None
    onnx, record = onnx_paths(shipped_copy)
    shutil.copy(shipped_weights_dir() / "net1.pt", shipped_copy)  # back to the exported weights
    assert load_opencv_net1(shipped_copy) is not None
    record.write_text("{not json")
    assert load_opencv_net1(shipped_copy) is None
    record.unlink()
    assert load_opencv_net1(shipped_copy) is None
    onnx.unlink()
    assert load_opencv_net1(shipped_copy) is None
    # no export: the cache falls back to PyTorch, with the same results
    model = cached_net1(shipped_copy, "cpu")
    assert not isinstance(model, OpenCVNet1) and model.config.multiple == 8
    release_models()


def test_corrupt_export_is_a_one_line_error(shipped_copy):
    onnx, _ = onnx_paths(shipped_copy)
    onnx.write_bytes(b"not an onnx file")
    with pytest.raises(InputError, match="cannot read the ONNX export"):
        OpenCVNet1(onnx, shipped_copy, {"architecture": {"in_channels": 4, "base_channels": 16, "depth": 4}})


def test_export_round_trip_and_cli(shipped_copy, tmp_path, capsys):
    pytest.importorskip("onnx")
    onnx, record_path = onnx_paths(shipped_copy)
    onnx.unlink()
    record_path.unlink()
    assert export_net1_onnx(shipped_copy) == onnx
    record = json.loads(record_path.read_text())
    assert record["source_sha256"] == file_sha256(shipped_copy) and record["check_max_abs_logit_difference"] < 1e-3
    net = load_opencv_net1(shipped_copy)
    x = net1_features(generate(seed=4, shape=(64, 96)).image)[None]
    import torch

    with torch.inference_mode():
        expected = load_net1(shipped_copy)(torch.from_numpy(x)).numpy()
    assert np.abs(net.logits(x) - expected).max() < 1e-4
    # the command line writes the same export elsewhere
    out = tmp_path / "elsewhere" / "exported.onnx"
    assert main(["export-onnx", str(shipped_copy), "--out", str(out)]) == 0
    assert (
        out.is_file()
        and json.loads(out.with_name("exported.onnx.json").read_text())["source_sha256"] == (record["source_sha256"])
    )
    assert main(["export-onnx", str(tmp_path / "missing.pt")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_segment_cli_backends_give_the_same_files_and_say_how_net1_ran(sample_path, tmp_path):
    runs = {}
    for backend in ("auto", "torch"):
        out = tmp_path / backend
        proc = subprocess.run(
            [sys.executable, "-m", "napari_grainseg.cli", "segment", str(sample_path), "--out", str(out)]
            + ["--device", "cpu", "--backend", backend],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        runs[backend] = (out, proc.stderr)
    assert "running on cpu (OpenCV DNN" in runs["auto"][1]
    assert "running on cpu (" in runs["torch"][1] and "OpenCV" not in runs["torch"][1]
    stem = sample_path.stem
    for suffix in ("_grains.csv", "_boundaries.tif", "_grains.tif"):
        assert (runs["auto"][0] / (stem + suffix)).read_bytes() == (runs["torch"][0] / (stem + suffix)).read_bytes()
    summaries = [json.loads((runs[b][0] / f"{stem}_summary.json").read_text()) for b in ("auto", "torch")]
    assert summaries[0]["n_grains"] == summaries[1]["n_grains"] > 5
    bad = subprocess.run(
        [sys.executable, "-m", "napari_grainseg.cli", "segment", str(sample_path), "--out", str(tmp_path / "x")]
        + ["--backend", "onnxruntime"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--backend" in bad.stderr and "Traceback" not in bad.stderr


def test_one_thread_setting_for_opencv_and_torch():
    import cv2
    import torch

    with restored_cpu_threads():
        set_cpu_threads(1)
        assert cpu_threads() == 1 and cv2.getNumThreads() == 1 and torch.get_num_threads() == 1
        assert load_opencv_net1().describe() == "cpu (OpenCV DNN, 1 thread)"
        set_cpu_threads(2)
        assert cpu_threads() == 2 and load_opencv_net1().describe() == "cpu (OpenCV DNN, 2 threads)"
    assert torch.get_num_threads() == 1  # conftest's setting is back


def test_backend_option_is_checked():
    with pytest.raises(InputError, match="backend must be one of auto, torch"):
        SegmentOptions(backend="opencv2")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_set_threads_and_run_net1():
    """OpenCV cannot resize a thread pool inherited through fork (the child waited forever in
    cv2.setNumThreads: a kill test of batch hung); models.device makes forks safe."""
    import time

    import cv2

    net = load_opencv_net1()
    x = net1_features(generate(seed=2, shape=(64, 96)).image)[None]
    with restored_cpu_threads():
        cv2.setNumThreads(2)
        with restored_cpu_threads():  # a batch in this process: one thread, then the count back
            set_cpu_threads(1)
            net.logits(x)
        net.logits(x)  # the pool at two threads again
        pid = os.fork()
        if pid == 0:  # the child: a batch worker's thread setting, then Net1
            try:
                set_cpu_threads(1)
                net.logits(x)
            finally:
                os._exit(0)
        for _ in range(300):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in OpenCV")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert cv2.getNumThreads() == 2  # the parent keeps its count


@pytest.mark.parametrize("out_name, message", [("net1.pt", "needs a .onnx name"), ("net1.json", "needs a .onnx name")])
def test_an_export_never_replaces_its_own_weights(shipped_copy, capsys, out_name, message):
    pytest.importorskip("onnx")
    before = {p.name: p.read_bytes() for p in shipped_copy.parent.iterdir()}
    out = shipped_copy.with_name(out_name)
    assert main(["export-onnx", str(shipped_copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in shipped_copy.parent.iterdir()} == before


def test_cpu_threads_follow_the_cores_this_process_may_use(monkeypatch):
    """A container's share or `taskset`: not every core of the host (os.cpu_count)."""
    import os

    from napari_grainseg.models import device

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "_CPU_THREADS", None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert device.available_cores() == 1 and device.cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an explicit setting still wins
    assert device.cpu_threads() == 3
