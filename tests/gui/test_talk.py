"""Talk mode and scene decks, end to end (pytest-qt, offscreen, the real training and compare workers):
the clicker's keys step through the scenes whatever has the focus, each scene reaches exactly its
settings and shows exactly its views, B blanks, Esc gives the window back as it was, the default
deck plays through, and a deck with a mistake is reported while the normal window lives on.

Every test closes its window and checks that no worker thread is left."""

from __future__ import annotations

import pytest
from engine_helpers import MATRIX_SCENE_SETTINGS, tiny_matrix
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from explorer.gui import talk as talk_module
from explorer.gui.deck_player import _compare_tab
from explorer.gui.persistence import Persistence
from explorer.schema.deck import load_deck

WAIT_MS = 60_000

MATRIX = MATRIX_SCENE_SETTINGS
TEST_DECK = f"""
title = "test deck"

[[scene]]
title = "One: still"
caption = "Nothing plays."
views = ["delta", "loss"]
layout = "row"
play = false
focus = "W"
[scene.settings]
{MATRIX}rank = 2

[[scene]]
title = "Two: focus"
caption = "The loss large, the others beside it."
views = ["loss", "spectrum", "delta"]
layout = "focus"
play = true
[scene.settings]
{MATRIX}rank = 4
lr = 0.02
speed = 200.0

[[scene]]
title = "Three: compare"
caption = "Two ranks on the same data."
views = ["compare"]
layout = "focus"
play = true
[scene.settings]
{MATRIX}
[[scene.runs]]
label = "r=1"
settings = {{ rank = 1 }}
[[scene.runs]]
label = "full"
settings = {{ method = "full", lr = 0.003 }}

[[scene]]
title = "Four: the language model"
caption = "Gates from zero."
views = ["attention", "gates", "delta", "loss"]
layout = "grid"
play = true
focus = "model.layers.1.self_attn.v_proj"
[scene.settings]
scenario = "lm"
method = "lora+prefix"
rank = 2
seq_len = 16
batch_size = 2
prefix_len = 3
prefix_layers = 1
device = "cpu"
speed = 50.0
"""


def shipped_worker(settings):
    from explorer.engine.worker import TrainingWorker

    return TrainingWorker(settings, threads=1)


SETTINGS = tiny_matrix(rank=3, lr=0.05)
SIZE = (1400, 900)
pytestmark = pytest.mark.window(SETTINGS, size=SIZE)


@pytest.fixture
def test_deck(tmp_path):
    path = tmp_path / "deck.toml"
    path.write_text(TEST_DECK)
    return path


def dock_layout(win) -> dict:
    return {
        d.objectName(): (
            d.isVisible(),
            d.isFloating(),
            win.dockWidgetArea(d),
            d.geometry().getRect(),
            sorted(t.objectName() for t in win.tabifiedDockWidgets(d)),
        )
        for d in [win.controls_dock, *win.view_docks.values()]
    }


def activate(qtbot, win):
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)


def wait_scene(qtbot, win, talk, index, segment_before, playing=None):
    """The scene `index` is on: its settings in force in the worker, a snapshot of a new segment with
    them delivered, exactly its views on the stage; for a compare scene, its runs drawn."""
    scene = talk.deck.scenes[index]
    want = scene.settings.to_dict()
    # the heatmaps the engine sends are the ΔW view's (the scene's focus matrix), not the scene's setting
    view_choice = {"heatmap_matrices": scene.settings.heatmap_matrices}

    def reached():
        assert talk.index == index
        assert win.worker is not None and win.worker.settings.with_changes(**view_choice) == scene.settings
        snap = win.last_snapshot
        assert snap is not None and snap.segment > segment_before
        assert {**snap.settings, "heatmap_matrices": want["heatmap_matrices"]} == want
        if playing is True and not scene.runs:
            assert snap.state == "running" and snap.step > 0
        if playing is False:
            assert snap.state == "paused" and snap.step == 0
        if scene.runs:
            last = win.compare_host.last
            assert last is not None and [r.label for r in last.runs] == [r.label for r in scene.runs]
            assert win.views["compare"].curve_count() == len(scene.runs)
            if playing:
                assert last.step > 0

    qtbot.waitUntil(reached, timeout=WAIT_MS)
    assert talk.visible_views() == scene.views
    assert set(win.visible_view_ids()) == set(scene.views)
    assert talk.stage.title.text() == scene.title and talk.stage.caption.text() == scene.caption
    assert talk.stage.counter.text() == f"{index + 1} / {len(talk.deck.scenes)}"
    assert not win.controls_dock.isVisible() and not win.menuBar().isVisible()
    assert not win.toolbar.isVisible() and not win.statusBar().isVisible()
    return win.last_snapshot


