"""One-off jobs in a child process (engine/jobs.py): results and progress come back, errors come back
as the caller would have seen them, a cancelled job's child is gone at once, a child that dies says so."""

from __future__ import annotations

import os
import threading
import time

import pytest

from explorer.engine.jobs import ChildJob, ChildJobError, JobCancelled

WAIT_S = 60


def gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_job_returns_its_result_and_progress_from_another_process():
    seen = []
    result = ChildJob("job_targets:count", 3, progress=True).run(on_progress=lambda d, t: seen.append((d, t)))
    assert result["n"] == 3 and result["pid"] != os.getpid()
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_errors_come_back_as_one_line():
    with pytest.raises(ValueError, match=r"^/x: not an adapter directory \(no adapter_config.json\)$"):
        ChildJob("job_targets:refuse", "/x").run()
    with pytest.raises(ChildJobError, match="^KeyError: 'model.layers.0'$"):
        ChildJob("job_targets:crash").run()
    with pytest.raises(ChildJobError, match=r"stopped unexpectedly \(exit code 3\)"):
        ChildJob("job_targets:die").run()
    with pytest.raises(ChildJobError, match="ModuleNotFoundError: No module named .no_such_module."):
        ChildJob("no_such_module:f").run()


def test_a_cancelled_job_ends_its_child_and_raises(tmp_path):
    marker = tmp_path / "pid"
    job = ChildJob("job_targets:hang", str(marker))
    outcome = []

    def run():
        try:
            job.run()
        except JobCancelled as exc:
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + WAIT_S
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    t0 = time.perf_counter()
    job.cancel()
    t.join(WAIT_S)
    assert not t.is_alive() and len(outcome) == 1 and time.perf_counter() - t0 < 5.0
    assert gone(pid) and job.cancelled
    with pytest.raises(JobCancelled):  # a cancelled job does not start again
        job.run()
