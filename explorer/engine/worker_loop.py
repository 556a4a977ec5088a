"""The background loop both engines run in: commands in, snapshots out, nobody waits for anybody.

`WorkerLoop` is written once and specialised by the training run (engine/worker.py, TrainingWorker)
and the comparison (engine/compare/worker.py, CompareWorker) through a few hooks, as PEFT's tuners
specialise BaseTuner:

    _build()             make the model(s) in the thread, post a first snapshot (or a START fault)
    _ready()             something was built
    _advance()           one step (one round of a comparison); False when it stopped on a fault
    _pace()              seconds to wait before the next step (the training speed), default 0
    _make_snapshot(**p)  the snapshot, with the parts `p` asks for (held-out loss, analyses, ...)
    _after_put(snap, **p)  work that may follow a posted snapshot (the lm scenario's samples)
    _empty_snapshot(f)   a snapshot of fault `f` when nothing could be built
    _on_play / _on_reset / _on_steps_done / _post_fault / _handle_other / _teardown

The caller (the GUI thread, a relay in a child process, a test) calls `play`, `pause`, `step`,
`reset`, ..., which only queue a command and wake the thread; `latest()` takes the newest snapshot
from a one-slot mailbox and never blocks. Snapshots are posted at most `snapshot_hz` per second and
never more than `snapshot_share` (SNAPSHOT_SHARE unless an engine says otherwise) of the wall time (a snapshot that cost c seconds buys c / share of
quiet time, see Cadence); every other instrumentation task keeps a Cadence of its own.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections import deque

import torch

from explorer.core.cpu_threads import check_threads
from explorer.engine.mailbox import Mailbox
from explorer.engine.spawn import one_line
from explorer.schema.faults import ERROR, Fault

SNAPSHOT_SHARE = 0.025
CALL_TIMEOUT_S = 60.0  # a call into the thread (save_state / load_state): answered between two steps


class Cadence:
    """When an instrumentation task is next due: at least `interval` apart, and at most `share`
    of the wall time (by its measured cost, smoothed)."""

    def __init__(self, interval: float, share: float):
        self.interval, self.share = interval, share
        self.cost = 0.0
        self.next = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next

    def done(self, started: float, cost: float) -> None:
        self.cost = cost if self.cost == 0.0 else 0.7 * self.cost + 0.3 * cost
        # max: a snapshot posted off-schedule (play, pause, a command) never shortens the quiet time
        self.next = max(self.next, started + cost + max(self.interval, self.cost / self.share))

    def timed(self, fn, *args):
        """fn(*args), its cost noted."""
        t0 = time.perf_counter()
        out = fn(*args)
        self.done(t0, time.perf_counter() - t0)
        return out


class Call:
    """A function to run in the worker thread between two steps; the caller waits for `done`.
    A call the caller gave up on before it started is skipped (it never runs late)."""

    def __init__(self, fn):
        self.fn = fn
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.started = self.cancelled = False
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.lock:
            if self.cancelled:
                return
            self.started = True
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        finally:
            self.done.set()

    def abandon(self, message: str) -> None:
        with self.lock:
            if not self.started:
                self.cancelled = True
                self.error = ValueError(message)
                self.done.set()


@functools.cache
def warm_lazy_imports() -> None:
    """One optimizer step on a throwaway parameter, once, in the caller's thread. torch finishes some
    imports lazily on the first step; done first inside the training thread while the GUI thread runs
    Qt's event loop, that was seen to stall (a window test hung in that import). It costs milliseconds."""
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    torch.optim.AdamW([p]).step()


def check_steps(n) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"step n={n!r} must be a whole number of at least 1")


