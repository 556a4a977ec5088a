"""One-off jobs in a child process: a function named by "module:function", run once in a spawned
child, returning plain data; abandonable (cancel = terminate the child).

    job = ChildJob("explorer.core.inspect_adapter:inspect_for_views", path, base, progress=True)
    report = job.run(on_progress=lambda done, total: ...)   # blocks the calling (helper) thread
    job.cancel()                                           # from any thread: run() raises JobCancelled

What it is for: the GUI process never imports torch, yet reading an adapter or exporting one needs it;
and parsing an untrusted file in a child that can be killed means a hostile file (a regex that never
ends, a huge allocation) costs a process, not the window. The job's result and its arguments are
pickled between our own two processes, so both must be plain data (schema dataclasses, numpy arrays,
strings); a caller that holds a torch object passes it and the child unpickles it with torch at hand.

Errors come back as the exceptions the caller would have seen: ValueError (one line, naming the file
or setting: the readers' messages), MemoryError, else ChildJobError with the type's name. A child that
dies (a crash, a kill that was not ours) is a ChildJobError with its exit code.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading

from explorer.engine.spawn import one_line, resolve, spawn

KILL_AFTER_S = 2.0  # cancel: terminate, then kill a child that has not gone by then
JOB_MAIN = "explorer.engine.jobs:job_main"  # the child's entry point


class JobCancelled(Exception):
    """The job was cancelled (its child terminated) before it answered."""


class ChildJobError(Exception):
    """The job raised something other than ValueError / OSError / MemoryError, or its child died."""


class ChildJob:
    def __init__(self, target: str, *args, progress: bool = False, name: str = "peft-explorer-job", **kwargs):
        """`target`: "module:function", called in the child as function(*args, **kwargs), with
        progress=callable(done, total) added when `progress`."""
        self.target, self.name, self.progress = target, name, progress
        self._payload = pickle.dumps((args, kwargs))
        self._lock = threading.Lock()
        self._proc = None
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def run(self, on_progress=None):
        """Start the child, relay its progress to `on_progress(done, total)`, and return its result.
        Blocks the calling thread (never call it on the GUI thread); the child is reaped on return."""
        with self._lock:
            if self._cancelled:
                raise JobCancelled(self.target)
            self._proc, conn = spawn(JOB_MAIN, self.target, self._payload, self.progress, name=self.name)
        try:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "progress":
                    if on_progress is not None:
                        on_progress(msg[1], msg[2])
                elif msg[0] == "ok":
                    return msg[1]
                elif msg[0] == "error":
                    raise _rebuilt(msg[1], msg[2], msg[3])
        finally:
            conn.close()
            self._reap()
        if self._cancelled:
            raise JobCancelled(self.target)
        raise ChildJobError(f"the job's process stopped unexpectedly (exit code {self._proc.exitcode})")

    def cancel(self) -> None:
        """Abandon the job: its child is terminated (killed if it lingers); run() raises JobCancelled."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is None or proc.exitcode is not None:
            return
        try:
            proc.terminate()
            proc.join(KILL_AFTER_S)
            if proc.exitcode is None:
                proc.kill()
        except (OSError, ValueError, AttributeError):  # already reaped by run()
            pass

    def _reap(self) -> None:
        proc = self._proc
        proc.join(KILL_AFTER_S)
        if proc.exitcode is None:
            proc.kill()
            proc.join(KILL_AFTER_S)


def _rebuilt(kind: str, type_name: str, text: str) -> BaseException:
    if kind == "value":
        return ValueError(text)
    if kind == "memory":
        return MemoryError(text)
    return ChildJobError(f"{type_name}: {text}" if text else type_name)


# --- in the child -----------------------------------------------------------------------------------


def job_main(conn, target: str, payload: bytes, progress: bool) -> None:
    """The child's side: call the target, send progress and the result (or the error) back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole process group; the parent decides
    try:
        args, kwargs = pickle.loads(payload)
        if progress:
            kwargs["progress"] = lambda done, total: conn.send(("progress", int(done), int(total)))
        reply = ("ok", resolve(target)(*args, **kwargs))
    except (ValueError, OSError) as exc:
        reply = ("error", "value", type(exc).__name__, one_line(exc))
    except MemoryError as exc:
        reply = ("error", "memory", "MemoryError", " ".join(str(exc).split()))
    except Exception as exc:  # noqa: BLE001 - handed to the caller as one line
        reply = ("error", "other", type(exc).__name__, " ".join(str(exc).split()))
    try:
        conn.send(reply)
    except (OSError, ValueError, pickle.PicklingError) as exc:  # a result that does not pickle: say so
        conn.send(("error", "other", type(exc).__name__, f"the job's result could not be sent back ({exc})"))
    finally:
        conn.close()
    # Everything is sent: skip the interpreter's teardown (torch's takes most of a second), as
    # multiprocessing's forked children do.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
