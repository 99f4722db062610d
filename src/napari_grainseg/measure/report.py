"""Exports a materials lab can put in a report: CSV, JSON, histograms, overlay.

Every file is written atomically (:mod:`napari_grainseg.io.atomic`): after a crash
a file is either complete or absent; a field's exports are written as one set, all or
nothing (a full disk leaves no partial set). Figures use matplotlib's object API
(``matplotlib.figure.Figure`` with the Agg canvas, never pyplot), imported
lazily (only when a figure is made), so this module is thread-safe and Qt-free.
A field's histogram is drawn once and saved as PNG, and as SVG on request;
SVGs are deterministic (no date, fixed ids), so runs compare by hash.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from napari_grainseg.io.atomic import as_output_error, atomic_open, atomic_path, atomic_paths
from napari_grainseg.measure.table import GrainTable

__all__ = [
    "BOUNDARY_COLOUR",
    "histogram_figure",
    "overlay_rgb",
    "save_figure",
    "save_overlay",
    "write_field_exports",
    "write_grains_csv",
    "write_report",
    "write_summary_json",
]

#: Colour of boundaries in the overlay PNG (RGB).
BOUNDARY_COLOUR = (255, 40, 0)


def write_grains_csv(path, table: GrainTable) -> Path:
    """Write the per-grain table as CSV (header ``column [unit]``)."""
    return table.to_csv(path)


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj):
    """Replace NaN/inf floats by None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_summary_json(path, summary: dict, extra: dict | None = None) -> Path:
    """Write ``summary`` (plus ``extra`` keys, e.g. ``device``) as indented JSON."""
    data = dict(summary)
    if extra:
        data.update(extra)
    path = Path(path)
    with atomic_open(path, "w") as fh:
        json.dump(_finite(data), fh, indent=2, default=_json_default, allow_nan=False)
        fh.write("\n")
    return path


