"""napari-grainseg: grain boundaries and grain-size statistics for TEM micrographs.

The core library (everything outside :mod:`napari_grainseg.plugin`) has no Qt or
napari imports, and torch is imported lazily, so ``import napari_grainseg`` is fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
