"""The user's model store: adapted models kept by name in the user's data folder.

napari's "Learn from corrections" step saves every adapted model here, and the segment
widget offers them beside the shipped model. The store is a folder (default
``platformdirs.user_data_dir("napari-grainseg")/models``; the environment variable
``GRAINSEG_MODEL_STORE`` points it elsewhere, e.g. for tests) holding::

    STORE/
        <name>/          a model directory (model.json, net1.pt, net2.pt; see model_dir.py)
        corrections/     the corrected images the models were trained on, by content:
            <image sha>/image.tif, boundaries-<sha>.tif, roi-<sha>.tif

Keeping the corrections lets "learn again" train from the base model on ALL corrected
images so far (the Cellpose maintainers' advice: never chain fine-tunes). A model is named
by its folder; names are checked (no path separators, not ``shipped``), renaming is one
atomic ``rename`` and deleting moves the folder aside before removing it. The shipped model
is not in the store and can be neither renamed nor deleted.

Examples
--------
>>> import tempfile
>>> [m.name for m in list_models(tempfile.mkdtemp())]
[]
>>> check_name("my steel")
'my steel'
>>> check_name("a/b")
Traceback (most recent call last):
...
napari_grainseg.errors.InputError: a model name may not contain '/': 'a/b'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grainseg.errors import GrainsegError, InputError

#: Environment variable that points the store to another folder.
STORE_ENV = "GRAINSEG_MODEL_STORE"
#: The name under which the shipped model is offered (never a stored model's name).
SHIPPED = "shipped"
#: The store's folder of corrected images (not a model name).
CORRECTIONS = "corrections"
#: Longest model name.
MAX_NAME_LENGTH = 80


class LearnCancelled(GrainsegError):
    """Learning was cancelled; nothing was saved."""


def store_dir(create: bool = True) -> Path:
    """The store folder: ``$GRAINSEG_MODEL_STORE``, else ``<user data folder>/models``."""
    env = os.environ.get(STORE_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("napari-grainseg")) / "models"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot make the model store {path}: {exc.strerror or exc}") from None
    return path


def _store(store: str | Path | None) -> Path:
    """``store``, else the store folder (not created: listing an absent store is listing nothing)."""
    return Path(store) if store is not None else store_dir(create=False)


def check_name(name: str) -> str:
    """A model name, stripped; an :class:`InputError` saying why when it cannot be one."""
    from napari_grainseg.io.outputs import check_file_name

    if not isinstance(name, str):
        raise InputError(f"a model name must be text, got {name!r}")
    name = name.strip()
    if not name:
        raise InputError("give the model a name")
    check_file_name(name, "a model name")
    if name.lower() in (SHIPPED, CORRECTIONS):
        raise InputError(f"'{name}' is reserved; choose another model name")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"a model name may have at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    return name


@dataclass(frozen=True)
class StoredModel:
    """One model of the store, as listed.

    Attributes
    ----------
    name : the model's name (its folder's name).
    path : its model directory.
    date : when it was made (ISO 8601, UTC), from ``model.json``.
    worse_than_base : True when it scored worse than the base model on its held-out images;
        None when nothing was held out (a single corrected image).
    n_images : corrected images it was trained and checked on.
    info : its ``model.json``.
    """

    name: str
    path: Path
    date: str
    worse_than_base: bool | None
    n_images: int
    info: dict

    @classmethod
    def of(cls, path: str | Path, info: dict) -> StoredModel:
        """The listing of model directory ``path`` with its ``model.json`` ``info``."""
        path = Path(path)
        return cls(
            name=path.name,
            path=path,
            date=str(info.get("date", "")),
            worse_than_base=bool(info.get("worse_than_base")) if info.get("heldout") else None,
            n_images=len(info.get("training_images", [])),
            info=info,
        )

    @property
    def verdict(self) -> str:
        """The held-out verdict in words."""
        held = self.info.get("heldout")
        if not held:
            return (
                "not checked (one corrected image, none held out: "
                "learn from two or more to compare it with the shipped model)"
            )
        base = min(held["base"].values(), key=lambda f: f["vi"])
        adapted = held["adapted"][held["best_grains"]]
        figures = (
            f"held-out VI {base['vi']:.2f} -> {adapted['vi']:.2f}, F1 {base['f1_2px']:.2f} -> {adapted['f1_2px']:.2f}"
        )
        net2 = ""
        if "net2_helps" in held:
            net2 = "; its adapted Net2 " + ("helped" if held["net2_helps"] else "did not help (not used by default)")
        if self.worse_than_base:
            return f"WORSE than the shipped model on its held-out images ({figures}){net2}"
        return f"better than the shipped model on its held-out images ({figures}){net2}"

    @property
    def label(self) -> str:
        """How a model choice shows it: a warning when flagged (first: a narrow box clips the end),
        name and date."""
        text = f"{self.name} ({self.date[:16].replace('T', ' ')})"
        return f"worse than shipped! {text}" if self.worse_than_base else text


def list_models(store: str | Path | None = None) -> list[StoredModel]:
    """The store's readable models, newest first (folders that are not model directories are skipped)."""
    from napari_grainseg.models.model_dir import read_model_info

    root = _store(store)
    out = []
    for path in root.iterdir() if root.is_dir() else ():
        if not path.is_dir() or path.name.startswith(".") or path.name == CORRECTIONS:
            continue
        try:
            info = read_model_info(path)
        except InputError:
            continue
        out.append(StoredModel.of(path, info))
    return sorted(out, key=lambda m: (m.date, m.name), reverse=True)


