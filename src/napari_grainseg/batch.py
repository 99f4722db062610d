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
* **One run per output folder.** The command line holds the folder's lock
  (:class:`napari_grainseg.io.outputs.FolderLock`) for the whole run: a second
  run refuses at once (or waits with ``--wait``); a killed run's lock is taken over.
* **Outputs committed as a set.** A field is written into its run's staging
  folder ``.<stem>.staging-<run id>``, checked, then moved in file by file under a
  journal; the marker ``<stem>_done.json`` (every output with its size and
  SHA-256) is written last, atomically (:func:`napari_grainseg.io.outputs.commit_field`).
  A kill leaves at most a staging folder (removed by the next run) or a
  journaled, half-moved set (redone).
* **Resumable.** A field whose marker records the same input file (size,
  modification time) and the same result-affecting options, and whose files
  all exist with their recorded size and SHA-256, is skipped (:func:`is_done`);
  a field with missing files is redone.
* **Hand edits kept.** Outputs that differ from what grainseg recorded (edited
  by hand, e.g. grains corrected in napari) are never replaced without
  ``overwrite`` (:func:`check_field_outputs`), checked before any computation.
* **Robust.** A bad file becomes a failure record (``failures.json``); the
  other files are processed.
* **One model per worker.** Every process loads Net1 and Net2 once per weights
  file and device (the model cache, :func:`~napari_grainseg.segmentation.options.cached_net1`),
  and sets torch's and OpenCV's thread count to the worker's thread count, so
  workers do not oversubscribe the cores.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.outputs import DONE_SUFFIX
from napari_grainseg.segmentation.options import OptionError, SegmentOptions, cached_net1, cached_net2, net2_available

__all__ = [
    "BatchItem",
    "BatchOptions",
    "BatchResult",
    "DONE_SUFFIX",
    "cached_net1",
    "cached_net2",
    "FIELD_OUTPUT_SUFFIXES",
    "check_field_outputs",
    "check_models",
    "discover_inputs",
    "is_done",
    "process_item",
    "run_batch",
    "set_threads",
    "write_sample_summary",
]

