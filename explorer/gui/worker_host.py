"""The GUI side of a worker, written once for the window's training run and the compare view alike.

    host = WorkerHost(PROCESS_WORKER, parent=window)        # "module:Class" or a callable
    host.attached.connect(...); host.snapshot.connect(...); host.failed.connect(...); host.died.connect(...)
    host.start(settings)                                     # returns at once
    host.worker.play(); ...
    host.close()                                             # or retire(): closed off the GUI thread

- start: the worker's class is named by string and imported on a helper thread (gui/jobs.py) the
  first time, so the window never waits on an import (a thread worker imports torch; the process
  relay, engine/process_worker.py, imports none, and its child imports torch instead); then the worker
  is made and started on the GUI thread, and `attached(worker)` follows. A start that fails says why
  in `failed(line, own)` (`own`: a ValueError, the caller's settings or specs; else a broken engine).
- drain: a timer (30-60 Hz) takes the worker's newest snapshot, never waiting, and hands it on as
  `snapshot(snap)`; `should_drain()` (the window: not while a recording is replayed) holds it back.
- death: a worker that is no longer alive is reported once by `died()`, unless a fault snapshot
  already said why (the relay posts one, of kind "died", when its child goes).
- close: `close()` closes the worker here (the window at exit); `retire()` hands it to a helper
  thread (a comparison being replaced: a round of several runs must finish first), and `close()`
  joins those too.
"""

from __future__ import annotations

import sys
import traceback

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from explorer.engine.spawn import resolve
from explorer.gui.jobs import thread_job

DRAIN_MS = 25  # 40 Hz: a worker posts at most snapshot_hz (30) anyway
CLOSE_TIMEOUT_S = 10.0


class WorkerHost(QObject):
    attached = Signal(object)  # the worker, started
    snapshot = Signal(object)  # every snapshot taken from it
    failed = Signal(str, bool)  # why it could not start (one line); True: a ValueError (bad settings / specs)
    died = Signal()  # it stopped without a snapshot saying why

    def __init__(self, factory, *, drain_ms: int = DRAIN_MS, should_drain=None, name: str = "engine", parent=None):
        """`factory`: "module:Class" (imported on a helper thread) or a callable making the worker."""
        super().__init__(parent)
        self.factory = factory
        self.name = name
        self.worker = None
        self.should_drain = should_drain
        self._loading = None  # the import job while the factory's module loads
        self._pending = None  # (args, kwargs) of the start waiting for it
        self._generation = 0
        self._dead_reported = False
        self._closed = False
        self._closers: list = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(drain_ms)
        self.timer.timeout.connect(self._tick)

    # ------------------------------------------------------------------ state
    @property
    def loading(self) -> bool:
        return self._loading is not None

    @property
    def alive(self) -> bool:
        try:
            return bool(self.worker is not None and self.worker.alive)
        except Exception:  # noqa: BLE001 - a broken worker is not alive
            return False

    # ------------------------------------------------------------------ starting
    def start(self, *args, **kwargs) -> None:
        """Make a worker with factory(*args, **kwargs) and start it (after any worker before is
        retired). Returns at once; `attached` or `failed` follows."""
        if self._closed:
            return
        self.retire()
        factory = self.factory
        if isinstance(factory, str):
            module_name = factory.partition(":")[0]
            if module_name not in sys.modules:
                self._pending = (args, kwargs)
                gen = self._generation
                job = thread_job(resolve, factory, name=f"explorer-import-{self.name}", parent=self)
                job.done.connect(lambda f, g=gen: self._on_imported(g, f))
                job.failed.connect(lambda text, g=gen: self._on_import_failed(g, text))
                self._loading = job
                job.start()
                return
            factory = resolve(factory)
        self._create(factory, args, kwargs)

    def _on_imported(self, gen: int, factory) -> None:
        if gen != self._generation or self._closed:
            return
        self._loading = None
        args, kwargs = self._pending
        self._pending = None
        self._create(factory, args, kwargs)

    def _on_import_failed(self, gen: int, text: str) -> None:
        if gen != self._generation or self._closed:
            return
        self._loading, self._pending = None, None
        self.failed.emit(f"the engine could not be loaded: {text}", False)

    def _create(self, factory, args, kwargs) -> None:
        try:
            worker = factory(*args, **kwargs)
            worker.start()
        except ValueError as exc:  # bad settings or specs
            self.failed.emit(" ".join(str(exc).split()), True)
            return
        except Exception as exc:  # noqa: BLE001 - a broken engine must not take the window down
            traceback.print_exc()
            self.failed.emit(f"{type(exc).__name__}: {' '.join(str(exc).split())}", False)
            return
        self.worker = worker
        self._dead_reported = False
        self.timer.start()
        self.attached.emit(worker)

    # ------------------------------------------------------------------ snapshots
    def _tick(self) -> None:
        if self.should_drain is None or self.should_drain():
            self.drain()

    def drain(self):
        """Take the newest snapshot (never waits) and hand it on; returns it (or None)."""
        worker = self.worker
        if worker is None:
            return None
        try:
            snap = worker.latest()
        except Exception as exc:  # noqa: BLE001
            self.failed.emit(f"reading from the engine failed: {exc}", False)
            return None
        if snap is None:
            if not self._dead_reported and not self._closed and not self.alive:
                self._dead_reported = True
                self.died.emit()
            return None
        if snap.state == "fault" and not self.alive:
            self._dead_reported = True  # the worker said why it stopped: no second message
        self.snapshot.emit(snap)
        return snap

    # ------------------------------------------------------------------ stopping
    def retire(self) -> None:
        """Stop taking snapshots from the worker and close it on a helper thread (joined by close())."""
        worker, self.worker = self.worker, None
        self.timer.stop()
        self._generation += 1  # a start still importing its module is dropped
        self._loading, self._pending = None, None
        if worker is None:
            return
        self._closers = [j for j in self._closers if j.running]
        closer = thread_job(worker.close, CLOSE_TIMEOUT_S, name=f"explorer-close-{self.name}", parent=self)
        self._closers.append(closer.start())

    def stop(self) -> None:
        """Close the worker here, now (a dead one before a new start, the window at exit)."""
        worker, self.worker = self.worker, None
        self.timer.stop()
        if worker is not None:
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - closing must not raise at exit
                traceback.print_exc()

    def close(self) -> None:
        """Close the worker and join every one retired before. Idempotent; nothing starts after it."""
        self._generation += 1
        self._closed = True
        self._loading, self._pending = None, None
        self.stop()
        for job in self._closers:
            job.wait(CLOSE_TIMEOUT_S + 1.0)
        self._closers = []


__all__ = ["DRAIN_MS", "WorkerHost"]
