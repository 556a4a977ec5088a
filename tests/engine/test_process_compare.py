"""A comparison in a child process through the relay (ProcessCompareWorker): the same snapshots as the
thread worker, a killed child reported as a fault of kind "died" and replaced by reset, bad specs
refused in the caller, nothing left behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest
from engine_helpers import tiny_byte_model, tiny_lm, tiny_matrix

from explorer.engine.process_worker import ProcessCompareWorker
from explorer.schema.compare import CompareSnapshot

WAIT_S = 60


def no_compare_threads() -> bool:
    return not any(t.name == ProcessCompareWorker.thread_name and t.is_alive() for t in threading.enumerate())


def test_a_comparison_runs_in_a_child_and_a_killed_child_is_a_fault():
    w = ProcessCompareWorker(tiny_matrix(), ["lora:r=2", "full"], threads=1)
    try:
        w.start()
        first = w.wait_for(lambda s: s.step == 0, WAIT_S)
        assert isinstance(first, CompareSnapshot) and [r.label for r in first.runs] == ["lora-r2", "full"]
        assert first.analysis is not None and w.labels == ["lora-r2", "full"] and w.pid != os.getpid()
        w.step(3)
        snap = w.wait_for(lambda s: s.step == 3, WAIT_S)
        assert snap.state == "paused" and [r.step for r in snap.runs] == [3, 3] and snap.analysis.step == 3
        w.play()
        w.wait_for(lambda s: s.state == "running" and s.step > 5, WAIT_S)
        assert w.running
        # killed: the last picture stays, marked with a fault that says what happened
        old = w.pid
        os.kill(old, signal.SIGKILL)
        dead = w.wait_for(lambda s: s.state == "fault", WAIT_S)
        assert dead.fault.kind == "died" and "exit code -9" in dead.fault.message and dead.fault.setting is None
        assert [r.label for r in dead.runs] == ["lora-r2", "full"] and not w.alive and not w.running
        w.play()  # nothing to play: the fault is said again
        assert w.wait_for(timeout=WAIT_S).fault == dead.fault
        w.reset()  # a new child, the same runs, step 0
        again = w.wait_for(lambda s: s.state == "paused" and s.step == 0, WAIT_S)
        assert again.fault is None and w.alive and w.pid != old and w.restarts == 1
        # a new comparison in the same child
        w.set_runs(specs=["lora:r=4"])
        rebuilt = w.wait_for(lambda s: [r.label for r in s.runs] == ["lora-r4"], WAIT_S)
        assert rebuilt.step == 0 and w.labels == ["lora-r4"]
        with pytest.raises(ValueError, match="rank=0"):
            w.set_runs(specs=["lora:r=0"])
        with pytest.raises(ValueError, match="at least 1"):
            w.step(0)
    finally:
        w.close()
    assert not w.alive and not multiprocessing.active_children() and no_compare_threads()


def test_specs_are_checked_in_the_caller_and_a_failed_build_is_a_start_fault():
    with pytest.raises(ValueError, match="not available in the matrix scenario"):
        ProcessCompareWorker(tiny_matrix(), ["prefix:K=3"])
    with pytest.raises(ValueError, match="no runs to compare"):
        ProcessCompareWorker(tiny_matrix(), [])
    # longer than the tiny model's context: passes the settings check, fails in the child
    with ProcessCompareWorker(tiny_lm(seq_len=200), ["lora:r=2"], base_model=tiny_byte_model(), threads=1) as w:
        snap = w.wait_for(lambda s: s.state == "fault", WAIT_S)
        assert snap.fault.kind == "start" and "seq_len=200" in snap.fault.message and snap.runs == []
        assert w.alive  # the child lives on: a new comparison can start in it
        w.set_runs(tiny_lm(), ["lora:r=2"])
        ok = w.wait_for(lambda s: s.state == "paused" and s.runs, WAIT_S)
        assert ok.fault is None and ok.runs[0].label == "lora-r2"
    assert not w.alive and not multiprocessing.active_children()
