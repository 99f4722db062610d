"""Averaging weights files (models.weights.average_weights, ``grainseg average-weights``): Net1 v8, shipped v13."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from napari_grainseg.cli import main  # noqa: E402
from napari_grainseg.errors import InputError  # noqa: E402
from napari_grainseg.models.net1 import Net1, Net1Config  # noqa: E402
from napari_grainseg.models.weights import (  # noqa: E402
    average_weights,
    file_sha256,
    read_weights_info,
    save_weights,
    shipped_weights_dir,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "weights"


def net1_file(folder: Path, name: str, seed: int, config: Net1Config | None = None) -> Path:
    torch.manual_seed(seed)
    model = Net1(config or Net1Config(base_channels=4, depth=2))
    with torch.no_grad():  # BatchNorm statistics that differ between the files
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(seed + 1)
    path = folder / name
    save_weights(model, path, {"model": "net1", "architecture": model.config.to_dict(), "train_config": {"seed": seed}})
    return path


def test_the_average_is_the_weighted_mean_of_every_float_tensor_and_records_its_sources(tmp_path):
    a, b = net1_file(tmp_path, "a.pt", 1), net1_file(tmp_path, "b.pt", 2)
    out, meta = average_weights([a, b], tmp_path / "avg.pt", coefficients=[1, 3])
    sa, sb, sav = (torch.load(p, weights_only=True) for p in (a, b, out))
    assert sav.keys() == sa.keys()
    n_float = 0
    for key, tensor in sav.items():
        if tensor.is_floating_point():
            n_float += 1
            expected = 0.25 * sa[key].float() + 0.75 * sb[key].float()
            assert torch.allclose(tensor.float(), expected, atol=2e-3, rtol=2e-3), key  # fp16 storage
        else:
            assert torch.equal(tensor, sa[key]), key  # BatchNorm counters: from the first file
    assert n_float > 10
    info = read_weights_info(out)
    assert info["weights_sha256"] == file_sha256(out) and meta == out.with_suffix(".json")
    assert info["architecture"] == read_weights_info(a)["architecture"]
    sources = info["averaged_from"]
    assert [s["coefficient"] for s in sources] == [0.25, 0.75]
    assert [s["weights_sha256"] for s in sources] == [file_sha256(a), file_sha256(b)]
    assert [s["train_config"] for s in sources] == [{"seed": 1}, {"seed": 2}]
    assert info["reproduce"].startswith("grainseg average-weights ") and "--coefficients 0.25 0.75" in info["reproduce"]


def test_the_same_sources_give_the_same_bytes(tmp_path):
    a, b = net1_file(tmp_path, "a.pt", 1), net1_file(tmp_path, "b.pt", 2)
    first, _ = average_weights([a, b], tmp_path / "one.pt")
    second, _ = average_weights([a, b], tmp_path / "two.pt")
    assert file_sha256(first) == file_sha256(second)


@pytest.mark.parametrize(
    "averaged, sources",
    [
        ("configs/weights/net1_v8.pt", ["net1_v6.pt", "net1_v7.pt"]),  # shipped in sessions 12-14
        ("configs/weights/net1_v13.pt", ["net1_v11.pt", "net1_v12.pt"]),  # shipped since session 15
        ("shipped", ["net1_v11.pt", "net1_v12.pt"]),
    ],
)
def test_an_averaged_net1_rebuilds_from_its_recorded_sources_byte_for_byte(tmp_path, averaged, sources):
    path = shipped_weights_dir() / "net1.pt" if averaged == "shipped" else CONFIGS.parent.parent / averaged
    info = read_weights_info(path)
    files = [CONFIGS.parent.parent / s["path"] for s in info["averaged_from"]]
    assert [p.name for p in files] == sources
    assert [s["weights_sha256"] for s in info["averaged_from"]] == [file_sha256(p) for p in files]
    out, _ = average_weights(files, tmp_path / "net1.pt")
    rebuilt, kept = torch.load(out, weights_only=True), torch.load(path, weights_only=True)
    assert rebuilt.keys() == kept.keys() and all(torch.equal(rebuilt[k], kept[k]) for k in kept)
    assert info["weights_sha256"] == file_sha256(path)  # bytes: the same only with the same torch


def test_the_distilled_runs_in_the_shipped_net1_keep_their_start_and_teachers():
    """v11 and v12, averaged into the shipped Net1, were distilled from teachers that are kept beside them."""
    root = CONFIGS.parent.parent
    starts = {"net1_v11": "configs/weights/net1_v8.pt", "net1_v12": "configs/weights/net1_v11.pt"}
    for run, start in starts.items():
        config = read_weights_info(CONFIGS / f"{run}.pt")["train_config"]
        assert config["init_weights"] == start and (root / start).is_file()
        assert config["teachers"] and all((root / path).is_file() for path in config["teachers"])
        assert json.loads((root / "configs" / f"{run}.json").read_text())["teachers"] == config["teachers"]
    assert read_weights_info(CONFIGS / "net1_v12.pt")["train_config"]["teachers"][-1] == "configs/weights/net1_v11.pt"


@pytest.mark.parametrize(
    "case, message",
    [
        ("one file", "at least two"),
        ("coefficient count", "one coefficient per"),
        ("negative", "non-negative"),
        ("architecture", "different architecture"),
        ("model", "different model"),
        ("missing", "not found"),
        ("out is an input", "would be overwritten"),
        ("out replaces an input's record", "would be overwritten"),
        ("out is a .json", "need a .pt name"),
    ],
)
def test_bad_averages_are_one_line_errors(tmp_path, capsys, case, message):
    a, b = net1_file(tmp_path, "a.pt", 1), net1_file(tmp_path, "b.pt", 2)
    args = [str(a), str(b)]
    if case == "one file":
        args = [str(a)]
    elif case == "coefficient count":
        args += ["--coefficients", "1"]
    elif case == "negative":
        args += ["--coefficients", "1", "-1"]
    elif case == "architecture":
        args[1] = str(net1_file(tmp_path, "wide.pt", 3, Net1Config(base_channels=8, depth=2)))
    elif case == "model":
        info = json.loads(b.with_suffix(".json").read_text())
        b.with_suffix(".json").write_text(json.dumps(dict(info, model="net2")))
    elif case == "missing":
        args[1] = str(tmp_path / "nowhere.pt")
    if case == "out replaces an input's record":  # input c.pth keeps its record in c.json, as would c.pt
        (tmp_path / "c.pth").write_bytes(b.read_bytes())
        (tmp_path / "c.json").write_bytes(b.with_suffix(".json").read_bytes())
        args[1] = str(tmp_path / "c.pth")
    out = {"out is an input": a, "out replaces an input's record": tmp_path / "c.pt"}.get(
        case, tmp_path / ("avg.json" if case == "out is a .json" else "avg.pt")
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["average-weights", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "avg.pt").exists()
    if case != "model":
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # inputs untouched


def test_the_library_raises_input_error_for_a_single_file(tmp_path):
    with pytest.raises(InputError, match="at least two"):
        average_weights([net1_file(tmp_path, "a.pt", 1)], tmp_path / "x.pt")
