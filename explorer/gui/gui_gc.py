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
    """What automatic collection would do now: the oldest generation whose count passed its
    threshold, and the oldest one only when the objects that reached it since its last collection are
    a quarter of those it held then (CPython's own rule: full collections stay rare as the heap grows;
    one costs ~20 ms in the GUI process)."""
    global _long_lived
    thresholds, counts = gc.get_threshold(), gc.get_count()
    if counts[0] <= thresholds[0]:
        return
    if counts[1] > thresholds[1] and counts[2] > thresholds[2]:
        if len(gc.get_objects(2)) - _long_lived > _long_lived / 4:
            gc.collect(2)
            _long_lived = len(gc.get_objects(2))
            return
        gc.collect(1)
    elif counts[1] > thresholds[1]:
        gc.collect(1)
    else:
        gc.collect(0)


_long_lived = 0  # objects in the oldest generation after its last collection


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
        gc.freeze()  # what start-up loaded (modules, Qt wrappers) lives as long as the process: never scanned
        _collector = GuiThreadCollector(app)
    return _collector


_collector: GuiThreadCollector | None = None  # the application lives as long as the process


__all__ = ["COLLECT_MS", "GuiThreadCollector", "collect_due", "install_gui_gc"]
