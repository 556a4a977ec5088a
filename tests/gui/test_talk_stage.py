"""Talk mode legible from the back of a room (issue 16): axes whose labels are distinct and never drawn
over each other, log y where a scene asks for it, + / - that never squeeze a plot to a line, no φ
while ΔW is still exactly zero, and the window's own look (the budget view's colours, the pickers'
sizes) back exactly after leaving."""

from __future__ import annotations

import pytest
import snapshot_factory as sf
from engine_helpers import MATRIX_SCENE_SETTINGS, tiny_matrix
from PySide6 import QtGui
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from explorer.gui.talk_fit import MIN_PLOT_PX, plot_heights
from explorer.gui.views import VIEW_CLASSES

WAIT_MS = 60_000
SIZE = (1400, 900)
pytestmark = pytest.mark.window(tiny_matrix(rank=3, lr=0.05), size=SIZE)

MATRIX = MATRIX_SCENE_SETTINGS
COMPARE_DECK = f"""
title = "ranks"
[[scene]]
title = "Ranks"
caption = "Two ranks on the same data."
views = ["compare", "loss"]
layout = "column"
play = true
log_y = ["compare"]
[scene.settings]
{MATRIX}
[[scene.runs]]
label = "r=1"
settings = {{ rank = 1 }}
[[scene.runs]]
label = "r=2"
settings = {{ rank = 2 }}
"""
BUDGET_DECK = """
title = "budget"
[[scene]]
title = "What it costs"
caption = "The budget beside the matrices."
views = ["budget", "delta", "spectrum"]
layout = "grid"
[scene.settings]
scenario = "lm"
method = "lora"
rank = 2
seq_len = 16
batch_size = 2
device = "cpu"
"""


@pytest.fixture
def deck(tmp_path):
    def write(text: str):
        path = tmp_path / "deck.toml"
        path.write_text(text)
        return str(path)

    return write


# ---- axes ----------------------------------------------------------------------------------------------
def drawn_labels(axis) -> list[tuple[QtGui.QPolygonF, str]]:
    """The tick labels pyqtgraph draws on `axis` now: (rectangle, text)."""
    image = QtGui.QImage(8, 8, QtGui.QImage.Format.Format_RGB32)
    painter = QtGui.QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [] if specs is None else [(rect, text) for rect, _flags, text in specs[2]]


@pytest.mark.parametrize("scale", [1.0, 1.8, 3.0])
@pytest.mark.parametrize("size", [(560, 420), (400, 220), (420, 300), (600, 700)])
def test_the_spectrum_axes_read_distinct_labels_at_talk_sizes(qtbot, scale, size):
    """No '0 0 0 0': the cumulative-energy axis is labelled in per cent at round shares, as many as fit,
    and neither axis draws two labels over each other or the same label twice."""
    view = VIEW_CLASSES["spectrum"]()
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    view.set_talk_mode(scale, True)
    view.update_snapshot(sf.lora_snapshot(200, rank=8))
    QApplication.processEvents()
    for name in ("left", "right"):
        labels = drawn_labels(view.plot.getAxis(name))
        texts = [t for _, t in labels if t]
        assert len(texts) == len(set(texts)), (name, texts)
        rects = [r for r, t in labels if t]
        for i, a in enumerate(rects):
            for b in rects[i + 1 :]:
                assert not a.intersects(b), (name, texts)
    share = [t for _, t in drawn_labels(view.plot.getAxis("right")) if t]
    assert all(t.endswith(" %") and 0 <= int(t[:-2]) <= 100 for t in share), share
    line = QtGui.QFontMetrics(view.style_.font()).height()
    if view.plot.vb.height() >= 3 * line:  # room for two labels: the two ends at least
        assert "0 %" in share and "100 %" in share, share


def axis_problems(view) -> list[tuple[str, list[str]]]:
    """The visible axes of `view` that draw a label twice or two labels over each other."""
    import pyqtgraph as pg

    problems = []
    for gv in view.findChildren(pg.GraphicsView):
        if not gv.isVisible() or gv.scene() is None:
            continue
        for item in gv.scene().items():
            if not isinstance(item, pg.AxisItem) or not item.isVisible() or item.height() < 1 or item.width() < 1:
                continue
            labels = [(r, t) for r, t in drawn_labels(item) if t]
            texts = [t for _, t in labels]
            overlap = any(a.intersects(b) for i, (a, _) in enumerate(labels) for b, _ in labels[i + 1 :])
            if overlap or len(texts) != len(set(texts)):
                problems.append((item.orientation, texts))
    return problems


