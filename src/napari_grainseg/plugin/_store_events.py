"""One signal shared by the docks: the user's model store changed (a model learned, renamed, deleted)."""

from __future__ import annotations

from psygnal import Signal


class StoreEvents:
    """``changed(path)``: the store changed; ``path`` is the model directory to choose ("" for none)."""

    changed = Signal(str)


#: The process-wide instance every dock connects to.
STORE_EVENTS = StoreEvents()