def press(qtbot, win, talk, target, key, index, playing=None):
    seg = win.last_snapshot.segment if win.last_snapshot is not None else -1
    qtbot.keyClick(target, key)
    return wait_scene(qtbot, win, talk, index, seg, playing)


def test_keys_step_through_the_scenes_and_each_reaches_its_settings_and_views(qtbot, window, test_deck):
    win = window
    activate(qtbot, win)
    seg = win.last_snapshot.segment if win.last_snapshot is not None else -1
    talk = win.features.talk.enter(str(test_deck), play_delay_ms=0)
    assert talk is not None and talk.active and win.isFullScreen()
    one = wait_scene(qtbot, win, talk, 0, seg, playing=False)
    assert one.step == 0 and win.views["delta"].current_matrix() == "W"
    panels = talk.stage.panels  # row: side by side, the same height
    assert panels[0].geometry().top() == panels[1].geometry().top() and panels[0].x() < panels[1].x()
    # keys reach talk mode whatever has the focus: a view's picker, a text field
    picker = win.views["delta"].picker.module_box
    picker.setFocus()
    press(qtbot, win, talk, picker, Qt.Key_Space, 1, playing=True)
    big, *small = talk.stage.panels  # focus: the first view large
    assert big.width() > 1.3 * small[0].width() and all(big.height() > p.height() for p in small)
    press(qtbot, win, talk, win.views["loss"], Qt.Key_PageDown, 2, playing=True)
    assert win.views["compare"].tab() == "intrinsic"  # LoRA against full fine-tuning
    assert not win.playing and win.compare_host.playing  # the single run waits meanwhile
    spec_field = win.views["compare"].specs_edit
    spec_field.setFocus()
    text = spec_field.text()
    press(qtbot, win, talk, spec_field, Qt.Key_Right, 3, playing=True)
    assert spec_field.text() == text  # Right moved the deck, not the cursor
    assert win.compare_host.worker is None  # the comparison ended with its scene
    qtbot.waitUntil(lambda: win.views["delta"].current_matrix() == "model.layers.1.self_attn.v_proj", timeout=WAIT_MS)
    grid = talk.stage.panels  # grid: 2 x 2
    assert grid[0].y() == grid[1].y() and grid[2].y() == grid[3].y() > grid[0].y()
    # past the end nothing happens; back with Left and PageUp; Home; End
    qtbot.keyClick(win.views["loss"], Qt.Key_Space)
    assert talk.index == 3
    press(qtbot, win, talk, win.views["loss"], Qt.Key_Left, 2)
    press(qtbot, win, talk, win.views["compare"], Qt.Key_PageUp, 1)
    press(qtbot, win, talk, win.views["loss"], Qt.Key_Home, 0, playing=False)
    press(qtbot, win, talk, win.views["loss"], Qt.Key_End, 3)
    press(qtbot, win, talk, win.views["loss"], Qt.Key_Home, 0, playing=False)
    # B blanks; any key brings the picture back (and does only that); B again blanks, B shows
    qtbot.keyClick(win.views["delta"], Qt.Key_B)
    assert talk.player.blanked and talk.player.blank.geometry() == win.rect()
    qtbot.keyClick(win.views["delta"], Qt.Key_Space)
    assert not talk.player.blanked and talk.index == 0
    qtbot.keyClick(win.views["delta"], Qt.Key_B)
    assert talk.player.blanked
    qtbot.keyClick(win.views["delta"], Qt.Key_B)
    assert not talk.player.blanked
    # P plays the still scene; R restarts it from step 0, paused again (as the scene says)
    qtbot.keyClick(win.views["delta"], Qt.Key_P)
    qtbot.waitUntil(lambda: win.last_snapshot.state == "running" and win.last_snapshot.step > 3, timeout=WAIT_MS)
    press(qtbot, win, talk, win.views["delta"], Qt.Key_R, 0, playing=False)
    # + and - change the type size, remembered for the next talk
    scale = talk.font_scale
    qtbot.keyClick(win.views["delta"], Qt.Key_Plus)
    assert talk.font_scale > scale and win.views["loss"].style_.font_scale == talk.font_scale
    assert talk_module.font_scale_setting(win.store) == talk.font_scale
    qtbot.keyClick(win.views["delta"], Qt.Key_Minus)
    assert talk.font_scale == scale


