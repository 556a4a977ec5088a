"""Training in a child process: the thread worker's behaviours through ProcessTrainingWorker, plus
what only a process brings (the child killed, credits, reaping). No sleeps as synchronisation.

Each child imports torch (about 2 s), so the matrix tests share one worker (each test starts from a
reset); the lm test and a closed worker make their own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401

from explorer.engine.process_worker import ProcessTrainingWorker
from explorer.engine.relay_child import CHILD_NICE

WAIT_S = 60


def reaped(pid: int) -> bool:
    """The process is gone and no zombie is left: it is no longer our child to wait for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.fixture(scope="module")
def shared():
    """One matrix-scenario worker for the module; a test that closes it gets a fresh one next time."""
    box = {}

    def get() -> ProcessTrainingWorker:
        w = box.get("w")
        if w is None or w._closing:
            w = box["w"] = ProcessTrainingWorker(tiny_matrix(), threads=1)
            w.start()
            first = w.wait_for(timeout=WAIT_S)
            assert first.step == 0 and first.state == "paused", first.fault
        return w

    yield get
    if "w" in box:
        box["w"].close()
    assert not multiprocessing.active_children()
    assert no_engine_threads()


def fresh(w: ProcessTrainingWorker):
    """Back to step 0, paused, with the default tiny settings, whatever the previous test left."""
    w.pause()
    w.configure(
        **{k: getattr(tiny_matrix(), k) for k in ("lr", "rank", "speed", "size_in", "size_out", "display_size")}
    )
    w.reset()
    return w.wait_for(lambda s: s.state == "paused" and s.step == 0 and s.settings == tiny_matrix().to_dict(), WAIT_S)


def test_first_snapshot_step_play_pause(shared):
    w = shared()
    first = fresh(w)
    assert first.loss is not None and first.eval_loss is not None and w.alive and not w.running
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, w.pid) == min(19, mine + CHILD_NICE)  # the window goes first
    assert w.latest() is None  # nothing new: None, at once
    w.step(3)
    s = w.wait_for(lambda s: s.step == 3, WAIT_S)
    assert s.state == "paused" and not w.running
    with pytest.raises(ValueError, match="at least 1"):
        w.step(0)
    w.play()
    s = w.wait_for(lambda s: s.step >= 50 and s.state == "running", WAIT_S)
    assert w.running and s.steps_per_second > 0
    w.pause()
    paused = w.wait_for(lambda s: s.state == "paused", WAIT_S)
    w.request_snapshot()
    again = w.wait_for(timeout=WAIT_S)
    assert again.step == paused.step  # paused means paused
    assert len(paused.history.steps) == paused.step  # a loss point per step so far
    assert w.snapshots_posted > 0


def test_configure_validates_in_the_caller_and_applies_in_the_child(shared):
    w = shared()
    fresh(w)
    with pytest.raises(ValueError, match="lr"):
        w.configure(lr=-1.0)  # raised here, at once, naming the setting
    with pytest.raises(ValueError, match="rank=99"):
        w.configure(rank=99)  # above the 24 x 32 matrix
    assert w.configure(lr=0.005) == {"lr": "hot"}
    assert w.configure(lr=0.005) == {}  # already asked for
    s = w.wait_for(lambda s: s.lr == 0.005, WAIT_S)
    assert w.settings.lr == 0.005 and s.segment >= 0
    segment = s.segment
    w.step(2)
    w.wait_for(lambda s: s.step == 2, WAIT_S)
    assert w.configure(rank=3) == {"rank": "cold"}
    s = w.wait_for(lambda s: s.settings["rank"] == 3, WAIT_S)
    assert s.step == 0 and s.segment == segment + 1 and all(m.spectrum.shape == (3,) for m in s.matrices.values())
    assert w.settings.rank == 3


@pytest.mark.parametrize("kind, words", [("exception", "InjectedFault"), ("nan", "non-finite loss at step")])
def test_faults_arrive_as_fault_snapshots_and_reset_then_play_works(shared, kind, words):
    w = shared()
    fresh(w)
    w.step(4)
    w.wait_for(lambda s: s.step == 4, WAIT_S)
    w.inject_fault(kind)
    w.play()
    s = w.wait_for(lambda s: s.state == "fault", WAIT_S)
    assert words in s.fault.message and "paused" in s.fault.message and not w.running and w.alive
    assert np.isfinite(s.loss)
    w.reset()
    s = w.wait_for(lambda s: s.state == "paused" and s.step == 0, WAIT_S)
    assert s.fault is None
    w.play()
    w.wait_for(lambda s: s.step >= 5, WAIT_S)
    with pytest.raises(ValueError, match="unknown"):
        w.inject_fault("meteor")


