"""Talk mode: the window as a stage for a talk or a class, stepped through a deck of scenes.

    window.features.talk.enter(deck=None)   # F5, View > Talk mode, or `python -m explorer --talk [DECK]`
    Esc                                     # leave: the window comes back exactly as it was

On entering: full screen; menus, toolbar, status bar and every dock (the settings too) hidden; a
black stage holds the scene's views, arranged by the scene's layout (grid, row, column, or focus:
the first view large, 3/5 of the width, the others stacked beside it), each under a large title; a
caption strip at the bottom carries the scene's title and caption, with a small scene counter
("2 / 5") in its corner. The look: a high-contrast theme (black, white type), type scaled by the
talk font scale (a setting, 1.8x by default; + and - change it, and it is remembered) in every view
and on the stage, and in every view the colour-blind-safe diverging map with levels that are held
(symmetric, never shrinking within a run). The stage is `explorer.gui.talk_stage`'s.

Legible from the back of a room, and never a plot squeezed to a line: a view whose plots would be
shorter than talk_fit.MIN_PLOT_PX at the talk scale gets smaller type (down to 1.0), then a larger
share of its column, and only then do the stage's own captions get smaller (on entering a scene, on
+ / -, on a resize, and when a view's text grows with its data). A scene's `log_y` says which loss
axes are logarithmic; curves are at least 3 px wide (talk_keep).

On leaving: the views go back into their docks, and the dock layout, window geometry and state,
theme, fonts, each view's style and the run are restored: the run exactly as it was (weights,
optimizer moments, loss histories, step: saved through the engine's save_state on entering and
loaded back on leaving), playing if it was playing. Without a saved state (no engine yet, or the
save failed) the run restarts from step 0 with the settings it had.

The deck's keys, scenes and blank screen are `explorer.gui.deck_player`'s; a deck that cannot be
loaded is reported (status bar, a message box, stderr) with the scene and the field, and the window
stays as it is.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QApplication,
    QMessageBox,
    QWidget,
)

from explorer.gui.deck_player import PLAY_DELAY_MS, DeckPlayer
from explorer.gui.persistence import Persistence
from explorer.gui.services import WindowServices
from explorer.gui.talk_fit import LOWEST_SCALE, MIN_PLOT_PX, fit_views, settle, shortfall, smallest_plot
from explorer.gui.talk_keep import restore_run, save_run, thicken, unthicken
from explorer.gui.talk_stage import Stage
from explorer.gui.theme import Theme, palette_for, restyle_plots, theme_by_name
from explorer.schema.deck import LOG_Y_VIEWS, Deck, Scene, load_deck

DEFAULT_FONT_SCALE = 1.8
FONT_SCALES = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.3, 2.6, 3.0)
FONT_SCALE_KEY = "talk/font_scale"
FIT_CHECK_MS = 400  # how often the plots on stage are measured (their text changes with the data)

# Black and white, the Okabe-Ito colours for the accents (safe for colour-blind eyes).
TALK_THEME = Theme(
    "talk",
    window="#000000",
    base="#000000",
    alt_base="#161616",
    text="#ffffff",
    dim_text="#c8c8c8",
    button="#1e1e1e",
    highlight="#0072B2",
    plot_bg="#000000",
    plot_fg="#ffffff",
    hot="#E69F00",
    cold="#56B4E9",
    error="#ff7a45",
    ok="#009E73",
    warn="#F0E442",
)


def _deliver_palette() -> None:
    """Qt hands a new application palette to existing widgets by posted events: deliver them now, so
    that a view restyled next reads the new palette (the budget view's secondary text is a blend of
    its text and window colours), not the one before."""
    QCoreApplication.sendPostedEvents(None, QEvent.ApplicationPaletteChange)


def font_scale_setting(store: Persistence) -> float:
    """The remembered talk font scale (DEFAULT_FONT_SCALE if none or unreadable)."""
    try:
        value = float(store.q.value(FONT_SCALE_KEY, DEFAULT_FONT_SCALE))
    except (TypeError, ValueError):
        return DEFAULT_FONT_SCALE
    return value if math.isfinite(value) and 0.5 <= value <= 4.0 else DEFAULT_FONT_SCALE


class TalkFeature:
    """Talk mode as a part of the window: at most one TalkMode on stage at a time."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.mode: TalkMode | None = None  # the last one entered
        self.error_box: QMessageBox | None = None

    @property
    def active(self) -> TalkMode | None:
        """The TalkMode on stage, or None."""
        return self.mode if self.mode is not None and self.mode.active else None

    def enter(
        self,
        deck: str | Path | Deck | None = None,
        font_scale: float | None = None,
        play_delay_ms: int | None = PLAY_DELAY_MS,
    ) -> TalkMode | None:
        """Talk mode with `deck` (a path, a Deck, or None for the default deck). Returns the TalkMode,
        or None when the deck could not be loaded (reported; the window stays as it is)."""
        current = self.active
        if current is not None and deck is None:
            return current
        try:
            loaded = deck if isinstance(deck, Deck) else load_deck(deck)
        except (OSError, ValueError) as exc:
            self.report_deck_error(str(exc))
            return None
        if current is not None:
            current.leave()
        self.mode = TalkMode(self.window, loaded, font_scale=font_scale, play_delay_ms=play_delay_ms)
        self.mode.enter()
        return self.mode

    def report_deck_error(self, message: str) -> None:
        """A deck that cannot be used: said in the status bar, a message box that does not block, stderr."""
        text = f"Talk mode: the deck could not be loaded. {message}"
        sys.stderr.write(f"peft-explorer: {text}\n")
        self.window.status.error(text)
        box = QMessageBox(
            QMessageBox.Warning, "Talk mode", "The deck could not be loaded.", QMessageBox.Ok, self.window.widget
        )
        box.setObjectName("talk_deck_error")
        box.setInformativeText(message)
        box.setWindowModality(Qt.NonModal)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.show()
        self.error_box = box

    def window_closing(self) -> None:
        """The window saves its own layout and settings, not the stage's."""
        if self.active is not None:
            self.active.leave(closing=True)


