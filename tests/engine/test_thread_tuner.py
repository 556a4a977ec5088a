"""The thread tuner (issue 17), fed step durations: it keeps the count that steps fastest, follows the
machine when that changes, does not flap on noise, and is set from the thread that trains."""

from __future__ import annotations

import pytest
from engine_helpers import one_thread, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)

from explorer.engine import thread_tuner
from explorer.engine.thread_tuner import RETUNE_S, ThreadTuner


class _Machine:
    """Steps whose duration depends on the thread count in force: `step_s[n]`."""

    def __init__(self, step_s: dict[int, float]):
        self.step_s = dict(step_s)
        self.threads = None
        self.calls: list[int] = []

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def run(self, tuner: ThreadTuner, seconds: float) -> None:
        spent = 0.0
        while spent < seconds:
            dt = self.step_s[self.threads]
            tuner.step_done(dt)
            spent += dt


def test_keeps_the_fastest_count():
    m = _Machine({1: 0.10, 2: 0.06})  # two threads pay
    t = ThreadTuner([1, 2], 1, m.set_threads)
    assert t.tuning and m.threads == 1
    m.run(t, 3.0)
    assert not t.tuning and t.current == 2 and m.threads == 2
    assert t.rates[2] == pytest.approx(1 / 0.06) and t.rates[1] == pytest.approx(1 / 0.10)


def test_drops_threads_that_do_not_pay():
    m = _Machine({1: 0.05, 2: 0.08})  # a busy machine: the second thread costs more than it gives
    t = ThreadTuner([1, 2], 2, m.set_threads)
    m.run(t, 3.0)
    assert t.current == 1 and m.threads == 1


def test_tries_the_candidates_interleaved():
    m = _Machine({1: 0.05, 2: 0.05, 3: 0.05})
    t = ThreadTuner([1, 2, 3], 2, m.set_threads)
    m.calls.clear()
    m.run(t, 3.0)
    # the count in force first (no switch), then the others, twice over; then the decision
    assert m.calls[:5] == [1, 3, 2, 1, 3]


def test_follows_the_machine_when_it_changes():
    m = _Machine({1: 0.10, 2: 0.06})
    t = ThreadTuner([1, 2], 1, m.set_threads)
    m.run(t, 3.0)
    assert t.current == 2
    m.step_s = {1: 0.10, 2: 0.25}  # others took the second core
    m.run(t, RETUNE_S + 5.0)
    assert t.current == 1 and t.tunings == 2


def test_no_switch_on_a_difference_within_the_noise():
    m = _Machine({1: 0.100, 2: 0.098})  # 2 % faster: not worth a switch
    t = ThreadTuner([1, 2], 1, m.set_threads)
    m.run(t, 3.0)
    assert t.current == 1


def test_one_candidate_is_set_once_and_never_tried():
    m = _Machine({4: 0.1})
    t = ThreadTuner([4], 4, m.set_threads)
    m.run(t, RETUNE_S * 3)
    assert m.calls == [4] and not t.tuning and t.tunings == 0


def test_the_first_step_of_each_count_is_not_counted(monkeypatch):
    monkeypatch.setattr(thread_tuner, "ROUNDS", 1)
    seen = []
    t = ThreadTuner([1, 2], 1, seen.append)
    t.step_done(0.9)  # the very first step (lazy set-up): not counted
    t.step_done(0.3)  # 1 thread: counted
    t.step_done(5.0)  # the first step on 2 threads (OpenMP starts its second): not counted
    t.step_done(0.1)
    t.step_done(0.1)
    assert t.rates == {1: pytest.approx(1 / 0.3), 2: pytest.approx(1 / 0.1)} and t.current == 2


def test_trainer_and_worker_use_it_from_the_training_thread():
    import torch

    from explorer.engine.trainer import Trainer
    from explorer.engine.worker import TrainingWorker

    before = torch.get_num_threads()
    try:
        t = Trainer(tiny_matrix())
        tuner = t.use_threads(2)
        assert tuner.candidates == [2] and torch.get_num_threads() == 2
        t.use_threads()  # default: a 24 x 32 matrix is worth one thread, nothing to tune
        assert t.threads.candidates == [1] and torch.get_num_threads() == 1
        with TrainingWorker(tiny_matrix(), threads=2) as w:
            w.step(2)
            w.wait_for(lambda s: s.step == 2, 60)
            assert w.threads == 2
    finally:
        torch.set_num_threads(before)
