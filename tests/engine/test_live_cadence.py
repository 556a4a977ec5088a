"""Live snapshots follow every step; the probe's attention maps, the costliest part of an lm snapshot,
are measured on a cadence of their own and ride along in between, saying when they were measured."""

from __future__ import annotations

import numpy as np
from engine_helpers import tiny_byte_model, tiny_lm

from explorer.engine.trainer import Trainer
from explorer.engine.worker import TrainingWorker


def test_a_snapshot_without_fresh_attention_carries_the_last_maps_and_their_step():
    t = Trainer(tiny_lm(method="lora+prefix"), base_model=tiny_byte_model())
    t.train_step()
    first = t.snapshot(fresh_attention=True)
    assert all(p.attention_step == 1 for p in first.prefixes)
    t.train_step()
    t.train_step()
    carried = t.snapshot(fresh_attention=False)
    assert carried.step == 3
    for old, new in zip(first.prefixes, carried.prefixes, strict=True):
        assert new.attention_step == 1
        np.testing.assert_array_equal(new.attention, old.attention)
        assert not np.array_equal(new.gates, old.gates) or np.all(old.gates == 0)
    fresh = t.snapshot()  # the default, as scripts and comparisons call it: measured now
    assert all(p.attention_step == 3 for p in fresh.prefixes)
    assert not all(np.array_equal(a.attention, b.attention) for a, b in zip(fresh.prefixes, carried.prefixes))


def test_the_worker_posts_every_paced_step_and_measures_attention_less_often():
    worker = TrainingWorker(tiny_lm(method="lora+prefix", speed=10.0), base_model=tiny_byte_model(), threads=1)
    seen: dict[int, int | None] = {}
    with worker:
        worker.wait_for(timeout=60)
        worker.play()
        start = worker.wait_for(lambda s: s.step >= 2, timeout=60)  # past the first samples
        posted0 = worker.snapshots_posted
        last = start
        while last.step < start.step + 20:
            last = worker.wait_for(lambda s, after=last.step: s.step > after, timeout=60)
            seen[last.step] = last.prefixes[0].attention_step
        posted = worker.snapshots_posted - posted0
    steps = last.step - start.step
    assert posted >= 0.8 * steps, (posted, steps)
    measured = {v for v in seen.values() if v is not None}
    assert 1 <= len(measured) <= 0.6 * len(seen), seen
    assert all(v <= k for k, v in seen.items()), seen
