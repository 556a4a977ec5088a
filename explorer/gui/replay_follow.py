"""Reading a recording off the GUI thread, and following one that is still being written.

    job = ScanJob(parent, index, final=True); job.done.connect(slot); job.start()
    watch = FollowWatch(index, stall_s=60.0)   # plain bookkeeping: has it grown, is it stalled

ScanJob runs RecordingIndex.scan on a plain daemon thread and reports on the GUI thread through a
queued signal (`done(new_records, error)`); kept small so it can move onto the GUI's one job helper
(explorer/gui/jobs.py) when that lands. A window closed meanwhile cancels it (the scan stops at its
next look at `stop`).

A followed run is polled (size and modification time of metrics.jsonl, no inotify: it works over NFS
and other mounted filesystems, plain files and no locks). It is stalled when it has not grown for
`stall_s` seconds, has no "finished" line, and its writer's lock (explorer.schema.dirlock) is gone or
names a process of this host that no longer runs; a writer on another host cannot be checked, so then
the follower only says how long ago the last record came.
"""

from __future__ import annotations

import os
import threading
import time

from PySide6 import QtCore

from explorer.schema.dirlock import holder_alive
from explorer.schema.format import one_line
from explorer.schema.recording_index import RecordingIndex

STALL_S = 60.0
POLL_MS = 500
PROGRESS_S = 0.25
YIELD_S = 0.002  # per RecordingIndex.CHECK_EVERY lines read


class ScanJob(QtCore.QObject):
    """`index.scan(final)` on a helper thread; `done(new_records, error)` arrives on the GUI thread,
    `progress(records)` every PROGRESS_S meanwhile (a long recording opens at once and fills in)."""

    done = QtCore.Signal(int, str)
    progress = QtCore.Signal(int)

    def __init__(self, parent: QtCore.QObject, index: RecordingIndex, final: bool):
        super().__init__(parent)
        self.index = index
        self.final = final
        self.cancelled = False
        self.running = False
        self._thread = threading.Thread(target=self._run, name="explorer-read-recording", daemon=True)

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def cancel(self) -> None:
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        new, error = 0, ""
        last = time.monotonic()

        def stop() -> bool:
            nonlocal last
            # a moment without the GIL now and then: else every Qt call of the GUI thread that lets the
            # GIL go waits a whole switch interval to get it back, and a first paint takes 7x as long
            time.sleep(YIELD_S)
            if not self.cancelled and time.monotonic() - last >= PROGRESS_S:
                last = time.monotonic()
                try:
                    self.progress.emit(len(self.index))
                except RuntimeError:  # the window went away meanwhile
                    self.cancelled = True
            return self.cancelled

        try:
            new = self.index.scan(final=self.final, stop=stop)
        except (OSError, ValueError) as exc:
            error = one_line(exc) or type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - a hostile file: say so, the window stays usable
            error = f"{type(exc).__name__}: {one_line(exc)}"
        if self.cancelled:
            return
        try:
            self.done.emit(new, error)  # queued: the receiver lives on the GUI thread
        except RuntimeError:  # the window went away meanwhile
            pass


class FollowWatch:
    """Has the followed recording grown since the last look; is its writer finished, alive, gone."""

    def __init__(self, index: RecordingIndex, stall_s: float = STALL_S):
        self.index = index
        self.stall_s = float(stall_s)
        self._seen: tuple[int, int] | None = None
        self.last_growth = time.monotonic()
        self.last_record = time.monotonic()  # when the newest record arrived (monotonic)
        self.stalled = False

    def grown(self) -> bool:
        """Whether metrics.jsonl changed (size or mtime) since the last call."""
        try:
            st = os.stat(self.index.path)
            seen = (st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        if seen != self._seen:
            self._seen = seen
            self.last_growth = time.monotonic()
            self.stalled = False
            return seen is not None
        return False

    def records_arrived(self) -> None:
        self.last_record = time.monotonic()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_growth

    def check_stalled(self) -> bool:
        """True once the run looks stalled (see the module docstring); then stays so until it grows."""
        if not self.stalled and not self.index.finished and self.quiet_for() >= self.stall_s:
            self.stalled = holder_alive(self.index.dir) is False
        return self.stalled

    def describe(self, step: int, ended: str | None) -> str:
        """The status bar's line: following, the step, and how long ago the last record came.
        `ended`: "finished" / "failed" once the controller has taken in the records before that line
        (the index's events change on the reading thread, ahead of the records the GUI has)."""
        ago = format_ago(time.monotonic() - self.last_record)
        if ended:
            return f"{ended} · step {step:,}"
        if self.stalled:
            return f"stalled? · step {step:,} · last record {ago} ago"
        return f"following · step {step:,} · last record {ago} ago"


def format_ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