# ---- the stage -----------------------------------------------------------------------------------------
def shortest_plots(win, talk) -> dict[str, float]:
    QApplication.processEvents()
    out = {}
    for view_id in talk.visible_views():
        heights = plot_heights(win.views[view_id])
        if heights:
            out[view_id] = min(heights)
    return out


@pytest.mark.parametrize("size", [None, (1280, 720)])
def test_plus_and_minus_never_squeeze_a_plot_to_a_line(qtbot, window, size):
    """The default deck's first three scenes (heatmap, spectrum and loss; two comparisons), each after
    ten + and after ten -: every plot on stage keeps at least MIN_PLOT_PX (full screen, and a 720-line
    projector), and no axis draws a label twice or two labels over each other."""
    win = window
    talk = win.features.talk.enter(None, play_delay_ms=0)
    if size is not None:
        win.showNormal()
        win.resize(*size)
    for index in (0, 1, 2):
        talk.player.enter(index)
        if talk.deck.scenes[index].runs:  # a comparison plays, the single run waits
            qtbot.waitUntil(
                lambda: win.compare_host.last is not None and win.compare_host.last.step > 0, timeout=WAIT_MS
            )
        else:
            qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step > 0, timeout=WAIT_MS)
        for key in (Qt.Key_Plus, Qt.Key_Minus):
            for _ in range(10):
                qtbot.keyClick(win.views[talk.visible_views()[0]], key)
            assert talk.font_scale == (3.0 if key == Qt.Key_Plus else 1.0)

            def usable(index=index):
                short = {v: h for v, h in shortest_plots(win, talk).items() if h < MIN_PLOT_PX}
                assert not short, (index, talk.font_scale, talk.fitted, talk.stage_scale, short)

            qtbot.waitUntil(usable, timeout=5_000)
            for view_id in talk.visible_views():  # and no axis reads "0 0 0 0"
                assert not axis_problems(win.views[view_id]), (index, view_id, axis_problems(win.views[view_id]))
        talk.set_font_scale(1.8)
    talk.leave()


def test_a_scene_sets_log_y_where_it_says_and_leaving_gives_the_axes_back(qtbot, window, deck):
    win = window
    compare, loss = win.views["compare"], win.views["loss"]
    loss.set_log_y(True)  # the user's choices, to come back after the talk
    assert not compare.log_box.isChecked()
    talk = win.features.talk.enter(deck(COMPARE_DECK), play_delay_ms=None)
    qtbot.waitUntil(lambda: compare.curve_count() == 2, timeout=WAIT_MS)
    assert compare.log_box.isChecked() and compare.curves.plot.getAxis("left").logMode
    assert not loss.log_y()  # not in the scene's log_y: linear
    talk.leave()
    assert not compare.log_box.isChecked() and loss.log_y()


def test_no_phi_while_delta_w_is_still_exactly_zero(qtbot, window, deck):
    """φ compares the directions two LoRA runs' updates learned; at step 0 (B = 0) there are none, and
    φ of the random A matrices would read as a similarity: the tab says so instead, until a step."""
    win = window
    compare = win.views["compare"]
    talk = win.features.talk.enter(deck(COMPARE_DECK), play_delay_ms=None)
    qtbot.waitUntil(
        lambda: compare.comparison() is not None and compare.comparison().analysis is not None, timeout=WAIT_MS
    )
    assert compare.comparison().step == 0 and compare.tab() == "similarity"
    assert compare.phi() is None
    caption = compare.analyses.similarity.caption.text()
    assert "still exactly 0" in caption and "φ(1,1)" not in caption
    qtbot.keyClick(compare, Qt.Key_P)

    def shown():
        snap = compare.comparison()
        assert snap.analysis is not None and snap.analysis.step > 0 and compare.phi() is not None

    qtbot.waitUntil(shown, timeout=WAIT_MS)
    assert "φ(1,1)" in compare.analyses.similarity.caption.text()
    talk.leave()


def look(win) -> dict:
    """What leaving talk mode must give back (id -> (the widget, what it looks like)): every widget of
    the budget view, its style sheet and font (its colours are style sheets), and of the two matrix
    pickers, font and size hints (how wide the layer and module boxes are)."""
    out = {}
    for w in [win.views["budget"], *win.views["budget"].findChildren(QWidget)]:
        out[id(w)] = (w, w.styleSheet(), w.font().toString())
    for picker in (win.views["delta"].picker, win.views["spectrum"].picker):
        for w in [picker, *picker.findChildren(QWidget)]:
            out[id(w)] = (w, w.font().toString(), w.sizeHint().toTuple(), w.minimumSizeHint().toTuple())
    return out


