"""The window hosts the compare view's runs: Compare starts a CompareWorker whose snapshots the view
draws; the single run and the comparison never train at once; bad specs are reported under the field
and the window lives on; closing the window leaves no thread behind."""

from __future__ import annotations

import pytest
from engine_helpers import tiny_matrix

from explorer.gui.compare_host import spec_text, specs_from_runs
from explorer.schema.deck import Run

WAIT_MS = 60_000


def show_compare(qtbot, win):
    dock = win.view_docks["compare"]
    dock.show()
    dock.raise_()
    qtbot.waitUntil(lambda: "compare" in win.visible_view_ids(), timeout=WAIT_MS)
    return win.views["compare"]


def test_compare_button_runs_a_comparison_and_pauses_the_single_run(qtbot, window):
    win = window
    view = show_compare(qtbot, win)
    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.state == "running", timeout=WAIT_MS)
    view.set_specs_text("lora:r=1  lora:r=4")
    with qtbot.waitSignal(win.compare_host.started, timeout=WAIT_MS):
        view.compare_button.click()
    host = win.compare_host
    assert host.playing and not win.playing  # the single run paused for the comparison
    assert host.owns("compare")
    qtbot.waitUntil(
        lambda: host.last is not None and host.last.step >= 5 and host.last.state == "running", timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: view.curve_count() == 2 and view.labels() == ["lora-r1", "lora-r4"], timeout=WAIT_MS)
    assert view.table_rows() == 2
    # the single run goes on: the comparison pauses, and the view keeps the comparison
    win.play()
    assert win.playing and not host.playing
    seen = win.delivered
    qtbot.waitUntil(lambda: win.delivered > seen + 3, timeout=WAIT_MS)
    assert view.comparison() is not None and [r.label for r in view.comparison().runs] == ["lora-r1", "lora-r4"]
    # and back: playing the comparison pauses the single run
    host.play()
    assert host.playing and not win.playing


def test_a_spec_that_does_not_fit_is_shown_under_the_field_and_the_window_lives_on(qtbot, window):
    win = window
    view = show_compare(qtbot, win)
    view.set_specs_text("lora:r=4  prefix:K=10")  # no prefix in the matrix scenario
    view.compare_button.click()
    qtbot.waitUntil(lambda: view.spec_error_text() != "", timeout=WAIT_MS)
    assert "prefix" in view.spec_error_text() and "matrix" in view.spec_error_text()
    assert win.compare_host.worker is None and not win.compare_host.owns("compare")
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    step = win.last_snapshot.step
    win.step_once()  # the window still trains
    qtbot.waitUntil(lambda: win.last_snapshot.step == step + 1, timeout=WAIT_MS)


def test_a_new_comparison_replaces_the_old_one(qtbot, window):
    win = window
    host = win.compare_host
    show_compare(qtbot, win)
    host.start(win.settings, ["lora:r=2"], play=False)
    first = host.worker
    qtbot.waitUntil(lambda: host.last is not None, timeout=WAIT_MS)
    host.start(win.settings, ["lora:r=1", "full"], play=True)
    assert host.worker is not first
    qtbot.waitUntil(
        lambda: host.last is not None and [r.label for r in host.last.runs] == ["lora-r1", "full"], timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: not first.alive, timeout=WAIT_MS)


def test_deck_runs_become_run_specs():
    base = tiny_matrix(rank=8, alpha=4.0)
    runs = [
        Run("LoRA r=1", base.with_changes(rank=1)),
        Run("full fine-tuning", base.with_changes(method="full", lr=0.003)),
    ]
    specs = specs_from_runs(base, runs)
    assert [s.label for s in specs] == ["LoRA r=1", "full fine-tuning"]
    assert specs[0].overrides == {"method": "lora", "rank": 1}
    assert specs[1].overrides == {"method": "full", "lr": 0.003}
    assert [s.settings(base) for s in specs] == [r.settings for r in runs]
    assert (
        spec_text({"method": "lora", "rank": 4, "alpha": 8.0, "targets": ("q_proj", "v_proj")})
        == "lora:r=4,alpha=8,targets=q_proj+v_proj"
    )
    with pytest.raises(ValueError, match="size_in is shared"):
        specs_from_runs(base, [Run("big", base.with_changes(size_in=64))])


def test_the_pair_is_two_runs_again_after_a_comparison_with_one_lora_run(qtbot):
    """One LoRA run (a pair of it with itself), then three: φ shows two different runs, not 'pick two'."""
    import compare_factory as cf

    from explorer.gui.views.compare_view import CompareView

    view = CompareView()
    qtbot.addWidget(view)
    view.resize(700, 700)
    view.show()
    view.update_snapshot(cf.compare_snapshot(20, runs=("lora:r=4", "full")))
    assert view.pair() == ("lora-r4", "lora-r4")
    view.clear()
    view.update_snapshot(cf.compare_snapshot(20, runs=("lora:r=1", "lora:r=4", "lora:r=16")))
    a, b = view.pair()
    assert a != b and {a, b} <= {"lora-r1", "lora-r4", "lora-r16"}
