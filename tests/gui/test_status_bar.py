"""The status bar shows why training got slow when the engine says so (Snapshot.slow_reason), and only
while it runs (issue 17)."""

from __future__ import annotations

import dataclasses

import snapshot_factory as sf

from explorer.gui.status_bar import RATE_TIP, StatusBar

REASON = "other processes are using the CPU (load 3.4 on 2 cores)"


def _bar(qtbot) -> StatusBar:
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.show()
    qtbot.waitExposed(bar)
    return bar


def test_reason_shown_beside_the_rate_while_running(qtbot):
    bar = _bar(qtbot)
    snap = dataclasses.replace(sf.matrix_snapshot(step=40), state="running", steps_per_second=2.5, slow_reason=REASON)
    bar.update_from(snap)
    assert bar.rate.text() == "2.50 steps/s"
    assert bar.slow.isVisible() and bar.slow.text() == f"slow: {REASON}"
    assert REASON in bar.rate.toolTip() and REASON in bar.slow.toolTip()


def test_no_reason_no_label(qtbot):
    bar = _bar(qtbot)
    running = dataclasses.replace(sf.matrix_snapshot(step=40), state="running", slow_reason=REASON)
    bar.update_from(running)
    bar.update_from(dataclasses.replace(running, slow_reason=None))
    assert not bar.slow.isVisible() and bar.slow.text() == ""
    assert bar.rate.toolTip() == RATE_TIP


def test_reason_hidden_when_not_running(qtbot):
    bar = _bar(qtbot)
    bar.update_from(dataclasses.replace(sf.matrix_snapshot(step=40), state="running", slow_reason=REASON))
    bar.update_from(dataclasses.replace(sf.matrix_snapshot(step=41), state="paused", slow_reason=REASON))
    assert not bar.slow.isVisible()  # a paused run is not slow: the last rate would mislead
