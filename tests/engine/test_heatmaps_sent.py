"""Live snapshots carry the pooled heatmaps of the chosen matrices only (setting heatmap_matrices; by
default the first), W0 and the target once per segment / choice / display size; every matrix's norms
and spectrum always; headless snapshots stay whole. Through the worker, the choice is a hot change
and the W0 sent once reaches the consumer even when the snapshot that carried it was replaced."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (one_thread: autouse)

from explorer.engine.trainer import Trainer
from explorer.engine.worker import TrainingWorker
from explorer.schema.heatmap_choice import HeldHeatmaps

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
WAIT_S = 60


def with_maps(snap) -> dict:
    return {n: m for n, m in snap.matrices.items() if m.delta is not None}


def trained(settings, steps: int = 2) -> Trainer:
    t = Trainer(settings, base_model=tiny_byte_model())
    for _ in range(steps):
        t.train_step()
    return t


def test_a_live_snapshot_pools_the_first_matrix_only_and_keeps_every_spectrum():
    t = trained(tiny_lm(targets=ALL))
    live = t.snapshot(live=True)
    whole = t.snapshot()
    names = list(whole.matrices)
    assert len(names) == 14 and list(live.matrices) == names  # every matrix is listed
    assert list(with_maps(live)) == [names[0]]
    for name in names:
        a, b = live.matrices[name], whole.matrices[name]
        np.testing.assert_array_equal(a.spectrum, b.spectrum)
        assert (a.fro_norm, a.effective_rank, a.stable_rank, a.shape) == (
            b.fro_norm,
            b.effective_rank,
            b.stable_rank,
            b.shape,
        )
        if name != names[0]:
            assert a.delta is None and a.base is None
    np.testing.assert_array_equal(live.matrices[names[0]].delta, whole.matrices[names[0]].delta)
    np.testing.assert_array_equal(live.matrices[names[0]].base, whole.matrices[names[0]].base)
    assert all(m.delta is not None and m.base is not None for m in whole.matrices.values())


def test_w0_goes_once_per_segment_choice_and_display_size():
    t = trained(tiny_lm(targets=ALL))
    names = t._seg.source_names
    first = t.snapshot(live=True)
    assert first.matrices[names[0]].base is not None
    t.train_step()
    later = t.snapshot(live=True)
    assert later.matrices[names[0]].delta is not None and later.matrices[names[0]].base is None
    # a new choice: its W0 comes with it
    t.apply(heatmap_matrices=(names[5], names[9]))
    chosen = t.snapshot(live=True)
    assert list(with_maps(chosen)) == [names[5], names[9]]
    assert all(chosen.matrices[n].base is not None for n in (names[5], names[9]))
    assert t.snapshot(live=True).matrices[names[5]].base is None
    # a new display size: W0 pooled anew
    sized = t.snapshot(8, live=True)
    assert sized.matrices[names[5]].base is not None and sized.matrices[names[5]].base.shape[0] <= 8
    assert t.snapshot(8, live=True).matrices[names[5]].base is None
    # a snapshot that failed (its bare one may replace W0's in a mailbox): W0 goes again
    t.bare_snapshot("fault")
    assert t.snapshot(8, live=True).matrices[names[5]].base is not None
    # a headless (whole) snapshot between two live ones: the next live one sends W0 again
    t.snapshot(8)
    assert t.snapshot(8, live=True).matrices[names[5]].base is not None
    # a new segment
    t.reset()
    assert t.snapshot(8, live=True).matrices[names[5]].base is not None


def test_names_not_in_the_model_fall_back_to_the_first():
    t = trained(tiny_lm(targets=("q_proj", "v_proj"), heatmap_matrices=("model.layers.9.mlp.up_proj",)), 1)
    assert list(with_maps(t.snapshot(live=True))) == [t._seg.source_names[0]]


def test_dora_sends_the_effective_update_of_the_chosen_matrix_only():
    t = trained(tiny_lm(targets=("q_proj", "v_proj"), use_dora=True))
    names = t._seg.source_names
    t.apply(heatmap_matrices=(names[1],))
    live, whole = t.snapshot(live=True), t.snapshot()
    for name, m in live.matrices.items():
        w = whole.matrices[name]
        assert (m.effective_update is not None) == (name == names[1])
        np.testing.assert_array_equal(m.effective_update_spectrum, w.effective_update_spectrum)
        assert m.effective_update_fro_norm == w.effective_update_fro_norm
    np.testing.assert_array_equal(live.matrices[names[1]].effective_update, whole.matrices[names[1]].effective_update)


def test_full_fine_tuning_pools_the_chosen_matrix_only():
    t = trained(tiny_lm(method="full", lr=1e-4), 1)
    names = t._seg.source_names
    t.apply(heatmap_matrices=(names[-1],))
    live, whole = t.snapshot(live=True), t.snapshot()
    assert list(with_maps(live)) == [names[-1]]
    np.testing.assert_array_equal(live.matrices[names[-1]].delta, whole.matrices[names[-1]].delta)
    assert [m.fro_norm for m in live.matrices.values()] == [m.fro_norm for m in whole.matrices.values()]


def test_the_planted_target_goes_once_and_its_spectrum_always():
    t = Trainer(tiny_matrix())
    first, later = t.snapshot(live=True), t.snapshot(live=True)
    whole = t.snapshot()
    np.testing.assert_array_equal(first.matrices["W"].target, whole.matrices["W"].target)
    assert later.matrices["W"].target is None and later.matrices["W"].base is None
    np.testing.assert_array_equal(later.matrices["W"].target_spectrum, whole.matrices["W"].target_spectrum)


@pytest.fixture
def worker():
    w = TrainingWorker(tiny_lm(targets=ALL), base_model=tiny_byte_model(), threads=1)
    w.start()
    yield w
    w.close()


def test_through_the_worker_the_choice_is_hot_and_w0_arrives_once(worker):
    first = worker.wait_for(timeout=WAIT_S)
    names = list(first.matrices)
    held = HeldHeatmaps()
    first = held.fill(first)
    assert list(with_maps(first)) == [names[0]] and first.matrices[names[0]].base is not None
    worker.play()
    target = names[7]
    worker.configure(heatmap_matrices=(target,))
    # the first snapshot taken with its ΔW has its W0: sent with it, or handed on by the mailbox
    # when a later one replaced it before it was taken
    snap = worker.wait_for(lambda s: s.matrices[target].delta is not None, WAIT_S)
    assert snap.segment == first.segment and snap.matrices[target].base is not None
    held.fill(snap)
    later = worker.wait_for(lambda s: s.step > snap.step + 2, WAIT_S)
    worker.pause()
    assert later.matrices[target].base is None  # left out by the engine ...
    whole = held.fill(later)  # ... and put back by the window
    np.testing.assert_array_equal(whole.matrices[target].base, snap.matrices[target].base)
    assert list(with_maps(whole)) == [target]


def test_through_the_process_relay_as_well():
    """The window's default worker: the child's mailbox and the parent's both hand W0 on."""
    from explorer.engine.process_worker import ProcessTrainingWorker

    w = ProcessTrainingWorker(tiny_lm(targets=ALL), base_model=tiny_byte_model(), threads=1)
    w.start()
    try:
        first = w.wait_for(timeout=WAIT_S)
        names = list(first.matrices)
        assert list(with_maps(first)) == [names[0]] and first.matrices[names[0]].base is not None
        w.play()
        w.configure(heatmap_matrices=(names[11],))
        snap = w.wait_for(lambda s: s.matrices[names[11]].delta is not None, WAIT_S)
        assert snap.matrices[names[11]].base is not None
        later = w.wait_for(lambda s: s.step > snap.step + 2, WAIT_S)
        w.pause()
        assert later.matrices[names[11]].base is None and list(with_maps(later)) == [names[11]]
    finally:
        w.close()
