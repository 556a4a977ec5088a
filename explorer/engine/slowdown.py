"""Why training got slow, when it can be known: the training thread waited for a CPU.

The trainer tells a SlowWatch how long each step took. Every WINDOW_S of stepping it closes a window:
the window's rate (steps per second of step time, so pauses and snapshots do not count) against the
best window of the last MEMORY_S ("what this machine did a moment ago"). Under SLOW_FRACTION of it
the watch looks for the cause: the share of the window the training thread spent runnable but waiting
for a CPU (Linux's /proc/thread-self/schedstat), and the load average. Plain Python, no torch and no
Qt: the GUI only shows `reason`, carried in the snapshot (`Snapshot.slow_reason`).
"""

from __future__ import annotations

import collections
import os
import time

WINDOW_S = 0.5  # step time per measurement window
MEMORY_S = 60.0  # the best window this long ago still counts as "a moment ago"
SLOW_FRACTION = 0.5  # "far below": under half the recent best rate
WAITED_SHARE = 0.25  # waiting this share of the time for a CPU means others are using it
BUSY = "other processes are using the CPU"


def read_thread_sched() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of the calling thread, or None where
    the kernel does not say (not Linux, or no scheduler statistics)."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            ran, waited = fh.read().split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9
    except (OSError, ValueError):
        return None


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def slow_reason(rate: float, best: float, waited_share: float | None, load: float | None, cores: int) -> str | None:
    """The reason for a window's `rate` (steps/s) against the recent `best`, or None when it is not far
    below it or the cause is not known. `waited_share`: the share of the window the training thread
    waited for a CPU (None: not measured); `load`: the 1-minute load average (None: unknown)."""
    if best <= 0 or rate >= SLOW_FRACTION * best:
        return None
    if waited_share is not None:
        crowded = waited_share >= WAITED_SHARE
    else:  # without the thread's own figures, only a queue longer than the cores says it
        crowded = load is not None and load > cores
    if not crowded:
        return None
    plural = "s" if cores != 1 else ""
    load_text = f"load {load:.1f} on {cores} core{plural}" if load is not None else f"{cores} core{plural}"
    return f"{BUSY} ({load_text})"


class SlowWatch:
    """Fed the duration of every step (from the thread that trains); `reason` holds the latest
    verdict: a sentence, or None while the rate is normal or the cause unknown."""

    def __init__(self, cores: int | None = None, *, sched=read_thread_sched, load=_load_average, clock=time.monotonic):
        self.cores = cores or (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
        self._sched, self._load, self._clock = sched, load, clock
        self.reason: str | None = None
        self._best: collections.deque = collections.deque()  # (time, rate) of recent windows
        self._steps = 0
        self._seconds = 0.0
        self._start = None  # schedstat figures at the window's start

    def reset(self) -> None:
        """Forget the recent rates (the work changed: other settings, a new segment)."""
        self._best.clear()
        self._steps, self._seconds, self._start = 0, 0.0, None
        self.reason = None

    def step_done(self, seconds: float) -> None:
        if self._start is None:
            self._start = self._sched()
        self._steps += 1
        self._seconds += max(0.0, seconds)
        if self._seconds >= WINDOW_S:
            self.window_done()

    def window_done(self) -> None:
        end = self._sched()
        waited_share = None
        if self._start is not None and end is not None:
            ran, waited = end[0] - self._start[0], end[1] - self._start[1]
            if ran + waited > 0:
                waited_share = waited / (ran + waited)
        rate = self._steps / self._seconds if self._seconds > 0 else 0.0
        self.judge(rate, waited_share, self._load())
        self._steps, self._seconds, self._start = 0, 0.0, end

    def judge(self, rate: float, waited_share: float | None, load: float | None) -> str | None:
        """One window's figures in; the verdict out (also kept in `reason`)."""
        now = self._clock()
        while self._best and now - self._best[0][0] > MEMORY_S:
            self._best.popleft()
        best = max((r for _, r in self._best), default=0.0)
        self.reason = slow_reason(rate, best, waited_share, load, self.cores)
        self._best.append((now, rate))
        return self.reason