def test_esc_gives_the_window_back_as_it_was(qtbot, window):
    win = window
    activate(qtbot, win)
    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.state == "running", timeout=WAIT_MS)
    before = {
        "settings": win.settings,
        "geometry": win.geometry(),
        "full": win.isFullScreen(),
        "layout": dock_layout(win),
        "docks": {d.objectName(): d.isVisible() for d in [win.controls_dock, *win.view_docks.values()]},
        "window_colour": QApplication.instance().palette().window().color().name(),
        "style_sheet": QApplication.instance().styleSheet(),
        "font": QApplication.instance().font().pointSizeF(),
        "styles": {v: (view.style_.font_scale, view.style_.high_contrast) for v, view in win.views.items()},
        "label_font": win.views["loss"].caption.font().pointSizeF(),
        "pen": win.views["loss"].train_curve.opts["pen"].widthF(),
        "control_font": win.controls.rows["rank"].font().pointSizeF(),
    }
    seg = win.last_snapshot.segment
    qtbot.keyClick(win, Qt.Key_F5)  # F5: talk mode with the default deck
    talk = win.features.talk.active
    assert talk is not None and talk.deck.path.name == "default.toml"
    wait_scene(qtbot, win, talk, 0, seg)
    app = QApplication.instance()
    assert app.palette().window().color().name() == "#000000"  # high contrast: black ...
    assert app.palette().windowText().color().name() == "#ffffff"  # ... and white
    loss = win.views["loss"]
    assert loss.style_.high_contrast and loss.style_.font_scale == pytest.approx(talk.font_scale)
    assert loss.caption.font().pointSizeF() > 1.5 * before["label_font"]  # the views' own labels grow too
    assert win.views["delta"]._cmap_name == "PuOr"  # the colour-blind-safe map
    assert loss.train_curve.opts["pen"].widthF() >= 3  # lines legible from the back of the room
    assert win.views["delta"].plot.getAxis("bottom").autoSIPrefixScale == 1.0
    qtbot.keyClick(win.views["delta"], Qt.Key_Escape)
    assert win.features.talk.active is None
    qtbot.waitUntil(lambda: not win.isFullScreen() and win.controls_dock.isVisible(), timeout=WAIT_MS)
    assert win.menuBar().isVisible() and win.toolbar.isVisible() and win.statusBar().isVisible()
    assert {d.objectName(): d.isVisible() for d in [win.controls_dock, *win.view_docks.values()]} == before["docks"]
    for view_id, view in win.views.items():  # every view back in its dock
        assert win.view_docks[view_id].widget() is view
    qtbot.waitUntil(lambda: win.geometry() == before["geometry"], timeout=WAIT_MS)
    # every dock where it was, as large as it was (saveState's bytes also hold the docks' minimum sizes,
    # which follow their content: they may differ)
    qtbot.waitUntil(lambda: dock_layout(win) == before["layout"], timeout=WAIT_MS)
    assert app.palette().window().color().name() == before["window_colour"]
    assert app.styleSheet() == before["style_sheet"] and app.font().pointSizeF() == before["font"]
    assert {v: (view.style_.font_scale, view.style_.high_contrast) for v, view in win.views.items()} == before["styles"]
    assert win.views["loss"].caption.font().pointSizeF() == before["label_font"]
    assert win.views["loss"].train_curve.opts["pen"].widthF() == before["pen"]
    assert win.controls.rows["rank"].font().pointSizeF() == before["control_font"]
    assert win.settings == before["settings"]  # the settings it had, running again
    qtbot.waitUntil(
        lambda: (
            win.worker.settings == before["settings"]
            and win.last_snapshot.settings == before["settings"].to_dict()
            and win.last_snapshot.state == "running"
        ),
        timeout=WAIT_MS,
    )