def histogram_figure(table: GrainTable, summary: dict, *, vertical: bool = False):
    """Figure with the ECD distribution: number- and area-weighted histograms
    with the fitted lognormal density, and the empirical vs fitted CDF
    (goodness of fit, KS distance). Units: nm when calibrated, else px.

    ``vertical`` stacks the three panels in a narrow figure (for a dock widget)
    instead of side by side (for a report page).

    Returns a ``matplotlib.figure.Figure`` (Agg canvas attached).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hist = summary.get("histograms")
    s = summary.get("pixel_size_nm")
    unit = "nm" if s else "px"
    scale = s or 1.0
    if vertical:  # the dock widget's figure, drawn once per update
        fig = Figure(figsize=(4.4, 8.4), layout="constrained")
    else:  # laid out once at the end, then frozen: a constrained layout would draw again at every save
        fig = Figure(figsize=(11, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_n, ax_a, ax_c = fig.subplots(3, 1) if vertical else fig.subplots(1, 3)
    fig.suptitle(f"Equivalent circle diameter (ECD) — {counted_grains_words(summary)}")
    fit = summary.get("lognormal")
    if hist:
        edges = np.asarray(hist["bin_edges_px"]) * scale
        widths = np.diff(edges)
        nf = np.asarray(hist["number_fraction"])
        af = np.asarray(hist["area_fraction"])
        ax_n.bar(edges[:-1], nf / widths, widths, align="edge", color="#7aa6c2", edgecolor="white", label="grains")
        ax_a.bar(edges[:-1], af / widths, widths, align="edge", color="#c29a7a", edgecolor="white", label="area")
        if fit:
            x = np.linspace(max(edges[0], 1e-9), edges[-1], 300)
            med = fit["median_px"] * scale
            ax_n.plot(
                x,
                _lognormal_pdf(x, fit["sigma"], med),
                "k-",
                label=f"lognormal σ={fit['sigma']:.2f}, median={med:.3g} {unit}",
            )
    for ax, what in ((ax_n, "number"), (ax_a, "area")):
        ax.set_xlabel(f"ECD ({unit})")
        ax.set_ylabel(f"{what}-weighted density (1/{unit})")
        top = max((artist.get_height() for artist in ax.patches), default=0.0)
        top = max([top, *(float(np.max(line.get_ydata())) for line in ax.lines)])
        if top > 0:  # headroom: the legend sits above the tallest bar, never on it
            ax.set_ylim(0, top * LEGEND_HEADROOM)
        ax.legend(fontsize=8, loc="upper right")
    ax_n.set_title("number-weighted", fontsize=10)
    ax_a.set_title("area-weighted", fontsize=10)
    # goodness of fit: empirical CDF vs fitted CDF
    d = table["ecd_px"] * scale
    keep = ~table["touches_border"] if summary.get("edge_grains") == "excluded" else None
    if keep is not None and keep.any():
        d = d[keep]
    d = np.sort(d)
    if d.size:
        ax_c.step(d, np.arange(1, d.size + 1) / d.size, where="post", color="#7aa6c2", label="measured (unweighted)")
    if fit:
        x = np.linspace(max(d.min() * 0.8, 1e-9) if d.size else 1e-9, d.max() * 1.2 if d.size else 1, 300)
        ax_c.plot(
            x,
            _lognormal_cdf(x, fit["sigma"], fit["median_px"] * scale),
            "k-",
            label=f"lognormal fit, KS D={fit['ks_statistic']:.3f}",
        )
    else:  # one grain, or all the same size: an empty panel would look like a drawing fault
        ax_c.text(
            0.5,
            0.55,
            "no lognormal fit:\nfewer than two\ndifferent grain sizes",
            transform=ax_c.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="0.35",
        )
    ax_c.set_xlabel(f"ECD ({unit})")
    ax_c.set_ylabel("cumulative fraction of grains")
    ax_c.set_title("goodness of fit", fontsize=10)
    ax_c.set_ylim(0, 1.02)
    ax_c.legend(fontsize=8, loc="lower right")
    if not vertical:  # margins that fit the tick labels (fixed ones clipped "0.0175" axes' labels)
        fig.canvas.draw()
        fig.set_layout_engine("none")
    return fig


#: Histogram panels reach this multiple of their tallest bar or curve: room for the legend.
LEGEND_HEADROOM = 1.4


def counted_grains_words(summary: dict) -> str:
    """Which grains the size statistics count, as the figure's title says it.

    E.g. "85 complete grains, Miles–Lantuéjoul weights": border grains left out, and the
    complete ones weighted for their chance of being cut by the border (the summary's
    ``edge_grains`` and ``edge_correction``).
    """
    n = summary.get("n_grains_included", 0)
    grains = f"grain{'' if n == 1 else 's'}"
    if str(summary.get("edge_grains", "")).startswith("included"):
        return f"{n} {grains}, border grains included"
    correction = summary.get("edge_correction")
    if correction == "miles":
        return f"{n} complete {grains}, Miles–Lantuéjoul weights"
    if correction == "guard":
        return f"{n} {grains} inside the guard frame"
    return f"{n} complete {grains} (border grains left out)"


def _lognormal_pdf(x: np.ndarray, sigma: float, median: float) -> np.ndarray:
    return np.exp(-0.5 * (np.log(x / median) / sigma) ** 2) / (x * sigma * math.sqrt(2 * math.pi))


def _lognormal_cdf(x: np.ndarray, sigma: float, median: float) -> np.ndarray:
    from scipy import special

    return special.ndtr(np.log(x / median) / sigma)


def save_figure(fig, path, *, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically; the format follows the suffix.

    SVG keeps text as text (editable, searchable) and carries no date and fixed
    element ids, so the same figure gives the same bytes.
    """
    import matplotlib

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "grainseg"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
    return path


def overlay_rgb(
    image: np.ndarray | None, boundaries: np.ndarray, colour: tuple[int, int, int] = BOUNDARY_COLOUR
) -> np.ndarray:
    """RGB uint8 picture of the boundaries drawn on the micrograph.

    The micrograph is contrast-stretched (1st–99th percentile) to gray; without
    an image the background is white.
    """
    boundaries = np.asarray(boundaries, bool)
    if image is None:
        gray = np.full(boundaries.shape, 255, np.uint8)
    else:
        from napari_grainseg.io.validate import validate_image

        img = validate_image(image)
        if img.shape != boundaries.shape:
            from napari_grainseg.errors import InputError

            raise InputError(f"image shape {img.shape} differs from label shape {boundaries.shape}")
        lo, hi = np.percentile(img, [1, 99])
        if hi <= lo:
            lo, hi = float(img.min()), float(img.max())
        gray = (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgb[boundaries] = colour
    return rgb


def save_overlay(path, image: np.ndarray | None, boundaries: np.ndarray) -> Path:
    """Write the boundary overlay (:func:`overlay_rgb`) as a PNG at full resolution."""
    from PIL import Image

    path = Path(path)
    rgb = overlay_rgb(image, boundaries)
    with atomic_path(path) as tmp:
        # zlib level 3: same pixels, about a third of the default level's time, a smaller file here
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=3)
    return path


