"""Bounded histories and the one-slot mailbox."""

import threading
import time

import numpy as np
import pytest
from engine_helpers import one_thread  # noqa: F401  (autouse fixture)

from explorer.core.history import SpectrumHistory, ThinningBuffer
from explorer.engine.mailbox import Mailbox


def test_thinning_buffer_stays_bounded_and_spans_the_whole_run():
    buf = ThinningBuffer(capacity=64, shape=(3,))
    nbytes = buf.nbytes()
    n = 300_000
    for step in range(n):
        buf.append(step, (step, 2 * step, 0))
        assert len(buf) <= 65
    assert buf.nbytes() == nbytes  # memory flat
    steps, values = buf.arrays()
    assert steps[0] == 0 and steps[-1] == n - 1  # first point kept, newest point shown
    assert np.all(np.diff(steps) > 0)
    kept = steps[:-1]
    assert len(set(np.diff(kept))) == 1  # evenly thinned: every stride-th point
    assert np.array_equal(values[:, 0], steps) and np.array_equal(values[:, 1], 2 * steps)


def test_thinning_buffer_keeps_everything_until_full_and_rewinds():
    buf = ThinningBuffer(capacity=8)
    for s in range(6):
        buf.append(s, s * 0.5)
    steps, values = buf.arrays()
    assert steps.tolist() == [0, 1, 2, 3, 4, 5] and values.tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    buf.rewind(4)
    assert buf.arrays()[0].tolist() == [0, 1, 2, 3]
    buf.append(4, 9.0)
    assert buf.arrays()[0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        ThinningBuffer(capacity=7)


def test_spectrum_history_splits_rows_by_matrix():
    h = SpectrumHistory({"a": 2, "b": 100}, capacity=4, max_values=3)
    for s in range(3):
        h.append(s, {"a": np.array([s, 1.0]), "b": np.arange(100.0) + s})
    steps, spectra = h.arrays()
    assert steps.tolist() == [0, 1, 2]
    assert spectra["a"].shape == (3, 2) and spectra["b"].shape == (3, 3)
    assert spectra["b"][2].tolist() == [2, 3, 4]


def test_mailbox_latest_wins_and_take_never_blocks():
    box = Mailbox()
    assert box.take() is None
    for i in range(1000):
        box.put(i)  # nobody takes: the producer is never held up
    assert box.take() == 999 and box.take() is None
    assert box.dropped == 999 and box.peek() == 999
    t0 = time.perf_counter()
    assert box.wait(0.01) is None  # only `wait` waits, and only as long as asked
    assert time.perf_counter() - t0 < 1.0


def test_mailbox_under_a_fast_producer_and_a_slow_consumer():
    box = Mailbox()
    stop = threading.Event()
    produced = []

    def produce():
        i = 0
        while not stop.is_set():
            box.put(i)
            i += 1
        produced.append(i)

    t = threading.Thread(target=produce)
    t.start()
    seen = []
    try:
        deadline = time.monotonic() + 5
        while len(seen) < 50 and time.monotonic() < deadline:
            item = box.wait(1.0)
            if item is not None:
                seen.append(item)
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    assert len(seen) == 50
    assert all(b > a for a, b in zip(seen, seen[1:]))  # always newer, never a backlog
    assert produced[0] > seen[-1]
