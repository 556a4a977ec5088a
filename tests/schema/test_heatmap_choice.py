"""The rules of which matrices' heatmaps a live snapshot carries (schema/heatmap_choice.py), the
setting that names them, and how the pooled W0 sent once survives a one-slot mailbox and reaches
every later snapshot in the window."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import snapshot_factory as sf

from explorer.engine.mailbox import Mailbox
from explorer.schema.heatmap_choice import MAX_HEATMAPS, HeldHeatmaps, carry_held, heatmap_names
from explorer.schema.settings import TrainSettings

NAMES = [f"model.layers.{i}.self_attn.{m}" for i in range(3) for m in ("q_proj", "v_proj")]


def test_the_names_asked_that_exist_in_the_models_order_else_the_first():
    assert heatmap_names(None, NAMES) == (NAMES[0],)
    assert heatmap_names((NAMES[3], NAMES[1]), NAMES) == (NAMES[1], NAMES[3])
    assert heatmap_names(("model.layers.40.mlp.up_proj", NAMES[2]), NAMES) == (NAMES[2],)
    assert heatmap_names(("another model's matrix",), NAMES) == (NAMES[0],)
    assert heatmap_names((), NAMES) == (NAMES[0],)
    assert heatmap_names(None, []) == ()


def test_the_setting_round_trips_and_refuses_bad_values_in_one_line():
    s = TrainSettings(heatmap_matrices=(NAMES[1],))
    d = s.to_dict()
    assert d["heatmap_matrices"] == [NAMES[1]]
    assert TrainSettings.from_dict(d) == s
    assert TrainSettings.from_dict({**d, "heatmap_matrices": None}).heatmap_matrices is None
    bad = {
        "too many": NAMES[: MAX_HEATMAPS + 1],
        "not names": [3],
        "not a list": "q_proj",
        "empty name": [""],
        "twice": [NAMES[0], NAMES[0]],
        "control characters": ["a\nb"],
        "too long": ["x" * 600],
        "none": [],
    }
    for why, value in bad.items():
        with pytest.raises(ValueError, match="heatmap_matrices") as err:
            TrainSettings.from_dict({**d, "heatmap_matrices": value})
        assert "\n" not in str(err.value), why
        with pytest.raises(ValueError, match="heatmap_matrices"):
            s.with_changes(heatmap_matrices=tuple(value) if isinstance(value, list) else value)


def sent(step: int, held: bool, segment: int = 0, **kw):
    snap = sf.as_sent(sf.lora_snapshot(step), held=held, **kw)
    return dataclasses.replace(snap, segment=segment)


def test_a_mailbox_hands_a_replaced_snapshots_w0_to_the_one_replacing_it():
    first, later = sent(10, held=True), sent(20, held=False)
    name = next(iter(first.matrices))
    box: Mailbox = Mailbox()
    box.put(first)
    box.put(later)  # `first` was never taken: its W0 must not be lost
    got = box.take()
    assert got.step == 20 and box.dropped == 1
    np.testing.assert_array_equal(got.matrices[name].base, first.matrices[name].base)
    np.testing.assert_array_equal(got.matrices[name].delta, later.matrices[name].delta)
    assert later.matrices[name].base is None  # the engine's snapshot itself is not changed
    # taken before it was replaced: the consumer has it already, nothing to carry
    box.put(sent(30, held=False))
    assert box.take().matrices[name].base is None


def test_nothing_is_carried_across_segments_matrices_or_display_sizes():
    first = sent(10, held=True)
    name = next(iter(first.matrices))
    assert carry_held(sent(20, held=False, segment=1), first).matrices[name].base is None
    other = NAMES[3]
    moved = sent(20, held=False, heatmap_matrices=(other,))
    assert carry_held(moved, first).matrices[other].base is None
    smaller = sent(20, held=False)
    m = smaller.matrices[name]
    smaller.matrices[name] = dataclasses.replace(m, delta=m.delta[:4, :4])
    assert carry_held(smaller, first).matrices[name].base is None


def test_the_window_puts_w0_back_into_later_snapshots_of_the_segment():
    held = HeldHeatmaps()
    first = held.fill(sent(10, held=True))
    name = next(iter(first.matrices))
    w0 = first.matrices[name].base
    later = sent(20, held=False)
    filled = held.fill(later)
    np.testing.assert_array_equal(filled.matrices[name].base, w0)
    assert later.matrices[name].base is None and filled is not later
    # another matrix chosen: its W0 comes with its first snapshot; until then none is made up
    other = NAMES[3]
    assert held.fill(sent(30, held=False, heatmap_matrices=(other,))).matrices[other].base is None
    # a new segment forgets the old W0
    assert held.fill(sent(40, held=False, segment=1)).matrices[name].base is None
    held.clear()
    assert held.fill(sent(50, held=False)).matrices[name].base is None


def test_the_70b_snapshots_as_sent_are_a_few_hundred_kilobytes():
    from multiprocessing.reduction import ForkingPickler

    whole = sf.scale_snapshot("llama-2-70b", method="lora", display_size=128)
    first, later = sf.as_sent(whole, held=True), sf.as_sent(whole, held=False)
    sizes = [len(ForkingPickler.dumps(s)) for s in (whole, first, later)]
    assert sizes[0] > 70e6 and sizes[1] < 400e3 and sizes[2] < 300e3, sizes
    assert sum(m.delta is not None for m in later.matrices.values()) == 1
    assert all(m.spectrum.size == 8 for m in later.matrices.values())
