"""Signals shared by the docks: the user's model store changed (a model learned, renamed, deleted)."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from psygnal import Signal


class StoreEvents:
    """``changed(path)``: the store changed; ``path`` is a new model directory to choose ("" for none).
    ``renamed(old, new)``: a model directory was renamed."""

    changed = Signal(str)
    renamed = Signal(str, str)


#: The process-wide instance every dock connects to.
STORE_EVENTS = StoreEvents()


def connect_weakly(signal, method: Callable) -> None:
    """Connect a dock's bound ``method`` without keeping the dock alive; a dock whose Qt widgets were
    deleted (its window closed) is disconnected instead of called."""
    ref = weakref.WeakMethod(method)

    def call(*args):
        target = ref()
        if target is None:
            signal.disconnect(call)
            return
        try:
            target(*args)
        except RuntimeError as exc:  # "wrapped C/C++ object ... has been deleted"
            if "deleted" not in str(exc):
                raise
            signal.disconnect(call)

    signal.connect(call)
