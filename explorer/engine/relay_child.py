"""The child's side of the process relay (engine/process_worker.py): an ordinary worker thread
(TrainingWorker or CompareWorker, named by "module:Class"), relayed over a pipe.

The parent names `main` by string (engine/spawn.py) and never imports this module: it imports torch.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading

from explorer.engine.spawn import one_line, resolve

POLL_S = 0.5  # the child checks its worker thread this often
CHILD_NICE = 10  # the child's niceness: on a busy machine (other work on the cores) the GUI
# wins the CPU when both want it; an idle core still trains at full speed
EXIT_THREAD_DIED = 70  # the child's exit code when its worker thread stopped on its own
# What the parent may ask of a worker: commands (in order, no answer) and calls (answered).
COMMANDS = (
    "play",
    "pause",
    "step",
    "reset",
    "request_snapshot",
    "inject_fault",
    "configure",
    "set_runs",
    "sample_now",
)
CALLS = ("save_state", "load_state")


def main(conn, target: str, payload: bytes, threads: int | None, seq: int) -> None:
    """The child's entry point: build `target`(*args, threads=..., **kwargs) from the pickled
    (args, kwargs) and relay it over `conn` until the parent closes it or goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group; the parent closes us
    try:
        os.nice(CHILD_NICE)  # when the machine is busy, the window goes first
    except (AttributeError, OSError):  # pragma: no cover - no nice on this platform
        pass
    # The thread count is chosen (or `threads` applied) by the worker in its training thread: OpenMP
    # keeps one per thread, and the default depends on the model built there.
    args, kwargs = pickle.loads(payload)
    worker = resolve(target)(*args, threads=threads, **kwargs)
    code = Relay(conn, worker, seq).run()
    # The worker is closed and joined, the pipe closed: skip the interpreter's teardown (torch's takes
    # most of a second), as multiprocessing's forked children do.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Relay:
    """In the child: commands from the pipe to the worker (main thread), snapshots from the worker to
    the pipe under credits (sender thread), calls on threads of their own."""

    def __init__(self, conn, worker, seq: int):
        self.conn, self.worker = conn, worker
        self.send_lock = threading.Lock()
        self.credit = threading.Event()
        self.credit.set()  # the parent starts out owing us nothing
        self.stop = threading.Event()
        self.seq_lock = threading.Lock()
        self.seq = seq  # commands handled (the parent's count when it spawned us, then one per command)

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
                        print("peft-explorer: the worker thread stopped on its own", file=sys.stderr)
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
        kind = msg[0]
        if kind == "credit":
            self.credit.set()
        elif kind == "cmd":
            _, seq, name, args, kwargs = msg
            with self.seq_lock:
                try:
                    if name not in COMMANDS:
                        raise ValueError(f"{name!r} is not a command the relay passes on")
                    getattr(self.worker, name)(*args, **kwargs)
                except ValueError as exc:  # validated against settings the parent had not yet seen
                    print(f"peft-explorer: a change was not applied: {exc}", file=sys.stderr)
                self.seq = seq
        elif kind == "call":
            threading.Thread(target=self._call, args=msg[1:], name="peft-explorer-call", daemon=True).start()

    def _call(self, call_id: int, method: str, args: tuple, timeout: float) -> None:
        try:
            if method not in CALLS:
                raise ValueError(f"{method!r} is not a call the relay passes on")
            reply = ("reply", call_id, True, getattr(self.worker, method)(*args, timeout))
        except Exception as exc:  # noqa: BLE001 - handed to the caller as one line
            reply = ("reply", call_id, False, one_line(exc))
        try:
            self.send(reply)
        except (OSError, ValueError):
            pass

    def _info(self) -> dict:
        with self.seq_lock:
            return {**self.worker.relay_info(), "seq": self.seq}

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
