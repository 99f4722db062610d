"""Background work for the widgets: napari thread workers, a synchronous switch, debouncing.

Long computations (Net1, Net2 steps, measurements) run in ``napari.qt.threading``
workers so the viewer never freezes; results come back through Qt signals and
are applied to layers on the main thread only.

Set ``SYNCHRONOUS = True`` (or the environment variable
``GRAINSEG_SYNCHRONOUS=1``) to run every worker and every debounced call
immediately in the calling thread: tests then see results without waiting
for an event loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: Run workers and debounced callbacks synchronously (tests, scripts).
SYNCHRONOUS: bool = os.environ.get("GRAINSEG_SYNCHRONOUS", "") not in ("", "0")


class _Signal:
    """The few methods of a Qt signal that the widgets use (connect / emit)."""

    def __init__(self):
        self._slots: list[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def emit(self, *args) -> None:
        for slot in list(self._slots):
            slot(*args)


class SyncWorker:
    """Drop-in for a napari generator/function worker that runs in the calling thread.

    Honours ``pause()`` requested from inside the generator (single steps),
    ``resume()`` and ``quit()`` like :class:`superqt.utils.GeneratorWorker`.
    """

    def __init__(self, func: Callable, *args, **kwargs):
        import inspect

        self._is_generator = inspect.isgeneratorfunction(func)
        self._func, self._args, self._kwargs = func, args, kwargs
        self._gen = func(*args, **kwargs) if self._is_generator else None
        self.yielded, self.returned, self.errored = _Signal(), _Signal(), _Signal()
        self.finished, self.aborted, self.started = _Signal(), _Signal(), _Signal()
        self.paused, self.resumed = _Signal(), _Signal()
        self.abort_requested = False
        self._pause_requested = False
        self._paused = False
        self._running = False
        self._done = False

    @property
    def is_running(self) -> bool:
        return self._running or (self._paused and not self._done)

    @property
    def is_paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        self.started.emit()
        self._run()

    def pause(self) -> None:
        if not self._paused:
            self._pause_requested = True

    def resume(self) -> None:
        if self._paused and not self._done:
            self._paused = False
            self.resumed.emit()
            self._run()

    def quit(self) -> None:
        self.abort_requested = True
        if self._paused and not self._done:
            self._finish(aborted=True)

    def _finish(self, aborted=False, value=None, error=None) -> None:
        self._done, self._running, self._paused = True, False, False
        if aborted:
            self.aborted.emit()
        elif error is not None:
            self.errored.emit(error)
        else:
            self.returned.emit(value)
        self.finished.emit()

    def _run(self) -> None:
        if self._running or self._done:
            return
        self._running = True
        while True:
            if self.abort_requested:
                self._finish(aborted=True)
                return
            if self._pause_requested:
                self._pause_requested, self._paused, self._running = False, True, False
                self.paused.emit()
                return
            try:  # only the work itself is guarded: errors in the slots surface in tests
                if not self._is_generator:
                    value = self._func(*self._args, **self._kwargs)
                    done = True
                else:
                    out, done = next(self._gen), False
            except StopIteration as stop:
                value, done = stop.value, True
            except Exception as exc:  # noqa: BLE001 - mirrors the threaded worker's errored signal
                if not self.errored._slots:
                    raise
                self._finish(error=exc)
                return
            if done:
                self._finish(value=value)
                return
            self.yielded.emit(out)


def create_worker(func: Callable, *args, progress: dict | None = None, **kwargs):
    """A worker running ``func(*args, **kwargs)``: threaded (napari), or :class:`SyncWorker`.

    The worker is not started: connect its signals, then call ``start()``.
    ``progress`` (e.g. ``{"total": 30, "desc": "Net2"}``) shows napari's
    progress bar with its cancel button (threaded mode only).
    """
    if SYNCHRONOUS:
        return SyncWorker(func, *args, **kwargs)
    from napari.qt.threading import create_worker as napari_create_worker

    _wait_for_workers_at_exit()
    return napari_create_worker(func, *args, _start_thread=False, _progress=progress, **kwargs)


_exit_hook_registered = False


def _wait_for_workers_at_exit() -> None:
    """Make the interpreter wait for running workers before it tears down (registered once).

    A worker that finishes while Python exits emits through Qt objects already deleted, and
    the process aborts: a script that closes the viewer while a measurement runs ended so.
    napari's event loop waits for workers when the application quits; a script has no such
    loop, so this does the same at exit (cancellable workers are asked to stop first).
    """
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    import atexit

    atexit.register(_await_workers)
    _exit_hook_registered = True


def _await_workers() -> None:
    """Ask every worker to quit and wait until all have ended, in short waits so that Ctrl-C
    still reaches Python (one long wait blocks inside Qt)."""
    from napari.qt.threading import WorkerBase

    while True:
        try:
            WorkerBase.await_workers(msecs=200)
            return
        except RuntimeError:  # not all done within 200 ms
            continue


def run_staged(*stages: Callable[[], None]) -> None:
    """Run main-thread callables one per event-loop turn, so the viewer repaints between them.

    Large layer updates (a 2048² probability, boundary and grains layer) each
    take tens of ms; spread over turns, no single stall is long. Synchronous
    mode runs them at once.
    """
    if SYNCHRONOUS or not stages:
        for stage in stages:
            stage()
        return
    from qtpy.QtCore import QTimer

    stages[0]()
    if len(stages) > 1:
        QTimer.singleShot(0, lambda: run_staged(*stages[1:]))


class Debouncer:
    """Call ``callback`` once, ``delay_ms`` after the last of a burst of ``trigger()`` calls.

    Synchronous mode calls it at once. Uses a single-shot ``QTimer`` on the
    main thread, so the callback may touch layers.
    """

    def __init__(self, callback: Callable[[], None], delay_ms: int = 300):
        self._callback = callback
        self._delay_ms = delay_ms
        self._timer = None

    def trigger(self) -> None:
        if SYNCHRONOUS:
            self._callback()
            return
        if self._timer is None:
            from qtpy.QtCore import QTimer

            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.setInterval(self._delay_ms)
            self._timer.timeout.connect(self._callback)
        self._timer.start()

    def flush(self) -> None:
        """Run a pending call now (e.g. before an export)."""
        if self._timer is not None and self._timer.isActive():
            self._timer.stop()
            self._callback()

    @property
    def pending(self) -> bool:
        return self._timer is not None and self._timer.isActive()