def model_path(name: str, store: str | Path | None = None) -> Path:
    """The model directory of the stored model ``name`` (an :class:`InputError` if there is none)."""
    if isinstance(name, str) and name.strip().lower() == SHIPPED:
        raise InputError("the shipped model is not in the model store")
    path = _store(store) / check_name(name)
    if not (path / "model.json").is_file():
        raise InputError(f"no model named '{name}' in the model store {path.parent}")
    return path


def new_model_path(name: str, store: str | Path | None = None) -> Path:
    """Where a new model ``name`` goes; an :class:`InputError` when the name is bad or taken."""
    path = _store(store) / check_name(name)
    if path.exists():
        raise InputError(f"a model named '{path.name}' exists already: choose another name (or delete it first)")
    return path


def unique_name(base: str, store: str | Path | None = None) -> str:
    """``base``, or ``base 2``, ``base 3``... : the first name not taken in the store."""
    base = check_name(base)
    root = _store(store)
    name, i = base, 2
    while (root / name).exists():
        name = f"{base} {i}"
        i += 1
    return name


def rename_model(old: str, new: str, store: str | Path | None = None) -> Path:
    """Rename a stored model (one atomic rename of its folder). Returns its new directory."""
    src = model_path(old, store)
    dst = new_model_path(new, store)
    try:
        src.rename(dst)
    except OSError as exc:
        raise InputError(f"cannot rename '{src.name}' to '{dst.name}': {exc.strerror or exc}") from None
    return dst


def delete_model(name: str, store: str | Path | None = None) -> None:
    """Delete a stored model; the shipped model is never deleted.

    The folder is first renamed aside (atomic: the model disappears from the store at
    once, whole), then removed; corrected images no other model uses are removed too.
    """
    from napari_grainseg.models.model_dir import is_shipped_location

    path = model_path(name, store)
    if is_shipped_location(path):
        raise InputError("the shipped model is never deleted")
    trash = path.parent / f".deleting-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        path.rename(trash)
    except OSError as exc:
        raise InputError(f"cannot delete '{path.name}': {exc.strerror or exc}") from None
    shutil.rmtree(trash, ignore_errors=True)
    prune_corrections(store)


# --------------------------------------------------------------------------- corrections kept with the models


