"""Training in a child process, behind exactly the API of the training thread (engine/worker.py).

Why a process: PyTorch holds the GIL for stretches of every op, so a training *thread* in the GUI's
process makes the event loop wait for it (bench/bench_gui.py measured a p99 lag of 36 ms on 2 cores).
A child process has its own interpreter and GIL; the GUI process only receives snapshots.

    parent (the GUI)                                      child (spawned, never forked from Qt)
    play(), configure(), ... --- ("play",) ...  ------->  relay loop -> an ordinary TrainingWorker
    reader thread -> one-slot mailbox  <-- ("snap", s) -  sender thread <- TrainingWorker.wait_for()
    latest() takes from the mailbox --- ("credit",) --->  one credit: one snapshot may be sent

Flow control (latest wins, by credits): the child holds at most one credit. It sends its newest
snapshot only while it holds one, and the parent hands the credit back when it *takes* that snapshot;
meanwhile the child's own one-slot mailbox keeps only the newest. So at most one snapshot is in flight
or unread: the parent is never flooded, and the child never sits on a full pipe.

The parent receives on a reader thread rather than in latest(): a snapshot is up to about 1 MB, far
more than a socket buffer, so a poll() followed by recv() on the GUI thread would wait for the child to
write the rest (and the child's writer shares its GIL with training). The reader waits in recv() with
the GIL released; latest() only takes from a mailbox and never blocks.

Snapshots are our own plain dataclasses of numpy arrays, pickled between our own two processes. The
parent never imports torch for this (a `base_model` given as an nn.Module is serialised with
torch.save, which the caller has imported already).

The child runs at a lower priority (nice +10): on a machine whose cores are busy, the window wins
the CPU when both want it; on an idle machine training still has its core to itself.

Spawning re-imports the main script in the child, so a script that starts a worker must do so under
`if __name__ == "__main__":` (otherwise the child stops at once and the parent reports exit code 1).

If the child dies (an exception that escapes, a crash, a kill), the reader posts a fault snapshot
(state "fault", with the exit code) and `alive` turns False; `reset()` starts a new child with the
same settings. `close()` asks the child to stop, waits, then terminates and at last kills it, and
reaps it: no zombie is left.
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import weakref

from explorer.core.cpu_threads import check_threads
from explorer.engine.mailbox import Mailbox
from explorer.schema.faults import FAULT_KINDS
from explorer.schema.settings import TrainSettings, changed_kinds, validate
from explorer.schema.snapshot import Snapshot

CALL_TIMEOUT_S = 60.0  # save_state / load_state, as in the thread worker
REPLY_MARGIN_S = 10.0  # on top of a call's timeout: the child answers by then even when it gives up
REAP_S = 10.0  # after the pipe closes, how long the child may take to exit before a kill
POLL_S = 0.5  # the child checks its training thread this often
THREAD_NAME = "peft-explorer-training"  # the reader thread: what tests look for as "an engine thread"
CHILD_NICE = 10  # the child's niceness: on a busy machine (other work on the cores) the GUI
# wins the CPU when both want it; an idle core still trains at full speed
EXIT_THREAD_DIED = 70  # the child's exit code when its training thread stopped on its own
DIED = "the training process stopped unexpectedly (exit code {code}); Reset starts it again"


class _Pending:
    """A save_state / load_state call waiting for the child's reply."""

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


