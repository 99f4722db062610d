"""Reading micrographs, validating arrays, units and calibration, atomic writes.

- :mod:`~napari_grainseg.io.readers`: ``read_micrograph`` (TIFF, PNG/JPEG, MRC, DM3/DM4, SER) and units;
- :mod:`~napari_grainseg.io.validate`: any array checked as a 2-D micrograph;
- :mod:`~napari_grainseg.io.atomic`: files that are complete or absent after a crash;
- :mod:`~napari_grainseg.io.samples`: the bundled real micrograph.
"""

from napari_grainseg._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "read_micrograph": ".readers",
        "Micrograph": ".readers",
        "SUPPORTED_EXTENSIONS": ".readers",
        "validate_pixel_size": ".readers",
        "nm_per_unit": ".readers",
        "validate_image": ".validate",
        "atomic_open": ".atomic",
        "atomic_path": ".atomic",
        "interconnect_tem": ".samples",
        "interconnect_tem_path": ".samples",
    },
)
