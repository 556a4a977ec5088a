"""The rank view and the spectrum view's energy-rank markers, judged by what a person sees (pixels, the
numbers in the cells, the table and the summary) against sums done here."""

from __future__ import annotations

import snapshot_factory as sf
from test_views import colours, make, pixels

from explorer.gui.views import VIEW_CLASSES
from explorer.gui.views.rank_view import RankView
from tests.schema.test_rank_advice import by_hand

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
    assert "95 %: r = " in summary and f"{advice:,} of {today:,} parameters" in summary
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


# ---- restarting with the suggested ranks ------------------------------------------------------


def test_the_restart_button_proposes_the_chosen_levels_pattern(qtbot):
    from explorer.schema.rank_advice import ModuleSpectrum, pattern_advice

    view = make(qtbot, "rank", 560, 700)
    snap = lora()
    view.update_snapshot(snap)
    qtbot.waitUntil(lambda: view.draw_count == 1)
    modules = [ModuleSpectrum(n, m.shape, m.spectrum.size, m.spectrum) for n, m in snap.matrices.items()]
    advice = pattern_advice(modules, 0.95)
    assert view.proposal() == {"rank": advice.r, "rank_pattern": advice.rank_pattern}
    assert view.restart.isEnabled() and "95 %" in view.restart.text()
    with qtbot.waitSignal(view.settingsProposed, timeout=5000) as got:
        view.restart.click()
    assert got.args == [view.proposal()]
    # the same ranks already in force: nothing to restart
    snap.settings.update(rank=advice.r, rank_pattern=dict(advice.rank_pattern))
    snap.step += 1
    view.update_snapshot(snap)
    qtbot.waitUntil(lambda: view.draw_count == 2)
    assert not view.restart.isEnabled() and "in force" in view.restart.text()


def test_the_window_restarts_training_with_the_suggested_ranks(qtbot, make_window):
    from engine_helpers import tiny_lm
    from test_app import wait_snapshot

    win = make_window(tiny_lm(rank=4, targets=("q_proj", "v_proj")))
    win.play()
    old = wait_snapshot(qtbot, win, lambda s: s.step >= 6)
    win.view_docks["rank"].show()
    win.view_docks["rank"].raise_()
    view = win.views["rank"]
    qtbot.waitUntil(lambda: view.proposal() is not None, timeout=60_000)
    win.pause()
    proposal = view.proposal()
    view.restart.click()
    assert win.settings.rank == proposal["rank"] and win.settings.rank_pattern == proposal["rank_pattern"]
    snap = wait_snapshot(qtbot, win, lambda s: s.segment > old.segment)
    ranks = {n: m.spectrum.size for n, m in snap.matrices.items()}
    assert ranks == {n: proposal["rank_pattern"].get(n, proposal["rank"]) for n in ranks}
    assert "cold" in win.status.currentMessage() or "restarted" in win.status.currentMessage()


def test_the_rank_dock_shows_only_for_lora_runs():
    from explorer.gui.window_layout import view_applies
    from explorer.schema.settings import TrainSettings

    lm = TrainSettings()
    assert view_applies("rank", lm) and view_applies("rank", lm.with_changes(method="lora+prefix"))
    assert not view_applies("rank", lm.with_changes(method="prefix"))
    assert not view_applies("rank", lm.with_changes(method="full"))