def test_a_killed_child_is_a_fault_and_reset_starts_a_new_one(shared):
    w = shared()
    fresh(w)
    w.configure(lr=0.003)
    w.step(5)
    w.wait_for(lambda s: s.step == 5 and s.lr == 0.003, WAIT_S)
    w.play()
    w.wait_for(lambda s: s.state == "running", WAIT_S)
    old = w.pid
    os.kill(old, signal.SIGKILL)
    s = w.wait_for(lambda s: s.state == "fault", WAIT_S)
    assert s.fault.message == "the training process stopped unexpectedly (exit code -9); Reset starts it again"
    assert s.fault.kind == "died"
    assert not w.alive and not w.running and reaped(old)
    assert s.step >= 5 and s.matrices  # the last picture stays, marked as a fault
    w.play()  # nothing to play: the fault is said again
    assert "exit code -9" in w.wait_for(timeout=WAIT_S).fault.message
    with pytest.raises(ValueError, match="not running"):
        w.save_state("never-written.safetensors")
    w.reset()  # a new child, the same settings
    s = w.wait_for(lambda s: s.state == "paused", WAIT_S)
    assert s.step == 0 and s.fault is None and s.lr == 0.003 and w.alive and w.pid != old
    w.play()
    w.wait_for(lambda s: s.step >= 5 and s.state == "running", WAIT_S)
    assert w.running and w.restarts == 1


