"""Rank 0 writes records on a helper thread, so training never waits for the disk.

Snapshots are plain host data once made, so the thread only serialises and writes them. A few may
wait in line; when the disk falls further behind, a record is dropped (counted, said once) rather
than holding up training. A write that fails (disk full, directory gone) stops the recording with
one line on stderr; training goes on.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

MAX_PENDING = 4


class BackgroundWriter:
    def __init__(self, writer, max_pending: int = MAX_PENDING):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.dropped = 0
        self.error: str | None = None
        self.write_seconds = 0.0  # smoothed wall time of one write
        self.total_seconds = 0.0  # all writes together
        self.last_bytes = 0
        self._thread = threading.Thread(target=self._run, name="explorer-recorder", daemon=True)
        self._thread.start()

    def submit(self, snap, extra: dict | None) -> bool:
        if self.error is not None:
            return False
        try:
            self._queue.put_nowait((snap, extra))
        except queue.Full:
            if not self.dropped:
                print(
                    f"explorer: the disk is behind; skipping records (first at step {snap.step})",
                    file=sys.stderr,
                )
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            snap, extra = item
            t0 = time.perf_counter()
            before = self.writer.bytes_written
            try:
                self.writer.write(snap, extra=extra)
            except Exception as exc:  # noqa: BLE001 - reported once; training must go on
                self.error = " ".join(f"{type(exc).__name__}: {exc}".split())
                print(f"explorer: recording stopped at step {snap.step}: {self.error}", file=sys.stderr)
                continue
            cost = time.perf_counter() - t0
            self.total_seconds += cost
            self.write_seconds = cost if self.write_seconds == 0.0 else 0.7 * self.write_seconds + 0.3 * cost
            self.last_bytes = self.writer.bytes_written - before

    def drain(self) -> None:
        """Write what is queued and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
