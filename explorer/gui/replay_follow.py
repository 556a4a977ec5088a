"""Reading a recording off the GUI thread, and following one that is still being written.

    job = scan_job(parent, index, final=True); job.done.connect(slot); job.start()
    watch = FollowWatch(index, stall_s=60.0)   # plain bookkeeping: has it grown, is it stalled

scan_job runs RecordingIndex.scan as a background job of the GUI's one job helper (gui/jobs.py):
`done(new_records)` or `failed(reason)` on the GUI thread, `progress(records, 0)` every PROGRESS_S
meanwhile (a long recording opens at once and fills in). A window closed meanwhile cancels it (the
scan stops at its next look at `stop`).

A followed run is polled (size and modification time of metrics.jsonl, no inotify: it works over NFS
and other mounted filesystems, plain files and no locks). It is stalled when it has not grown for
`stall_s` seconds, has no "finished" line, and its writer's lock (explorer.schema.dirlock) is gone or
names a process of this host that no longer runs; a writer on another host cannot be checked, so then
the follower only says how long ago the last record came.
"""

from __future__ import annotations

import os
import time

from PySide6 import QtCore

from explorer.gui.jobs import Job, thread_job
from explorer.schema.dirlock import holder_alive
from explorer.schema.recording_index import RecordingIndex

STALL_S = 60.0
POLL_MS = 500
PROGRESS_S = 0.25
YIELD_S = 0.002  # per RecordingIndex.CHECK_EVERY lines read


def scan_job(parent: QtCore.QObject, index: RecordingIndex, final: bool) -> Job:
    """`index.scan(final)` on a helper thread (see the module docstring); not started."""
    job: Job | None = None

    def scan(progress) -> int:
        last = time.monotonic()

        def stop() -> bool:
            nonlocal last
            # a moment without the GIL now and then: else every Qt call of the GUI thread that lets the
            # GIL go waits a whole switch interval to get it back, and a first paint takes 7x as long
            time.sleep(YIELD_S)
            if not job.cancelled and time.monotonic() - last >= PROGRESS_S:
                last = time.monotonic()
                progress(len(index), 0)
            return job.cancelled

        return index.scan(final=final, stop=stop)

    job = thread_job(scan, name="explorer-read-recording", progress=True, parent=parent)
    return job


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
