"""The views follow training step by step (issue 16, "Live feel"): while a run trains at a steady
10 steps a second, every visible view whose data is cheap (ΔW, spectrum, gates, loss) redraws for
(nearly) every step, and the attention maps, measured on a slower cadence of their own, do not.

Counts, not timings: the run is paced by the `speed` setting, so how many steps pass is known; how
fast the window draws belongs in bench/bench_gui.py."""

from __future__ import annotations

import pytest
from engine_helpers import tiny_lm

pytestmark = pytest.mark.window(tiny_lm(method="lora+prefix", speed=10.0), size=(1600, 1000))

STEPS = 30  # steps watched
WAIT_MS = 60_000
CHEAP = ("delta", "spectrum", "gates", "loss")
FOLLOW = 0.7  # of the steps each cheap view draws at least (a busy 2-core machine may merge a few)


def _step(win) -> int:
    snap = win.last_snapshot
    return -1 if snap is None else snap.step


def test_cheap_views_redraw_every_step_and_attention_on_its_own_cadence(window, qtbot):
    qtbot.waitUntil(lambda: window.last_snapshot is not None, timeout=WAIT_MS)
    window.play()
    qtbot.waitUntil(lambda: _step(window) >= 3, timeout=WAIT_MS)  # past the first samples
    step0 = _step(window)
    draws0 = {v: window.views[v].draw_count for v in (*CHEAP, "attention")}
    qtbot.waitUntil(lambda: _step(window) >= step0 + STEPS, timeout=WAIT_MS)
    steps = _step(window) - step0
    draws = {v: window.views[v].draw_count - draws0[v] for v in draws0}
    visible = window.visible_view_ids()
    cheap = [v for v in CHEAP if v in visible]  # a layout may tab the gates behind the budget
    assert len(cheap) >= 3 and "attention" in visible, visible
    for view in cheap:
        assert draws[view] >= FOLLOW * steps, (view, draws, steps)
    # measured at most every ATTENTION_INTERVAL_S (0.25 s, ~every 3rd step here), redrawn only then
    assert 1 <= draws["attention"] <= 0.6 * min(draws[v] for v in cheap), (draws, steps)
