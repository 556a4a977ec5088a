"""Why training got slow (issue 17): the detection fed with numbers, and the reason carried from the
trainer through the snapshot and a recording."""

from __future__ import annotations

import dataclasses

import pytest
from engine_helpers import one_thread, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)

from explorer.engine import slowdown
from explorer.engine.slowdown import BUSY, MEMORY_S, WINDOW_S, SlowWatch, read_thread_sched, slow_reason


# ------------------------------------------------------------------------------ the verdict, from numbers
@pytest.mark.parametrize(
    "rate, best, waited, load, cores, expected",
    [
        (3.0, 10.0, 0.6, 3.1, 2, f"{BUSY} (load 3.1 on 2 cores)"),  # slow, and the thread waited for a CPU
        (6.0, 10.0, 0.6, 3.1, 2, None),  # not far below: nothing to say
        (3.0, 10.0, 0.02, 3.1, 2, None),  # slow, but the thread had its CPU: cause unknown
        (3.0, 10.0, None, 3.1, 2, f"{BUSY} (load 3.1 on 2 cores)"),  # no thread figures: the queue says it
        (3.0, 10.0, None, 1.5, 2, None),  # ... and a short queue does not
        (3.0, 10.0, None, None, 2, None),  # nothing known
        (3.0, 10.0, 0.5, None, 1, f"{BUSY} (1 core)"),
        (3.0, 0.0, 0.9, 9.0, 2, None),  # no earlier rate to compare with
    ],
)
def test_slow_reason(rate, best, waited, load, cores, expected):
    assert slow_reason(rate, best, waited, load, cores) == expected


class _Machine:
    """A fake clock, load average and thread scheduler figures for a SlowWatch."""

    def __init__(self):
        self.now, self.load, self.ran, self.waited = 0.0, 0.5, 0.0, 0.0

    def sched(self):
        return self.ran, self.waited

    def run(self, watch: SlowWatch, steps: int, step_s: float, waited_share: float) -> None:
        for _ in range(steps):
            self.now += step_s / (1 - waited_share)
            self.ran += step_s * (1 - waited_share)
            self.waited += step_s * waited_share
            watch.step_done(step_s)


def _watch(m: _Machine) -> SlowWatch:
    return SlowWatch(2, sched=m.sched, load=lambda: m.load, clock=lambda: m.now)


def test_watch_names_the_crowd_and_forgets_it():
    m = _Machine()
    w = _watch(m)
    m.run(w, 32, 0.0625, 0.0)  # 16 steps/s, alone on the machine (exact binary fractions: whole windows)
    assert w.reason is None
    m.load = 3.4
    m.run(w, 16, 0.25, 0.7)  # 4 steps/s, waiting 70 % of the time for a CPU
    assert w.reason == f"{BUSY} (load 3.4 on 2 cores)"
    m.load = 0.8
    m.run(w, 32, 0.0625, 0.0)  # the others are gone
    assert w.reason is None


def test_watch_says_nothing_when_slow_for_a_reason_it_cannot_see():
    m = _Machine()
    w = _watch(m)
    m.run(w, 32, 0.0625, 0.0)
    m.load = 3.4
    m.run(w, 16, 0.25, 0.0)  # 4x slower but never waiting: heavier work, a throttled CPU, ...
    assert w.reason is None


def test_watch_compares_with_a_moment_ago_only():
    m = _Machine()
    w = _watch(m)
    m.run(w, 32, 0.0625, 0.0)
    m.now += MEMORY_S + 1  # a minute later the old rate no longer counts
    m.load = 3.4
    m.run(w, 16, 0.25, 0.7)
    assert w.reason is None


def test_watch_reset_forgets_the_rates():
    m = _Machine()
    w = _watch(m)
    m.run(w, 32, 0.0625, 0.0)
    w.reset()
    m.load = 3.4
    m.run(w, 16, 0.25, 0.7)
    assert w.reason is None  # other work (a new batch size): nothing to compare with


def test_watch_closes_a_window_per_half_second_of_steps():
    m = _Machine()
    w = _watch(m)
    seen = []
    w.judge = lambda rate, waited, load: seen.append((rate, waited, load))  # type: ignore[method-assign]
    m.run(w, int(2 * WINDOW_S / 0.01), 0.01, 0.25)
    assert len(seen) == 2
    assert seen[0][0] == pytest.approx(100.0) and seen[0][1] == pytest.approx(0.25) and seen[0][2] == 0.5


def test_thread_scheduler_figures_grow_on_linux():
    first = read_thread_sched()
    if first is None:  # not Linux: the load average stands in
        return
    x = 0
    for i in range(200_000):
        x += i
    second = read_thread_sched()
    assert second[0] > first[0] and second[1] >= first[1]


# ------------------------------------------------------------------------------ carried to the views
def test_trainer_snapshot_and_recording_carry_the_reason(tmp_path, monkeypatch):
    from explorer.engine.trainer import Trainer
    from explorer.schema.recording import RecordingReader, RecordingWriter

    t = Trainer(tiny_matrix())
    t.train_step()
    assert t.snapshot(16).slow_reason is None
    monkeypatch.setattr(slowdown, "_load_average", lambda: 4.0)
    watch = t._seg.slow
    watch.judge(20.0, 0.0, 0.5)
    watch.judge(4.0, 0.8, 4.0)
    reason = t.slow_reason
    assert reason.startswith(BUSY)
    snap = t.snapshot(16)
    assert snap.slow_reason == reason and t.bare_snapshot().slow_reason == reason

    writer = RecordingWriter(tmp_path / "rec", {"settings": t.settings.to_dict()})
    writer.write(snap)
    writer.write(dataclasses.replace(t.snapshot(16), step=2, slow_reason=None))
    writer.close()
    reader = RecordingReader(tmp_path / "rec")
    assert reader.snapshot(snap.step).slow_reason == reason
    assert reader.snapshot(2).slow_reason is None


def test_batch_size_change_starts_the_comparison_afresh():
    from explorer.engine.trainer import Trainer

    t = Trainer(tiny_matrix())
    t._seg.slow.judge(20.0, 0.0, 0.5)
    t.apply(lr=2e-2)  # the same work: the rates stay
    assert t._seg.slow.judge(4.0, 0.8, 4.0) is not None
    t.apply(batch_size=64)  # other work: earlier rates say nothing
    assert t._seg.slow.judge(4.0, 0.8, 4.0) is None
