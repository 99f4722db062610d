"""Real micrographs with hand-traced boundaries as evaluation sets (evidence our generator did not draw).

The TBM crops (``../shared/data/tbm_train``: 64 real 256² optical crops of a tint-etched steel
with hand-traced boundaries, MIT licence) are not shipped with the package; their folder is
found from ``GRAINSEG_TBM_DIR`` or, for a checkout, ``shared/data/tbm_train`` beside or above
the repository. Crops are grouped by micrograph (the first number of ``MICROGRAPH-ROW-COL.png``);
:func:`tbm_split` fixes which micrographs are for adaptation and which for testing, so that no
test crop shares a micrograph with an adaptation crop.

The traced masks have anti-aliased lines about 3 px wide (boundary where the value is > 128);
:func:`labels_from_traced_mask` makes them the project's truth convention: 1-px boundaries,
closed 4-connected grains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grainseg.errors import InputError

#: Environment variable naming the TBM folder (``images/`` and ``masks/`` inside).
TBM_ENV = "GRAINSEG_TBM_DIR"
#: The crops below ``shared/data`` (:func:`~napari_grainseg.io.shared_data.find_shared_data`).
TBM_SHARED = Path("tbm_train")
#: Micrographs whose crops form the fixed TBM test part (11 of 22 micrographs, 33 of 64 crops);
#: chosen once, before any adaptation run, by taking every other micrograph in sorted order.
TBM_TEST_MICROGRAPHS = ("10", "12", "14", "16", "18", "20", "22", "24", "27", "29", "31")


@dataclass(frozen=True)
class TracedSample:
    """A real micrograph with its traced truth (the same fields as a synthetic sample)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    boundaries: np.ndarray


def find_tbm_dir(folder: str | os.PathLike | None = None) -> Path:
    """The TBM folder: ``folder``, else ``$GRAINSEG_TBM_DIR``, else the shared data of a development
    checkout (:func:`~napari_grainseg.io.shared_data.find_shared_data`). Raises :class:`InputError`
    when that is not a folder holding ``images/`` and ``masks/``."""
    from napari_grainseg.io.shared_data import find_shared_data

    def holds_crops(path: Path) -> bool:
        return (path / "images").is_dir() and (path / "masks").is_dir()

    path = Path(folder) if folder else find_shared_data(TBM_SHARED, env=TBM_ENV, accept=holds_crops)
    if path is None or not holds_crops(path):
        raise InputError(
            f"the TBM crops were not found{f' in {path}' if path else ''}: set {TBM_ENV} to the folder "
            f"holding images/ and masks/ (shared/data/tbm_train beside a development checkout)"
        )
    return path


def labels_from_traced_mask(mask: np.ndarray, level: float = 128) -> np.ndarray:
    """Closed grain labels (0 = 1-px boundary) from a hand-traced mask with lines of any width.

    Pixels above ``level`` are boundary; the grains between them grow into the traced band
    until it is one pixel wide (:func:`~napari_grainseg.segmentation.grains.boundaries_to_labels`),
    so the boundary lies along the centre of the traced line, not at its brush edge.

    Examples
    --------
    >>> m = np.zeros((20, 20), np.uint8); m[:, 8:13] = 255      # a 5-px traced line
    >>> lab = labels_from_traced_mask(m)
    >>> int(lab.max()), int((lab == 0).sum(axis=1).max())
    (2, 1)
    """
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=-1)
    if mask.ndim != 2:
        raise InputError(f"a traced boundary mask must be 2-D, got shape {mask.shape}")
    traced = mask > level
    if not traced.any():
        raise InputError("the traced boundary mask has no boundary pixel")
    return boundaries_to_labels(traced)


def tbm_micrograph(path: str | os.PathLike) -> str:
    """The micrograph a TBM crop comes from: the first number of its file name."""
    return Path(path).name.split("-")[0]


def tbm_files(folder: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """Sorted ``(image, mask)`` pairs of the TBM folder."""
    root = find_tbm_dir(folder)
    pairs = [(p, root / "masks" / p.name) for p in sorted((root / "images").glob("*.png"))]
    missing = [str(m) for _, m in pairs if not m.is_file()]
    if missing:
        raise InputError(f"{len(missing)} TBM image(s) have no mask, e.g. {missing[0]}")
    return pairs


def tbm_split(folder: str | os.PathLike | None = None) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """``(adaptation pairs, test pairs)``, grouped by micrograph (:data:`TBM_TEST_MICROGRAPHS`)."""
    pairs = tbm_files(folder)
    test = [p for p in pairs if tbm_micrograph(p[0]) in TBM_TEST_MICROGRAPHS]
    adapt = [p for p in pairs if tbm_micrograph(p[0]) not in TBM_TEST_MICROGRAPHS]
    return adapt, test


def load_traced(image_path: str | os.PathLike, mask_path: str | os.PathLike) -> TracedSample:
    """One real crop (luminance, scaled to [0, 1]) with its truth."""
    import warnings

    import cv2

    from napari_grainseg.io.readers import read_micrograph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the colour-to-luminance notice: expected for these crops
        image = read_micrograph(image_path).data
    lo, hi = float(image.min()), float(image.max())
    image = ((image - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise InputError(f"cannot read the traced mask {mask_path}")
    labels = labels_from_traced_mask(mask)
    if labels.shape != image.shape:
        raise InputError(f"{mask_path}: mask shape {labels.shape} differs from the image's {image.shape}")
    return TracedSample(Path(image_path).stem, image, labels, labels == 0)


@dataclass(frozen=True)
class TracedSet:
    """An evaluation set of real traced crops; same interface as a synthetic ``EvalSet``."""

    name: str
    description: str
    part: str  # "test", "adapt" or "all"
    in_default_run: bool = False

    @property
    def size(self) -> int:
        return len(self._pairs())

    def _pairs(self) -> list[tuple[Path, Path]]:
        adapt, test = tbm_split()
        return {"test": test, "adapt": adapt, "all": adapt + test}[self.part]

    def samples(self, limit: int | None = None):
        """Yield the set's :class:`TracedSample` in file order."""
        pairs = self._pairs()
        for image_path, mask_path in pairs[: limit if limit is not None else len(pairs)]:
            yield load_traced(image_path, mask_path)
