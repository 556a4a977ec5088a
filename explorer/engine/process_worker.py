"""The process relay: a worker (the training run or a comparison) in a child process, behind exactly
the API of the worker thread (engine/worker.py, engine/compare/worker.py).

Why a process: PyTorch holds the GIL for stretches of every op, so a training *thread* in the GUI's
process makes the event loop wait for it (bench/bench_gui.py measured a p99 lag of 36 ms on 2 cores).
A child process has its own interpreter and GIL; the GUI process only receives snapshots.

    parent (the GUI)                                      child (spawned, never forked from Qt)
    play(), configure(), ... --- ("cmd", ...) ------->    relay loop -> an ordinary worker thread
    reader thread -> one-slot mailbox  <-- ("snap", s) -  sender thread <- worker.wait_for()
    latest() takes from the mailbox --- ("credit",) --->  one credit: one snapshot may be sent

`ProcessWorker` is the relay, written once; `ProcessTrainingWorker` (TrainingWorker's API) and
`ProcessCompareWorker` (CompareWorker's API) say what the child runs and what the parent mirrors.
This module imports no torch, not even inside a function: the child's side lives in
engine/relay_child.py, which the parent names by string (engine/spawn.py) and never imports.

Flow control (latest wins, by credits): the child holds at most one credit. It sends its newest
snapshot only while it holds one, and the parent hands the credit back when it *takes* that snapshot;
meanwhile the child's own one-slot mailbox keeps only the newest. So at most one snapshot is in flight
or unread: the parent is never flooded, and the child never sits on a full pipe.

The parent receives on a reader thread rather than in latest(): a snapshot is up to about 1 MB, far
more than a socket buffer, so a poll() followed by recv() on the GUI thread would wait for the child to
write the rest (and the child's writer shares its GIL with training). The reader waits in recv() with
the GIL released; latest() only takes from a mailbox and never blocks.

Snapshots are our own plain dataclasses of numpy arrays, pickled between our own two processes. The
worker's arguments are pickled here into bytes (a test's `base_model`, an nn.Module, pickles through
torch's own reducers, which the caller that made it has imported already) and unpickled in the child.

The child runs at a lower priority (nice +10): on a machine whose cores are busy, the window wins
the CPU when both want it; on an idle machine training still has its core to itself.

Spawning re-imports the main script in the child, so a script that starts a worker must do so under
`if __name__ == "__main__":` (otherwise the child stops at once and the parent reports exit code 1).

If the child dies (an exception that escapes, a crash, a kill), the reader posts a fault snapshot
(state "fault", a Fault of kind "died" with the exit code) and `alive` turns False; `reset()` starts
a new child with the same settings. `close()` asks the child to stop, waits, then terminates and at
last kills it, and reaps it: no zombie is left.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import pickle
import threading
import time
import traceback
import weakref

from explorer.core.cpu_threads import check_threads
from explorer.engine.mailbox import Mailbox
from explorer.engine.requests import RunsRequests, SettingsRequests
from explorer.engine.spawn import spawn
from explorer.schema.compare import CompareSnapshot
from explorer.schema.faults import DIED, Fault
from explorer.schema.settings import TrainSettings
from explorer.schema.snapshot import Snapshot, fault_snapshot

CALL_TIMEOUT_S = 60.0  # save_state / load_state, as in the thread worker
REPLY_MARGIN_S = 10.0  # on top of a call's timeout: the child answers by then even when it gives up
REAP_S = 10.0  # after the pipe closes, how long the child may take to exit before a kill
THREAD_NAME = "peft-explorer-training"  # the reader thread: what tests look for as "an engine thread"
CHILD_MAIN = "explorer.engine.relay_child:main"  # the child's entry point, by name (never imported here)


class _Pending:
    """A call (save_state / load_state) waiting for the child's reply."""

    def __init__(self, what: str):
        self.what = what
        self.done = threading.Event()
        self.ok = False
        self.value = None

    def finish(self, ok: bool, value) -> None:
        self.ok, self.value = ok, value
        self.done.set()


class _Child:
    """One child process, the parent's end of its pipe and the thread that reads from it."""

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.reader: threading.Thread | None = None
        self.send_lock = threading.Lock()
        self.owe_credit = False  # a snapshot was received whose credit is not yet given back
        self.gone = False  # the pipe closed and the process was reaped
        self.replies: dict[int, _Pending] = {}


