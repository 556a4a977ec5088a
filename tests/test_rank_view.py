"""Rank advice: the plain-numpy rule, the rank view and the spectrum view's markers, judged by what a
person sees (pixels, the numbers in the cells, the table and the summary) against sums done here."""

from __future__ import annotations

import numpy as np
import pytest
import snapshot_factory as sf
from test_views import colours, make, pixels

from explorer.gui.views import VIEW_CLASSES
from explorer.gui.views.rank_view import RankView
from explorer.schema.rank_advice import (
    ModuleSpectrum,
    check_energy,
    compact_pattern,
    energy_kept,
    energy_rank,
    pattern_advice,
    trade_off,
)


def by_hand(values, level) -> int:
    """The smallest k with sum of the top k squares >= level * total: a plain loop."""
    s = sorted((float(v) ** 2 for v in values), reverse=True)
    total = sum(s)
    if total == 0:
        return 0
    acc = 0.0
    for k, e in enumerate(s, 1):
        acc += e
        if acc >= level * total * (1 - 1e-12):
            return k
    return len(s)


# ---- the rule ----------------------------------------------------------------------------------


def test_energy_rank_by_hand():
    values = [3.0, 2.0, 1.0, 0.5]  # squares 9, 4, 1, 0.25: total 14.25
    assert energy_rank(values, 0.6) == 1  # 9 / 14.25 = 0.63
    assert energy_rank(values, 0.9) == 2  # 13 / 14.25 = 0.912
    assert energy_rank(values, 0.95) == 3  # 14 / 14.25 = 0.982
    assert energy_rank(values, 0.99) == 4
    assert energy_rank(values, 1.0) == 4
    assert energy_rank([0.5, 3.0, 1.0, 2.0], 0.9) == 2  # any order
    assert energy_rank([0.0, 0.0], 0.9) == 0  # ΔW = 0: nothing to keep
    assert energy_rank([1.0, 1e-9], 1.0) == 1  # round-off below 1e-12 of the energy is not demanded
    assert energy_kept(values, 2) == pytest.approx(13 / 14.25)
    assert energy_kept([0.0], 1) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.gamma(0.5, size=rng.integers(1, 40))
        for level in (0.5, 0.9, 0.95, 0.99, 1.0):
            assert energy_rank(v, level) == by_hand(v, level)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.0001, float("nan"), float("inf"), "0.9", True, None])
def test_energy_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match="energy"):
        check_energy(bad)


def test_pattern_advice_counts_parameters_against_today():
    modules = [
        ModuleSpectrum("model.layers.0.self_attn.q_proj", (64, 32), 4, np.array([3.0, 2.0, 1.0, 0.5])),
        ModuleSpectrum("model.layers.0.self_attn.v_proj", (16, 32), 4, np.array([1.0, 0.1, 0.0, 0.0])),
        ModuleSpectrum("model.layers.1.self_attn.q_proj", (64, 32), 4, np.array([1.0, 1.0, 1.0, 1.0])),
    ]
    a = pattern_advice(modules, 0.9)
    assert a.ranks == {
        "model.layers.0.self_attn.q_proj": 2,
        "model.layers.0.self_attn.v_proj": 1,
        "model.layers.1.self_attn.q_proj": 4,
    }
    assert a.parameters == 2 * 96 + 1 * 48 + 4 * 96 and a.parameters_today == 4 * (96 + 48 + 96)
    # the most common rank is the default (a tie: the larger), the others are named by full path
    assert (a.r, a.rank_pattern) == (4, {"model.layers.0.self_attn.q_proj": 2, "model.layers.0.self_attn.v_proj": 1})
    kept = 13 + 1.0 + 4.0
    assert a.energy_kept == pytest.approx(kept / (14.25 + 1.01 + 4.0))
    assert a.least_kept == pytest.approx(13 / 14.25)
    params, energy = trade_off(modules, [0.5, 0.9, 1.0])
    assert list(params) == sorted(params) and params[1] == a.parameters and energy[-1] == pytest.approx(1.0)
    assert compact_pattern({"a": 2, "b": 2, "c": 5}) == (2, {"c": 5})