def _sha(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def save_correction(
    image: np.ndarray, boundaries: np.ndarray, roi: np.ndarray | None = None, store: str | Path | None = None
) -> dict:
    """Write one corrected image into the store (by content: the same image lands in the same folder).

    Returns ``{"image", "boundaries", "roi"}`` paths (``roi`` None without one). The files are
    written atomically; a file that exists already (same content) is not written again.
    """
    import tifffile

    from napari_grainseg.io.atomic import atomic_path

    image = np.ascontiguousarray(image, np.float32)
    boundaries = (np.asarray(boundaries) != 0).astype(np.uint8)
    if boundaries.shape != image.shape:
        raise InputError(f"boundaries of shape {boundaries.shape} do not match their image {image.shape}")
    folder = _store(store) / CORRECTIONS / _sha(image)[:20]
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict = {"image": folder / "image.tif", "boundaries": folder / f"boundaries-{_sha(boundaries)[:12]}.tif"}
    arrays = {"image": image, "boundaries": boundaries}
    if roi is not None:
        roi = (np.asarray(roi) != 0).astype(np.uint8)
        if roi.shape != image.shape:
            raise InputError(f"verified region of shape {roi.shape} does not match its image {image.shape}")
        paths["roi"] = folder / f"roi-{_sha(roi)[:12]}.tif"
        arrays["roi"] = roi
    for key, path in paths.items():
        if not path.is_file():
            with atomic_path(path) as tmp:
                tifffile.imwrite(tmp, arrays[key], compression="zlib")
    paths.setdefault("roi", None)
    return {k: (str(v) if v is not None else None) for k, v in paths.items()}


def referenced_files(store: str | Path | None = None) -> set[str]:
    """Every file the store's models record as training data (resolved paths)."""
    out = set()
    for m in list_models(store):
        for rec in m.info.get("training_images", []):
            for key in ("image", "target", "roi"):
                if rec.get(key):
                    out.add(str(Path(rec[key]).resolve()))
    return out


def prune_corrections(store: str | Path | None = None) -> int:
    """Remove the store's corrected-image files that no model records any more; returns how many."""
    root = _store(store) / CORRECTIONS
    if not root.is_dir():
        return 0
    keep = referenced_files(store)
    removed = 0
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if str(f.resolve()) not in keep:
                f.unlink(missing_ok=True)
                removed += 1
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


# --------------------------------------------------------------------------- learning into the store


@dataclass
class CorrectedImage:
    """One corrected micrograph handed to :func:`learn_model` (e.g. from napari layers).

    Attributes
    ----------
    image : 2-D micrograph.
    boundaries : boundary mask (non-zero = boundary, lines of any width).
    roi : verified part (non-zero), or None (all of it).
    name : for messages (the layer's name).
    pixel_size_nm : the image's pixel size, or None.
    """

    image: np.ndarray
    boundaries: np.ndarray
    roi: np.ndarray | None = None
    name: str = "image"
    pixel_size_nm: float | None = None


def learn_model(
    name: str,
    corrected: list[CorrectedImage],
    *,
    again_from: str | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    net2_steps: int | None = None,
    config=None,
    device="auto",
    progress: Callable[[int, int, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    store: str | Path | None = None,
) -> tuple[Path, dict]:
    """Adapt Net1 from the shipped model to corrected images and keep it in the store as ``name``.

    The corrected images are written into the store first (so that a later "learn again"
    can read them), then :func:`~napari_grainseg.training.finetune.adapt_and_save` trains.
    ``again_from`` (a stored model's name) adds every corrected image that model was trained
    on and trains again from the base model ("learn again"; an image corrected anew replaces
    its earlier correction). ``net2_steps`` > 0 also adapts Net2 (recommended for segmenting only
    when it helped on the held-out images). ``cancel()`` is polled after every step and at the end: when
    true, :class:`LearnCancelled` is raised and nothing is saved. Returns (model directory,
    ``model.json``).
    """
    from napari_grainseg.training.corrections import load_corrections
    from napari_grainseg.training.finetune import adapt_and_save

    out = new_model_path(name, store)
    from_dir = model_path(again_from, store) if again_from else None
    if not corrected and from_dir is None:
        raise InputError("no corrected boundary layer chosen: correct a result by hand, then choose its layer")
    written = []
    for c in corrected:
        try:
            written.append((c, save_correction(c.image, c.boundaries, c.roi, store)))
        except InputError as exc:
            raise InputError(f"'{c.name}': {exc}") from None
    corrections = []
    for c, paths in written:
        try:
            loaded = load_corrections(
                [paths["image"]], boundaries=[paths["boundaries"]], rois=[paths["roi"]] if paths["roi"] else None
            )
        except InputError as exc:  # name the layer, not the store's file
            message = str(exc).replace(paths["boundaries"], f"'{c.name}'")
            if paths["roi"]:
                message = message.replace(paths["roi"], f"the verified region of '{c.name}'")
            raise InputError(message) from None
        loaded[0].name = c.name
        loaded[0].pixel_size_nm = c.pixel_size_nm  # the layer's (the store's files are uncalibrated)
        corrections += loaded

    def should_stop() -> bool:
        return cancel is not None and bool(cancel())

    def on_step(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step, total, loss)
        if should_stop():  # stop at once: no tuning, no held-out check, nothing saved
            raise LearnCancelled("learning cancelled: nothing saved")

    staging = out.parent / f".learning-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        path, info = adapt_and_save(
            out=staging,
            from_dir=from_dir,
            corrections=corrections,
            steps=steps,
            minutes=minutes if steps is None else None,
            net2_steps=net2_steps,
            config=config,
            device=device,
            progress=on_step,
            log=log,
        )
        if should_stop():
            raise LearnCancelled("learning cancelled: nothing saved")
        new_model_path(name, store)  # still free (another window may have taken it)
        path.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        prune_corrections(store)
        raise
    info = json.loads((out / "model.json").read_text(encoding="utf-8"))
    return out, info