def _close_at_exit(ref) -> None:
    worker = ref()
    if worker is not None:
        worker.close(2.0)


class ProcessWorker:
    """A worker class (named "module:Class", a WorkerLoop) run in a spawned child, relayed; the
    subclasses give it the API of the worker they run."""

    target = ""  # "module:Class" of the worker the child runs
    thread_name = THREAD_NAME
    died = "the process stopped unexpectedly (exit code {code}); Reset starts it again"
    what = "the engine"

    def __init__(self, *, threads: int | None = None):
        check_threads(threads)  # the caller's ValueError, before any process starts
        self._lock = threading.Lock()
        self._mailbox: Mailbox = Mailbox()
        self._threads = threads
        self._child: _Child | None = None
        self._started = False
        self._closing = False
        self._playing = False
        self._sent = 0  # commands sent; the child reports how many it has handled
        self._last = None  # newest snapshot received (the base of a fault snapshot)
        self._fault: Fault | None = None  # the child died: this fault, until reset
        self._call_ids = itertools.count(1)
        self.snapshots_posted = 0  # as counted in the child
        self.instrument_seconds = 0.0  # time the child spent on snapshots and their parts
        self.restarts = 0  # children started again by reset() after one died

    # --- what the subclasses say ------------------------------------------------------------------
    def _worker_args(self) -> tuple[tuple, dict]:
        """(args, kwargs) of the worker the next child builds."""
        raise NotImplementedError

    def _adopt(self, info: dict, settled: bool) -> None:
        """The parent's mirror of the child's state, from a snapshot's info (under the lock);
        `settled`: every command sent has been handled."""

    def _empty_snapshot(self, fault: Fault):
        """A fault snapshot when no snapshot has arrived yet."""
        raise NotImplementedError

    def _on_restart(self) -> None:
        """Before a new child replaces a dead one (under the lock)."""

    # --- state ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._playing and self.alive

    @property
    def alive(self) -> bool:
        """The child process runs (False before start, after close, and once a death was reported)."""
        child = self._child
        return child is not None and not child.gone

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.proc.pid

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child (paused). It builds its worker and posts a first snapshot at step 0."""
        if self._started:
            return
        self._started = True
        self._spawn()
        atexit.register(_close_at_exit, weakref.ref(self))

    def _spawn(self) -> None:
        payload = pickle.dumps(self._worker_args())
        proc, conn = spawn(CHILD_MAIN, self.target, payload, self._threads, self._sent, name=self.thread_name)
        child = _Child(proc, conn)
        child.reader = threading.Thread(target=self._read, args=(child,), name=self.thread_name, daemon=True)
        self._child = child
        child.reader.start()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to stop and wait for it (up to `timeout`), then terminate, then kill it; the
        process is reaped and the reader thread joined. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        child = self._child
        if child is None:
            return
        self._send(child, ("close", timeout))
        child.reader.join(timeout + 2.0)  # it ends once the child has exited and been reaped
        for stop, wait in ((child.proc.terminate, 3.0), (child.proc.kill, REAP_S + 2.0)):
            if not child.reader.is_alive():
                break
            try:
                stop()
            except (OSError, ValueError):
                pass
            child.reader.join(wait)
        if child.proc.exitcode is None:  # the reader could not reap it: do it here
            child.proc.join(1.0)
        child.conn.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- commands ---------------------------------------------------------------------------------
    def _send(self, child: _Child | None, msg) -> bool:
        if child is None or child.gone:
            return False
        try:
            with child.send_lock:
                child.conn.send(msg)
            return True
        except (OSError, ValueError, EOFError):  # the child is gone: the reader reports it
            return False

    def _command(self, name: str, *args, **kwargs) -> None:
        """Call worker.name(*args, **kwargs) in the child (in order, without waiting)."""
        if self._fault is not None and name in ("play", "step", "request_snapshot", "sample_now"):
            self._mailbox.put(self._fault_snapshot(self._fault))  # as the thread worker repeats its fault
            return
        with self._lock:
            self._sent += 1
            msg = ("cmd", self._sent, name, args, kwargs)
        self._send(self._child, msg)

    def play(self) -> None:
        self._command("play")

    def pause(self) -> None:
        self._command("pause")

    def step(self, n: int = 1) -> None:
        """Pause (if playing), do `n` steps (rounds), then post a snapshot."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"step n={n!r} must be a whole number of at least 1")
        self._command("step", n)

    def request_snapshot(self, *parts) -> None:
        self._command("request_snapshot", *parts)

    def reset(self) -> None:
        """Back to step 0 from the frozen base; a child that died is replaced by a new one with the
        same settings."""
        child = self._child
        if child is not None and child.gone and not self._closing:
            self._restart(child)
        else:
            self._command("reset")

    def _call(self, what: str, method: str, args: tuple, timeout: float):
        """worker.method(*args, timeout) in the child; its result, or ValueError (one line)."""
        child = self._child
        pending = _Pending(what)
        call_id = next(self._call_ids)
        with self._lock:
            usable = child is not None and not child.gone and not self._closing
            if usable:
                child.replies[call_id] = pending
        if not usable or not self._send(child, ("call", call_id, method, args, timeout)):
            with self._lock:
                if child is not None:
                    child.replies.pop(call_id, None)
            raise ValueError(f"cannot {what}: {self.what} is not running")
        if not pending.done.wait(timeout + REPLY_MARGIN_S):
            with self._lock:
                child.replies.pop(call_id, None)
            raise ValueError(f"cannot {what}: the process did not answer within {timeout + REPLY_MARGIN_S:g} s")
        if not pending.ok:
            raise ValueError(pending.value)
        return pending.value

    # --- snapshots ----------------------------------------------------------------------------------
    def latest(self):
        """The newest snapshot not yet taken, or None. Never blocks."""
        snap = self._mailbox.take()
        if snap is not None:
            self._give_credit()
        return snap

    def wait_for(self, predicate=lambda s: True, timeout: float = 30.0):
        """Take snapshots until one satisfies `predicate` (tests, scripts; blocks the caller only)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            snap = self._mailbox.wait(max(0.0, left)) if left > 0 else None
            if snap is None:
                raise TimeoutError(f"no matching snapshot within {timeout:g} s")
            self._give_credit()
            if predicate(snap):
                return snap

    def _give_credit(self) -> None:
        child = self._child
        if child is None:
            return
        with self._lock:
            owe, child.owe_credit = child.owe_credit, False
        if owe:
            self._send(child, ("credit",))

    # --- the reader thread --------------------------------------------------------------------------
    def _read(self, child: _Child) -> None:
        while True:
            try:
                msg = child.conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # noqa: BLE001 - a message that does not unpickle: say so, read on
                traceback.print_exc()
                continue
            if msg[0] == "snap":
                self._received(child, msg[1], msg[2])
            elif msg[0] == "reply":
                with self._lock:
                    pending = child.replies.pop(msg[1], None)
                if pending is not None:
                    pending.finish(msg[2], msg[3])
        self._gone(child)

    def _received(self, child: _Child, snap, info: dict) -> None:
        with self._lock:
            if child is not self._child:
                return
            self._last = snap
            self._playing = info["running"]
            self.snapshots_posted = info["posted"]
            self.instrument_seconds = info["instrument_seconds"]
            self._adopt(info, settled=info["seq"] == self._sent)
            child.owe_credit = True  # before the put: whoever takes it gives it back
        self._mailbox.put(snap)

    def _gone(self, child: _Child) -> None:
        """The child's end of the pipe closed: reap the process (killing it if it lingers), fail the
        calls waiting on it, and, unless we are closing, post a fault snapshot."""
        proc = child.proc
        proc.join(REAP_S)
        if proc.exitcode is None:
            try:
                proc.kill()
            except (OSError, ValueError):
                pass
            proc.join(REAP_S)
        code = proc.exitcode
        with self._lock:
            child.gone = True
            pending = list(child.replies.values())
            child.replies.clear()
            report = child is self._child and not self._closing
            if report:
                self._playing = False
                self._fault = Fault(DIED, self.died.format(code="unknown" if code is None else code))
        for p in pending:
            p.finish(False, f"cannot {p.what}: {self.what} stopped")
        if report:
            self._mailbox.put(self._fault_snapshot(self._fault))

    def _fault_snapshot(self, fault: Fault):
        last = self._last
        if last is None:
            return self._empty_snapshot(fault)
        changes = {"steps_per_second": 0.0} if isinstance(last, Snapshot) else {}
        return dataclasses.replace(last, state="fault", fault=fault, **changes)

    def _restart(self, old: _Child) -> None:
        old.reader.join(REAP_S)
        old.conn.close()
        with self._lock:
            self._on_restart()
            self._fault = None
            self._last = None
            self._playing = False
        self.restarts += 1
        self._spawn()


class ProcessTrainingWorker(SettingsRequests, ProcessWorker):
    """TrainingWorker's API with the trainer in a spawned child process (see the module docstring)."""

    target = "explorer.engine.worker:TrainingWorker"
    died = "the training process stopped unexpectedly (exit code {code}); Reset starts it again"
    what = "the training engine"

    def __init__(
        self,
        settings: TrainSettings | None = None,
        *,
        base_model=None,
        threads: int | None = None,
        instrument: bool = True,
    ):
        """`base_model`: a model to adapt instead of the shipped one (tests; pickled to the child);
        `threads`: torch threads in the child (1 .. 4 x cores; default: tuned in the child's training
        thread, see TrainingWorker); `instrument=False`: no snapshots while playing (benchmarks)."""
        self._init_settings(settings)
        super().__init__(threads=threads)
        self._base_model = base_model
        self._instrument = instrument

    def _worker_args(self):
        return (self._running_settings,), {"base_model": self._base_model, "instrument": self._instrument}

    def _adopt(self, info: dict, settled: bool) -> None:
        self._running_settings = info["settings"]
        if settled:  # no configure in flight: adopt the child's view (a refused change is undone there)
            self._requested = info["requested"]

    def _on_restart(self) -> None:
        self._running_settings = self._requested

    def _empty_snapshot(self, fault: Fault) -> Snapshot:
        return fault_snapshot(self._running_settings.to_dict(), fault)

    def sample_now(self) -> None:
        """Generate samples at the current step now (TrainingWorker.sample_now, in the child)."""
        self._command("sample_now")

    def _queue_configure(self, changes: dict):
        self._sent += 1  # under the lock: a snapshot arriving meanwhile knows this change is in flight
        msg = ("cmd", self._sent, "configure", (), changes)
        child = self._child
        return lambda: self._send(child, msg)

    def save_state(self, path, timeout: float = CALL_TIMEOUT_S) -> None:
        """Write the trained state to `path` (in the child, between two steps); returns when written.
        ValueError (the child's one line) when it cannot be."""
        self._call("save the state", "save_state", (str(path),), timeout)

    def load_state(self, path, timeout: float = CALL_TIMEOUT_S) -> TrainSettings:
        """Restore a saved state in the child; training pauses there and a snapshot follows. Returns
        the settings now in force; ValueError (one line) changes nothing."""
        settings = self._call("open the state", "load_state", (str(path),), timeout)
        with self._lock:
            self._running_settings = self._requested = settings
            self._playing = False
        return settings


class ProcessCompareWorker(RunsRequests, ProcessWorker):
    """CompareWorker's API with the runs in a spawned child process, so a comparison's training never
    holds the GUI's GIL either."""

    target = "explorer.engine.compare.worker:CompareWorker"
    thread_name = "peft-explorer-compare"
    died = "the comparison's process stopped unexpectedly (exit code {code}); Reset starts it again"
    what = "the comparison"

    def __init__(self, base_settings: TrainSettings, specs: list, *, base_model=None, threads: int | None = None):
        """As CompareWorker: the specs are checked here (ValueError naming the run and setting)."""
        self._init_runs(base_settings, specs)
        super().__init__(threads=threads)
        self._base_model = base_model

    def _worker_args(self):
        with self._lock:
            return (self._base, list(self._specs)), {"base_model": self._base_model}

    def _empty_snapshot(self, fault: Fault) -> CompareSnapshot:
        return CompareSnapshot(
            step=0, segment=0, time=0.0, runs=[], scenario=self._base.scenario, state="fault", fault=fault
        )