class ProcessTrainingWorker:
    """TrainingWorker's API with the trainer in a spawned child process (see the module docstring)."""

    def __init__(
        self,
        settings: TrainSettings | None = None,
        *,
        base_model=None,
        threads: int | None = None,
        instrument: bool = True,
    ):
        """`base_model`: a model to adapt instead of the shipped one (tests; sent to the child with
        torch.save); `threads`: torch threads in the child (1 .. 4 x cores; default: tuned in the child's
        training thread, see TrainingWorker); `instrument=False`: no snapshots while playing."""
        settings = settings if settings is not None else TrainSettings()
        validate(settings)
        check_threads(threads)
        self._lock = threading.Lock()
        self._mailbox: Mailbox[Snapshot] = Mailbox()
        self._running_settings = settings  # what the child's trainer runs, as last reported
        self._requested = settings  # with the changes not yet applied
        self._configure_seq = 0  # configure commands sent; the child reports the last it handled
        self._base_model = base_model
        self._model_blob: bytes | None = None
        self._threads = threads
        self._instrument = instrument
        self._child: _Child | None = None
        self._started = False
        self._closing = False
        self._playing = False
        self._last: Snapshot | None = None  # newest snapshot received (the base of a fault snapshot)
        self._fault: str | None = None  # the child died: this message, until reset
        self._call_ids = itertools.count(1)
        self.snapshots_posted = 0  # as counted in the child
        self.instrument_seconds = 0.0  # time the child spent on snapshots, evaluation, samples
        self.restarts = 0  # children started again by reset() after one died

    # --- state ------------------------------------------------------------------------------------
    @property
    def settings(self) -> TrainSettings:
        with self._lock:
            return self._running_settings

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
        """Start the child (paused). It builds the trainer and posts a first snapshot at step 0."""
        if self._started:
            return
        self._started = True
        self._spawn(self._running_settings)
        atexit.register(_close_at_exit, weakref.ref(self))

    def _spawn(self, settings: TrainSettings) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork: the GUI process has Qt threads
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_child_main,
            name=THREAD_NAME,
            daemon=True,
            args=(child_conn, settings, self._model_bytes(), self._threads, self._instrument, self._configure_seq),
        )
        try:
            proc.start()
        finally:
            child_conn.close()  # so the parent sees end-of-file when the child goes
        child = _Child(proc, parent_conn)
        child.reader = threading.Thread(target=self._read, args=(child,), name=THREAD_NAME, daemon=True)
        self._child = child
        child.reader.start()

    def _model_bytes(self) -> bytes | None:
        if self._base_model is None:
            return None
        if self._model_blob is None:
            import torch

            buf = io.BytesIO()
            torch.save(self._base_model, buf)
            self._model_blob = buf.getvalue()
        return self._model_blob

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

    def _command(self, *cmd) -> None:
        if self._fault is not None and cmd[0] in ("play", "step", "snapshot"):
            self._mailbox.put(self._fault_snapshot(self._fault))  # as the thread worker repeats its fault
            return
        self._send(self._child, cmd)

    def play(self) -> None:
        self._command("play")

    def pause(self) -> None:
        self._command("pause")

    def step(self, n: int = 1) -> None:
        """Pause (if playing), do `n` steps, then post a snapshot."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"step n={n!r} must be a whole number of at least 1")
        self._command("step", n)

    def reset(self) -> None:
        """Restart the adapters from the frozen base; a child that died is replaced by a new one with
        the same settings."""
        child = self._child
        if child is not None and child.gone and not self._closing:
            self._restart(child)
        else:
            self._command("reset")

    def request_snapshot(self) -> None:
        self._command("snapshot")

    def inject_fault(self, kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault={kind!r} is unknown: allowed {', '.join(FAULT_KINDS)}")
        self._command("fault", kind)

    def configure(self, **changes) -> dict[str, str]:
        """Validate here (ValueError naming the setting), apply in the child before its next step.
        Returns {setting: 'hot'|'cold'} for the settings that change."""
        with self._lock:
            new = self._requested.with_changes(**changes)
            kinds = changed_kinds(self._requested, new)
            if kinds:
                self._requested = new
                self._configure_seq += 1
                msg = ("configure", self._configure_seq, {k: getattr(new, k) for k in kinds})
        if kinds:
            self._send(self._child, msg)
        return kinds

    def save_state(self, path, timeout: float = CALL_TIMEOUT_S) -> None:
        """Write the trained state to `path` (in the child, between two steps); returns when written.
        ValueError (the child's one line) when it cannot be."""
        self._call("save the state", "save_state", str(path), timeout)

    def load_state(self, path, timeout: float = CALL_TIMEOUT_S) -> TrainSettings:
        """Restore a saved state in the child; training pauses there and a snapshot follows. Returns
        the settings now in force; ValueError (one line) changes nothing."""
        settings = self._call("open the state", "load_state", str(path), timeout)
        with self._lock:
            self._running_settings = self._requested = settings
            self._playing = False
        return settings

    def _call(self, what: str, method: str, path: str, timeout: float):
        child = self._child
        pending = _Pending(what)
        call_id = next(self._call_ids)
        with self._lock:
            usable = child is not None and not child.gone and not self._closing
            if usable:
                child.replies[call_id] = pending
        if not usable or not self._send(child, ("call", call_id, method, path, timeout)):
            with self._lock:
                if child is not None:
                    child.replies.pop(call_id, None)
            raise ValueError(f"cannot {what}: the training engine is not running")
        if not pending.done.wait(timeout + REPLY_MARGIN_S):
            with self._lock:
                child.replies.pop(call_id, None)
            raise ValueError(
                f"cannot {what}: the training process did not answer within {timeout + REPLY_MARGIN_S:g} s"
            )
        if not pending.ok:
            raise ValueError(pending.value)
        return pending.value

    # --- snapshots ----------------------------------------------------------------------------------
    def latest(self) -> Snapshot | None:
        """The newest snapshot not yet taken, or None. Never blocks."""
        snap = self._mailbox.take()
        if snap is not None:
            self._give_credit()
        return snap

    def wait_for(self, predicate=lambda s: True, timeout: float = 30.0) -> Snapshot:
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

    def _received(self, child: _Child, snap: Snapshot, info: dict) -> None:
        with self._lock:
            if child is not self._child:
                return
            self._last = snap
            self._running_settings = info["settings"]
            if info["seq"] == self._configure_seq:  # no configure in flight: adopt the child's view
                self._requested = info["requested"]
            self._playing = info["running"]
            self.snapshots_posted = info["posted"]
            self.instrument_seconds = info["instrument_seconds"]
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
                self._fault = DIED.format(code="unknown" if code is None else code)
        for p in pending:
            p.finish(False, f"cannot {p.what}: the training engine stopped")
        if report:
            self._mailbox.put(self._fault_snapshot(self._fault))

    def _fault_snapshot(self, message: str) -> Snapshot:
        last = self._last
        if last is not None:
            return dataclasses.replace(last, state="fault", fault=message, steps_per_second=0.0)
        s = self._running_settings
        return Snapshot(
            step=0,
            time=0.0,
            segment=0,
            loss=None,
            eval_loss=None,
            lr=float(s.lr),
            steps_per_second=0.0,
            device="",
            memory_bytes=0,
            settings=s.to_dict(),
            state="fault",
            fault=message,
        )

    def _restart(self, old: _Child) -> None:
        old.reader.join(REAP_S)
        old.conn.close()
        with self._lock:
            settings = self._running_settings = self._requested
            self._fault = None
            self._last = None
            self._playing = False
        self.restarts += 1
        self._spawn(settings)


# --- the child process ----------------------------------------------------------------------------
def _child_main(
    conn, settings: TrainSettings, model_blob: bytes | None, threads: int | None, instrument: bool, seq: int
) -> None:
    """The child's entry point: an ordinary TrainingWorker, relayed over `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group; the parent closes us
    import torch

    from explorer.engine.worker import TrainingWorker

    try:
        os.nice(CHILD_NICE)  # when the machine is busy, the window goes first
    except (AttributeError, OSError):  # pragma: no cover - no nice on this platform
        pass
    # The thread count is chosen (or `threads` applied) by the worker in its training thread: OpenMP
    # keeps one per thread, and the default depends on the model the trainer builds there.
    base_model = torch.load(io.BytesIO(model_blob), weights_only=False) if model_blob is not None else None
    worker = TrainingWorker(settings, base_model=base_model, threads=threads, instrument=instrument)
    code = _Relay(conn, worker, seq).run()
    # The worker is closed and joined, the pipe closed: skip the interpreter's teardown (torch's takes
    # most of a second), as multiprocessing's forked children do.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Relay:
    """In the child: commands from the pipe to the worker (main thread), snapshots from the worker to
    the pipe under credits (sender thread), save/load calls on threads of their own."""

    def __init__(self, conn, worker, seq: int):
        self.conn, self.worker = conn, worker
        self.send_lock = threading.Lock()
        self.credit = threading.Event()
        self.credit.set()  # the parent starts out owing us nothing
        self.stop = threading.Event()
        self.seq_lock = threading.Lock()
        self.seq = seq

    def send(self, msg) -> None:
        with self.send_lock:
            self.conn.send(msg)

    def run(self) -> int:
        w = self.worker
        w.start()
        sender = threading.Thread(target=self._send_snapshots, name="peft-explorer-sender", daemon=True)
        sender.start()
        code, close_timeout = 0, 10.0
        try:
            while True:
                if not self.conn.poll(POLL_S):
                    if not w.alive:
                        print("peft-explorer: the training thread stopped on its own", file=sys.stderr)
                        code = EXIT_THREAD_DIED
                        break
                    continue
                msg = self.conn.recv()
                if msg[0] == "close":
                    close_timeout = msg[1]
                    break
                self._handle(msg)
        except (EOFError, OSError):  # the parent is gone
            pass
        finally:
            self.stop.set()
            self.credit.set()
            w.close(close_timeout)
            sender.join(POLL_S * 4)
            self.conn.close()
        return code

    def _handle(self, msg) -> None:
        kind, w = msg[0], self.worker
        if kind == "credit":
            self.credit.set()
        elif kind == "play":
            w.play()
        elif kind == "pause":
            w.pause()
        elif kind == "step":
            w.step(msg[1])
        elif kind == "reset":
            w.reset()
        elif kind == "snapshot":
            w.request_snapshot()
        elif kind == "fault":
            w.inject_fault(msg[1])
        elif kind == "configure":
            with self.seq_lock:
                try:
                    w.configure(**msg[2])
                except ValueError as exc:  # validated against settings the parent had not yet seen
                    print(f"peft-explorer: a change was not applied: {exc}", file=sys.stderr)
                self.seq = msg[1]
        elif kind == "call":
            threading.Thread(target=self._call, args=msg[1:], name="peft-explorer-call", daemon=True).start()

    def _call(self, call_id: int, method: str, path: str, timeout: float) -> None:
        try:
            reply = ("reply", call_id, True, getattr(self.worker, method)(path, timeout))
        except Exception as exc:  # noqa: BLE001 - handed to the caller as one line
            reply = ("reply", call_id, False, _one_line(exc))
        try:
            self.send(reply)
        except (OSError, ValueError):
            pass

    def _info(self) -> dict:
        w = self.worker
        with self.seq_lock:
            seq = self.seq
            with w._lock:  # the settings asked for, reset when a change fails
                requested = w._requested
        return {
            "settings": w.settings,
            "requested": requested,
            "seq": seq,
            "running": w.running,
            "posted": w.snapshots_posted,
            "instrument_seconds": w.instrument_seconds,
        }

    def _send_snapshots(self) -> None:
        """Latest wins: wait for a credit, then send the newest snapshot the worker has posted."""
        w = self.worker
        while not self.stop.is_set():
            if not self.credit.wait(POLL_S) or self.stop.is_set():
                continue
            try:
                snap = w.wait_for(timeout=POLL_S)
            except TimeoutError:
                continue
            info = self._info()
            self.credit.clear()
            try:
                self.send(("snap", snap, info))
            except (OSError, ValueError):
                return