def test_latest_never_blocks_while_the_child_trains(shared):
    """A 512 x 512 matrix shown whole: each snapshot holds its 1 MB ΔW (W0 and the target come once),
    more than a socket buffer holds, so the reader thread, not latest(), waits for the bytes."""
    w = shared()
    fresh(w)
    w.configure(size_in=512, size_out=512, display_size=512)
    w.wait_for(lambda s: s.settings["size_in"] == 512, WAIT_S)
    w.play()
    w.wait_for(lambda s: s.state == "running", WAIT_S)
    calls, got = [], []
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        snap = w.latest()
        calls.append(time.perf_counter() - t0)
        if snap is not None:
            got.append(snap)
    w.pause()
    nbytes = sum(sum(a.nbytes for a in (m.delta, m.base, m.target) if a is not None) for m in got[-1].matrices.values())
    assert nbytes > 1_000_000
    assert len(got) >= 3 and got[-1].step > got[0].step  # it did train and deliver meanwhile
    calls.sort()
    # a call is a lock and an assignment (at worst a wait for the GIL while the reader thread
    # unpickles); the bound on the slowest call only allows for a busy shared machine's preemptions
    assert calls[len(calls) // 2] < 0.001 and calls[-1] < 0.2, (calls[len(calls) // 2], calls[-1])


class _FakeProcess:
    pid, exitcode = 0, 0

    def join(self, timeout=None):
        pass


def test_latest_does_not_wait_for_a_half_written_snapshot():
    """Deterministic: half of a 1 MB snapshot message is in the pipe; latest() answers None at once,
    and the snapshot arrives when the rest does (the reader thread, not the caller, waits for it)."""
    import struct
    import threading
    from multiprocessing.reduction import ForkingPickler

    from explorer.engine import process_worker as pw
    from explorer.schema.snapshot import MatrixSnapshot, Snapshot

    ours, theirs = multiprocessing.Pipe()
    w = ProcessTrainingWorker(tiny_matrix())
    child = w._child = pw._Child(_FakeProcess(), ours)
    child.reader = threading.Thread(target=w._read, args=(child,), daemon=True)
    child.reader.start()
    big = np.ones((512, 512), np.float32)
    snap = Snapshot(
        step=7,
        time=0.0,
        segment=0,
        loss=1.0,
        eval_loss=None,
        lr=0.01,
        steps_per_second=0.0,
        device="cpu",
        memory_bytes=0,
        settings=tiny_matrix().to_dict(),
        matrices={"W": MatrixSnapshot("W", (512, 512), big, big, np.ones(4, np.float32), 1.0, 1.0, 1.0)},
    )
    info = {
        "settings": tiny_matrix(),
        "requested": tiny_matrix(),
        "seq": 0,
        "running": True,
        "posted": 1,
        "instrument_seconds": 0.0,
    }
    payload = bytes(ForkingPickler.dumps(("snap", snap, info)))
    message = struct.pack("!i", len(payload)) + payload
    half = len(message) // 2
    os.write(theirs.fileno(), message[:half])  # Connection.send's framing: a 4-byte length, then the pickle
    answers = []
    caller = threading.Thread(target=lambda: answers.append(w.latest()), daemon=True)
    caller.start()
    caller.join(5.0)  # a latest() that read the pipe would hang here
    assert not caller.is_alive() and answers == [None]
    os.write(theirs.fileno(), message[half:])
    got = w.wait_for(timeout=WAIT_S)
    assert got.step == 7 and np.array_equal(got.matrices["W"].delta, big) and w.running
    assert theirs.recv() == ("credit",)  # taking it gave the credit back
    w._closing = True
    theirs.close()
    child.reader.join(WAIT_S)
    assert not child.reader.is_alive() and not w.alive


def test_save_and_load_state_in_the_child(shared, tmp_path):
    w = shared()
    fresh(w)
    w.step(6)
    w.wait_for(lambda s: s.step == 6, WAIT_S)
    path = tmp_path / "state.safetensors"
    w.save_state(path)
    assert path.exists()
    w.configure(lr=0.002)
    w.step(3)
    w.wait_for(lambda s: s.step == 9, WAIT_S)
    got = w.load_state(path)
    assert got == tiny_matrix() and w.settings == tiny_matrix()
    s = w.wait_for(lambda s: s.step == 6 and s.state == "paused", WAIT_S)
    assert s.lr == tiny_matrix().lr
    with pytest.raises(ValueError, match="no such trained-state file") as err:
        w.load_state(tmp_path / "missing.safetensors")
    assert "\n" not in str(err.value)
    assert w.configure(lr=0.002) == {"lr": "hot"}  # the loaded settings are what configure starts from


def test_close_is_prompt_and_leaves_no_process(shared):
    w = shared()
    fresh(w)
    w.configure(speed=0.1)  # one step per 10 s: close must not wait for it
    w.play()
    w.wait_for(lambda s: s.settings["speed"] == 0.1, WAIT_S)
    pid = w.pid
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 3.0
    w.close()  # idempotent
    assert not w.alive and reaped(pid) and not multiprocessing.active_children() and no_engine_threads()
    w.latest()  # a closed worker still answers, at once
    w.pause()


def test_lm_with_a_given_base_model_failed_start_samples_and_failed_apply():
    with ProcessTrainingWorker(
        tiny_lm(method="prefix", prefix_len=2, prefix_layers=2, seq_len=200), base_model=tiny_byte_model(), threads=1
    ) as w:
        s = w.wait_for(timeout=WAIT_S)  # longer than the model's context
        assert s.state == "fault" and "seq_len=200" in s.fault.message and s.fault.kind == "start" and w.alive
        w.configure(seq_len=16)
        s = w.wait_for(lambda s: s.state == "paused" and s.samples is not None, WAIT_S)
        assert s.step == 0 and s.settings["seq_len"] == 16
        assert s.samples["adapted"] == s.samples["base"]
        assert len(s.prefixes) == 2 and s.prefixes[0].attention.shape[2] == 2 + len(s.probe_tokens)
        w.step(3)
        s = w.wait_for(lambda s: s.step == 3 and s.samples["step"] == 3, WAIT_S)
        assert any(np.any(p.gates != 0) for p in s.prefixes)
        # passes the settings check, not the model: a fault naming it, the old settings kept
        w.configure(method="lora", rank=2)
        w.wait_for(lambda s: s.settings["method"] == "lora", WAIT_S)
        assert w.configure(rank=64) == {"rank": "cold"}
        s = w.wait_for(lambda s: s.state == "fault", WAIT_S)
        assert "rank=64" in s.fault.message and "previous settings stay in force" in s.fault.message
        assert s.fault.setting == "rank"
        assert w.settings.rank == 2
        w.request_snapshot()
        w.wait_for(timeout=WAIT_S)  # the child's view of what is asked comes back
        assert w.configure(rank=64) == {"rank": "cold"}  # so asking again is a change again
        w.wait_for(lambda s: s.state == "fault", WAIT_S)
    assert not w.alive and not multiprocessing.active_children()
