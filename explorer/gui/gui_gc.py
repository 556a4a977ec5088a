"""Python's cyclic garbage collector runs only on the GUI thread.

Left automatic, the collector runs in whichever thread happens to allocate when a threshold is
crossed: a helper thread (a job, the process relay's reader, a thread worker in tests) then frees
widgets of a closed window caught in a reference cycle. Their C++ destructors run off the GUI
thread: `~QObject` takes Qt's lock and asks for the GIL, while the GUI thread, holding the GIL,
deletes another widget and waits for that lock. Both stop for good (seen in CI, as a py-spy dump:
the compare thread in `gc_collect_main` -> `QObject::~QObject` -> GIL, the main thread in
`~QMenu` -> `QBasicMutex::lockInternal`). pyqtgraph's GarbageCollector does the same.

So the GUI process turns automatic collection off and collects here, on a timer, with the
collector's own thresholds (cheap: most passes collect nothing). Reference counting still frees
everything that is not in a cycle at once.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

COLLECT_MS = 500


def collect_due() -> None:
    """Collect the generations whose counts passed their thresholds (what automatic collection does)."""
    thresholds = gc.get_threshold()
    counts = gc.get_count()
    for generation in range(3):
        if counts[generation] <= thresholds[generation]:
            break
        gc.collect(generation)


class GuiThreadCollector(QObject):
    """Owns the timer; one per application (install_gui_gc)."""

    def __init__(self, parent: QObject, interval_ms: int = COLLECT_MS):
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(collect_due)
        self.timer.start()


def install_gui_gc(app: QObject) -> GuiThreadCollector:
    """Turn automatic collection off and collect on the GUI thread from now on (idempotent)."""
    global _collector
    if _collector is None:
        gc.disable()
        _collector = GuiThreadCollector(app)
    return _collector


_collector: GuiThreadCollector | None = None  # the application lives as long as the process


__all__ = ["COLLECT_MS", "GuiThreadCollector", "collect_due", "install_gui_gc"]