def write_tiff(path, array: np.ndarray, pixel_size_nm: float | None = None) -> Path:
    """Write a label or boundary image as a zlib-compressed TIFF, atomically (dtype kept).

    With ``pixel_size_nm`` the calibration goes into X/YResolution in pixels per centimetre,
    which this package's readers (and ImageJ, Fiji) read back, so an export reopens calibrated
    (down to about 0.0024 nm per pixel, the finest a TIFF rational can hold; finer is left out).
    """
    import tifffile

    path = Path(path)
    kwargs = {}
    per_cm = 1e7 / float(pixel_size_nm) if pixel_size_nm else None
    if per_cm is not None and per_cm < 2**32 - 1:  # a TIFF rational's limit: pixels under ~0.0024 nm go uncalibrated
        kwargs = {"resolution": (per_cm, per_cm), "resolutionunit": tifffile.RESUNIT.CENTIMETER}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array), compression="zlib", **kwargs)
    return path


#: File endings of each export of a measured field (``write_field_exports``'s ``what``).
FIELD_EXPORT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": ("_grains.csv",),
    "json": ("_summary.json",),
    "histogram": ("_histogram.png", "_histogram.svg"),
    "tiff": ("_grains.tif", "_boundaries.tif"),
}


def field_export_paths(out_dir, stem: str, what: tuple[str, ...], *, svg: bool = False) -> list[Path]:
    """The files ``write_field_exports(out_dir, stem, ..., what=what, svg=svg)`` would write.

    Lets a caller look for files it would replace before writing any.

    Examples
    --------
    >>> [p.name for p in field_export_paths("out", "cu", ("csv", "histogram"))]
    ['cu_grains.csv', 'cu_histogram.png']
    """
    from napari_grainseg.io.outputs import check_file_name

    check_file_name(stem)  # a stem like ../x or /tmp/x would write outside out_dir
    out_dir = Path(out_dir)
    names = []
    for kind in what:
        suffixes = FIELD_EXPORT_SUFFIXES[kind]
        if kind == "histogram" and not svg:
            suffixes = suffixes[:1]
        names += [out_dir / f"{stem}{suffix}" for suffix in suffixes]
    return names


