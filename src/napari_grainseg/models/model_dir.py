"""Self-describing model directories: an adapted Net1 (+ Net2) with ``model.json``.

Layout of a model directory::

    MODEL_DIR/
        model.json   format, version, base model and its SHA-256, every training image and
                     target (path + SHA-256), steps, seed, config, loss curve, held-out
                     figures, package version, date, recommended grain builder
        net1.pt      Net1 weights (fp16 state dict) + net1.json (its architecture)
        net2.pt      Net2 weights + net2.json (optional; a copy of the base's Net2 when not adapted)

Weights are loaded with ``torch.load(weights_only=True)`` (no pickled code runs).
A directory written for another format version or another Net1 architecture is a
one-line :class:`InputError`. The shipped model (``napari_grainseg/data/weights``)
is never written to.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_grainseg.errors import InputError

#: ``model.json``'s ``format`` value.
MODEL_FORMAT = "napari-grainseg-model"
#: Version of the directory layout; another value is refused on loading.
MODEL_FORMAT_VERSION = 1
#: The description file of a model directory.
MODEL_FILE = "model.json"


#: Mean grain diameter (px) that an adapted model works at when the corrections' grains are large:
#: the middle of the shipped Net1's trained range on a log scale (10-64 px). On the TBM crops
#: (grains about 48 px) adapting and predicting at this size instead of at 48 px brought the
#: mean-ECD error from 0.33 to 0.17 (docs/adaptation.md).
ADAPTED_GRAIN_SIZE_PX = 24.0
#: Corrections with a larger mean grain diameter (px) are shrunk to :data:`ADAPTED_GRAIN_SIZE_PX`;
#: smaller ones follow the shipped rule (:func:`~napari_grainseg.segmentation.inference.scale_for_grain_size`).
SHRINK_ABOVE_PX = 40.0


def adapted_scale(grain_size_px: float) -> float:
    """Resampling factor of an adapted model for images of mean grain diameter ``grain_size_px``."""
    from napari_grainseg.segmentation.inference import scale_for_grain_size

    if grain_size_px > SHRINK_ABOVE_PX:
        return ADAPTED_GRAIN_SIZE_PX / grain_size_px
    return scale_for_grain_size(grain_size_px)


def inference_grain_size(grain_size_px: float) -> float:
    """The grain-size hint that makes :func:`~napari_grainseg.segmentation.inference.predict_boundaries`
    resample by :func:`adapted_scale` (it shrinks grains above its range to 40 px)."""
    from napari_grainseg.segmentation.inference import RESCALED_GRAIN_SIZES_PX

    if grain_size_px > SHRINK_ABOVE_PX:
        return grain_size_px * RESCALED_GRAIN_SIZES_PX[1] / ADAPTED_GRAIN_SIZE_PX
    return grain_size_px


def model_grain_size_hint(
    info: dict, *, grain_size_px: float | None = None, pixel_size_nm: float | None = None
) -> float | None:
    """Grain-size hint for running an adapted model (``model.json`` ``info``) on an image.

    The image's own grain size (``grain_size_px``) if the user gave one; else the corrections'
    grain size, converted by the pixel sizes when both the model and the image are calibrated
    (else the image is assumed to share the corrections' magnification). None for the shipped model.
    """
    if grain_size_px is None:
        grain_size_px = corrections_grain_size(info, pixel_size_nm)
        if grain_size_px is None:
            return None
    return inference_grain_size(grain_size_px)


#: Corrected images whose grain sizes differ by more than this factor are taken to be at different
#: magnifications: one adapted scale cannot suit them all.
MAGNIFICATION_SPREAD = 1.5


def mixed_magnifications(info: dict) -> bool:
    """Whether an adapted model's corrections (``model.json`` ``info``) span grain sizes in px more
    than :data:`MAGNIFICATION_SPREAD` apart (it learned at one scale, the median's).

    Examples
    --------
    >>> mixed_magnifications({"corrections_grain_sizes_px": [55.0, 163.0]})
    True
    >>> mixed_magnifications({"corrections_grain_sizes_px": [22.0, 25.0]})
    False
    """
    return _spread(_image_grain_sizes(info))


def _spread(sizes: list[float]) -> bool:
    return len(sizes) > 1 and max(sizes) > MAGNIFICATION_SPREAD * min(sizes)


def _image_grain_sizes(info: dict) -> list[float]:
    """Each corrected image's grain size in px recorded in ``model.json`` (those measured)."""
    return [size for size in info.get("corrections_grain_sizes_px") or [] if size]


def _image_grain_sizes_nm(info: dict) -> list[float]:
    """Each corrected image's grain size in nm (those measured and calibrated; models before
    session 23 record one pixel size for all)."""
    sizes = info.get("corrections_grain_sizes_px") or []
    pixels = info.get("corrections_pixel_sizes_nm") or [info.get("pixel_size_nm")] * len(sizes)
    return [size * nm for size, nm in zip(sizes, pixels) if size and nm]


def grain_size_advice(info: dict) -> str:
    """What a user is told about the scale an adapted model runs at ('' when it records none):
    the segment dock's model check, and :func:`magnification_warning`."""
    size = info.get("grain_size_px")
    if not size:
        return ""
    nm = model_grain_size_nm(info)
    sizes_nm = _image_grain_sizes_nm(info)
    if nm and _spread(sizes_nm):
        return (
            f"your corrected images' grain sizes differ even in nm ({min(sizes_nm):.3g}-{max(sizes_nm):.3g} nm: "
            f"different materials, or a wrong pixel size?); each calibrated image runs at their median, {nm:.3g} "
            "nm: check the pixel sizes, or learn one model per material"
        )
    if mixed_magnifications(info):
        sizes = _image_grain_sizes(info)
        span = f"your corrected images' grain sizes span {min(sizes):.0f}-{max(sizes):.0f} px"
        if nm:
            return (
                f"{span} (different magnifications) but agree at about {nm:.3g} nm: each calibrated image "
                f"runs at its own scale; one without a pixel size runs at {size:.0f} px, so give it its pixel "
                "size or a grain size hint"
            )
        return (
            f"{span} (different magnifications?) but the model runs at one, {size:.0f} px: give each corrected "
            "image its pixel size and learn again, give each image's grain size as a hint, or learn one model "
            "per magnification"
        )
    at = f" at {info['pixel_size_nm']:g} nm/px" if info.get("pixel_size_nm") else ""
    if nm and not at:
        at = f", {nm:.3g} nm"
    return (
        f"runs at your corrections' grain size ({size:.0f} px{at}): give a grain size hint for images at "
        "another magnification" + (" without a pixel size" if nm else "")
    )


def magnification_warning(info: dict) -> str:
    """The warning after learning (the Learn dock, ``grainseg finetune``; '' when none): the
    corrections' grain sizes differ by more than :data:`MAGNIFICATION_SPREAD` where the model
    cannot tell them apart by scale: in px without a pixel size for each, or even in nm.

    Examples
    --------
    >>> magnification_warning({"grain_size_px": 80.0, "corrections_grain_sizes_px": [40.0, 120.0]})[:40]
    "your corrected images' grain sizes span "
    >>> two_magnifications = {"grain_size_px": 80.0, "grain_size_nm": 160.0,
    ...     "corrections_grain_sizes_px": [40.0, 120.0], "corrections_pixel_sizes_nm": [4.0, 4 / 3]}
    >>> magnification_warning(two_magnifications)
    ''
    >>> two_materials = dict(two_magnifications, corrections_pixel_sizes_nm=[2.0, 2.0])
    >>> magnification_warning(two_materials)[:50]
    "your corrected images' grain sizes differ even in "
    """
    if model_grain_size_nm(info) is not None:
        return grain_size_advice(info) if _spread(_image_grain_sizes_nm(info)) else ""
    return grain_size_advice(info) if mixed_magnifications(info) else ""


def corrections_grain_size(info: dict, pixel_size_nm: float | None = None) -> float | None:
    """The mean grain diameter of an adapted model's corrections (``model.json`` ``info``), in the
    pixels of an image of ``pixel_size_nm`` when both are calibrated (else in the corrections'
    pixels). What a user is told the model runs at; :func:`model_grain_size_hint` turns it into
    the hint that gives the adapted scale. None when the model records none.

    Examples
    --------
    >>> info = {"grain_size_px": 30.0, "grain_size_nm": 60.0}   # corrections at 2 nm/px
    >>> corrections_grain_size(info, 4.0), corrections_grain_size(info)
    (15.0, 30.0)
    """
    size = info.get("grain_size_px")
    if size is None:
        return None
    nm = model_grain_size_nm(info)
    if pixel_size_nm and nm:
        return nm / pixel_size_nm
    return float(size)


def model_grain_size_nm(info: dict) -> float | None:
    """An adapted model's corrections' grain size in nm (``model.json`` ``info``), or None when they
    were not all calibrated. Models written before session 23 record one pixel size instead."""
    if info.get("grain_size_nm"):
        return float(info["grain_size_nm"])
    if info.get("grain_size_px") and info.get("pixel_size_nm"):
        return float(info["grain_size_px"]) * float(info["pixel_size_nm"])
    return None


@dataclass
class LoadedModel:
    """A model directory loaded for inference.

    Attributes
    ----------
    path : the directory (None for the shipped model).
    net1 : Net1 in eval mode (BatchNorm folded).
    net2 : Net2 in eval mode, or None when the directory has none.
    info : ``model.json`` (for the shipped model: a record of its weights).
    record : what a summary JSON records about the model (:func:`model_record`).
    """

    path: Path | None
    net1: Any
    net2: Any
    info: dict
    record: dict


def is_shipped_location(path: str | Path) -> bool:
    """Whether ``path`` lies inside the package's shipped weights folder (never written to)."""
    from napari_grainseg.models.weights import shipped_weights_dir

    shipped = shipped_weights_dir().resolve()
    target = Path(path).resolve()
    return target == shipped or shipped in target.parents or target in shipped.parents


def model_sha256(net1_sha: str, net2_sha: str | None) -> str:
    """One hash for a Net1 (+ Net2) pair: SHA-256 of ``"net1:<sha>\\nnet2:<sha or none>"``."""
    return hashlib.sha256(f"net1:{net1_sha}\nnet2:{net2_sha or 'none'}".encode()).hexdigest()


def model_record(net1=None, net2=None, model_dir: str | Path | None = None) -> dict:
    """What a summary JSON records about the model that made it: name, directory and hashes.

    ``net1``/``net2`` are loaded models (their ``weights_info`` holds ``weights_sha256``);
    ``net1=None`` stands for the shipped weights. A Net1 loaded from a model directory's
    ``net1.pt`` is recorded with that directory. ``model`` is ``"shipped"``, the model
    directory's name or the weights file's name; ``model_sha256`` hashes Net1 and Net2 together.
    """
    from napari_grainseg.models.weights import shipped_weights_dir

    def sha(model, name):
        info = getattr(model, "weights_info", None) if model is not None else None
        if info and info.get("weights_sha256"):
            return info["weights_sha256"]
        return _cached_sha(shipped_weights_dir() / f"{name}.pt") if model is None else None

    net1_sha = sha(net1, "net1")
    net2_sha = sha(net2, "net2") if net2 is not None else None
    weights_path = getattr(net1, "weights_path", None)
    if model_dir is None and weights_path and (Path(weights_path).parent / MODEL_FILE).is_file():
        model_dir = Path(weights_path).parent
    if model_dir is not None:
        name = Path(model_dir).resolve().name
    elif net1_sha == _cached_sha(shipped_weights_dir() / "net1.pt"):
        name = "shipped"
    else:
        name = Path(weights_path).name if weights_path else "custom"
    record = {"model": name, "model_sha256": model_sha256(net1_sha, net2_sha), "net1_sha256": net1_sha}
    if net2_sha:
        record["net2_sha256"] = net2_sha
    if model_dir is not None:
        record["model_dir"] = str(Path(model_dir).resolve())
        try:  # the directory's own hash (Net1 + Net2 as saved), whichever of them ran
            record["model_sha256"] = json.loads((Path(model_dir) / MODEL_FILE).read_text())["model_sha256"]
        except (OSError, ValueError, KeyError):
            pass
    return record


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def _cached_sha(path: Path) -> str | None:
    from napari_grainseg.models.weights import file_sha256

    if not path.is_file():
        return None
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def package_version() -> str:
    from napari_grainseg import __version__

    return __version__


def onnx_export_available() -> bool:
    """Whether the ``onnx`` package is installed (``pip install 'napari-grainseg[export]'``)."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def check_model_destination(out: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse a model directory destination before any training: the shipped weights folder,
    a file or a folder that is not a model directory, and (unless ``overwrite``) an existing model.
    """
    out = Path(out)
    if is_shipped_location(out):
        raise InputError(f"{out} is the shipped model's folder; it is never overwritten: choose another --out")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MODEL_FILE).is_file())):
        raise InputError(f"{out} exists and is not a model directory; choose a new or empty folder for --out")
    if (out / MODEL_FILE).is_file() and not overwrite:
        raise InputError(f"{out} already holds a model: add --overwrite to replace it, or choose another --out")
    from napari_grainseg.io.outputs import check_output_dir

    return check_output_dir(out, create=False)  # under a file, not writable: the folder checks of every --out