def test_the_default_deck_plays_through_end_to_end(qtbot, make_window):
    """The real default deck: the matrix scenes and the lm scenes on the shipped base model; each scene
    is entered and its first snapshot drawn, then the next."""
    win = make_window(SETTINGS, size=SIZE, factory=shipped_worker, compare_kwargs={"threads": 1})
    deck = load_deck()
    seg = win.last_snapshot.segment if win.last_snapshot is not None else -1
    talk = win.features.talk.enter(None, play_delay_ms=0)
    assert [s.title for s in talk.deck.scenes] == [s.title for s in deck.scenes]
    drawn = {}
    for index, scene in enumerate(deck.scenes):
        if index:
            seg = win.last_snapshot.segment
            qtbot.keyClick(win.views[scene.views[0]], Qt.Key_PageDown)
        snap = wait_scene(qtbot, win, talk, index, seg)
        first = win.views[scene.views[0]]
        if scene.runs:
            qtbot.waitUntil(
                lambda first=first: first.comparison() is win.compare_host.last and first.draw_count > 0,
                timeout=WAIT_MS,
            )
        else:
            qtbot.waitUntil(
                lambda first=first, snap=snap: (
                    first.snapshot is not None and first.snapshot.segment == snap.segment and first.draw_count > 0
                ),
                timeout=WAIT_MS,
            )
        if scene.focus:
            assert win.views["delta"].current_matrix() == scene.focus
        drawn[index] = first.draw_count
    assert len(drawn) == len(deck.scenes) == 5
    assert not win.views["gates"].isVisible()  # scene 4's views stay behind on scene 5
    talk.leave()


def test_a_deck_with_a_mistake_is_reported_and_the_window_stays(qtbot, window, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[scene]]\ntitle = "ok"\ncaption = "c"\nviews = ["loss"]\n'
        '[[scene]]\ntitle = "Ranks"\ncaption = "c"\nviews = ["loss"]\n[scene.settings]\nrank = 0\n'
    )
    win = window
    assert win.enter_talk_mode(str(bad)) is None
    message = "scene 2 ('Ranks'): settings: rank=0 is out of range"
    assert message in win.status.currentMessage()
    box = win.findChild(QMessageBox, "talk_deck_error")
    assert box is not None and box.isVisible() and message in box.informativeText()
    assert win.features.talk.active is None and not win.isFullScreen() and win.controls_dock.isVisible()
    box.close()
    assert win.enter_talk_mode(str(tmp_path / "missing.toml")) is None
    assert "no such deck file" in win.status.currentMessage()


CHECK_APP = """
import json, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from explorer.gui import app as app_module
from explorer.gui.main_window import MainWindow

seen = {"ticks": 0}

def check():
    wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    box = wins[0].findChild(QMessageBox, "talk_deck_error") if wins else None
    if (box is None or wins[0].worker is None) and seen["ticks"] < 600:
        seen["ticks"] += 1
        QTimer.singleShot(100, check)
        return
    if wins:
        win = wins[0]
        seen.update(text=box.informativeText() if box else "", full=win.isFullScreen(),
                    controls=win.controls_dock.isVisible(), talk=win.features.talk.active is not None,
                    status=win.status.currentMessage())
        win.close()
    QApplication.instance().quit()

app_module.make_app()          # main() uses this application; the check runs in its event loop
QTimer.singleShot(100, check)
from explorer.cli import main
rc = main(sys.argv[1:])
print("RESULT " + json.dumps(seen))
sys.exit(rc)
"""


def test_talk_from_the_command_line_with_a_bad_deck_opens_the_normal_window(tmp_path):
    """`python -m explorer --talk bad.toml`: the app comes up as the normal window and says what is wrong."""
    import json
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('[[scene]]\ntitle = "Views"\ncaption = "c"\nviews = ["loss", "heatmap"]\n')
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK_APP,
            "--talk",
            str(bad),
            "--scenario",
            "matrix",
            "--device",
            "cpu",
            "--settings-path",
            str(tmp_path / "s.ini"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.split("RESULT ", 1)[1])
    message = "scene 1 ('Views'): views: unknown view 'heatmap'"
    assert message in seen["text"]
    assert not seen["talk"] and not seen["full"] and seen["controls"]
    assert message in out.stderr


