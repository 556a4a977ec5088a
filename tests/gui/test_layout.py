"""The window's layout (offscreen): it fits a 1280 x 720 projector with every view usable, views that
do not apply to the method and scenario give their space away, and growth goes to the plots."""

from __future__ import annotations

from engine_helpers import tiny_lm
from PySide6.QtWidgets import QApplication

from explorer.gui.window_layout import CONTROLS_SHARE, view_applies
from explorer.schema.settings import TrainSettings

USABLE = (200, 120)


def settle(qtbot, win, size):
    win.resize(*size)
    win.size_docks()
    QApplication.processEvents()
    qtbot.waitUntil(lambda: win.width() == size[0] and win.height() == size[1])


def visible_views(win):
    return {v: d for v, d in win.view_docks.items() if d.isVisible() and not d.visibleRegion().isEmpty()}


def test_the_window_fits_1280x720_with_every_visible_view_usable(qtbot, make_window):
    win = make_window(TrainSettings(), start=False)
    hint = win.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720, hint
    settle(qtbot, win, (1280, 720))
    shown = visible_views(win)
    assert {"delta", "loss", "spectrum", "budget", "samples"} <= set(shown), sorted(shown)
    for view_id, dock in shown.items():
        size = dock.widget().size()
        assert size.width() >= USABLE[0] and size.height() >= USABLE[1], (view_id, size)
    # the settings take no more than CONTROLS_SHARE of a 1280 px window (they held ~1/3 of 1600 px)
    assert win.controls_dock.width() <= CONTROLS_SHARE * 1280 + 2


def test_growing_the_window_gives_the_space_to_the_plots(qtbot, make_window):
    win = make_window(TrainSettings(), start=False)
    settle(qtbot, win, (1280, 720))
    controls, delta = win.controls_dock.width(), win.view_docks["delta"].width()
    settle(qtbot, win, (1920, 1080))
    assert win.view_docks["delta"].width() - delta > 1.5 * (win.controls_dock.width() - controls)


def test_views_that_do_not_apply_give_their_space_away_and_come_back(qtbot, make_window):
    win = make_window(tiny_lm(method="lora"), start=False)
    settle(qtbot, win, (1280, 720))
    assert not win.view_docks["gates"].isVisible() and not win.view_docks["attention"].isVisible()
    assert win.view_docks["samples"].isVisible()
    win.controls.request({"method": "lora+prefix"})
    qtbot.waitUntil(lambda: win.view_docks["gates"].isVisible() and win.view_docks["attention"].isVisible())
    win.controls.request({"scenario": "matrix", "method": "lora"})
    qtbot.waitUntil(lambda: not win.view_docks["samples"].isVisible() and not win.view_docks["gates"].isVisible())
    # a dock the user closes stays closed when its view applies again
    win.view_docks["budget"].close()
    win.controls.request({"scenario": "lm"})
    qtbot.waitUntil(lambda: win.view_docks["samples"].isVisible())
    assert not win.view_docks["budget"].isVisible()


def test_which_views_apply():
    lm, matrix = TrainSettings(scenario="lm", method="lora"), TrainSettings(scenario="matrix", method="lora")
    assert not view_applies("gates", lm) and view_applies("gates", lm.with_changes(method="prefix"))
    assert not view_applies("samples", matrix) and not view_applies("attention", matrix)
    assert not view_applies("delta", lm.with_changes(method="prefix"))
    assert all(view_applies(v, matrix) for v in ("loss", "budget", "compare", "delta", "spectrum"))


def test_at_1280x720_with_prefix_views_every_view_in_front_has_room_for_its_content(qtbot, make_window):
    """lora+prefix in the lm scenario shows eight views: at 720 px a column of three clipped the
    attention view's picker, grid and caption into each other and squeezed the gates to a strip. There
    the text views share one place as tabs (so do the gates and the budget), each usable."""
    win = make_window(tiny_lm(method="lora+prefix"), start=False)
    settle(qtbot, win, (1280, 720))
    shown = visible_views(win)
    assert {"attention", "samples", "delta", "spectrum", "loss"} <= set(shown), sorted(shown)
    for view_id, dock in shown.items():
        size = dock.widget().size()
        assert size.width() >= USABLE[0] and size.height() >= 180, (view_id, size)
    docks = win.view_docks
    assert docks["samples"] in win.tabifiedDockWidgets(docks["tokens"])
    assert docks["budget"] in win.tabifiedDockWidgets(docks["gates"])
    # at 1920 x 1080 the default layout (View > Reset layout) gives every view its own place
    settle(qtbot, win, (1920, 1080))
    win.reset_layout()
    qtbot.waitUntil(
        lambda: (
            {"attention", "samples", "tokens", "gates", "budget"} <= set(visible_views(win))
            and all(d.widget().height() >= 180 for d in visible_views(win).values())
        )
    )


def test_reset_layout_keeps_the_views_that_do_not_apply_hidden(qtbot, make_window):
    win = make_window(tiny_lm(method="lora"), start=False)
    settle(qtbot, win, (1600, 1000))
    assert not win.view_docks["gates"].isVisible()
    win.reset_layout()
    qtbot.waitUntil(lambda: win.view_docks["samples"].isVisible())
    assert not win.view_docks["gates"].isVisible() and not win.view_docks["attention"].isVisible()