def write_field_exports(
    out_dir,
    stem: str,
    table: GrainTable,
    summary: dict,
    *,
    extra: dict | None = None,
    svg: bool = False,
    what: tuple[str, ...] = ("csv", "json", "histogram"),
    labels: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write the chosen exports of a measured field: CSV, summary JSON, histogram PNG (and SVG),
    label and boundary TIFFs, as one set: all or nothing.

    Every file is written to a temporary name in ``out_dir`` first, then all are renamed into
    place; a failure (a full disk) leaves no new file and every earlier file untouched.

    The histogram figure is drawn once (report layout) and saved as PNG, and as SVG with
    ``svg``. ``"tiff"`` in ``what`` needs ``labels`` (0 = boundary); the TIFFs carry the
    table's pixel size. Returns ``{"csv", "json", "histogram_png"[, "histogram_svg"],
    "grains_tif", "boundaries_tif"}`` → path, for the kinds asked.
    """
    return _write_set(_field_writers(out_dir, stem, table, summary, extra=extra, svg=svg, what=what, labels=labels))


def _field_writers(
    out_dir,
    stem: str,
    table: GrainTable,
    summary: dict,
    *,
    extra: dict | None,
    svg: bool,
    what: tuple[str, ...],
    labels: np.ndarray | None,
) -> list[tuple[str, Path, object]]:
    """``(key, path, write(path))`` of each export :func:`write_field_exports` writes."""
    unknown = set(what) - set(FIELD_EXPORT_SUFFIXES)
    if unknown:
        raise ValueError(f"unknown export kinds {sorted(unknown)}; known: {sorted(FIELD_EXPORT_SUFFIXES)}")
    if "tiff" in what and labels is None:
        raise ValueError("the TIFF exports need the label image")
    jobs: list[tuple[str, Path, object]] = []
    if "csv" in what:
        (path,) = field_export_paths(out_dir, stem, ("csv",))
        jobs.append(("csv", path, lambda tmp: write_grains_csv(tmp, table)))
    if "json" in what:
        (path,) = field_export_paths(out_dir, stem, ("json",))
        jobs.append(("json", path, lambda tmp: write_summary_json(tmp, summary, extra)))
    if "histogram" in what:
        figure: list = []  # drawn once, when the first histogram file is written

        def save(tmp):
            if not figure:
                figure.append(histogram_figure(table, summary))
            save_figure(figure[0], tmp)

        for key, path in zip(
            ("histogram_png", "histogram_svg"), field_export_paths(out_dir, stem, ("histogram",), svg=svg)
        ):
            jobs.append((key, path, save))
    if "tiff" in what:
        nm = table.pixel_size_nm
        labels = np.asarray(labels)
        grains_path, boundaries_path = field_export_paths(out_dir, stem, ("tiff",))
        jobs.append(("grains_tif", grains_path, lambda tmp: write_tiff(tmp, labels.astype(np.uint32), nm)))
        jobs.append(
            ("boundaries_tif", boundaries_path, lambda tmp: write_tiff(tmp, (labels == 0).astype(np.uint8), nm))
        )
    return jobs


def _write_set(jobs: list[tuple[str, Path, object]]) -> dict[str, Path]:
    """Write ``(key, path, write(path))`` jobs all or nothing (:func:`~napari_grainseg.io.atomic.atomic_paths`):
    each to a temporary file beside its path, then all moved into place; on a failure (a full
    disk) no file is left half-way and files already there stay as they were."""
    with atomic_paths([path for _, path, _ in jobs]) as tmps:
        for (_, path, write), tmp in zip(jobs, tmps):
            try:
                write(tmp)
            except OSError as exc:  # name the file the user asked for, not its temporary
                err = as_output_error(exc, path)
                if err is exc:
                    raise
                raise err from exc
    return {key: path for key, path, _ in jobs}


def write_report(
    out_dir,
    stem: str,
    *,
    image: np.ndarray | None,
    labels: np.ndarray,
    boundaries: np.ndarray | None = None,
    pixel_size_nm: float | None = None,
    extra: dict | None = None,
    svg: bool = False,
    min_area: int | None = None,
    exclude: np.ndarray | None = None,
    **summary_options,
) -> dict[str, Path]:
    """Measure ``labels`` and write every export of one field.

    Files: ``<stem>_grains.csv``, ``<stem>_summary.json`` (summary plus
    ``extra``, e.g. ``{"device": "cpu"}``), ``<stem>_histogram.png`` (and
    ``<stem>_histogram.svg`` with ``svg``) and ``<stem>_overlay.png``
    (``boundaries``, by default ``labels == 0``, on ``image``), all or nothing as in
    :func:`write_field_exports`. ``min_area``,
    ``exclude`` and ``summary_options`` go to
    :func:`~napari_grainseg.measure.statistics.measure_field`.

    Returns
    -------
    dict
        ``{"csv", "json", "histogram_png", ["histogram_svg",] "overlay"}`` → path.
    """
    from napari_grainseg.measure.statistics import measure_field
    from napari_grainseg.measure.table import prepare_labels

    fld = prepare_labels(labels, min_area=min_area, exclude=exclude)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, summary = measure_field(fld, pixel_size_nm, **summary_options)
    if boundaries is None:
        boundaries = np.asarray(labels) == 0
    jobs = _field_writers(
        out_dir, stem, table, summary, extra=extra, svg=svg, what=("csv", "json", "histogram"), labels=None
    )
    jobs.append(("overlay", out_dir / f"{stem}_overlay.png", lambda tmp: save_overlay(tmp, image, boundaries)))
    return _write_set(jobs)