class WorkerLoop:
    """The lifecycle, the command queue, the mailbox, the snapshot cadence, calls into the thread and
    shutdown, for one engine (see the module docstring for the hooks)."""

    thread_name = "peft-explorer-training"
    what = "the training engine"  # in messages: "cannot save the state: <what> is not running"
    FULL: dict = {}  # the parts of a complete snapshot (after pause, steps, reset)
    snapshot_share = SNAPSHOT_SHARE  # the most of the wall time snapshots may take (see Cadence)

    def __init__(self, *, snapshot_hz: float, threads: int | None = None, instrument: bool = True):
        check_threads(threads)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._mailbox: Mailbox = Mailbox()
        self._commands: deque = deque()
        self._playing = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._threads = threads
        self._instrument = instrument
        self._fault: Fault | None = None
        self._steps_left = 0
        self._snap = Cadence(1.0 / snapshot_hz, self.snapshot_share)
        self.snapshots_posted = 0
        self.instrument_seconds = 0.0  # time spent on snapshots and their parts while playing

    # --- the caller's side --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._playing

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (paused). It builds the engine and posts a first snapshot at step 0."""
        if self._thread is not None:
            return
        warm_lazy_imports()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=False)
        self._thread.start()
        ref = weakref.ref(self)
        try:  # close before the interpreter joins non-daemon threads (what concurrent.futures does)
            threading._register_atexit(lambda: (w := ref()) is not None and w.close(2.0))
        except (AttributeError, RuntimeError):  # pragma: no cover
            pass

    def _command(self, *cmd) -> None:
        with self._lock:
            self._commands.append(cmd)
        self._wake.set()

    def play(self) -> None:
        self._command("play")

    def pause(self) -> None:
        self._command("pause")

    def step(self, n: int = 1) -> None:
        """Pause (if playing), do `n` steps (rounds), then post a snapshot."""
        check_steps(n)
        self._command("step", n)

    def reset(self) -> None:
        self._command("reset")

    def request_snapshot(self, *parts) -> None:
        """Post a snapshot now (a comparison: `request_snapshot(True)` with the analyses)."""
        self._command("request_snapshot", *parts)

    def _call(self, what: str, fn, timeout: float = CALL_TIMEOUT_S):
        """fn() in the worker thread between two steps; its result, or ValueError (one line)."""
        if self._thread is not None and self._thread is threading.current_thread():
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                raise ValueError(one_line(exc)) from None
        if not self.alive or self._closing:
            raise ValueError(f"cannot {what}: {self.what} is not running")
        call = Call(fn)
        self._command("call", call)
        deadline = time.monotonic() + timeout
        while not call.done.wait(0.05):
            if not self.alive:
                call.abandon(f"cannot {what}: {self.what} stopped")
            elif time.monotonic() >= deadline:
                call.abandon(f"cannot {what}: {self.what} did not answer within {timeout:g} s (nothing was changed)")
        if call.error is not None:
            raise ValueError(one_line(call.error)) from None
        return call.result

    def relay_info(self) -> dict:
        """What the process relay (engine/relay_child.py) sends beside each snapshot for the parent's
        mirror of this worker."""
        return {"running": self.running, "posted": self.snapshots_posted, "instrument_seconds": self.instrument_seconds}

    def latest(self):
        """The newest snapshot not yet taken, or None. Never blocks."""
        return self._mailbox.take()

    def wait_for(self, predicate=lambda s: True, timeout: float = 30.0):
        """Take snapshots until one satisfies `predicate` (tests, scripts; blocks the caller only)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            snap = self._mailbox.wait(left) if left > 0 else None
            if snap is None:
                raise TimeoutError(f"no matching snapshot within {timeout:g} s")
            if predicate(snap):
                return snap

    def close(self, timeout: float = 10.0) -> None:
        """Stop and join the thread. Idempotent."""
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        # Torch's thread count is each engine's to choose in this thread (OpenMP keeps one per thread)
        # once it has built its model: Trainer / CompareRunner.use_threads.
        torch.set_grad_enabled(True)
        self._build()
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    if self._closing:
                        return
                    commands = list(self._commands)
                    self._commands.clear()
                for cmd in commands:
                    self._handle(cmd)
                if not self._ready() or not (self._playing or self._steps_left):
                    self._wake.wait()
                    continue
                wait = self._pace()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                if not self._advance():
                    continue
                if self._steps_left:
                    self._steps_left -= 1
                    if not self._steps_left and not self._playing:
                        self._on_steps_done()
                        continue
                if self._playing and self._instrument:
                    self._post_if_due()
        finally:
            self._teardown()
            with self._lock:
                left = [c[1] for c in self._commands if c[0] == "call"]
            for call in left:
                call.abandon(f"{self.what} stopped")

    def _handle(self, cmd) -> None:
        kind = cmd[0]
        if kind == "call":
            return cmd[1].run()
        if kind == "reset":
            return self._on_reset() if self._ready() else self._build()
        if kind in ("play", "step", "request_snapshot") and not self._ready():
            return self._repost_fault()
        if kind == "play":
            self._on_play()
        elif kind == "pause":
            if self._playing:
                self._playing = False
                if self._ready():
                    self._on_pause()
        elif kind == "step":
            self._playing = False
            self._fault = None
            self._steps_left += cmd[1]
            self._on_step()
        elif kind == "request_snapshot":
            self._on_snapshot(*cmd[1:])
        else:
            self._handle_other(cmd)

    # --- posting ------------------------------------------------------------------------------
    def _post(self, state: str | None = None, **parts) -> None:
        """Make a snapshot with `parts`, tag it with the state (and the fault, in state "fault") and
        post it. A snapshot that fails stops the engine with that fault."""
        started = time.perf_counter()
        try:
            try:
                snap = self._make_snapshot(**parts)  # times its own parts (self._snap for the snapshot)
            except Exception as exc:
                if state == "fault":  # the fault snapshot itself failed: a bare one says why
                    self._put(self._empty_snapshot(self._fault))
                    return
                return self._stop_on(
                    Fault(ERROR, f"snapshot failed at step {self._step()}: {type(exc).__name__}: {exc}; paused")
                )
            snap.state = state or ("running" if self._playing else "paused")
            snap.fault = self._fault if snap.state == "fault" else None
            self._put(snap)
            self._after_put(snap, **parts)
        finally:
            if self._playing:
                self.instrument_seconds += time.perf_counter() - started

    def _post_full(self, state: str | None = None) -> None:
        self._post(state, **self.FULL)

    def _post_if_due(self) -> None:
        now = time.perf_counter()
        if self._snap.due(now):
            self._post(**self._due_parts(now))

    def _stop_on(self, fault: Fault) -> None:
        """Pause on `fault` and post a snapshot that says so."""
        self._playing = False
        self._steps_left = 0
        self._fault = fault
        if not self._ready():
            self._put(self._empty_snapshot(fault))
            return
        self._post_fault()

    def _repost_fault(self) -> None:
        if self._fault is not None:
            self._stop_on(self._fault)

    def _put(self, snap) -> None:
        self.snapshots_posted += 1
        self._mailbox.put(snap)

    # --- hooks (the defaults suit both engines) --------------------------------------------------
    def _pace(self) -> float:
        return 0.0

    def _on_play(self) -> None:
        self._fault = None
        self._playing = True
        self._steps_left = 0
        self._post()

    def _on_pause(self) -> None:
        self._post_full()

    def _on_step(self) -> None:
        pass

    def _on_steps_done(self) -> None:
        self._post_full()

    def _on_snapshot(self, *args) -> None:
        self._post()

    def _post_fault(self) -> None:
        self._post(state="fault")

    def _after_put(self, snap, **parts) -> None:
        pass

    def _due_parts(self, now: float) -> dict:
        return {}

    def _handle_other(self, cmd) -> None:
        raise ValueError(f"unknown command {cmd[0]!r}")

    def _teardown(self) -> None:
        pass

    # to write in each engine
    def _build(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _advance(self) -> bool:
        raise NotImplementedError

    def _step(self) -> int:
        raise NotImplementedError

    def _on_reset(self) -> None:
        raise NotImplementedError

    def _make_snapshot(self, **parts):
        raise NotImplementedError

    def _empty_snapshot(self, fault: Fault | None):
        raise NotImplementedError
