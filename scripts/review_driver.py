"""Drive a real napari viewer as a user would, for the review scripts: clicks, screenshots, notifications.

Used by ``scripts/review_walkthrough.py`` and ``scripts/review_learn.py`` (run from the repository
root; the scripts folder is on ``sys.path`` when a script in it runs).
"""

from __future__ import annotations

import time
from pathlib import Path


class ReviewDriver:
    """Clicks the real buttons of a viewer's docks, numbers its screenshots and logs every notification by stage.

    Parameters
    ----------
    viewer : a shown ``napari.Viewer``; its window is resized to ``width`` x ``height``.
    out : folder of the screenshots ``NN_stage.png`` and of ``notifications.txt``.
    """

    def __init__(self, viewer, out: Path, width: int, height: int):
        from qtpy.QtWidgets import QApplication

        self.viewer = viewer
        self.window = viewer.window._qt_window
        self.window.resize(width, height)
        self.app = QApplication.instance()
        self.out = out
        self.log: list[str] = []
        self.stage = "start"
        self._seen = 0
        self._count = 0

    def settle(self, n: int = 40) -> None:
        """Let the event loop run ``n`` short turns (layers, workers' signals, redraws)."""
        for _ in range(n):
            self.app.processEvents()
            time.sleep(0.005)

    def note(self) -> None:
        """Log the notifications shown since the last call, under the current stage."""
        from napari.utils.notifications import notification_manager

        records = notification_manager.records
        for record in records[self._seen :]:
            self.log.append(f"[{self.stage}] {record.severity}: {record.message}")
        self._seen = len(records)

    def click(self, button) -> None:
        """A real mouse click on a magicgui button's native widget."""
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)
        self.settle()
        self.note()

    def tick(self, checkbox) -> None:
        """A real click on a check box's tick (a click right of its text would not toggle it)."""
        from qtpy.QtCore import QPoint, Qt
        from qtpy.QtTest import QTest

        native = checkbox.native
        QTest.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))
        self.settle()

    def shot(self, name: str, dock=None) -> Path:
        """Raise ``dock`` (a tab), save the whole window as the next ``NN_name.png``; ``name`` becomes the stage."""
        if dock is not None:
            dock.raise_()
        self.settle()
        self.note()
        self._count += 1
        self.stage = name
        path = self.out / f"{self._count:02d}_{name}.png"
        self.window.grab().save(str(path))
        print(f"wrote {path}", flush=True)
        return path

    def write_notifications(self) -> Path:
        """Write the notification log to ``notifications.txt`` in ``out``."""
        path = self.out / "notifications.txt"
        path.write_text("\n".join(self.log) + "\n")
        return path