def save_model_dir(
    out: str | Path, net1, info: dict, *, net2_weights: str | Path | None = None, net2=None, overwrite: bool = False
) -> Path:
    """Write a model directory: ``net1``'s weights, Net2 (the adapted ``net2``, else a copy of
    ``net2_weights``, if any) and ``model.json``; with the ``onnx`` package installed also the
    ONNX export of Net1, so the adapted model runs through OpenCV on the CPU like the shipped one.

    ``info`` is merged into ``model.json`` beside the format, package version, date and hashes.
    The directory is assembled beside ``out`` and moved into place at the end, so an
    interrupted save leaves any previous model in ``out`` intact. ``out`` may not be the
    shipped weights folder, nor an existing folder that is not a model directory, nor (unless
    ``overwrite``) an existing model (:func:`check_model_destination`).
    """
    from napari_grainseg.models.net1 import count_parameters
    from napari_grainseg.models.weights import file_sha256, save_weights

    out = check_model_destination(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        _, _ = save_weights(
            net1,
            staging / "net1.pt",
            {
                "model": "net1",
                "architecture": net1.config.to_dict(),
                "parameters": count_parameters(net1),
                "adapted_from": info.get("base_model", {}),
            },
        )
        net1_sha = file_sha256(staging / "net1.pt")
        if onnx_export_available():  # the fast CPU path for the adapted Net1 too (models/net1_opencv.py)
            from napari_grainseg.models.net1_opencv import export_net1_onnx

            export_net1_onnx(staging / "net1.pt")
        net2_sha = None
        if net2 is not None:
            net2_info = {k: v for k, v in getattr(net2, "weights_info", {}).items() if k != "weights_sha256"}
            net2_info |= {"net1_sha256": net1_sha, "adapted_from": info.get("net2", {}).get("base", {})}
            save_weights(net2, staging / "net2.pt", net2_info)
            net2_sha = file_sha256(staging / "net2.pt")
        elif net2_weights is not None:
            src = Path(net2_weights)
            shutil.copyfile(src, staging / "net2.pt")
            shutil.copyfile(src.with_suffix(".json"), staging / "net2.json")
            net2_sha = file_sha256(staging / "net2.pt")
        record = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "package_version": package_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "architecture": {"net1": net1.config.to_dict()},
            "net1_sha256": net1_sha,
            "net2_sha256": net2_sha,
            "model_sha256": model_sha256(net1_sha, net2_sha),
            **info,
        }
        (staging / MODEL_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():
            old = out.parent / f".{out.name}.old"
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def read_model_info(model_dir: str | Path) -> dict:
    """``model.json`` of a model directory, checked: format, version and Net1 architecture."""
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.net1_config import Net1Config

    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if not model_dir.is_dir():
        raise InputError(f"model directory not found: {model_dir}")
    if not path.is_file():
        raise InputError(f"{model_dir} is not a model directory (no {MODEL_FILE})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
        raise InputError(
            f"{model_dir} is not a napari-grainseg model directory (format {info.get('format')!r})"
            if isinstance(info, dict)
            else f"{path} must hold a JSON object"
        )
    version = info.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise InputError(
            f"{model_dir} was written for model format version {version} (package "
            f"{info.get('package_version', '?')}); this napari-grainseg {package_version()} reads "
            f"version {MODEL_FORMAT_VERSION}: adapt the model again with this version"
        )
    arch = (info.get("architecture") or {}).get("net1")
    try:
        config = Net1Config(**arch)
    except TypeError:
        raise InputError(
            f"{model_dir} holds a Net1 of another architecture ({arch}); this version cannot run it"
        ) from None
    if config.in_channels != len(NET1_CHANNELS):
        raise InputError(
            f"{model_dir} holds a Net1 with {config.in_channels} input channels; this version "
            f"computes {len(NET1_CHANNELS)} ({', '.join(NET1_CHANNELS)})"
        )
    return info


def load_model(model_dir: str | Path | None = None, device="cpu", *, for_training: bool = False) -> LoadedModel:
    """Load a model directory (None: the shipped model) for inference.

    Raises :class:`InputError` for a missing directory, another format version or architecture,
    weights that do not match their recorded SHA-256 or do not fit the architecture.
    """
    from napari_grainseg.models.weights import file_sha256, load_net1, load_net2, shipped_weights_dir

    if model_dir is None:
        net1 = load_net1(device=device, for_training=for_training)
        net2_path = shipped_weights_dir() / "net2.pt"
        net2 = load_net2(net2_path, device=device) if net2_path.is_file() else None
        info = {"model": "shipped", "net1": dict(net1.weights_info)}
        return LoadedModel(None, net1, net2, info, model_record(net1, net2))
    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    net1_path = model_dir / "net1.pt"
    if not net1_path.is_file():
        raise InputError(f"{model_dir} has no net1.pt")
    if info.get("net1_sha256") and file_sha256(net1_path) != info["net1_sha256"]:
        raise InputError(f"{net1_path} does not match the SHA-256 recorded in {MODEL_FILE} (changed or corrupt)")
    net1 = load_net1(net1_path, device=device, for_training=for_training)
    if net1.config.to_dict() != info["architecture"]["net1"]:
        raise InputError(
            f"{net1_path} is Net1 {net1.config.to_dict()}, {MODEL_FILE} says {info['architecture']['net1']}"
        )
    net2 = None
    if (model_dir / "net2.pt").is_file():
        if info.get("net2_sha256") and file_sha256(model_dir / "net2.pt") != info["net2_sha256"]:
            raise InputError(f"{model_dir / 'net2.pt'} does not match the SHA-256 recorded in {MODEL_FILE}")
        net2 = load_net2(model_dir / "net2.pt", device=device)
    return LoadedModel(model_dir, net1, net2, info, model_record(net1, net2, model_dir))


def model_segment_options(
    model_dir: str | Path,
    info: dict | None = None,
    *,
    grains: str | None = None,
    grain_size_px: float | None = None,
    pixel_size_nm: float | None = None,
    **fields,
):
    """The :class:`~napari_grainseg.segmentation.options.SegmentOptions` that run a model directory.

    Its Net1 and Net2 weights; its scale (:func:`model_grain_size_hint`: the corrections' grain
    size unless the image's own ``grain_size_px`` is given); its recommended grain builder
    unless ``grains`` names one, with the builder's tuned parameter when it is the recommended
    one. ``fields`` are further options (``device``, ``net2_steps``...).
    """
    from napari_grainseg.segmentation.grains import DEFAULT_GRAIN_BUILDER
    from napari_grainseg.segmentation.options import SegmentOptions

    model_dir = Path(model_dir)
    info = read_model_info(model_dir) if info is None else info
    recommended = info.get("recommended") or {}
    grains = grains or recommended.get("grains") or DEFAULT_GRAIN_BUILDER
    tuned = {}
    if grains == recommended.get("grains"):
        tuned = {k: float(recommended[k]) for k in ("threshold", "watershed_h") if k in recommended}
    net2 = model_dir / "net2.pt"
    return SegmentOptions(
        **{
            "grains": grains,
            "grain_size_px": model_grain_size_hint(info, grain_size_px=grain_size_px, pixel_size_nm=pixel_size_nm),
            "weights": str(model_dir / "net1.pt"),
            "net2_weights": str(net2) if net2.is_file() else None,
            **fields,
            **tuned,
        }
    )
