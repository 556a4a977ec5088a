"""Reading and analysing an adapter off the GUI thread: one job per request, its result (or the
reader's one-line reason) back through queued signals, tagged with the request's number so that an
answer to a superseded request is told apart.
"""

from __future__ import annotations

import threading

from PySide6 import QtCore

from explorer.schema.format import one_line


class InspectJob(QtCore.QObject):
    """Runs `fn(progress)` on a helper thread; its signals arrive queued on the GUI thread."""

    progress = QtCore.Signal(int, int, int)  # generation, done, total
    done = QtCore.Signal(int, object)  # generation, result
    failed = QtCore.Signal(int, str)  # generation, one line

    def __init__(self, generation: int, fn, label: str):
        super().__init__()
        self.generation = generation
        self._fn = fn
        self._label = label
        self.thread = threading.Thread(target=self._run, name="explorer-inspect-adapter", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        g = self.generation
        try:
            result = self._fn(lambda done, total: self.progress.emit(g, int(done), int(total)))
        except (ValueError, OSError) as exc:  # the reader's one-line messages
            self.failed.emit(g, one_line(exc) or f"{self._label}: {type(exc).__name__}")
        except MemoryError:
            self.failed.emit(g, f"{self._label}: not enough memory to analyse this adapter")
        except Exception as exc:  # noqa: BLE001 - anything else: say so, the app lives on
            self.failed.emit(g, f"{self._label}: {type(exc).__name__}: {one_line(exc)}")
        else:
            self.done.emit(g, result)
