"""Grain-size statistics of a field and of a sample: weights, quantiles, lognormal fit, histograms.

* :func:`summarize`: the JSON-ready summary of one field (sizes, ASTM E112 G by
  the planimetric, mean-area and intercept methods, histograms, rules, warnings);
  :func:`measure_field` gives the per-grain table and the summary from one
  preparation of the label image.
* :func:`field_statistics`: mean, SD, 95 % CI and %RA over the fields of a sample;
  :func:`pooled_statistics`: the grains of every field pooled.

Size statistics use the complete grains, weighted for the edge effect
(:func:`edge_weights`). Nothing here imports ``scipy.stats`` except the KS
p-value and nothing imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.measure.astm import (
    NM_TO_MM,
    astm_g_from_intercept_mm,
    astm_g_from_mean_area_mm2,
    astm_g_from_na,
    mean_intercept,
    planimetric_count,
)
from napari_grainseg.measure.table import (
    WIDE_GAP_PX,
    GrainTable,
    MeasuredField,
    clean_scalar,
    measure_grains,
    optional_pixel_size,
    prepare_labels,
)

__all__ = [
    "LOGNORMAL_METHOD",
    "MIN_GRAINS_FOR_STATISTICS",
    "edge_weights",
    "field_statistics",
    "histograms",
    "lognormal_fit",
    "measure_field",
    "pooled_ecd",
    "pooled_statistics",
    "summarize",
    "weighted_quantile",
]

#: Fewer included grains than this triggers a warning in :func:`summarize`.
MIN_GRAINS_FOR_STATISTICS = 50

#: What :func:`lognormal_fit` does, as written in every summary.
LOGNORMAL_METHOD = "maximum likelihood, location 0, closed form: mu and sigma are the (weighted) mean and SD of ln d"


# --------------------------------------------------------------------------- building blocks


def lognormal_fit(d: np.ndarray, weights: np.ndarray | None = None) -> dict | None:
    """Maximum-likelihood lognormal fit (location 0) with a KS goodness of fit.

    Closed form: mu and sigma are the mean and SD (ddof 0) of log d, with
    optional sample weights — the estimate of ``scipy.stats.lognorm.fit(d,
    floc=0)`` without its optimiser. Returns sigma, mu, the median exp(mu), the
    mean, and the Kolmogorov–Smirnov distance between the (weighted) empirical
    CDF and the fitted CDF; the p-value (``scipy.stats.kstwo`` at the effective
    sample size) is only indicative because the parameters were fitted on the
    same data. None for fewer than 2 positive values.
    """
    from scipy import special

    d = np.asarray(d, float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, float)
    ok = d > 0
    d, w = d[ok], w[ok]
    if d.size < 2 or np.all(d == d[0]):
        return None
    w = w / w.sum()
    logd = np.log(d)
    mu = float(np.sum(w * logd))
    sigma = float(np.sqrt(np.sum(w * (logd - mu) ** 2)))
    order = np.argsort(d)
    ds, cw = d[order], np.cumsum(w[order])
    cdf = special.ndtr(np.log(ds / math.exp(mu)) / sigma)  # = scipy.stats.lognorm.cdf
    ks = float(max(np.max(cw - cdf), np.max(cdf - (cw - w[order]))))
    n_eff = 1.0 / np.sum(w**2)
    return {
        "sigma": sigma,
        "mu": mu,
        "median": math.exp(mu),
        "mean": math.exp(mu + sigma**2 / 2),
        "ks_statistic": ks,
        "ks_pvalue": _ks_pvalue(ks, max(int(round(n_eff)), 1)),
        "n": int(d.size),
    }


def _ks_pvalue(ks: float, n: int) -> float:
    from scipy.stats import kstwo

    return float(kstwo.sf(ks, n))


def weighted_quantile(x: np.ndarray, w: np.ndarray, q) -> np.ndarray:
    """Quantiles ``q`` of ``x`` with weights ``w`` (midpoint interpolation of the weighted CDF)."""
    order = np.argsort(x)
    x, w = x[order], w[order]
    c = np.cumsum(w) - 0.5 * w
    c /= w.sum()
    return np.interp(q, c, x)


def edge_weights(table: GrainTable, shape, correction: str | None, exclude_edge: bool) -> tuple[np.ndarray, dict]:
    """Weight of each grain in the size statistics (0 = left out) and how it was chosen.

    Without ``exclude_edge`` every grain counts 1. Otherwise grains touching the
    border get 0 and, with ``correction="miles"``, a complete grain of bounding
    box (bh, bw) gets 1/p with p = (h − bh)(w − bw)/(h w), the probability that it
    is complete in a field (h, w) (Miles–Lantuéjoul); with ``"guard"`` only
    complete grains whose centroid lies in the inner frame (margin: half the
    largest bounding box) count.
    """
    h, w = shape
    interior = ~table["touches_border"]
    if not exclude_edge:
        return np.ones(len(table)), {"edge_grains": "included", "edge_correction": None}
    if correction is None:
        return interior.astype(float), {"edge_grains": "excluded", "edge_correction": None}
    if correction == "miles":
        bh, bw = table.data["_bbox_h"], table.data["_bbox_w"]
        p = np.clip((h - bh) * (w - bw), 1, None) / (h * w)
        return np.where(interior, 1 / p, 0.0), {"edge_grains": "excluded", "edge_correction": "miles"}
    if correction == "guard":
        bh, bw = table.data["_bbox_h"], table.data["_bbox_w"]
        m = float(np.ceil(max(bh.max(), bw.max()) / 2))
        yc, xc = table["centroid_y_px"], table["centroid_x_px"]
        inner = (yc >= m) & (yc < h - m) & (xc >= m) & (xc < w - m)
        return (interior & inner).astype(float), {
            "edge_grains": "excluded",
            "edge_correction": "guard",
            "guard_margin_px": m,
        }
    raise InputError(f"edge_correction must be 'miles', 'guard' or None, got {correction!r}")


def histograms(
    d: np.ndarray, weights: np.ndarray | None, areas: np.ndarray, bins, unit: str = "px", scale: float | None = None
) -> dict | None:
    """Number- and area-weighted histograms of the sizes ``d`` (bin edges in ``unit``).

    ``weights``: of each grain (None = counts); ``areas``: of each grain, for the
    area-weighted histogram.
    ``scale`` (nm per px) adds ``bin_edges_nm`` to ``px`` edges (None when
    uncalibrated). None without any size.
    """
    if d.size == 0:
        return None
    edges = np.histogram_bin_edges(d, bins=bins)
    num, _ = np.histogram(d, edges, weights=weights)
    area, _ = np.histogram(d, edges, weights=areas if weights is None else weights * areas)
    out = {
        f"bin_edges_{unit}": edges.tolist(),
        "number": num.tolist(),
        "number_fraction": (num / num.sum()).tolist() if num.sum() else num.tolist(),
        "area_fraction": (area / area.sum()).tolist() if area.sum() else area.tolist(),
    }
    if unit == "px":
        out["bin_edges_nm"] = (edges * scale).tolist() if scale else None
    return out


def _size_statistics(d: np.ndarray, a: np.ndarray, wt: np.ndarray, phys) -> dict:
    """Weighted mean, SD (n/(n−1) corrected), CV, D10/D50/D90 and mean area."""
    n = d.size
    wn = wt / wt.sum()
    mean_d = float(np.sum(wn * d))
    sd = float(np.sqrt(np.sum(wn * (d - mean_d) ** 2) * n / (n - 1))) if n > 1 else None
    q = weighted_quantile(d, wt, [0.1, 0.5, 0.9]) if n else [None] * 3
    mean_a = float(np.sum(wn * a))
    return {
        "mean_ecd_px": clean_scalar(mean_d),
        "mean_ecd_nm": phys(mean_d),
        "median_ecd_px": clean_scalar(q[1]),
        "median_ecd_nm": phys(q[1]),
        "sd_ecd_px": clean_scalar(sd),
        "sd_ecd_nm": phys(sd),
        "cv_ecd": clean_scalar(sd / mean_d) if sd is not None and mean_d else None,
        "d10_px": clean_scalar(q[0]),
        "d50_px": clean_scalar(q[1]),
        "d90_px": clean_scalar(q[2]),
        "d10_nm": phys(q[0]),
        "d50_nm": phys(q[1]),
        "d90_nm": phys(q[2]),
        "mean_area_px": clean_scalar(mean_a),
        "mean_area_nm2": phys(mean_a, 2),
    }


def _lognormal_entry(fit: dict | None, phys) -> dict | None:
    if fit is None:
        return None
    return {
        "sigma": fit["sigma"],
        "median_px": fit["median"],
        "median_nm": phys(fit["median"]),
        "mean_px": fit["mean"],
        "mean_nm": phys(fit["mean"]),
        "ks_statistic": fit["ks_statistic"],
        "ks_pvalue": fit["ks_pvalue"],
        "method": LOGNORMAL_METHOD,
    }


def _planimetric_entry(fld: MeasuredField, rule: str, s: float | None, mean_area_px, phys) -> dict:
    count = planimetric_count(fld, rule)
    area_px = float(fld.area_px)
    n_a_px = count["n_equivalent"] / area_px
    out = {
        "planimetric": {**count, "field_area_px": area_px, "field_area_mm2": phys(area_px * NM_TO_MM**2, 2)},
        "n_a_per_px2": n_a_px,
        "n_a_per_mm2": None,
        "astm_g_planimetric": None,
        "astm_g_mean_area": None,
    }
    if s is not None:
        n_a_mm2 = n_a_px / (s * NM_TO_MM) ** 2
        out["n_a_per_mm2"] = n_a_mm2
        out["astm_g_planimetric"] = clean_scalar(astm_g_from_na(n_a_mm2)) if n_a_mm2 > 0 else None
        out["astm_g_mean_area"] = (
            clean_scalar(astm_g_from_mean_area_mm2(mean_area_px * (s * NM_TO_MM) ** 2)) if mean_area_px else None
        )
    return out


def _g_intercept(l_px: float, s: float | None):
    return (
        clean_scalar(astm_g_from_intercept_mm(l_px * s * NM_TO_MM)) if s is not None and math.isfinite(l_px) else None
    )


def _intercept_entry(icpt: dict, s, phys, warn: list[str]) -> dict:
    l_px = icpt["mean_intercept_px"]
    if not math.isfinite(l_px):
        warn.append("no test line crosses a grain boundary: intercept and its G are null")
    return {
        "mean_intercept_px": clean_scalar(l_px),
        "mean_intercept_nm": phys(l_px),
        "astm_g_intercept": _g_intercept(l_px, s),
        "intercept": {
            "method": "Heyn lineal intercept: one intersection per change of grain id, "
            "a grain met again on the same line not counted twice; "
            "mean P_L over evenly spaced orientations",
            "n_orientations": icpt["n_orientations"],
            "line_spacing_px": icpt["spacing_px"],
            "by_orientation": [{k: clean_scalar(v) for k, v in b.items()} for b in icpt["by_orientation"]],
        },
    }


def _axial_entry(fld: MeasuredField, strip_aspect: float, spacing_px: float, s, phys, warn: list[str]) -> dict | None:
    h, w = fld.shape
    aspect = max(h, w) / min(h, w)
    if aspect < strip_aspect:
        return None
    axis_angle = 0.0 if w >= h else 90.0
    la = mean_intercept(fld, angles_deg=np.array([axis_angle]), spacing_px=spacing_px)["mean_intercept_px"]
    along = f"{phys(la):.3g} nm" if la is not None and phys(la) is not None else f"{la:.3g} px" if la else "n/a"
    warn.append(
        f"strip image (aspect {aspect:.1f}): the isotropic intercept is limited by "
        f"the strip width; along the line it is {along} (axial_intercept in the summary)"
    )
    return {
        "axis": "x" if axis_angle == 0 else "y",
        "mean_intercept_px": clean_scalar(la),
        "mean_intercept_nm": phys(la),
        "astm_g": _g_intercept(la, s),
    }


def _rules(planimetric_rule: str) -> dict:
    return {
        "area": "boundary pixels shared out to the nearest grain before measuring",
        "ecd": "diameter of the circle of equal area, sqrt(4 A / pi)",
        "planimetric": f"{planimetric_rule} counting over the whole field "
        "(inside 1, edge 1/2" + (", corner 1/4)" if planimetric_rule == "saltikov" else ")"),
        "astm_g_planimetric": "G = 3.321928 log10(N_A [mm^-2]) - 2.954 (ASTM E112)",
        "astm_g_intercept": "G = -6.643856 log10(l [mm]) - 3.288 (ASTM E112)",
        "g_clamped": False,
    }


def _measurement_entry(fld: MeasuredField) -> dict:
    """The options every measurement records: minimum grain area and excluded pixels."""
    return {
        "min_area_px": fld.options["min_area_px"],
        "n_grains_below_min_area": fld.options["n_grains_below_min_area"],
        "exclude": fld.options["exclude"],
        "measured_area_px": fld.area_px,
    }


# --------------------------------------------------------------------------- one field

#: Test-line orientations and spacing of the summary's Heyn intercept.
INTERCEPT_ORIENTATIONS = 8
INTERCEPT_SPACING_PX = 4.0


def summarize(
    labels,
    pixel_size_nm: float | None = None,
    *,
    exclude_edge_grains: bool = True,
    edge_correction: str | None = "miles",
    n_intercept_orientations: int = INTERCEPT_ORIENTATIONS,
    intercept_spacing_px: float = INTERCEPT_SPACING_PX,
    planimetric_rule: str = "saltikov",
    strip_aspect: float = 3.0,
    histogram_bins: int | str = 20,
    table: GrainTable | None = None,
    intercept: dict | None = None,
    min_area: int | None = None,
    exclude=None,
    calibration_source: str | None = None,
) -> dict:
    """Grain-size statistics of one field, JSON-ready.

    ``calibration_source`` says where ``pixel_size_nm`` came from (e.g. the file's ImageJ
    calibration, or "set by user"); recorded in ``calibration.source`` ("given" when not said).

    Size statistics (ECD mean / median / SD / CV, D10/D50/D90, lognormal fit,
    histograms) use the complete grains (``exclude_edge_grains``), weighted by
    the Miles–Lantuéjoul factor (``edge_correction="miles"``: unbiased for
    the grain population, large grains are more often cut by the edge) or
    restricted to a guard frame (``"guard"``). N_A and planimetric G count the
    whole field (``planimetric_rule``); the intercept uses every grain.
    ``min_area`` and ``exclude`` (see
    :func:`~napari_grainseg.measure.table.prepare_labels`) apply to every part
    and are recorded under ``measurement``; ``labels`` may be a prepared
    :class:`~napari_grainseg.measure.table.MeasuredField`, ``table`` its
    :func:`~napari_grainseg.measure.table.measure_grains` table and ``intercept`` its
    :func:`~napari_grainseg.measure.astm.mean_intercept` with ``n_intercept_orientations``
    and ``intercept_spacing_px`` (each measured here when not given).

    For strip images (aspect ratio ≥ ``strip_aspect``, e.g. an interconnect
    line) the intercept along the long axis is reported as ``axial_intercept``.

    Returns
    -------
    dict
        Keys include ``n_grains``, ``n_grains_included``, ``mean_ecd_px``,
        ``mean_ecd_nm``, ``astm_g_planimetric``, ``astm_g_intercept``,
        ``pixel_size_nm``, ``measurement``, ``warnings``; physical values are
        None without a pixel size.
    """
    fld = prepare_labels(labels, min_area=min_area, exclude=exclude)
    s = optional_pixel_size(pixel_size_nm)
    h, w = fld.shape
    if table is None or "_bbox_h" not in table:
        table = measure_grains(fld, s)
    warn: list[str] = []
    if s is None:
        warn.append(
            "no pixel size: physical sizes and ASTM grain size numbers are null; give the pixel size in nm to get them"
        )

    def phys(v, power=1):
        return None if (s is None or v is None) else clean_scalar(v * s**power)

    unlabelled = fld.options.get("unlabelled_px", 0)
    if unlabelled:
        warn.append(
            f"{unlabelled} px of label 0 lie more than {WIDE_GAP_PX} px from every grain: an unlabelled area "
            "(a deleted grain?), not a boundary; it was shared out among the grains around it, enlarging "
            "them: label it, or leave it out with an exclusion mask"
        )

    weights, edge_info = edge_weights(table, (h, w), edge_correction, exclude_edge_grains)
    inc = weights > 0
    d, a, wt = table["ecd_px"][inc], table["area_px"][inc].astype(float), weights[inc]
    n_inc = int(inc.sum())
    all_cut = n_inc == 0 and len(table) > 0
    if all_cut:
        warn.append("every grain touches the image border: size statistics use all grains")
        d, a, wt = table["ecd_px"], table["area_px"].astype(float), np.ones(len(table))
        edge_info = {"edge_grains": "included (no complete grain)", "edge_correction": None}
        n_inc = len(table)
    n_edge = int(table["touches_border"].sum())
    if exclude_edge_grains and not all_cut and len(table) and n_edge > len(table) / 2:  # (all cut: said above)
        warn.append(
            f"{n_edge} of {len(table)} grains touch the image border: size statistics "
            "of the complete grains miss the large ones; prefer the intercept, "
            "or include edge grains"
        )
    if n_inc < MIN_GRAINS_FOR_STATISTICS:
        warn.append(
            f"only {n_inc} grain{'' if n_inc == 1 else 's'} measured: fewer than "
            f"{MIN_GRAINS_FOR_STATISTICS}, statistics are uncertain; measure more fields"
        )
    sizes = _size_statistics(d, a, wt, phys)
    out: dict = {
        "n_grains": len(table),
        "n_grains_edge": n_edge,
        "n_grains_included": n_inc,
        "image_shape": [h, w],
        "pixel_size_nm": s,
        "calibration": {
            "pixel_size_nm": s,
            "source": (calibration_source or "given") if s else None,
            "units": "nm" if s else "px",
        },
        "measurement": _measurement_entry(fld),
        **edge_info,
        **sizes,
        "lognormal": _lognormal_entry(lognormal_fit(d, wt), phys),
    }
    out.update(_planimetric_entry(fld, planimetric_rule, s, sizes["mean_area_px"], phys))
    if intercept is None:
        intercept = mean_intercept(fld, n_orientations=n_intercept_orientations, spacing_px=intercept_spacing_px)
    out.update(_intercept_entry(intercept, s, phys, warn))
    out["axial_intercept"] = _axial_entry(fld, strip_aspect, intercept_spacing_px, s, phys, warn)
    out["histograms"] = histograms(d, wt, a, histogram_bins, "px", s)
    out["rules"] = _rules(planimetric_rule)
    out["warnings"] = warn
    return out


def measure_field(
    labels, pixel_size_nm: float | None = None, *, min_area: int | None = None, exclude=None, **summary_options
) -> tuple[GrainTable, dict]:
    """The per-grain table and the summary of one field, from one preparation of ``labels``.

    The one entry point of the CLI, batch, the pipeline's report and the napari
    statistics widget. ``summary_options`` go to :func:`summarize`. With more than one
    CPU thread (:func:`~napari_grainseg.models.device.cpu_threads`; a batch worker's
    share of the cores) the per-grain table and the intercept's test lines are measured
    side by side: numpy leaves the GIL for their array work, so a 4096² field takes
    about a third less time on 2 cores (``benchmarks/bench_measure_threads.py``).
    """
    from napari_grainseg.models.device import cpu_threads

    fld = prepare_labels(labels, min_area=min_area, exclude=exclude)
    s = optional_pixel_size(pixel_size_nm)
    if cpu_threads() < 2:
        table = measure_grains(fld, s)
        return table, summarize(fld, s, table=table, **summary_options)
    from concurrent.futures import ThreadPoolExecutor

    n_orientations = summary_options.get("n_intercept_orientations", INTERCEPT_ORIENTATIONS)
    spacing_px = summary_options.get("intercept_spacing_px", INTERCEPT_SPACING_PX)
    with ThreadPoolExecutor(1, thread_name_prefix="grainseg-intercept") as pool:
        lines = pool.submit(mean_intercept, fld, n_orientations=n_orientations, spacing_px=spacing_px)
        table = measure_grains(fld, s)
        intercept = lines.result()
    return table, summarize(fld, s, table=table, intercept=intercept, **summary_options)


# --------------------------------------------------------------------------- several fields


def _t_975(df: int) -> float:
    """Student t quantile 0.975 (= ``scipy.stats.t.ppf(0.975, df)``)."""
    from scipy import special

    return float(special.stdtrit(df, 0.975))


def field_statistics(summaries: list[dict]) -> dict:
    """Mean, SD, 95 % confidence interval and %RA over several fields of one sample.

    CI = t(0.975, n−1)·s/√n and %RA = 100·CI/mean (ASTM E112), for G
    (planimetric, intercept) and for the mean ECD (px and nm). Fields where a
    value is null are left out of that value's statistics.
    """
    keys = (
        "astm_g_planimetric",
        "astm_g_intercept",
        "mean_ecd_px",
        "mean_ecd_nm",
        "mean_intercept_px",
        "mean_intercept_nm",
    )
    out: dict = {"n_fields": len(summaries)}
    for k in keys:
        v = np.array([sm[k] for sm in summaries if sm.get(k) is not None], float)
        n = v.size
        res = {"n": n, "mean": clean_scalar(v.mean()) if n else None, "sd": None, "ci95": None, "ra_percent": None}
        if n >= 2:
            sd = float(v.std(ddof=1))
            ci = float(_t_975(n - 1) * sd / math.sqrt(n))
            res.update(sd=sd, ci95=ci, ra_percent=clean_scalar(100 * ci / v.mean()) if v.mean() else None)
        out[k] = res
    return out


def pooled_ecd(fields: Sequence[dict]) -> np.ndarray:
    """ECD of the complete grains of every field, in nm when all are calibrated, else in px.

    ``fields``: dicts with ``summary`` (a field's summary) and ``grains`` (its
    per-grain columns: ``ecd_px``, ``touches_border``).
    """
    sizes = [f["summary"].get("pixel_size_nm") for f in fields]
    calibrated = bool(fields) and all(s is not None for s in sizes)
    parts = [
        f["grains"]["ecd_px"][~f["grains"]["touches_border"]] * (s if calibrated else 1.0)
        for f, s in zip(fields, sizes)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def _pooled_intercept_nm(fields: Sequence[dict], sizes) -> float | None:
    """Per orientation, intersections over total test-line length; 1 / mean P_L."""
    by_angle: dict[float, list[float]] = {}
    for f, s in zip(fields, sizes):
        for b in f["summary"].get("intercept", {}).get("by_orientation", []):
            acc = by_angle.setdefault(round(b["angle_deg"], 6), [0.0, 0.0])
            acc[0] += b["intersections"]
            acc[1] += b["length_px"] * s
    p_l = [i / length for i, length in by_angle.values() if length > 0]
    if p_l and np.mean(p_l) > 0:
        return 1.0 / float(np.mean(p_l))
    return None


def pooled_statistics(fields: Sequence[dict], *, bins: int = 30) -> dict:
    """Statistics of all grains of a sample pooled over its fields.

    ``fields``: dicts with ``summary`` (a field's summary JSON) and ``grains``
    (its per-grain columns). Sizes use the complete grains (not touching their
    field's border), unweighted, in nm when every field is calibrated, else in px.
    Planimetric G pools the equivalent grain counts over the total measured
    field area; the intercept G pools, per test-line orientation, the
    intersections over the total test-line length (then averages P_L over
    orientations, as per field).
    """
    sizes = [f["summary"].get("pixel_size_nm") for f in fields]
    calibrated = bool(fields) and all(s is not None for s in sizes)
    unit = "nm" if calibrated else "px"
    warn = []
    if not calibrated and len(set(sizes)) > 1:
        warn.append("fields have different or missing pixel sizes: pooled sizes in px mix scales")
    n_all = sum(f["grains"]["touches_border"].size for f in fields)
    n_edge = sum(int(f["grains"]["touches_border"].sum()) for f in fields)
    d = pooled_ecd(fields)
    if d.size < MIN_GRAINS_FOR_STATISTICS:
        warn.append(
            f"only {d.size} complete grain{'' if d.size == 1 else 's'} pooled: fewer than "
            f"{MIN_GRAINS_FOR_STATISTICS}, statistics are uncertain; measure more fields"
        )
    out: dict = {
        "unit": unit,
        "n_fields": len(fields),
        "n_grains": n_all,
        "n_grains_edge": n_edge,
        "n_grains_included": int(d.size),
    }
    if d.size:
        mean = float(d.mean())
        sd = float(d.std(ddof=1)) if d.size > 1 else None
        q = np.quantile(d, [0.1, 0.5, 0.9])
        out.update(
            {
                f"mean_ecd_{unit}": mean,
                f"sd_ecd_{unit}": sd,
                "cv_ecd": sd / mean if sd is not None and mean else None,
                f"d10_{unit}": float(q[0]),
                f"d50_{unit}": float(q[1]),
                f"d90_{unit}": float(q[2]),
            }
        )
        # unweighted; area weights d² (∝ area)
        out["histograms"] = histograms(d, None, d**2, bins, unit)
        fit = lognormal_fit(d)
        out["lognormal"] = (
            None
            if fit is None
            else {
                "sigma": fit["sigma"],
                f"median_{unit}": fit["median"],
                f"mean_{unit}": fit["mean"],
                "ks_statistic": fit["ks_statistic"],
                "n": fit["n"],
                "method": LOGNORMAL_METHOD,
            }
        )
    else:
        out["histograms"] = out["lognormal"] = None
        warn.append("no complete grain in any field")
    # ASTM E112 on the pooled fields
    out["astm_g_planimetric"] = out["astm_g_intercept"] = None
    if calibrated:
        n_eq = sum(f["summary"]["planimetric"]["n_equivalent"] for f in fields)
        area_mm2 = sum(
            f["summary"]["planimetric"]["field_area_px"] * (s * NM_TO_MM) ** 2 for f, s in zip(fields, sizes)
        )
        out["n_a_per_mm2"] = n_eq / area_mm2
        out["astm_g_planimetric"] = astm_g_from_na(n_eq / area_mm2) if n_eq > 0 else None
        l_nm = _pooled_intercept_nm(fields, sizes)
        if l_nm is not None:
            out["mean_intercept_nm"] = l_nm
            out["astm_g_intercept"] = astm_g_from_intercept_mm(l_nm * NM_TO_MM)
    else:
        warn.append("not every field is calibrated: pooled ASTM G is null (give --pixel-size)")
    out["rules"] = {
        "sizes": "complete grains (not touching their field's border) of every field, unweighted",
        "astm_g_planimetric": "sum of the fields' equivalent grain counts over their total area",
        "astm_g_intercept": "per orientation, sum of intersections over total test-line length; "
        "mean P_L over orientations",
    }
    out["warnings"] = warn
    return out
