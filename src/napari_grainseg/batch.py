"""Batch processing: a folder (or glob) of micrographs → per-field results and sample statistics.

A lab measures tens to thousands of fields per sample. :func:`run_batch` runs
the whole :func:`napari_grainseg.segmentation.pipeline.segment` pipeline on each of them,
serially in this process or in parallel on a Dask ``distributed`` cluster
(a local one by default, or an existing one given by its scheduler address),
and :func:`write_sample_summary` pools the fields into one report.

Guarantees
----------
* **Mirrored outputs.** ``IN/a/b/x.tif`` → ``OUT/a/b/x_*`` (see
  :func:`discover_inputs`); files of one folder with the same stem but different
  extensions get the extension in their stem, so outputs never collide.
* **No half-written output.** A field is written into a hidden staging folder
  next to its outputs, whose files are then moved into place; the marker
  ``<stem>_done.json`` is written last, atomically. A crash leaves at most a
  staging folder (removed by the next run) or complete files without a marker.
* **Resumable.** A field whose marker exists, names files that all exist, and
  records the same input file (size, modification time) and the same
  result-affecting options is skipped (:func:`is_done`).
* **Robust.** A bad file becomes a failure record (``failures.json``); the
  other files are processed.
* **One model per worker.** Every process loads Net1 once per weights file and
  device (:func:`cached_net1`), and sets torch's and OpenCV's thread count to the
  worker's thread count, so workers do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grainseg.errors import InputError

__all__ = [
    "BatchItem",
    "BatchOptions",
    "BatchResult",
    "DONE_SUFFIX",
    "cached_net1",
    "cached_net2",
    "discover_inputs",
    "is_done",
    "pooled_ecd",
    "pooled_statistics",
    "process_item",
    "run_batch",
    "set_threads",
    "write_sample_summary",
]

#: Suffix of the completion marker written after every other output of a field.
DONE_SUFFIX = "_done.json"
#: Files written at the top of the output folder for the whole sample.
SAMPLE_SUMMARY = "sample_summary.json"
SAMPLE_HISTOGRAM = "sample_histogram"
FAILURES = "failures.json"
#: Version of the marker format; a different version means "not done".
_MARKER_VERSION = 1
#: Stems reserved at the top of the output folder (``sample_summary.json``...).
_RESERVED_STEMS = frozenset({"sample"})


@dataclass(frozen=True)
class BatchItem:
    """One micrograph of a batch: where it is and where its outputs go (``out_dir/stem_*``)."""

    source: Path
    out_dir: Path
    stem: str

    @property
    def marker(self) -> Path:
        """Path of the completion marker ``<stem>_done.json``."""
        return self.out_dir / f"{self.stem}{DONE_SUFFIX}"


@dataclass(frozen=True)
class BatchOptions:
    """Options of every field of a batch (picklable: sent to the Dask workers).

    Attributes
    ----------
    weights
        Net1 weights file; None = the shipped weights.
    device
        Device preference, resolved on each worker (``"auto"`` uses a worker's GPU).
    pixel_size_nm
        Overrides every file's calibration.
    grain_size_px, grain_size_nm
        Expected mean grain diameter (at most one); None = estimated per field.
    net2_steps
        ``"auto"`` (refine with Net2 until converged when Net2 weights exist),
        ``N`` (at most N steps) or ``0`` (Net1 only), as ``grainseg segment``.
    net2_weights
        Net2 weights file; None = the shipped weights.
    threshold, min_grain_area, grains, watershed_h
        See :func:`napari_grainseg.segmentation.pipeline.segment`.
    threads
        Torch/OpenCV threads per worker; None = the Dask worker's thread count
        (1 in-process).
    """

    weights: str | None = None
    device: str = "auto"
    pixel_size_nm: float | None = None
    grain_size_px: float | None = None
    grain_size_nm: float | None = None
    net2_steps: int | str = "auto"
    net2_weights: str | None = None
    threshold: float = 0.5
    min_grain_area: int = 10
    grains: str = "threshold"
    threads: int | None = None
    watershed_h: float = 0.1

    def __post_init__(self) -> None:
        if self.grain_size_px is not None and self.grain_size_nm is not None:
            raise InputError("give the grain size in px or in nm, not both")
        for name in ("pixel_size_nm", "grain_size_px", "grain_size_nm"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InputError(f"{name.replace('_', ' ')} must be a finite number > 0, got {v}")
        if not 0 < self.threshold < 1:
            raise InputError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.min_grain_area < 1:
            raise InputError(f"min grain area must be >= 1, got {self.min_grain_area}")
        from napari_grainseg.segmentation.grains import check_grain_builder

        check_grain_builder(self.grains)
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")
        from napari_grainseg.segmentation.pipeline import net2_available, net2_step_budget

        budget = net2_step_budget(self.net2_steps)
        explicit = not (isinstance(self.net2_steps, str) and self.net2_steps.strip().lower() == "auto")
        if budget and explicit and self.net2_weights is None and not net2_available():
            raise InputError(f"net2 steps {self.net2_steps}: no Net2 weights are shipped; give a Net2 "
                             "weights file or 0 steps")

    def net2_budget(self) -> int:
        """Net2 steps to run (0: Net1 only), as ``grainseg segment`` decides them."""
        from napari_grainseg.segmentation.pipeline import net2_available, net2_step_budget

        budget = net2_step_budget(self.net2_steps)
        auto = isinstance(self.net2_steps, str) and self.net2_steps.strip().lower() == "auto"
        return budget if budget and (self.net2_weights is not None or not auto or net2_available()) else 0

    def fingerprint(self) -> dict:
        """The options that change a field's result (recorded in its marker)."""
        from napari_grainseg.models.weights import shipped_weights_dir

        budget = self.net2_budget()
        out = {**_file_identity("weights", self.weights or shipped_weights_dir() / "net1.pt"),
               "net2_steps": budget}
        if budget:
            out.update(_file_identity("net2_weights", self.net2_weights or shipped_weights_dir() / "net2.pt"))
        if self.grains != "threshold":  # recorded only when not the default: older markers stay valid
            out["grains"] = self.grains
        if self.watershed_h != 0.1:
            out["watershed_h"] = self.watershed_h
        return {**out, "pixel_size_nm": self.pixel_size_nm, "grain_size_px": self.grain_size_px,
                "grain_size_nm": self.grain_size_nm, "threshold": self.threshold,
                "min_grain_area": self.min_grain_area}


def _file_identity(key: str, path) -> dict:
    """Path, size and modification time of a file (a changed weights file invalidates results)."""
    path = Path(path)
    st = path.stat() if path.exists() else None
    return {key: str(path.resolve()) if st else str(path), f"{key}_size": st.st_size if st else None,
            f"{key}_mtime_ns": st.st_mtime_ns if st else None}


@dataclass
class BatchResult:
    """What :func:`run_batch` did: one record per item, in input order."""

    records: list[dict]
    seconds: float
    workers: int
    scheduler: str | None

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


# --------------------------------------------------------------------------- inputs


def _is_micrograph(path: Path) -> bool:
    from napari_grainseg.io.readers import SUPPORTED_EXTENSIONS

    return path.is_file() and path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith(".")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def discover_inputs(spec: str | os.PathLike, out_dir: str | os.PathLike) -> list[BatchItem]:
    """The micrographs of a folder (recursively) or a glob pattern, with their output places.

    Outputs mirror the input folders below the folder given (or the deepest
    folder common to every match of a glob): ``IN/a/x.tif`` → ``OUT/a/x_*``.
    Hidden files, unsupported extensions and anything inside ``out_dir`` are
    ignored. Two files of one folder with the same stem (``x.tif``, ``x.png``)
    get stems ``x_tif`` and ``x_png``; so does a top-level ``sample.*``
    (``sample_summary.json`` belongs to the batch).

    Raises
    ------
    InputError
        When nothing matches.
    """
    out_dir = Path(out_dir)
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        root = path
        files = [p for p in sorted(path.rglob("*"))
                 if _is_micrograph(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    elif glob.has_magic(text):
        files = sorted({Path(p) for p in glob.glob(text, recursive=True) if _is_micrograph(Path(p))})
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files])) if files else None
    elif path.exists():
        raise InputError(f"{text} is a file; give a folder or a glob pattern such as 'fields/*.tif' "
                         "(or use grainseg segment)")
    else:
        raise InputError(f"input folder not found: {text}")
    files = [p for p in files if not _inside(p, out_dir)]
    if not files:
        raise InputError(f"no micrographs found in {text}")
    items: list[BatchItem] = []
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    for folder, group in by_folder.items():
        rel = folder.resolve().relative_to(root.resolve())
        stems = [f.stem for f in group]
        for f in group:
            clash = stems.count(f.stem) > 1 or (rel == Path(".") and f.stem in _RESERVED_STEMS)
            stem = f.stem + f.suffix.replace(".", "_") if clash else f.stem
            items.append(BatchItem(source=f, out_dir=out_dir / rel, stem=stem))
    keys = [(i.out_dir, i.stem) for i in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InputError(f"two inputs would write the same outputs {dup[0] / dup[1]}_*; rename one")
    return items


# --------------------------------------------------------------------------- workers

_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def cached_net1(weights: str | None, device):
    """Net1 for ``(weights, device)``, loaded once per process (every Dask worker keeps its own)."""
    from napari_grainseg.models.weights import load_net1

    return _cached("net1", load_net1, weights, device)


def cached_net2(weights: str | None, device):
    """Net2 for ``(weights, device)``, loaded once per process."""
    from napari_grainseg.models.weights import load_net2

    return _cached("net2", load_net2, weights, device)


def _cached(kind: str, load, weights: str | None, device):
    key = (kind, str(Path(weights).resolve()) if weights else "<shipped>", str(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load(weights, device=device)
        return _MODELS[key]


def set_threads(n: int) -> None:
    """Use ``n`` threads in torch and OpenCV in this process (one worker = its cores, no oversubscription)."""
    import cv2
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    cv2.setNumThreads(n)


@contextlib.contextmanager
def _restored_threads():
    """Give torch and OpenCV their thread counts back after an in-process batch."""
    import cv2
    import torch

    n_torch, n_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        yield
    finally:
        torch.set_num_threads(n_torch)
        cv2.setNumThreads(n_cv)


def _worker_threads() -> int:
    """Thread count of the Dask worker running this task, or 1 outside Dask."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def _input_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"input": str(path.resolve()), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def is_done(item: BatchItem, options: BatchOptions) -> bool:
    """True when ``item`` has complete outputs from the same input and options (skip it)."""
    try:
        marker = json.loads(item.marker.read_text(encoding="utf-8"))
        if marker.get("version") != _MARKER_VERSION:
            return False
        if {k: marker.get(k) for k in ("input", "input_size", "input_mtime_ns")} != _input_fingerprint(item.source):
            return False
        if marker.get("options") != json.loads(json.dumps(options.fingerprint())):
            return False
        return all((item.out_dir / name).is_file() for name in marker["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _remove_stale_staging(item: BatchItem) -> None:
    if item.out_dir.is_dir():
        for d in item.out_dir.glob(f".{item.stem}.partial-*"):
            shutil.rmtree(d, ignore_errors=True)


def process_item(item: BatchItem, options: BatchOptions) -> dict:
    """Segment one micrograph and write its outputs; never raises for a bad file.

    Runs in a Dask worker (or in this process). Returns a JSON-ready record:
    ``status`` ``"processed"`` or ``"failed"`` (with ``error``), ``seconds``,
    ``cpu_seconds`` (CPU time of this process meanwhile), ``n_grains``, ``device``.
    """
    from napari_grainseg.io.atomic import atomic_open
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.models.device import describe_device, select_device
    from napari_grainseg.segmentation.pipeline import segment, write_segmentation

    t0, cpu0 = time.perf_counter(), time.process_time()
    record = {"input": str(item.source), "output_dir": str(item.out_dir), "stem": item.stem}
    try:
        set_threads(options.threads or _worker_threads())
        source_id = _input_fingerprint(item.source)  # before reading: a file changed meanwhile is redone
        m = read_micrograph(item.source)
        if options.pixel_size_nm is not None:
            m = m.with_pixel_size(options.pixel_size_nm)
        grain_size = options.grain_size_px
        if options.grain_size_nm is not None:
            if m.pixel_size_nm is None:
                raise InputError("a grain size in nm needs a pixel size, but the file is not calibrated "
                                 "(give --pixel-size NM)")
            grain_size = options.grain_size_nm / m.pixel_size_nm
        device = select_device(options.device)
        model = cached_net1(options.weights, device)
        budget = options.net2_budget()
        net2 = cached_net2(options.net2_weights, device) if budget else None
        result = segment(m.data, model=model, device=device, grain_size_px=grain_size,
                         threshold=options.threshold, min_grain_area=options.min_grain_area,
                         net2_steps=budget, net2_model=net2, grains=options.grains,
                         watershed_h=options.watershed_h)
        # The output files need only labels and boundaries: let the probability
        # maps go before measuring (4-8 bytes per pixel less at the peak).
        result = dataclasses.replace(result, prediction=dataclasses.replace(result.prediction, probability=None),
                                     refined=None)
        item.out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(item)
        with tempfile.TemporaryDirectory(prefix=f".{item.stem}.partial-", dir=item.out_dir) as stage:
            write_segmentation(stage, item.stem, m.data, result, pixel_size_nm=m.pixel_size_nm,
                               extra={"source": str(item.source), "pixel_size_nm": m.pixel_size_nm})
            item.marker.unlink(missing_ok=True)  # old outputs are being replaced
            names = sorted(p.name for p in Path(stage).iterdir() if not p.name.startswith("."))
            for name in names:
                os.replace(Path(stage) / name, item.out_dir / name)
        seconds = time.perf_counter() - t0
        marker = {"version": _MARKER_VERSION, **source_id,
                  "options": options.fingerprint(), "files": names,
                  "n_grains": int(result.labels.max()), "shape": list(m.shape),
                  "pixel_size_nm": m.pixel_size_nm, "device": describe_device(device),
                  "seconds": round(seconds, 3),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with atomic_open(item.marker, "w") as fh:
            json.dump(marker, fh, indent=2)
            fh.write("\n")
        record.update(status="processed", seconds=seconds, cpu_seconds=time.process_time() - cpu0,
                      n_grains=marker["n_grains"],
                      device=marker["device"], shape=marker["shape"])
    except Exception as exc:  # one bad field must not stop the batch
        record.update(status="failed", seconds=time.perf_counter() - t0,
                      error=" ".join(str(exc).split()) or type(exc).__name__,
                      error_type=type(exc).__name__,
                      kind="input" if isinstance(exc, InputError) else "internal")
    return record


# --------------------------------------------------------------------------- running


def run_batch(items: Sequence[BatchItem], options: BatchOptions = BatchOptions(), *, workers: int = 1,
              scheduler: str | None = None, resume: bool = True, progress: bool = True,
              on_record: Callable[[dict], None] | None = None) -> BatchResult:
    """Process every item, skipping completed ones, serially or on Dask.

    Parameters
    ----------
    items
        From :func:`discover_inputs`.
    options
        Options of every field.
    workers
        Worker processes of the local Dask cluster (1 thread each). With 1 and
        no ``scheduler`` the batch runs serially in this process.
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``): run there
        instead (every worker needs this package and the input/output paths).
    resume
        Skip items whose outputs are complete (:func:`is_done`).
    progress
        Show a tqdm progress bar on stderr.
    on_record
        Called with each record as it completes (any order).
    """
    from tqdm import tqdm

    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    records: list[dict | None] = [None] * len(items)
    todo = []
    for i, item in enumerate(items):
        if resume and is_done(item, options):
            records[i] = {"input": str(item.source), "output_dir": str(item.out_dir), "stem": item.stem,
                          "status": "skipped"}
        else:
            todo.append(i)
    n_failed = 0

    def done(i: int, record: dict) -> None:
        nonlocal n_failed
        records[i] = record
        n_failed += record["status"] == "failed"
        bar.update(1)
        bar.set_postfix(failed=n_failed, refresh=False)
        if on_record:
            on_record(record)

    use_dask = bool(todo) and (scheduler is not None or workers > 1)
    with _dask_client(workers, scheduler) if use_dask else contextlib.nullcontext() as client:
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="batch", unit="field",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            if use_dask:
                _run_dask(client, items, todo, options, done)
            elif todo:
                with _restored_threads():
                    for i in todo:
                        done(i, process_item(items[i], options))
        finally:
            bar.close()
    return BatchResult(records=records, seconds=time.perf_counter() - t0,
                       workers=workers, scheduler=scheduler)


def _quiet_worker() -> None:
    """Keep tifffile's log lines about corrupt files off a local worker's stderr (they become failures)."""
    import logging

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None):
    """A Dask client of a new local cluster (processes, 1 thread each) or of ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError("parallel batches need Dask: pip install 'napari-grainseg[batch]' "
                         "(or run with --workers 1)") from exc
    if scheduler is None:
        import dask

        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc give
        # memory back after every large temporary: measured here, 25 % more CPU per
        # field (page faults). Our workers keep glibc's adaptive default.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(_quiet_worker)
            yield client
        return
    try:
        client = Client(scheduler, timeout="5s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot connect to the Dask scheduler {scheduler}: "
                         f"{' '.join(str(exc).split())}") from exc
    with client:
        yield client


def _run_dask(client, items, todo, options, done) -> None:
    """Submit one task per item and report them as they complete."""
    from distributed import as_completed

    futures = {client.submit(process_item, items[i], options, pure=False,
                             key=f"grainseg-{i}-{items[i].stem}"): i for i in todo}
    for fut in as_completed(futures):
        i = futures[fut]
        try:
            record = fut.result()
        except Exception as exc:  # worker died (e.g. out of memory): a failure, not a crash
            item = items[i]
            record = {"input": str(item.source), "output_dir": str(item.out_dir), "stem": item.stem,
                      "status": "failed", "error": " ".join(str(exc).split()) or type(exc).__name__,
                      "error_type": type(exc).__name__, "kind": "worker"}
        done(i, record)


# --------------------------------------------------------------------------- aggregation


def _read_grain_csv(path: Path) -> dict[str, np.ndarray]:
    """The per-grain table of a field as columns keyed by name without unit."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    names = [h.split(" [")[0] for h in rows[0]]
    cols = {}
    for j, name in enumerate(names):
        values = [r[j] for r in rows[1:]]
        if name == "touches_border":
            cols[name] = np.array([v == "true" for v in values], bool)
        else:
            cols[name] = np.array([float(v) if v else np.nan for v in values], float)
    return cols


def pooled_ecd(fields: Sequence[dict]) -> np.ndarray:
    """ECD of the complete grains of every field, in nm when all are calibrated, else in px."""
    sizes = [f["summary"].get("pixel_size_nm") for f in fields]
    calibrated = bool(fields) and all(s is not None for s in sizes)
    parts = [f["grains"]["ecd_px"][~f["grains"]["touches_border"]] * (s if calibrated else 1.0)
             for f, s in zip(fields, sizes)]
    return np.concatenate(parts) if parts else np.zeros(0)


def pooled_statistics(fields: Sequence[dict], *, bins: int = 30) -> dict:
    """Statistics of all grains of a sample pooled over its fields.

    ``fields``: dicts with ``summary`` (a field's summary JSON) and ``grains``
    (its per-grain columns). Sizes use the complete grains (not touching their
    field's border), unweighted, in nm when every field is calibrated, else in px.
    Planimetric G pools the equivalent grain counts over the total field area;
    the intercept G pools, per test-line orientation, the intersections over
    the total test-line length (then averages P_L over orientations, as per field).
    """
    from napari_grainseg.measure.summary import astm_g_from_intercept_mm, astm_g_from_na, lognormal_fit, NM_TO_MM

    sizes = [f["summary"].get("pixel_size_nm") for f in fields]
    calibrated = bool(fields) and all(s is not None for s in sizes)
    unit = "nm" if calibrated else "px"
    warn = []
    if not calibrated and len({s for s in sizes}) > 1:
        warn.append("fields have different or missing pixel sizes: pooled sizes in px mix scales")
    n_all = sum(f["grains"]["touches_border"].size for f in fields)
    n_edge = sum(int(f["grains"]["touches_border"].sum()) for f in fields)
    d = pooled_ecd(fields)
    out: dict = {"unit": unit, "n_fields": len(fields), "n_grains": n_all, "n_grains_edge": n_edge,
                 "n_grains_included": int(d.size)}
    if d.size:
        mean = float(d.mean())
        sd = float(d.std(ddof=1)) if d.size > 1 else None
        q = np.quantile(d, [0.1, 0.5, 0.9])
        out.update({f"mean_ecd_{unit}": mean, f"sd_ecd_{unit}": sd,
                    "cv_ecd": sd / mean if sd is not None and mean else None,
                    f"d10_{unit}": float(q[0]), f"d50_{unit}": float(q[1]), f"d90_{unit}": float(q[2])})
        edges = np.histogram_bin_edges(d, bins=bins)
        num, _ = np.histogram(d, edges)
        area, _ = np.histogram(d, edges, weights=d**2)
        out["histograms"] = {f"bin_edges_{unit}": edges.tolist(), "number": num.tolist(),
                             "number_fraction": (num / num.sum()).tolist(),
                             "area_fraction": (area / area.sum()).tolist()}
        fit = lognormal_fit(d)
        out["lognormal"] = None if fit is None else {
            "sigma": fit["sigma"], f"median_{unit}": fit["median"], f"mean_{unit}": fit["mean"],
            "ks_statistic": fit["ks_statistic"], "n": fit["n"],
            "method": "maximum likelihood, location 0 (scipy.stats.lognorm.fit(d, floc=0))"}
    else:
        out["histograms"] = out["lognormal"] = None
        warn.append("no complete grain in any field")
    # ASTM E112 on the pooled fields
    out["astm_g_planimetric"] = out["astm_g_intercept"] = None
    if calibrated:
        n_eq = sum(f["summary"]["planimetric"]["n_equivalent"] for f in fields)
        area_mm2 = sum(f["summary"]["planimetric"]["field_area_px"] * (s * NM_TO_MM) ** 2
                       for f, s in zip(fields, sizes))
        out["n_a_per_mm2"] = n_eq / area_mm2
        out["astm_g_planimetric"] = astm_g_from_na(n_eq / area_mm2) if n_eq > 0 else None
        by_angle: dict[float, list[float]] = {}
        for f, s in zip(fields, sizes):
            for b in f["summary"].get("intercept", {}).get("by_orientation", []):
                acc = by_angle.setdefault(round(b["angle_deg"], 6), [0.0, 0.0])
                acc[0] += b["intersections"]
                acc[1] += b["length_px"] * s
        p_l = [i / length for i, length in by_angle.values() if length > 0]
        if p_l and np.mean(p_l) > 0:
            l_nm = 1.0 / float(np.mean(p_l))
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


def _pooled_figure(pooled: dict, d: np.ndarray):
    """The pooled ECD histogram figure, drawn by :func:`napari_grainseg.measure.report.histogram_figure`."""
    from napari_grainseg.measure.summary import GrainTable
    from napari_grainseg.measure.report import histogram_figure

    unit = pooled["unit"]
    hist = pooled["histograms"]
    # histogram_figure draws ``*_px`` values times ``pixel_size_nm``; pooled sizes
    # are already in their unit, so a scale of 1 labels them nm (or px when None).
    scale = 1.0 if unit == "nm" else None
    fit = pooled["lognormal"]
    summary = {"histograms": {**hist, "bin_edges_px": hist[f"bin_edges_{unit}"]}, "pixel_size_nm": scale,
               "n_grains_included": pooled["n_grains_included"], "edge_grains": "included",
               "lognormal": None if fit is None else {**fit, "median_px": fit[f"median_{unit}"]}}
    table = GrainTable({"ecd_px": d, "touches_border": np.zeros(d.size, bool)})
    fig = histogram_figure(table, summary)
    fig.suptitle(f"Sample: {pooled['n_fields']} fields, {pooled['n_grains_included']} complete grains "
                 f"pooled (ECD, {unit})")
    return fig


def write_sample_summary(out_dir: str | os.PathLike, items: Sequence[BatchItem],
                         result: BatchResult) -> dict:
    """Write ``sample_summary.json``, the pooled histogram and ``failures.json`` for a batch.

    Fields are read back from their output files (processed now or skipped as
    already done), so a resumed batch gives the same sample summary.
    Returns the sample summary.
    """
    from napari_grainseg.measure.summary import field_statistics
    from napari_grainseg.measure.report import save_figure, write_summary_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields, rows = [], []
    for item, rec in zip(items, result.records):
        if rec is None or rec["status"] == "failed":
            continue
        summary = json.loads((item.out_dir / f"{item.stem}_summary.json").read_text(encoding="utf-8"))
        grains = _read_grain_csv(item.out_dir / f"{item.stem}_grains.csv")
        fields.append({"summary": summary, "grains": grains})
        rows.append({"input": str(item.source), "outputs": str(item.out_dir / item.stem),
                     "status": rec["status"], "n_grains": summary.get("n_grains"),
                     "pixel_size_nm": summary.get("pixel_size_nm"),
                     "mean_ecd_px": summary.get("mean_ecd_px"), "mean_ecd_nm": summary.get("mean_ecd_nm"),
                     "astm_g_planimetric": summary.get("astm_g_planimetric"),
                     "astm_g_intercept": summary.get("astm_g_intercept")})
    pooled = pooled_statistics(fields)
    failures = result.failures
    sample = {
        "n_inputs": len(items), "n_processed": result.count("processed"),
        "n_skipped": result.count("skipped"), "n_failed": len(failures),
        "field_statistics": field_statistics([f["summary"] for f in fields]) if fields else None,
        "pooled": pooled, "fields": rows,
        "failures_file": FAILURES if failures else None,
        "batch": {"workers": result.workers, "scheduler": result.scheduler,
                  "seconds": round(result.seconds, 3)},
    }
    if pooled["histograms"] is not None:
        fig = _pooled_figure(pooled, pooled_ecd(fields))
        save_figure(fig, out_dir / f"{SAMPLE_HISTOGRAM}.png")
        save_figure(fig, out_dir / f"{SAMPLE_HISTOGRAM}.svg")
    write_summary_json(out_dir / SAMPLE_SUMMARY, sample)
    write_summary_json(out_dir / FAILURES, {"n_failed": len(failures), "failures": failures})
    return sample
