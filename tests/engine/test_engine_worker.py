"""The background worker: lifecycle, settings, faults, speed; no thread outlives a test."""

import time

import numpy as np
import pytest
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)

from explorer.engine.worker import TrainingWorker


@pytest.fixture
def make_worker():
    made = []

    def make(settings, **kw):
        w = TrainingWorker(settings, threads=1, **kw)
        made.append(w)
        w.start()
        return w

    yield make
    for w in made:
        w.close()
        assert not w.alive
    assert no_engine_threads()


def test_start_step_play_pause_close(make_worker):
    w = make_worker(tiny_matrix())
    first = w.wait_for(timeout=30)
    assert first.step == 0 and first.state == "paused" and first.loss is not None and first.eval_loss is not None
    assert w.latest() is None  # nothing new: None, at once
    w.step(3)
    s = w.wait_for(lambda s: s.step == 3, 30)
    assert s.state == "paused" and not w.running
    w.play()
    s = w.wait_for(lambda s: s.step >= 50 and s.state == "running", 30)
    assert w.running and s.steps_per_second > 0
    w.pause()
    paused = w.wait_for(lambda s: s.state == "paused", 30)
    w.request_snapshot()
    again = w.wait_for(timeout=30)
    assert again.step == paused.step  # paused means paused
    assert len(paused.history.steps) == paused.step  # a loss point per step so far
    w.close()
    w.close()  # idempotent
    assert not w.alive


def test_configure_validates_in_the_caller_and_applies_in_the_worker(make_worker):
    w = make_worker(tiny_lm(), base_model=tiny_byte_model())
    w.wait_for(timeout=30)
    with pytest.raises(ValueError, match="lr"):
        w.configure(lr=-1.0)
    assert w.configure(lr=0.005) == {"lr": "hot"}
    s = w.wait_for(lambda s: s.lr == 0.005, 30)
    assert w.settings.lr == 0.005 and s.segment == 0
    w.step(2)
    w.wait_for(lambda s: s.step == 2, 30)
    assert w.configure(rank=3) == {"rank": "cold"}
    s = w.wait_for(lambda s: s.settings["rank"] == 3, 30)
    assert s.step == 0 and s.segment == 1 and all(m.spectrum.shape == (3,) for m in s.matrices.values())
    # a change that passes the settings check but not the model: a fault naming it, old settings kept
    assert w.configure(rank=64) == {"rank": "cold"}
    s = w.wait_for(lambda s: s.state == "fault", 30)
    assert "rank=64" in s.fault.message and "previous settings stay in force" in s.fault.message
    assert s.fault.kind == "setting" and s.fault.setting == "rank"
    assert w.settings.rank == 3 and s.settings["rank"] == 3 and s.segment == 1
    assert w.configure(rank=2) == {"rank": "cold"}  # validated against the running settings again
    w.wait_for(lambda s: s.settings["rank"] == 2 and s.state == "paused", 30)


@pytest.mark.parametrize(
    "kind, words", [("nan", "non-finite loss at step"), ("exception", "InjectedFault"), ("oom", "out of memory")]
)
def test_faults_pause_with_a_message_and_training_goes_on_after_reset(make_worker, kind, words):
    w = make_worker(tiny_matrix())
    w.wait_for(timeout=30)
    w.step(4)
    w.wait_for(lambda s: s.step == 4, 30)
    w.inject_fault(kind)
    w.play()
    s = w.wait_for(lambda s: s.state == "fault", 30)
    assert words in s.fault.message and "paused" in s.fault.message and not w.running
    assert s.fault.kind == {"nan": "diverged", "exception": "error", "oom": "memory"}[kind] and s.fault.setting is None
    if kind == "nan":
        assert "lr=0.01" in s.fault.message and "lower the learning rate or reset" in s.fault.message and s.step == 3
    else:
        assert s.step == 4
    assert np.isfinite(s.loss)
    w.reset()
    s = w.wait_for(lambda s: s.state == "paused" and s.step == 0, 30)
    assert s.fault is None and s.segment == 1
    w.play()
    w.wait_for(lambda s: s.step >= 5, 30)


def test_a_failed_start_reports_and_recovers(make_worker):
    w = make_worker(tiny_lm(seq_len=200), base_model=tiny_byte_model())  # longer than the model's context
    s = w.wait_for(timeout=30)
    assert s.state == "fault" and "seq_len=200" in s.fault.message and s.fault.kind == "start"
    w.configure(seq_len=16)
    s = w.wait_for(lambda s: s.state == "paused", 30)
    assert s.step == 0 and s.settings["seq_len"] == 16


def test_speed_caps_steps_per_second_and_close_is_prompt(make_worker):
    w = make_worker(tiny_matrix(speed=40.0))
    w.wait_for(timeout=30)
    t0 = time.perf_counter()
    w.play()
    w.wait_for(lambda s: s.step >= 12, 30)
    assert time.perf_counter() - t0 >= 11 / 40 * 0.9
    w.configure(speed=0.1)  # one step per 10 s: close must not wait for it
    w.wait_for(lambda s: s.settings["speed"] == 0.1, 30)
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 2.0 and not w.alive


def test_lm_worker_posts_samples_and_probe_attention(make_worker):
    w = make_worker(tiny_lm(method="prefix", prefix_len=2, prefix_layers=2), base_model=tiny_byte_model())
    first = w.wait_for(timeout=30)
    assert first.step == 0 and first.samples is None  # posted at once; the samples follow
    s = w.wait_for(lambda s: s.samples is not None, 30)
    assert s.samples["adapted"] == s.samples["base"] and s.samples["step"] == 0
    assert len(s.prefixes) == 2 and s.prefixes[0].attention.shape[2] == 2 + len(s.probe_tokens)
    w.step(3)
    s = w.wait_for(lambda s: s.step == 3 and s.samples["step"] == 3, 30)  # stepping refreshes the samples
    assert any(np.any(p.gates != 0) for p in s.prefixes)
