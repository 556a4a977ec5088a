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
(symmetric, never shrinking within a run).

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

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from explorer.gui.deck_player import PLAY_DELAY_MS, DeckPlayer
from explorer.gui.persistence import Persistence
from explorer.gui.services import WindowServices
from explorer.gui.talk_keep import restore_run, save_run, thicken, unthicken
from explorer.gui.theme import Theme, palette_for, restyle_plots, theme_by_name
from explorer.schema.deck import Deck, Scene, load_deck

DEFAULT_FONT_SCALE = 1.8
FONT_SCALES = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.3, 2.6, 3.0)
FONT_SCALE_KEY = "talk/font_scale"
ACCENT = "#E69F00"  # Okabe-Ito orange: the scene title's rule, readable on black

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


# ---------------------------------------------------------------------------------------- the stage
class Panel(QWidget):
    """One view on the stage, under its title."""

    def __init__(self, title: str, view: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("talk_panel")
        self.view = view
        # The layout's stretch decides the sizes, not the views' minimum sizes (on a small projector a
        # small view is clipped rather than the large one squeezed)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        lay = QVBoxLayout(self)
        lay.setSizeConstraint(QVBoxLayout.SetNoConstraint)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(2)
        self.title = QLabel(title, self)
        self.title.setObjectName("talk_panel_title")
        lay.addWidget(self.title)
        lay.addWidget(view, 1)
        view.show()

    def set_scale(self, scale: float) -> None:
        _style_label(self.title, 10 * scale, "#d8d8d8", bold=True)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        """No: a view's word-wrapped caption would make its panel's height-for-width the whole column's
        height (the stretch factors, not the content, share the stage)."""
        return False


def _colour(widget: QWidget, colour: str, role=QPalette.WindowText) -> None:
    pal = widget.palette()
    pal.setColor(role, QColor(colour))
    widget.setPalette(pal)


def _style_label(label: QLabel, points: float, colour: str, bold: bool = False) -> None:
    font = QFont(label.font())
    font.setPointSizeF(max(6.0, points))
    font.setBold(bold)
    label.setFont(font)
    _colour(label, colour)


class Stage(QWidget):
    """A black sheet over the whole window: the scene's views, and the caption strip at the bottom."""

    def __init__(self, host: QWidget, scale: float):
        super().__init__(host)
        self.setObjectName("talk_stage")
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QPalette.Window, QColor("#000000"))
        pal.setColor(QPalette.WindowText, QColor("#ffffff"))
        self.setPalette(pal)
        self.scale = scale
        self.panels: list[Panel] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 6)
        outer.setSpacing(6)
        self.area = QWidget(self)
        outer.addWidget(self.area, 1)
        self.rule = QFrame(self)  # the accent line above the caption
        self.rule.setObjectName("talk_rule")
        self.rule.setFixedHeight(3)
        self.rule.setAutoFillBackground(True)
        _colour(self.rule, ACCENT, QPalette.Window)
        outer.addWidget(self.rule, 0)
        self.strip = QFrame(self)
        self.strip.setObjectName("talk_caption_strip")
        strip = QHBoxLayout(self.strip)
        strip.setContentsMargins(14, 8, 14, 6)
        strip.setSpacing(24)
        texts = QVBoxLayout()
        texts.setSpacing(4)
        self.title = QLabel(self.strip)
        self.title.setObjectName("talk_title")
        self.title.setTextFormat(Qt.PlainText)
        self.caption = QLabel(self.strip)
        self.caption.setTextFormat(Qt.PlainText)
        self.caption.setObjectName("talk_caption")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        texts.addWidget(self.title)
        texts.addWidget(self.caption)
        strip.addLayout(texts, 1)
        self.counter = QLabel(self.strip)
        self.counter.setObjectName("talk_counter")
        self.counter.setAlignment(Qt.AlignRight | Qt.AlignBottom)
        self.counter.setToolTip(
            "Space / PageDown: next scene · PageUp: previous · B: blank · Esc: leave · F1: every key"
        )
        strip.addWidget(self.counter, 0, Qt.AlignRight | Qt.AlignBottom)
        outer.addWidget(self.strip, 0)
        self.set_scale(scale)
        host.installEventFilter(self)
        self.setGeometry(host.rect())

    def set_scale(self, scale: float) -> None:
        """Type sizes by `scale` (fonts and palettes set directly: a style sheet here would stop the
        views' own fonts from reaching their labels)."""
        self.scale = scale
        _style_label(self.title, 15 * scale, "#ffffff", bold=True)
        _style_label(self.caption, 11.5 * scale, "#ffffff")
        _style_label(self.counter, 9 * scale, "#9a9a9a")
        for panel in self.panels:
            panel.set_scale(scale)

    def set_caption(self, scene: Scene, index: int, total: int) -> None:
        self.title.setText(scene.title)
        self.caption.setText(scene.caption)
        self.counter.setText(f"{index + 1} / {total}")

    def take_views(self) -> list[QWidget]:
        """Empty the stage; returns the views that were on it (their panels are deleted)."""
        views = []
        for panel in self.panels:
            views.append(panel.view)
            panel.view.setParent(None)
            panel.hide()
            panel.deleteLater()
        self.panels = []
        old = self.area
        self.area = QWidget(self)
        self.layout().replaceWidget(old, self.area)
        old.hide()
        old.deleteLater()
        return views

    def show_views(self, items: list[tuple[str, QWidget]], layout: str) -> None:
        """Put `items` [(title, view)] on the (empty) stage, arranged by `layout`."""
        self.panels = [Panel(title, view) for title, view in items]
        for panel in self.panels:
            panel.set_scale(self.scale)
        panels = self.panels
        n = len(panels)
        if layout == "focus" and n > 1:
            row = QHBoxLayout(self.area)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(8)
            row.addWidget(panels[0], 3)  # 3 : 2 - a square heatmap uses the height anyway
            col = QVBoxLayout()
            col.setSpacing(8)
            for p in panels[1:]:
                col.addWidget(p, 1)
            row.addLayout(col, 1)
        elif layout == "row":
            row = QHBoxLayout(self.area)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(8)
            for p in panels:
                row.addWidget(p, 1)
        elif layout == "column":
            col = QVBoxLayout(self.area)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(8)
            for p in panels:
                col.addWidget(p, 1)
        else:  # grid (and focus with one view)
            grid = QGridLayout(self.area)
            grid.setContentsMargins(0, 0, 0, 0)
            grid.setSpacing(8)
            cols = max(1, math.ceil(math.sqrt(n)))
            rows = max(1, math.ceil(n / cols))
            for i, p in enumerate(panels):
                r, c = divmod(i, cols)
                span = cols - c if i == n - 1 else 1  # the last one fills its row
                grid.addWidget(p, r, c, 1, span)
            for c in range(cols):
                grid.setColumnStretch(c, 1)
            for r in range(rows):
                grid.setRowStretch(r, 1)
        self.area.show()
        for panel in panels:
            panel.show()
        self.area.layout().activate()  # sizes now: the cut is one frame, not two

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if obj is self.parentWidget() and event.type() == QEvent.Resize:
            self.setGeometry(obj.rect())
        return False


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
        }
        self.active = True
        win.compare_host.stop()
        for bar in self._saved["bars"]:
            bar.hide()
        for dock in [win.controls_dock, *win.view_docks.values()]:
            dock.hide()
        self.stage = Stage(qt, self.font_scale)
        self._apply_look()
        self.stage.show()
        self.stage.raise_()
        qt.showFullScreen()
        self.player.start(index)
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
        # No application style sheet on stage: with one, Qt stops handing a widget's font to its
        # children, and the views' labels would keep the small type (the palette does the colours)
        app.setStyleSheet("")
        pg.setConfigOptions(background=t.plot_bg, foreground=t.plot_fg)
        restyle_plots(self.window.widget, t)
        for view_id in self.visible_views():  # the others when they come on stage (_arrange)
            self._style_view(view_id)
        if self.stage is not None:
            # The stage's type (not the application's: Qt hands a changed application font to hidden
            # widgets late, so the settings panel would come back with talk-sized type)
            font = QFont(self._saved["font"])
            if font.pointSizeF() > 0:
                font.setPointSizeF(font.pointSizeF() * self.font_scale)
            self.stage.setFont(font)
            self.stage.set_scale(self.font_scale)

    def _style_view(self, view_id: str) -> None:
        """Dark, high contrast, the talk font scale: one restyle per view and scale (restyling every
        view at once made entering talk mode take a second)."""
        if self._styled.get(view_id) == self.font_scale:
            return
        view = self.window.views[view_id]
        style = getattr(view, "style_", None)
        if style is not None:
            style.dark = True  # set_talk_mode restyles (set_theme would do it once more)
        else:
            self.window.call_view(view, "set_theme", True)
        self.window.call_view(view, "set_talk_mode", self.font_scale, True)
        self._styled[view_id] = self.font_scale
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
        self.stage.show_views([(win.view_docks[v].windowTitle(), win.views[v]) for v in placed], scene.layout)
        for view_id in placed:
            self._style_view(view_id)

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