def test_closing_in_talk_mode_remembers_the_settings_from_before(qtbot, window, test_deck, tmp_path):
    win = window
    before = win.settings
    talk = win.features.talk.enter(str(test_deck), play_delay_ms=0)
    wait_scene(qtbot, win, talk, 0, -1)
    win.close()
    assert Persistence(path=str(tmp_path / "settings.ini")).load_settings() == before


def test_the_compare_view_opens_on_the_analysis_that_fits_the_runs():
    deck = load_deck()
    assert [_compare_tab(s) for s in deck.scenes if s.runs] == ["similarity", "intrinsic", "similarity"]


def test_talk_keys_are_in_the_shortcut_table():
    from explorer.gui.deck_player import talk_key_map
    from explorer.gui.shortcuts import SHORTCUTS

    keys = talk_key_map()
    for key, action in (
        (Qt.Key_Space, "talk_next"),
        (Qt.Key_PageDown, "talk_next"),
        (Qt.Key_Right, "talk_next"),
        (Qt.Key_PageUp, "talk_previous"),
        (Qt.Key_Left, "talk_previous"),
        (Qt.Key_Home, "talk_first"),
        (Qt.Key_B, "talk_blank"),
        (Qt.Key_Escape, "talk_leave"),
    ):
        assert keys[(int(key), 0)] == action
    assert any(s.action == "talk_mode" and s.keys == ("F5",) for s in SHORTCUTS)


def test_leaving_talk_mode_gives_the_run_back_exactly_as_it_was(qtbot, window):
    """Weights, optimizer, histories and step: the run goes on from where it was, not from step 0."""
    import numpy as np

    win = window
    activate(qtbot, win)
    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step >= 6, timeout=WAIT_MS)
    win.pause()
    qtbot.waitUntil(lambda: win.last_snapshot.state == "paused", timeout=WAIT_MS)
    before = win.last_snapshot
    talk = win.features.talk.enter(None)
    wait_scene(qtbot, win, talk, 0, before.segment)
    qtbot.keyClick(win.views["loss"], Qt.Key_Escape)
    assert win.features.talk.active is None

    def back():
        snap = win.last_snapshot
        assert snap.settings == before.settings and snap.step == before.step and snap.state == "paused"

    qtbot.waitUntil(back, timeout=WAIT_MS)
    after = win.last_snapshot
    assert win.settings.to_dict() == before.settings
    np.testing.assert_array_equal(after.history.steps, before.history.steps)
    np.testing.assert_allclose(after.history.loss, before.history.loss)
    for name, m in before.matrices.items():
        np.testing.assert_allclose(after.matrices[name].delta, m.delta, rtol=1e-5, atol=1e-7)
    # and it trains on from there (the optimizer's moments came back: the next step is not a first step)
    win.step_once()
    qtbot.waitUntil(lambda: win.last_snapshot.step == before.step + 1, timeout=WAIT_MS)


def test_a_playing_scene_holds_at_step_0_until_p_or_its_hold(qtbot, window, tmp_path):
    deck = tmp_path / "hold.toml"
    deck.write_text(
        'title = "hold"\n'
        f'[[scene]]\ntitle = "A"\ncaption = "waits for P"\nviews = ["delta", "loss"]\nplay = true\n'
        f"[scene.settings]\n{MATRIX}"
        f'[[scene]]\ntitle = "B"\ncaption = "starts by itself"\nviews = ["loss"]\nplay = true\nhold = 0.2\n'
        f"[scene.settings]\n{MATRIX}"
    )
    win = window
    activate(qtbot, win)
    talk = win.features.talk.enter(str(deck))
    assert talk.player.hold_ms(talk.deck.scenes[0]) is None and talk.player.hold_ms(talk.deck.scenes[1]) == 200
    wait_scene(qtbot, win, talk, 0, -1, playing=False)
    assert not talk.player._play_timer.isActive() and not win.playing  # nothing will start it but P
    qtbot.keyClick(win.views["delta"], Qt.Key_P)
    qtbot.waitUntil(lambda: win.last_snapshot.step > 0, timeout=WAIT_MS)
    seg = win.last_snapshot.segment
    qtbot.keyClick(win.views["delta"], Qt.Key_Space)
    wait_scene(qtbot, win, talk, 1, seg, playing=True)  # its hold ran out: it plays without P
    qtbot.keyClick(win.views["loss"], Qt.Key_Escape)