# ---------------------------------------------------------------------------------------- talk mode
class TalkMode(QObject):
    entered = Signal()
    left = Signal()

    def __init__(
        self,
        window: WindowServices,
        deck: Deck,
        font_scale: float | None = None,
        play_delay_ms: int | None = PLAY_DELAY_MS,
    ):
        super().__init__(window.widget)
        self.window = window
        self.deck = deck
        self.font_scale = float(font_scale) if font_scale else font_scale_setting(window.store)
        self.active = False
        self.stage: Stage | None = None
        self.player = DeckPlayer(window, deck, arrange=self._arrange, play_delay_ms=play_delay_ms)
        self.player.leaveRequested.connect(self.leave)
        self.player.fontStep.connect(self.step_font_scale)
        self.player.sceneEntered.connect(self._on_scene)
        self._saved: dict = {}
        self._run_dir: str | None = None  # the run saved on entering (a temporary folder and its state file)
        self._run_state: str | None = None
        self._thin: dict[int, tuple] = {}  # the curves widened on stage: id -> (item, its own pen)
        self._styled: dict[str, float] = {}  # views restyled for the stage, at which font scale
        self.fitted: dict[str, float] = {}  # the views on stage: the font scale each got (talk_fit)
        self.stage_scale = self.font_scale  # the stage's captions' (smaller when the plots need the room)
        self._short: list[str] = []  # views whose plots stay too short whatever the fit does
        self._refit = QTimer(self)  # after the stage's resizes (several in a row: one fit)
        self._refit.setSingleShot(True)
        self._refit.setInterval(50)
        self._refit.timeout.connect(self._fit)
        self._fit_check = QTimer(self)  # the plots' heights, now and then while on stage
        self._fit_check.setInterval(FIT_CHECK_MS)
        self._fit_check.timeout.connect(self._check_fit)

    # ------------------------------------------------------------------ enter
    def enter(self, index: int = 0) -> None:
        if self.active:
            return
        win = self.window
        qt = win.widget
        app = QApplication.instance()
        import pyqtgraph as pg

        compare = win.views.get("compare")
        playing = win.playing
        self._run_dir, self._run_state = save_run(self.window)
        self._saved = {
            "geometry": qt.geometry(),
            "state": qt.saveState(win.layout_version()),
            "window_state": qt.windowState(),
            "bars": {bar: not bar.isHidden() for bar in (qt.menuBar(), qt.statusBar(), *self._toolbars())},
            "settings": win.settings,
            "playing": playing,
            "palette": app.palette(),
            "style_sheet": app.styleSheet(),
            "font": app.font(),
            "theme_property": app.property("explorer_theme"),
            "pg": {k: pg.getConfigOption(k) for k in ("background", "foreground")},
            "styles": {
                v: (view.style_.font_scale, view.style_.high_contrast, view.style_.dark)
                for v, view in win.views.items()
                if hasattr(view, "style_")
            },
            "specs": compare.specs_text() if hasattr(compare, "specs_text") else None,
            "log_y": {v: win.views[v].log_box.isChecked() for v in LOG_Y_VIEWS if hasattr(win.views.get(v), "log_box")},
        }
        self.active = True
        win.compare_host.stop()
        for bar in self._saved["bars"]:
            bar.hide()
        for dock in [win.controls_dock, *win.view_docks.values()]:
            dock.hide()
        self.stage = Stage(qt, self.font_scale)
        self.stage.resized.connect(self._refit.start)
        self._apply_look()
        self.stage.show()
        self.stage.raise_()
        qt.showFullScreen()
        self.player.start(index)
        self._fit_check.start()
        self.stage.setFocus(Qt.OtherFocusReason)
        win.status.info(
            "Talk mode: each scene holds at step 0: P plays; Space / PageDown next scene, PageUp previous, B blank, Esc leaves."
        )
        self.entered.emit()

    def _toolbars(self):
        from PySide6.QtWidgets import QToolBar

        qt = self.window.widget
        return [t for t in qt.findChildren(QToolBar) if t.parentWidget() is qt]

    def _apply_look(self) -> None:
        """High contrast, scaled type: the app's palette, style sheet and font, pyqtgraph's colours,
        and every view's talk style."""
        import pyqtgraph as pg

        app = QApplication.instance()
        t = TALK_THEME
        app.setPalette(palette_for(t))
        _deliver_palette()
        # No application style sheet on stage: with one, Qt stops handing a widget's font to its
        # children, and the views' labels would keep the small type (the palette does the colours)
        app.setStyleSheet("")
        pg.setConfigOptions(background=t.plot_bg, foreground=t.plot_fg)
        restyle_plots(self.window.widget, t)
        if self.stage is not None:
            # The stage's type (not the application's: Qt hands a changed application font to hidden
            # widgets late, so the settings panel would come back with talk-sized type)
            font = QFont(self._saved["font"])
            if font.pointSizeF() > 0:
                font.setPointSizeF(font.pointSizeF() * self.font_scale)
            self.stage.setFont(font)
            self.stage.set_scale(self.font_scale)
        self._fit()  # the views on stage; the others when they come on (_arrange)

    def _fit(self, shrink_only: bool = False) -> None:
        """The plots on stage keep a usable height (talk_fit): a view whose plots would be too short
        gets smaller type, then a larger share of its column, then the stage's own captions get
        smaller. `shrink_only`: type no larger than it is now (a view's text grew with its data),
        else from the talk font scale (a new scene, another font scale, another size)."""
        if self.stage is None or not self.active:
            return
        on_stage = {v: self.window.views[v] for v in self.visible_views()}
        if shrink_only:
            start = {v: self.fitted.get(v, self.font_scale) for v in on_stage}
        else:
            start = dict.fromkeys(on_stage, self.font_scale)
            self.stage_scale = self.font_scale
            self.stage.set_scale(self.stage_scale)
        self.stage.even()
        stage_scales = sorted((s for s in FONT_SCALES if LOWEST_SCALE <= s < self.stage_scale), reverse=True)
        while True:
            if self.stage.area.layout() is not None:
                self.stage.area.layout().activate()
            self.fitted, short = fit_views(on_stage, start, FONT_SCALES, self._style_view)
            start = self.fitted  # more room next time: no view needs smaller type than it got
            self._short = short  # those that could not be helped: not measured again until something changes
            if not short:
                return
            if self._grow(on_stage, short):
                continue
            if not stage_scales:
                return
            self.stage_scale = stage_scales.pop(0)
            self.stage.set_scale(self.stage_scale)

    def _grow(self, on_stage: dict[str, QWidget], short: list[str]) -> bool:
        """A larger share of their column for the `short` views, a step at a time, each step kept only
        when the plots on stage lack less height than before it. True when one grew."""
        grew = False
        for view_id in short:
            before = shortfall(on_stage)
            if not self.stage.grow(on_stage[view_id]):
                continue
            settle()
            if shortfall(on_stage) < before - 0.5:
                grew = True
            else:  # it took the room another view needs
                self.stage.grow(on_stage[view_id], -1)
                settle()
        return grew

    def _check_fit(self) -> None:
        """A view's text grows with its data (a longer caption, another tab): shrink what no longer fits."""
        if self.stage is None or not self.active or self.player.blanked:
            return
        for view_id in self.visible_views():
            shortest = smallest_plot(self.window.views[view_id])
            if shortest is not None and shortest < MIN_PLOT_PX and view_id not in self._short:
                self._fit(shrink_only=True)
                return

    def _style_view(self, view_id: str, scale: float) -> None:
        """Dark, high contrast, type at `scale`: one restyle per view and scale (restyling every view
        at once made entering talk mode take a second)."""
        if self._styled.get(view_id) == scale:
            return
        view = self.window.views[view_id]
        style = getattr(view, "style_", None)
        if style is not None:
            style.dark = True  # set_talk_mode restyles (set_theme would do it once more)
        else:
            self.window.call_view(view, "set_theme", True)
        self.window.call_view(view, "set_talk_mode", scale, True)
        self._styled[view_id] = scale
        thicken(view, self._thin)

    def step_font_scale(self, direction: int) -> None:
        """+1: the next larger talk font scale, -1: smaller (remembered)."""
        scales = sorted(set(FONT_SCALES) | {self.font_scale})
        i = scales.index(self.font_scale) + (1 if direction > 0 else -1)
        self.set_font_scale(scales[max(0, min(len(scales) - 1, i))])

    def set_font_scale(self, scale: float) -> None:
        self.font_scale = float(scale)
        self.window.store.q.setValue(FONT_SCALE_KEY, self.font_scale)
        if self.active:
            self._apply_look()

    # ------------------------------------------------------------------ scenes
    def _arrange(self, scene: Scene) -> None:
        win = self.window
        for view in self.stage.take_views():
            self._return_view(view)
        placed = [v for v in scene.views if v in win.views]
        index = next((i for i, s in enumerate(self.deck.scenes) if s is scene), self.player.index)
        self.stage.set_caption(scene, index, len(self.deck.scenes))  # its height counts in the fit
        self.stage.show_views([(win.view_docks[v].windowTitle(), win.views[v]) for v in placed], scene.layout)
        self._fit()
        for view_id in LOG_Y_VIEWS:  # the scene says which loss axes are logarithmic; the others are linear
            if view_id in placed and hasattr(win.views[view_id], "set_log_y"):
                win.views[view_id].set_log_y(view_id in scene.log_y)

    def _return_view(self, view: QWidget) -> None:
        for view_id, v in self.window.views.items():
            if v is view:
                self.window.view_docks[view_id].setWidget(view)
                return

    def _on_scene(self, index: int) -> None:
        if self.stage is not None:
            self.stage.set_caption(self.deck.scenes[index], index, len(self.deck.scenes))

    @property
    def index(self) -> int:
        return self.player.index

    def visible_views(self) -> list[str]:
        """The view ids on the stage, in their order."""
        if self.stage is None:
            return []
        ids = {id(v): k for k, v in self.window.views.items()}
        return [ids[id(p.view)] for p in self.stage.panels if id(p.view) in ids]

    # ------------------------------------------------------------------ leave
    def leave(self, closing: bool = False) -> None:
        """Back to the window as it was (layout, geometry, theme, fonts, settings). `closing`: the
        window is closing, so only what it saves (its settings) is put back."""
        if not self.active:
            return
        self.active = False
        win = self.window
        qt = win.widget
        s = self._saved
        import pyqtgraph as pg

        self.player.stop()
        self._refit.stop()
        self._fit_check.stop()
        if self.stage is not None:
            for view in self.stage.take_views():
                self._return_view(view)
            qt.removeEventFilter(self.stage)
            self.stage.hide()
            self.stage.deleteLater()
            self.stage = None
        self.player.blank.deleteLater()
        app = QApplication.instance()
        app.setPalette(s["palette"])
        _deliver_palette()  # the views' colours below are read from their (restored) palettes
        app.setProperty("explorer_theme", s["theme_property"])
        pg.setConfigOptions(**s["pg"])
        for view_id in self._styled:  # their fonts reach their labels while no style sheet is set
            view = win.views.get(view_id)
            if view is None or view_id not in s["styles"]:
                continue
            scale, contrast, dark = s["styles"][view_id]
            if getattr(view, "style_", None) is not None:
                view.style_.dark = dark
            else:
                win.call_view(view, "set_theme", dark)
            win.call_view(view, "set_talk_mode", scale, contrast)
        self._styled = {}
        for view_id, on in s["log_y"].items():
            win.views[view_id].set_log_y(on)
        unthicken(self._thin)
        app.setStyleSheet(s["style_sheet"])
        restyle_plots(qt, theme_by_name(win.theme))
        compare = win.views.get("compare")
        if s["specs"] is not None and compare is not None:
            compare.clear()
            compare.set_specs_text(s["specs"])
        for bar, shown in s["bars"].items():
            bar.setVisible(shown)
        state = s["window_state"]
        if state & Qt.WindowFullScreen:
            qt.setWindowState(state)
        elif state & Qt.WindowMaximized:
            qt.showMaximized()
        else:  # the exact rectangle (restoreGeometry would fit it to the screen)
            qt.showNormal()
            qt.setGeometry(s["geometry"])
        qt.restoreState(s["state"], win.layout_version())
        # and again once the window manager has resized the window out of full screen (asynchronous
        # on X11): dock sizes restored into the full-screen size would be scaled down with it
        for ms in (0, 150, 400):
            QTimer.singleShot(ms, qt, lambda st=s["state"]: self._restore_docks(st))
        if closing:  # the window saves these as the settings to start with next time
            win.controls.set_settings(s["settings"])
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
        else:
            # the settings first: loading a state keeps the engine's placement settings (device, speed,
            # display size), which must be the run's, not the last scene's
            win.apply_settings(s["settings"])
            restored = restore_run(win, self._run_dir, self._run_state)
            self._run_dir = self._run_state = None
            if not restored:
                win.reset()
            if s["playing"]:
                win.play()
            win.status.info(
                "Left talk mode: your layout and run are back, as they were."
                if restored
                else "Left talk mode: your layout and settings are back (training restarted from step 0)."
            )
        self.left.emit()

    def _restore_docks(self, state) -> None:
        win = self.window
        qt = win.widget
        if not self.active and not win.closed and qt.saveState(win.layout_version()) != state:
            qt.restoreState(state, win.layout_version())