def settled_look(qtbot, win) -> dict:
    """look(win) once two in a row agree: a window just shown may still have polish and layout events
    pending (in a full run a picker label's minimum size read 86 px, then 70 px, with no talk mode)."""
    last = [None]

    def same() -> bool:
        QApplication.processEvents()
        now = {k: v[1:] for k, v in look(win).items()}
        agreed, last[0] = now == last[0], now
        return agreed

    qtbot.waitUntil(same, timeout=WAIT_MS)
    return look(win)


def test_leaving_gives_back_the_budget_views_colours_and_the_pickers_sizes(qtbot, make_window, deck):
    from engine_helpers import tiny_lm

    win = make_window(tiny_lm())
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    before, run = settled_look(qtbot, win), win.last_snapshot.settings
    docks = {d.objectName(): d.geometry().getRect() for d in win.view_docks.values()}
    talk = win.features.talk.enter(deck(BUDGET_DECK), play_delay_ms=None)
    qtbot.waitUntil(lambda: win.views["budget"].draw_count > 0 and talk.visible_views() == talk.deck.scenes[0].views)
    dock = win.view_docks["budget"]  # the talk palette has reached the docks the views go back to
    qtbot.waitUntil(lambda: dock.palette().window().color().name() == "#000000", timeout=WAIT_MS)
    qtbot.keyClick(win.views["budget"], Qt.Key_Plus)
    qtbot.keyClick(win.views["budget"], Qt.Key_Escape)
    qtbot.waitUntil(lambda: not win.isFullScreen() and win.controls_dock.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(  # the run back, and drawn: the budget's numbers are the run's again; the docks where they were
        lambda: (
            win.last_snapshot.settings == run
            and win.views["budget"].snapshot is win.last_snapshot
            and {d.objectName(): d.geometry().getRect() for d in win.view_docks.values()} == docks
        ),
        timeout=WAIT_MS,
    )
    after = settled_look(qtbot, win)
    # the widgets there before and after (the budget's table is rebuilt when its numbers change)
    kept = [k for k in before if k in after and before[k][0] is after[k][0]]
    permanent = [
        *(id(card.value) for card in (win.views["budget"].trainable, win.views["budget"].share)),
        *(id(card.detail) for card in (win.views["budget"].storage, win.views["budget"].optimizer)),
        *(
            id(box)
            for v in ("delta", "spectrum")
            for box in (win.views[v].picker.layer_box, win.views[v].picker.module_box)
        ),
    ]
    assert set(permanent) <= set(kept)
    changed = {
        type(before[k][0]).__name__: (before[k][1:], after[k][1:]) for k in kept if before[k][1:] != after[k][1:]
    }
    assert not changed


TALK_APP = """
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from explorer.gui import app as app_module
from explorer.gui.main_window import MainWindow

seen = {"ticks": 0}

def check():
    wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    win = wins[0] if wins else None
    talk = win.features.talk.active if win is not None else None
    snap = win.last_snapshot if win is not None else None
    ready = talk is not None and snap is not None and snap.segment > 0 and win.views["delta"].draw_count > 0
    if not ready and seen["ticks"] < 1200:
        seen["ticks"] += 1
        QTimer.singleShot(100, check)
        return
    if win is not None:
        seen.update(talk=talk is not None, scenario=snap.settings.get("scenario") if snap else None,
                    worker=win.worker.settings.scenario if win.worker else None,
                    matrix=win.views["delta"].current_matrix())
        win.close()
    QApplication.instance().quit()

if __name__ == "__main__":
    app_module.make_app()
    QTimer.singleShot(100, check)
    from explorer.cli import main
    rc = main(sys.argv[1:])
    print("RESULT " + json.dumps(seen))
    sys.exit(rc)
"""


def test_talk_from_the_command_line_starts_once_the_engine_runs(tmp_path):
    """`python -m explorer --talk` after a language-model run: the first scene (the matrix scenario)
    reaches the engine. Entered while the engine was still starting, its settings were lost and the
    stage showed the last run's model."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "talk_app.py"
    script.write_text(TALK_APP)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, str(script), "--talk", "--scenario", "lm", "--settings-path", str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert seen["talk"] and seen["scenario"] == "matrix" and seen["worker"] == "matrix", seen
    assert seen["matrix"] == "W"  # the scene's focus, on the heatmap
