"""Sample data shipped inside the package (no download needed)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Attribution of the bundled real micrograph (CC0 1.0).
INTERCONNECT_TEM_CREDIT = (
    "Bright-field TEM of a metal interconnect line, 1166x154 px. CC0 1.0, from "
    "A. S. Saleh, K. Croes, H. Ceric, I. De Wolf, H. Zahedmanesh (imec), "
    "arXiv 2504.14782 (2025)."
)


def interconnect_tem_path() -> Path:
    """Path of the bundled real TEM micrograph (``interconnect_tem.png``)."""
    return Path(str(resources.files("napari_grainseg") / "data" / "interconnect_tem.png"))


def interconnect_tem():
    """Read the bundled real micrograph as a :class:`~napari_grainseg.io.readers.Micrograph`.

    It has no pixel-size calibration (``pixel_size_nm`` is None).
    """
    from napari_grainseg.io.readers import read_micrograph

    return read_micrograph(interconnect_tem_path())
