"""One-off background jobs for the GUI: the outcome of a job arrives as signals on the GUI thread
(Orange's FutureWatcher pattern), so no part of the window writes its own thread + signal pair.

    job = thread_job(encode, frames, path, name="explorer-encode-recording")  # on a helper thread
    job = child_job("explorer.core.inspect_adapter:inspect_for_views", path, progress=True)
    job.progress.connect(...); job.done.connect(...); job.failed.connect(...)
    job.start(); ...; job.cancel()          # no signal after cancel; a child job's process ends

A child job (engine/jobs.py) runs a function named by "module:function" in a spawned process and
returns plain data: what needs torch (reading, analysing, exporting an adapter) never runs in the GUI
process, and a job on an untrusted file can be abandoned by terminating its process. A thread job is
for work without torch that would still block the event loop (encoding frames, closing a worker).

The helper thread never touches a Qt object: it leaves what it has to say in a plain list, and a
timer on the GUI thread (started by `start()`) emits it there. A signal emitted from a Python thread
takes Qt's lock on the sender while holding the GIL; the GUI thread deleting an object holds that
lock while PySide waits for the GIL, and the two stop for good (a CI run hung so, in talk mode's
scene changes, which retire workers on closer jobs).

Failures come as one line: ValueError / OSError with their own text (the readers' messages name the
file and the reason), anything else with its type, prefixed with the job's `label` when it has one.
"""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QTimer, Signal

from explorer.engine.jobs import ChildJob, ChildJobError, JobCancelled

DELIVER_MS = 15  # how often the GUI thread looks for what a running job has said


class Job(QObject):
    progress = Signal(int, int)  # done, total
    done = Signal(object)  # the result
    failed = Signal(str)  # one line

    def __init__(
        self,
        fn,
        *args,
        name: str = "explorer-job",
        label: str = "",
        progress: bool = False,
        cancel=None,
        daemon: bool = True,
        parent=None,
    ):
        """`fn(*args)` on a helper thread named `name` (with progress=callable(done, total) added when
        `progress`); `cancel`: what else cancelling does (a child job: terminate its process);
        `daemon=False`: the interpreter waits for the job at exit (a file being written)."""
        super().__init__(parent)
        self._fn, self._args, self._with_progress = fn, args, progress
        self._cancel_hook = cancel
        self.label = label
        self.result = None
        self.error: str | None = None
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=daemon)
        self._said: list = []  # (signal name, args) left by the helper thread, emitted on the GUI thread
        self._said_lock = threading.Lock()
        self._finished = False  # the helper thread has said its last
        self._timer = QTimer(self)
        self._timer.setInterval(DELIVER_MS)
        self._timer.timeout.connect(self._deliver)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Job:
        """Start the helper thread (call on the GUI thread: the signals are emitted here)."""
        self._timer.start()
        self._thread.start()
        return self

    def cancel(self) -> None:
        """No signal follows; the work is abandoned (a child job's process is terminated)."""
        self.cancelled = True
        if self._cancel_hook is not None:
            self._cancel_hook()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job's thread is done (closing, scripts and tests); True when it is."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _emit(self, signal: str, *args) -> None:
        """Helper thread: leave a signal for the GUI thread (the only thread that emits)."""
        if not self.cancelled:
            with self._said_lock:
                self._said.append((signal, args))

    def _deliver(self) -> None:
        with self._said_lock:
            said, self._said = self._said, []
            finished = self._finished
        for signal, args in said:
            if self.cancelled:
                break
            getattr(self, signal).emit(*args)
        if finished:
            self._timer.stop()

    def _run(self) -> None:
        try:
            self._work()
        finally:
            with self._said_lock:
                self._finished = True

    def _work(self) -> None:
        kwargs = {"progress": lambda d, t: self._emit("progress", int(d), int(t))} if self._with_progress else {}
        try:
            result = self._fn(*self._args, **kwargs)
        except JobCancelled:
            return
        except (ValueError, OSError) as exc:
            text = " ".join(str(exc).split())
            self._fail(text or self._labelled(type(exc).__name__))
        except MemoryError:
            self._fail(self._labelled("not enough memory for this"))
        except ChildJobError as exc:
            self._fail(self._labelled(" ".join(str(exc).split())))
        except Exception as exc:  # noqa: BLE001 - said in one line; the app lives on
            traceback.print_exc()
            self._fail(self._labelled(f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
        else:
            self.result = result
            self._emit("done", result)

    def _labelled(self, text: str) -> str:
        return f"{self.label}: {text}" if self.label else text

    def _fail(self, text: str) -> None:
        self.error = text
        self._emit("failed", text)


def thread_job(
    fn, *args, name: str = "explorer-job", label: str = "", progress: bool = False, daemon: bool = True, parent=None
) -> Job:
    """`fn(*args)` on a helper thread (not started: connect, then `start()`)."""
    return Job(fn, *args, name=name, label=label, progress=progress, daemon=daemon, parent=parent)


def child_job(
    target: str, *args, name: str = "explorer-job", label: str = "", progress: bool = False, parent=None, **kwargs
) -> Job:
    """The function `target` ("module:function") called with (*args, **kwargs) in a child process,
    waited for on a helper thread (not started: connect, then `start()`); cancel terminates it."""
    runner = ChildJob(target, *args, progress=progress, name=name, **kwargs)

    def run(progress=None):
        return runner.run(on_progress=progress)

    return Job(run, name=name, label=label, progress=progress, cancel=runner.cancel, parent=parent)


__all__ = ["Job", "child_job", "thread_job"]