#: Outputs every field has (``<stem>`` + suffix); the marker lists them all.
FIELD_OUTPUT_SUFFIXES = (
    "_boundaries.tif",
    "_grains.tif",
    "_grains.csv",
    "_summary.json",
    "_histogram.png",
    "_overlay.png",
)  # "_histogram.svg" only with --svg
#: Files written at the top of the output folder for the whole sample.
SAMPLE_SUMMARY = "sample_summary.json"
SAMPLE_HISTOGRAM = "sample_histogram"
FAILURES = "failures.json"
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
class BatchOptions(SegmentOptions):
    """Options of every field of a batch (picklable: sent to the Dask workers).

    The segmentation options (:class:`~napari_grainseg.segmentation.options.SegmentOptions`:
    ``net2_steps``, ``grain_size_px`` / ``grain_size_nm``, ``grains``, ``threshold``,
    ``min_grain_area``, ``device``, ``weights``, ``net2_weights``; the device is
    resolved on each worker, so ``"auto"`` uses a worker's GPU) and:

    Attributes
    ----------
    pixel_size_nm
        Overrides every file's calibration.
    threads
        Torch/OpenCV threads per worker; None = the Dask worker's thread count
        (1 in-process).
    max_pixels
        Largest decoded (and resampled) image in pixels; None = the readers'
        default (:data:`napari_grainseg.io.readers.DEFAULT_MAX_PIXELS`), 0 = no limit.
    """

    pixel_size_nm: float | None = None
    threads: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        v = self.pixel_size_nm
        if v is not None and not (math.isfinite(v) and v > 0):
            raise OptionError("pixel_size_nm", f"pixel size nm must be a finite number > 0, got {v}")
        if self.threads is not None and self.threads < 1:
            raise OptionError("threads", f"threads must be >= 1, got {self.threads}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise OptionError("max_pixels", f"max pixels must be >= 1, got {self.max_pixels}")
        if not self.net2_auto and self.net2_budget() and self.net2_weights is None and not net2_available():
            raise OptionError(
                "net2_steps",
                f"net2 steps {self.net2_steps}: no Net2 weights are shipped; give a Net2 weights file or 0 steps",
            )

    def fingerprint(self) -> dict:
        """The options that change a field's result (recorded in its marker)."""
        from napari_grainseg.models.weights import shipped_weights_dir

        budget = self.net2_budget()
        out = {**_file_identity("weights", self.weights or shipped_weights_dir() / "net1.pt"), "net2_steps": budget}
        if budget:
            out.update(_file_identity("net2_weights", self.net2_weights or shipped_weights_dir() / "net2.pt"))
        # the builder's own parameters only; the threshold is recorded as before (no "grains" key),
        # so older threshold markers stay valid, while a field finished under the old default or
        # the old float h-minima watershed lacks the "watershed" entry and is segmented again
        if self.grains == "watershed":
            out["grains"] = self.grains
            out["watershed_h"] = self.watershed_h
            out["watershed"] = "integer h-minima, sigma at Net1's scale"
        else:
            out["threshold"] = self.threshold
        if self.tta:
            out["tta"] = True
        if self.model_grain_size_px is not None:  # an adapted model's scale
            out["model_grain_size_px"] = self.model_grain_size_px
            out["model_grain_size_nm"] = self.model_grain_size_nm
        return {
            **out,
            "pixel_size_nm": self.pixel_size_nm,
            "grain_size_px": self.grain_size_px,
            "grain_size_nm": self.grain_size_nm,
            "min_grain_area": self.min_grain_area,
        }


def _file_identity(key: str, path) -> dict:
    """Path, size and modification time of a file (a changed weights file invalidates results)."""
    path = Path(path)
    st = path.stat() if path.exists() else None
    return {
        key: str(path.resolve()) if st else str(path),
        f"{key}_size": st.st_size if st else None,
        f"{key}_mtime_ns": st.st_mtime_ns if st else None,
    }


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


#: Stem endings of files that are outputs or targets, not micrographs: ``grainseg segment``/``batch``
#: outputs (``x_grains.tif``, ``x_boundaries.tif``, ``x_overlay.png``, ``x_histogram.png``) and
#: ``grainseg synth`` targets (``synth_000000_labels.tif``). ``batch`` skips them.
NOT_MICROGRAPH_STEMS = ("_labels", "_boundaries", "_grains", "_overlay", "_histogram")


def _is_micrograph(path: Path) -> bool:
    from napari_grainseg.io.readers import SUPPORTED_EXTENSIONS

    return (
        path.is_file()
        and path.suffix.lower() in SUPPORTED_EXTENSIONS
        and not path.name.startswith(".")
        and not path.stem.lower().endswith(NOT_MICROGRAPH_STEMS)
    )


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def discover_inputs(spec: str | os.PathLike, out_dir: str | os.PathLike) -> list[BatchItem]:
    """The micrographs of a folder (recursively) or a glob pattern, with their output places.

    Outputs mirror the input folders below the folder given (or the deepest
    folder common to every match of a glob): ``IN/a/x.tif`` → ``OUT/a/x_*``.
    Hidden files, unsupported extensions, outputs and targets
    (:data:`NOT_MICROGRAPH_STEMS`: ``*_grains.tif``, ``*_labels.tif``...) and
    anything inside ``out_dir`` are ignored. Two files of one folder with the same stem (``x.tif``, ``x.png``)
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
    if path.is_dir() and _same_path(path, out_dir):
        raise InputError(f"--out {out_dir} is the input folder; give another output folder")
    if path.is_dir():
        root = path
        files = [
            p
            for p in sorted(path.rglob("*"))
            if _is_micrograph(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
    elif glob.has_magic(text):
        files = sorted({Path(p) for p in glob.glob(text, recursive=True) if _is_micrograph(Path(p))})
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files])) if files else None
    elif path.exists():
        raise InputError(
            f"{text} is a file; give a folder or a glob pattern such as 'fields/*.tif' (or use grainseg segment)"
        )
    else:
        raise InputError(f"input folder not found: {text}")
    inside = [p for p in files if _inside(p, out_dir)]
    files = [p for p in files if not _inside(p, out_dir)]
    if not files and inside:
        raise InputError(
            f"no micrographs found in {text} outside the output folder {out_dir} "
            "(outputs are never read as inputs); give another --out"
        )
    if not files:
        raise InputError(
            f"no micrographs found in {text} (outputs and label/target files such as "
            "*_grains.tif, *_labels.tif are skipped)"
        )
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


def set_threads(n: int) -> None:
    """Use ``n`` threads in OpenCV and torch in this process (one worker = its cores, no oversubscription)."""
    from napari_grainseg.models.device import set_cpu_threads

    set_cpu_threads(n)


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


def _marker_matches(item: BatchItem, options: BatchOptions, marker: dict | None) -> bool:
    """Whether a marker records this input file and these options."""
    if marker is None:
        return False
    try:
        same_input = {k: marker.get(k) for k in ("input", "input_size", "input_mtime_ns")} == _input_fingerprint(
            item.source
        )
    except OSError:
        return False
    return same_input and marker.get("options") == json.loads(json.dumps(options.fingerprint()))


def is_done(item: BatchItem, options: BatchOptions) -> bool:
    """True when ``item`` has complete outputs from the same input and options (skip it).

    Complete: its marker is valid, no commit of it was interrupted, and every
    file the marker lists exists with its recorded size and SHA-256.
    """
    from napari_grainseg.io.outputs import field_state, read_marker

    try:
        if not _marker_matches(item, options, read_marker(item.out_dir, item.stem)):
            return False
        return field_state(item.out_dir, item.stem)[0] == "done"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def field_output_names(stem: str) -> list[str]:
    """Names of the files a field writes (marker excluded)."""
    return [stem + suffix for suffix in FIELD_OUTPUT_SUFFIXES]


def check_field_outputs(items: Sequence[BatchItem], *, overwrite: bool = False) -> None:
    """Refuse, before any computation, to replace outputs edited by hand (see ``overwrite``).

    Raises
    ------
    OutputConflictError
        Naming the first field whose existing outputs differ from what grainseg
        recorded, and how many fields are affected.
    """
    from napari_grainseg.io.outputs import OutputConflictError, check_not_edited

    conflicts = []
    for item in items:
        try:
            check_not_edited(item.out_dir, item.stem, field_output_names(item.stem), overwrite=overwrite)
        except OutputConflictError as exc:
            conflicts.append(str(exc))
    if conflicts:
        more = f" ({len(conflicts)} fields affected)" if len(conflicts) > 1 else ""
        raise OutputConflictError(conflicts[0] + more)


def check_models(options: BatchOptions) -> None:
    """Load the weights the batch needs once, up front: a bad weights file is one error, not N failures."""
    if options.net2_budget():
        cached_net2(options.net2_weights, "cpu")
    cached_net1(options.weights, "cpu")


def process_item(item: BatchItem, options: BatchOptions, run_id: str | None = None) -> dict:
    """Segment one micrograph and write its outputs; never raises for a bad file.

    Runs in a Dask worker (or in this process). Returns a JSON-ready record:
    ``status`` ``"processed"`` or ``"failed"`` (with ``error``), ``seconds``,
    ``cpu_seconds`` (CPU time of this process meanwhile), ``n_grains``, ``device``.
    A full or read-only disk gives ``kind`` ``"disk"`` (the batch then stops).
    ``run_id`` names the staging folder (default: a new id).
    """
    from napari_grainseg.io.atomic import OutputWriteError, as_output_error
    from napari_grainseg.io.outputs import commit_field, new_run_id, staging_dir
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.models.device import describe_device
    from napari_grainseg.segmentation.pipeline import segment, write_segmentation

    t0, cpu0 = time.perf_counter(), time.process_time()
    record = {"input": str(item.source), "output_dir": str(item.out_dir), "stem": item.stem}
    stage = None
    try:
        set_threads(options.threads or _worker_threads())
        source_id = _input_fingerprint(item.source)  # before reading: a file changed meanwhile is redone
        m = read_micrograph(item.source, **({} if options.max_pixels is None else {"max_pixels": options.max_pixels}))
        if options.pixel_size_nm is not None:
            m = m.with_pixel_size(options.pixel_size_nm)
        grain_size = options.grain_size_for(m.pixel_size_nm, where="the file", fix="give --pixel-size NM")
        check_resampling(m.shape, grain_size, options.max_pixels, name=item.source.name)
        device = options.compute_device()
        net1 = options.net1(device)
        result = segment(m.data, options, pixel_size_nm=m.pixel_size_nm, model=net1)
        # The output files need only labels and boundaries: let the probability
        # maps go before measuring (4-8 bytes per pixel less at the peak).
        result = dataclasses.replace(
            result, prediction=dataclasses.replace(result.prediction, probability=None), refined=None
        )
        try:
            item.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise as_output_error(exc, item.out_dir / item.stem) from exc
        stage = staging_dir(item.out_dir, item.stem, run_id or new_run_id())
        write_segmentation(
            stage,
            item.stem,
            m.data,
            result,
            pixel_size_nm=m.pixel_size_nm,
            extra={"source": str(item.source), "pixel_size_nm": m.pixel_size_nm},
            calibration_source=m.metadata.get("calibration_source"),
        )
        seconds = time.perf_counter() - t0
        try:
            marker = commit_field(
                stage,
                item.out_dir,
                item.stem,
                expected=field_output_names(item.stem),
                extra={
                    **source_id,
                    "options": options.fingerprint(),
                    "n_grains": int(result.labels.max()),
                    "shape": list(m.shape),
                    "pixel_size_nm": m.pixel_size_nm,
                    "device": describe_device(device, net1),
                    "seconds": round(seconds, 3),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
        except OSError as exc:
            raise as_output_error(exc, item.marker) from exc
        record.update(
            status="processed",
            seconds=seconds,
            cpu_seconds=time.process_time() - cpu0,
            n_grains=marker["n_grains"],
            device=marker["device"],
            shape=marker["shape"],
        )
    except Exception as exc:  # one bad field must not stop the batch
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        record.update(
            status="failed",
            seconds=time.perf_counter() - t0,
            error=" ".join(str(exc).split()) or type(exc).__name__,
            error_type=type(exc).__name__,
            kind=(
                "disk" if isinstance(exc, OutputWriteError) else "input" if isinstance(exc, InputError) else "internal"
            ),
        )
    except BaseException:  # Ctrl-C or a worker's end: no half-written field left in the output folder
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    return record


#: Largest resampling factor a grain-size hint may ask for (enlarging 8x = 64x the pixels).
MAX_UPSCALE = 8.0


def check_resampling(
    shape: Sequence[int] | None,
    grain_size_px: float | None,
    max_pixels: int | None = None,
    *,
    name: str = "the image",
    max_upscale: float = MAX_UPSCALE,
) -> float:
    """Refuse a grain-size hint that would resample an image absurdly (before any computation).

    Returns the factor Net1 will resample by (1.0 without a hint). Refuses a
    factor above ``max_upscale``, a grain larger than the image, and a resampled
    image above ``max_pixels`` (None: :data:`napari_grainseg.io.readers.DEFAULT_MAX_PIXELS`;
    0 or less: no limit). ``shape`` None: the image is not known yet (only the factor is checked).
    """
    from napari_grainseg.io.readers import DEFAULT_MAX_PIXELS
    from napari_grainseg.segmentation.inference import check_grain_size_fits, scale_for_grain_size

    if grain_size_px is None:
        return 1.0
    if not (math.isfinite(grain_size_px) and grain_size_px > 0):
        raise InputError(f"grain size must be a finite number of px > 0, got {grain_size_px}")
    scale = float(scale_for_grain_size(grain_size_px))
    if scale > max_upscale:
        raise InputError(
            f"a grain size of {grain_size_px:.3g} px would enlarge {name} {scale:.3g}x "
            f"(at most {max_upscale:g}x): check --grain-size/--grain-size-nm and the pixel size"
        )
    if shape is None:
        return scale
    try:
        check_grain_size_fits(grain_size_px, tuple(shape))
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    n = round(shape[0] * scale) * round(shape[1] * scale)
    if limit and limit > 0 and n > limit:
        raise InputError(
            f"a grain size of {grain_size_px:.3g} px would resample {name} to {n:.3g} pixels "
            f"(limit {limit:.3g}; raise it with --max-pixels)"
        )
    return scale


# --------------------------------------------------------------------------- running


def run_batch(
    items: Sequence[BatchItem],
    options: BatchOptions = BatchOptions(),
    *,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = True,
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
    overwrite: bool = False,
    run_id: str | None = None,
) -> BatchResult:
    """Process every item, skipping completed ones, serially or on Dask.

    The caller should hold the output folder's lock
    (:class:`napari_grainseg.io.outputs.FolderLock`, as ``grainseg batch`` does).

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
    overwrite
        Replace outputs that differ from what grainseg wrote (edited by hand);
        without it such a batch is refused before any computation.
    run_id
        Names this run's staging folders (default: a new id); staging folders
        of this run and of dead runs are removed.

    Raises
    ------
    InputError
        Before any computation: outputs edited by hand, unusable weights. While
        running: a full or read-only disk (the batch stops).
    """
    from tqdm import tqdm

    from napari_grainseg.io.atomic import OutputWriteError
    from napari_grainseg.io.outputs import new_run_id, remove_stale_staging

    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    run_id = run_id or new_run_id()
    t0 = time.perf_counter()
    records: list[dict | None] = [None] * len(items)
    todo = []
    for folder in sorted({item.out_dir for item in items}):
        remove_stale_staging(folder, run_id)
    for i, item in enumerate(items):
        if resume and is_done(item, options):
            records[i] = {
                "input": str(item.source),
                "output_dir": str(item.out_dir),
                "stem": item.stem,
                "status": "skipped",
            }
        else:
            todo.append(i)
    check_field_outputs([items[i] for i in todo], overwrite=overwrite)
    if todo:
        check_models(options)
    n_failed = 0
    disk_error: list[dict] = []

    def done(i: int, record: dict) -> bool:
        nonlocal n_failed
        records[i] = record
        n_failed += record["status"] == "failed"
        bar.update(1)
        bar.set_postfix(failed=n_failed, refresh=False)
        if on_record:
            on_record(record)
        if record.get("kind") == "disk":
            disk_error.append(record)
            return False  # stop: every further field would fail the same way
        return True

    use_dask = bool(todo) and (scheduler is not None or workers > 1)
    with _dask_client(workers, scheduler) if use_dask else contextlib.nullcontext() as client:
        bar = tqdm(
            total=len(items),
            initial=len(items) - len(todo),
            desc="batch",
            unit="field",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        try:
            if use_dask:
                _run_dask(client, items, todo, options, done, run_id)
            elif todo:
                from napari_grainseg.models.device import restored_cpu_threads

                with restored_cpu_threads():
                    for i in todo:
                        if not done(i, process_item(items[i], options, run_id)):
                            break
        finally:
            bar.close()
    if disk_error:
        raise OutputWriteError(disk_error[0]["error"])
    return BatchResult(records=records, seconds=time.perf_counter() - t0, workers=workers, scheduler=scheduler)


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
        raise InputError(
            "parallel batches need Dask: pip install 'napari-grainseg[batch]' (or run with --workers 1)"
        ) from exc
    if scheduler is None:
        import dask

        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc give
        # memory back after every large temporary: measured here, 25 % more CPU per
        # field (page faults). Our workers keep glibc's adaptive default.
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            client.run(_quiet_worker)
            yield client
        return
    try:
        client = Client(scheduler, timeout="5s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot connect to the Dask scheduler {scheduler}: {' '.join(str(exc).split())}") from exc
    with client:
        yield client


def _run_dask(client, items, todo, options, done, run_id=None) -> None:
    """Submit one task per item and report them as they complete (``done`` False: cancel the rest)."""
    from distributed import as_completed

    futures = {
        client.submit(process_item, items[i], options, run_id, pure=False, key=f"grainseg-{i}-{items[i].stem}"): i
        for i in todo
    }
    for fut in as_completed(futures):
        i = futures[fut]
        try:
            record = fut.result()
        except Exception as exc:  # worker died (e.g. out of memory): a failure, not a crash
            item = items[i]
            record = {
                "input": str(item.source),
                "output_dir": str(item.out_dir),
                "stem": item.stem,
                "status": "failed",
                "error": " ".join(str(exc).split()) or type(exc).__name__,
                "error_type": type(exc).__name__,
                "kind": "worker",
            }
        if not done(i, record):
            client.cancel(list(futures))
            break


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


def _pooled_figure(pooled: dict, d: np.ndarray):
    """The pooled ECD histogram figure, drawn by :func:`napari_grainseg.measure.report.histogram_figure`."""
    from napari_grainseg.measure.report import histogram_figure
    from napari_grainseg.measure.table import GrainTable

    unit = pooled["unit"]
    hist = pooled["histograms"]
    # histogram_figure draws ``*_px`` values times ``pixel_size_nm``; pooled sizes
    # are already in their unit, so a scale of 1 labels them nm (or px when None).
    scale = 1.0 if unit == "nm" else None
    fit = pooled["lognormal"]
    summary = {
        "histograms": {**hist, "bin_edges_px": hist[f"bin_edges_{unit}"]},
        "pixel_size_nm": scale,
        "n_grains_included": pooled["n_grains_included"],
        "edge_grains": "included",
        "lognormal": None if fit is None else {**fit, "median_px": fit[f"median_{unit}"]},
    }
    table = GrainTable({"ecd_px": d, "touches_border": np.zeros(d.size, bool)})
    fig = histogram_figure(table, summary)
    fig.suptitle(
        f"Sample: {pooled['n_fields']} fields, {pooled['n_grains_included']} complete grains pooled (ECD, {unit})"
    )
    return fig


def write_sample_summary(out_dir: str | os.PathLike, items: Sequence[BatchItem], result: BatchResult) -> dict:
    """Write ``sample_summary.json``, the pooled histogram and ``failures.json`` for a batch.

    Fields are read back from their output files (processed now or skipped as
    already done), so a resumed batch gives the same sample summary.
    Returns the sample summary.
    """
    from napari_grainseg.measure.report import save_figure, write_summary_json
    from napari_grainseg.measure.statistics import field_statistics, pooled_ecd, pooled_statistics

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields, rows = [], []
    for item, rec in zip(items, result.records):
        if rec is None or rec["status"] == "failed":
            continue
        summary = json.loads((item.out_dir / f"{item.stem}_summary.json").read_text(encoding="utf-8"))
        grains = _read_grain_csv(item.out_dir / f"{item.stem}_grains.csv")
        fields.append({"summary": summary, "grains": grains})
        rows.append(
            {
                "input": str(item.source),
                "outputs": str(item.out_dir / item.stem),
                "status": rec["status"],
                "n_grains": summary.get("n_grains"),
                "pixel_size_nm": summary.get("pixel_size_nm"),
                "mean_ecd_px": summary.get("mean_ecd_px"),
                "mean_ecd_nm": summary.get("mean_ecd_nm"),
                "astm_g_planimetric": summary.get("astm_g_planimetric"),
                "astm_g_intercept": summary.get("astm_g_intercept"),
            }
        )
    pooled = pooled_statistics(fields)
    failures = result.failures
    sample = {
        "n_inputs": len(items),
        "n_processed": result.count("processed"),
        "n_skipped": result.count("skipped"),
        "n_failed": len(failures),
        "field_statistics": field_statistics([f["summary"] for f in fields]) if fields else None,
        "pooled": pooled,
        "fields": rows,
        "failures_file": FAILURES if failures else None,
        "batch": {"workers": result.workers, "scheduler": result.scheduler, "seconds": round(result.seconds, 3)},
    }
    if pooled["histograms"] is not None:
        fig = _pooled_figure(pooled, pooled_ecd(fields))
        save_figure(fig, out_dir / f"{SAMPLE_HISTOGRAM}.png")
        save_figure(fig, out_dir / f"{SAMPLE_HISTOGRAM}.svg")
    write_summary_json(out_dir / SAMPLE_SUMMARY, sample)
    write_summary_json(out_dir / FAILURES, {"n_failed": len(failures), "failures": failures})
    return sample
