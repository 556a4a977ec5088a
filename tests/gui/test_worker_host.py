"""The GUI's background pieces, each written once: jobs (gui/jobs.py) whose outcome arrives as signals
on the GUI thread, a cancelled child job whose process is gone at once and which says nothing more;
and the WorkerHost (gui/worker_host.py) running a comparison in a child process, whose death arrives
as a fault snapshot of kind "died" (no second report), and a thread worker that stops silently,
reported once by `died`."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from engine_helpers import tiny_matrix
from PySide6.QtCore import QObject

from explorer.gui.compare_host import PROCESS_COMPARE
from explorer.gui.jobs import child_job, thread_job
from explorer.gui.worker_host import WorkerHost

WAIT_MS = 60_000


def test_a_thread_job_reports_its_result_or_its_error_on_the_gui_thread(qtbot):
    gui = threading.get_ident()
    seen = []
    job = thread_job(lambda a, b: (a + b, threading.get_ident()), 2, 3)
    job.done.connect(lambda result: seen.append((result, threading.get_ident())))
    with qtbot.waitSignal(job.done, timeout=WAIT_MS):
        job.start()
    (value, worker_thread), where = seen[0]
    assert value == 5 and worker_thread != gui and where == gui
    bad = thread_job(int, "nope", label="reading x")
    with qtbot.waitSignal(bad.failed, timeout=WAIT_MS) as blocker:
        bad.start()
    assert blocker.args == ["invalid literal for int() with base 10: 'nope'"] and bad.error == blocker.args[0]
    odd = thread_job(lambda: {}["k"], label="reading x")
    with qtbot.waitSignal(odd.failed, timeout=WAIT_MS) as blocker:
        odd.start()
    assert blocker.args == ["reading x: KeyError: 'k'"]


def test_a_child_job_sends_progress_and_a_cancelled_one_ends_its_process(qtbot, tmp_path):
    job = child_job("job_targets:count", 3, progress=True)
    steps = []
    job.progress.connect(lambda d, t: steps.append((d, t)))
    with qtbot.waitSignal(job.done, timeout=WAIT_MS) as blocker:
        job.start()
    assert blocker.args[0]["n"] == 3 and blocker.args[0]["pid"] != os.getpid()
    qtbot.waitUntil(lambda: steps == [(1, 3), (2, 3), (3, 3)], timeout=WAIT_MS)

    marker = tmp_path / "pid"
    hung = child_job("job_targets:hang", str(marker), name="explorer-test-hang")
    heard = []
    hung.done.connect(lambda r: heard.append(r))
    hung.failed.connect(lambda e: heard.append(e))
    hung.start()
    qtbot.waitUntil(lambda: marker.exists() and marker.read_text() != "", timeout=WAIT_MS)
    t0 = time.perf_counter()
    hung.cancel()
    assert hung.wait(10.0) and time.perf_counter() - t0 < 5.0
    qtbot.wait(50)  # any queued signal would arrive now
    assert heard == [] and hung.cancelled and hung.error is None
    assert not multiprocessing.active_children()


def test_a_comparison_in_a_child_through_the_host_and_its_death(qtbot):
    owner = QObject()
    host = WorkerHost(PROCESS_COMPARE, name="compare", parent=owner)
    snaps, died, failed = [], [], []
    host.snapshot.connect(snaps.append)
    host.died.connect(lambda: died.append(True))
    host.failed.connect(lambda text, own: failed.append((text, own)))
    host.start(tiny_matrix(), ["lora:r=1", "full"], threads=1)
    qtbot.waitUntil(lambda: host.worker is not None, timeout=WAIT_MS)
    worker = host.worker
    assert type(worker).__name__ == "ProcessCompareWorker" and worker.pid != os.getpid()
    worker.step(3)
    qtbot.waitUntil(lambda: bool(snaps) and snaps[-1].step == 3, timeout=WAIT_MS)
    assert [r.label for r in snaps[-1].runs] == ["lora-r1", "full"]
    os.kill(worker.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: snaps[-1].state == "fault", timeout=WAIT_MS)
    assert snaps[-1].fault.kind == "died" and "exit code -9" in snaps[-1].fault.message
    qtbot.wait(200)  # more drains: the fault said why, no second report
    assert died == [] and not host.alive
    # a spec the scenario cannot run: the caller's error, said at once
    host.start(tiny_matrix(), ["prefix:K=3"])
    qtbot.waitUntil(lambda: bool(failed), timeout=WAIT_MS)
    assert failed[0][1] is True and "matrix" in failed[0][0] and host.worker is None
    host.close()
    assert not multiprocessing.active_children()


def test_a_thread_worker_that_stops_silently_is_reported_once(qtbot):
    from explorer.engine.worker import TrainingWorker

    owner = QObject()
    host = WorkerHost(lambda s: TrainingWorker(s, threads=1), parent=owner)
    died = []
    host.died.connect(lambda: died.append(True))
    with qtbot.waitSignal(host.attached, timeout=WAIT_MS):
        host.start(tiny_matrix())
    host.worker.close()  # gone without a word (its last snapshot, if not yet taken, is drawn first)
    qtbot.waitUntil(lambda: bool(died), timeout=WAIT_MS)
    qtbot.wait(200)
    assert died == [True] and not host.alive
    host.close()
    assert host.worker is None