# ---- the rank view -----------------------------------------------------------------------------


def test_registered_as_a_view():
    assert VIEW_CLASSES["rank"] is RankView


def lora(step=200):
    return sf.lora_snapshot(step, rank=8, layers=(0, 1, 2), targets=("q_proj", "k_proj", "v_proj"))


def test_rank_view_draws_the_95_percent_ranks_a_person_can_read(qtbot):
    view = make(qtbot, "rank", 560, 640)
    blank = pixels(view.glw)
    snap = lora()
    view.update_snapshot(snap)
    qtbot.waitUntil(lambda: view.draw_count == 1)
    drawn = pixels(view.glw)
    assert colours(drawn) > colours(blank) + 20
    rows, cols, grid = view.grid()
    assert rows == ["L0", "L1", "L2"] and cols == ["q_proj", "k_proj", "v_proj"]
    expected = {name: {e: by_hand(m.spectrum, e) for e in (0.9, 0.95, 0.99)} for name, m in snap.matrices.items()}
    for i, layer in enumerate((0, 1, 2)):
        for j, kind in enumerate(cols):
            assert grid[i, j] == expected[f"model.layers.{layer}.self_attn.{kind}"][0.95]
    assert view.cell_texts() == [str(int(v)) for v in grid.ravel()]
    table = view.table_rows()
    assert len(table) == 9 and table[0][:2] == ["L0 q_proj", "8"]
    first = expected["model.layers.0.self_attn.q_proj"]
    assert table[0][2:] == [str(first[0.9]), str(first[0.95]), str(first[0.99])]
    today = 9 * 8 * (64 + 64)
    advice = sum(expected[n][0.95] * 128 for n in expected)
    summary = view.summary_text()
    assert "95 %: r = " in summary and f"{advice:,} parameters vs {today:,} today" in summary
    assert '"rank_pattern"' in summary


def test_the_level_picker_changes_colours_and_numbers(qtbot):
    view = make(qtbot, "rank", 560, 640)
    snap = lora()
    view.update_snapshot(snap)
    qtbot.waitUntil(lambda: view.draw_count == 1)
    at95 = pixels(view.glw)
    view.set_level(0.99)
    qtbot.waitUntil(lambda: view.draw_count == 2)
    _, _, grid = view.grid()
    name = "model.layers.2.self_attn.v_proj"
    assert grid[2, 2] == by_hand(snap.matrices[name].spectrum, 0.99)
    assert (pixels(view.glw) != at95).any()


def test_step_zero_and_methods_without_lora(qtbot):
    view = make(qtbot, "rank")
    view.update_snapshot(lora(step=0))
    assert "nothing to advise yet" in view.summary_text()
    assert set(view.grid()[2].ravel()) == {0.0}
    view.update_snapshot(sf.prefix_snapshot(40))
    assert "prefix tuning trains prompt vectors and gates" in view.message()
    view.update_snapshot(sf.full_snapshot(40))
    assert "full fine-tuning" in view.message()


# ---- the spectrum view's markers ------------------------------------------------------------


def test_spectrum_view_marks_the_energy_ranks(qtbot):
    view = make(qtbot, "spectrum")
    snap = sf.lora_snapshot(200, rank=16)
    view.update_snapshot(snap)
    view.set_matrix("model.layers.1.self_attn.v_proj")
    values = snap.matrices["model.layers.1.self_attn.v_proj"].spectrum
    expected = {e: by_hand(values, e) for e in (0.9, 0.95, 0.99)}
    assert view.energy_marks() == expected
    lines = view.energy_line_labels()
    assert sorted(x for x, _ in lines) == sorted(set(expected.values()))
    assert all(label.endswith("%") for _, label in lines)
    text = view.ranks_text()
    assert "keeps 90 / 95 / 99 % of Σσ² at rank " + " / ".join(f"<b>{k}</b>" for k in expected.values()) in text
    view.update_snapshot(sf.lora_snapshot(0, rank=16))
    assert view.energy_marks() == {} and view.energy_line_labels() == []
