"""QApplication setup and the two themes (dark, light): Qt palette, a small style sheet, pyqtgraph config.

`main(args)` is what `python -m explorer` runs: the window is shown (and painted) before torch is
imported; the worker module is imported on a helper thread and the worker builds its trainer in its
own thread, so the first frame never waits on a model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget


def guard_none_refcount() -> bool:
    """Work around PySide6 6.12 on CPython < 3.12: every call of a C++ method returning void drops a
    reference to None (it assumes None is immortal, as it is from 3.12 on), and a few thousand paints
    later Python aborts with "none_dealloc: deallocating None". Giving None a reference count that can
    never run out makes it immortal by hand. Returns True when the guard was needed."""
    import ctypes

    import PySide6

    major_minor = tuple(int(x) for x in PySide6.__version__.split(".")[:2])
    if sys.version_info >= (3, 12) or major_minor < (6, 12) or sys.implementation.name != "cpython":
        return False
    refcnt = ctypes.c_ssize_t.from_address(id(None))
    if refcnt.value < 1 << 60:
        refcnt.value += 1 << 60
    return True


NONE_GUARDED = guard_none_refcount()
APP_NAME = "peft-explorer"
ORG_NAME = "peft-explorer"
THEMES = ("dark", "light")
_PROCESS_T0 = time.perf_counter()


@dataclass(frozen=True)
class Theme:
    name: str
    window: str
    base: str
    alt_base: str
    text: str
    dim_text: str
    button: str
    highlight: str
    plot_bg: str
    plot_fg: str
    hot: str  # tag colour of settings that apply at once
    cold: str  # tag colour of settings that restart the adapters
    error: str
    ok: str
    warn: str


DARK = Theme(
    "dark",
    window="#1e1f22",
    base="#16171a",
    alt_base="#23252a",
    text="#e6e6e6",
    dim_text="#8d9199",
    button="#2b2d31",
    highlight="#3d7eff",
    plot_bg="#121316",
    plot_fg="#c8cad0",
    hot="#e0892b",
    cold="#4b8fe6",
    error="#ff5f56",
    ok="#3fbf6f",
    warn="#e5c07b",
)
LIGHT = Theme(
    "light",
    window="#f3f3f5",
    base="#ffffff",
    alt_base="#ececf0",
    text="#1d1f23",
    dim_text="#6a6f78",
    button="#e6e7eb",
    highlight="#2f6fec",
    plot_bg="#ffffff",
    plot_fg="#30333a",
    hot="#c05f00",
    cold="#1f63c7",
    error="#c8102e",
    ok="#1b8a4a",
    warn="#9a6700",
)


def theme_by_name(name: str | None) -> Theme:
    return LIGHT if name == "light" else DARK


def current_theme() -> Theme:
    app = QApplication.instance()
    name = app.property("explorer_theme") if app is not None else None
    return theme_by_name(name)


def _palette(t: Theme) -> QPalette:
    p = QPalette()
    c = QColor
    p.setColor(QPalette.Window, c(t.window))
    p.setColor(QPalette.WindowText, c(t.text))
    p.setColor(QPalette.Base, c(t.base))
    p.setColor(QPalette.AlternateBase, c(t.alt_base))
    p.setColor(QPalette.ToolTipBase, c(t.alt_base))
    p.setColor(QPalette.ToolTipText, c(t.text))
    p.setColor(QPalette.PlaceholderText, c(t.dim_text))
    p.setColor(QPalette.Text, c(t.text))
    p.setColor(QPalette.Button, c(t.button))
    p.setColor(QPalette.ButtonText, c(t.text))
    p.setColor(QPalette.BrightText, c(t.error))
    p.setColor(QPalette.Link, c(t.highlight))
    p.setColor(QPalette.Highlight, c(t.highlight))
    p.setColor(QPalette.HighlightedText, c("#ffffff"))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, c(t.dim_text))
    return p


def _style_sheet(t: Theme) -> str:
    return f"""
    QToolTip {{ color: {t.text}; background: {t.alt_base}; border: 1px solid {t.dim_text}; padding: 4px; }}
    QDockWidget::title {{ background: {t.alt_base}; padding: 4px 6px; }}
    QDockWidget {{ font-weight: 600; }}
    QDockWidget > QWidget {{ font-weight: normal; }}
    QGroupBox {{ font-weight: 600; border: 1px solid {t.button}; border-radius: 4px;
                 margin-top: 14px; padding: 6px 4px 4px 4px; }}
    QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {t.dim_text}; }}
    QLabel[role="hot"] {{ color: #ffffff; background: {t.hot}; border-radius: 3px;
                          padding: 0px 4px; font-size: 8pt; font-weight: 600; }}
    QLabel[role="cold"] {{ color: #ffffff; background: {t.cold}; border-radius: 3px;
                           padding: 0px 4px; font-size: 8pt; font-weight: 600; }}
    QLabel[role="error"] {{ color: {t.error}; font-size: 8pt; }}
    QLabel[role="dim"] {{ color: {t.dim_text}; }}
    QStatusBar QLabel {{ padding: 0 6px; }}
    QToolBar {{ spacing: 6px; padding: 2px; }}
    """


def apply_theme(name: str, app: QApplication | None = None, root: QWidget | None = None) -> Theme:
    """Set the palette, style sheet and pyqtgraph defaults; restyle existing plots under `root`."""
    import pyqtgraph as pg

    app = app or QApplication.instance()
    t = theme_by_name(name)
    app.setProperty("explorer_theme", t.name)
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setPalette(_palette(t))
    app.setStyleSheet(_style_sheet(t))
    pg.setConfigOptions(background=t.plot_bg, foreground=t.plot_fg, antialias=False, imageAxisOrder="row-major")
    if root is not None:
        restyle_plots(root, t)
    return t


def restyle_plots(root: QWidget, t: Theme) -> None:
    """pyqtgraph reads its colours when an item is made: repaint the ones that already exist."""
    import pyqtgraph as pg

    fg = pg.mkColor(t.plot_fg)
    for view in root.findChildren(pg.GraphicsView):
        view.setBackground(t.plot_bg)
        scene = view.scene()
        if scene is None:
            continue
        for item in scene.items():
            if isinstance(item, pg.AxisItem):
                item.setPen(fg)
                item.setTextPen(fg)
            elif isinstance(item, pg.LabelItem):
                item.setText(item.text, color=t.plot_fg)


def make_app(argv: list[str] | None = None, theme: str = "dark") -> QApplication:
    app = QApplication.instance()
    if app is None:
        # Crisp fonts and pixel-exact plots on high-DPI screens.
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationDisplayName("PEFT Explorer")
    font = app.font()
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
        app.setFont(font)
    apply_theme(theme, app)
    return app


class _FirstFrame(QObject):
    """Calls `callback(seconds_since_process_start)` once, after the window's first paint."""

    def __init__(self, window: QWidget, callback):
        super().__init__(window)
        self._callback = callback
        self._done = False
        window.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if not self._done and event.type() == QEvent.Paint:
            self._done = True
            obj.removeEventFilter(self)
            elapsed = time.perf_counter() - _PROCESS_T0
            QTimer.singleShot(0, lambda: self._callback(elapsed))
        return False


def main(args) -> int:
    """Open the window. `args` comes from `explorer.commands.app.add_arguments`."""
    from explorer.gui.main_window import THREAD_WORKER, MainWindow
    from explorer.gui.persistence import Persistence

    store = Persistence(path=getattr(args, "settings_path", None))
    if getattr(args, "reset_layout", False):
        store.clear_layout()
    theme = getattr(args, "theme", None) or store.theme()
    app = make_app(theme=theme)
    settings = store.load_settings()
    overrides = {k: getattr(args, k) for k in ("scenario", "method", "device") if getattr(args, k, None)}
    worker = THREAD_WORKER if getattr(args, "in_process", False) else None  # None: the child process
    window = MainWindow(settings, store=store, theme=theme, overrides=overrides, worker_factory=worker)
    if getattr(args, "theme", None):
        store.set_theme(args.theme)

    first_frame_exit = getattr(args, "first_frame_exit", False)

    def on_first_frame(elapsed: float) -> None:
        if first_frame_exit:
            print(f"first frame {elapsed:.3f} s", flush=True)
            window.close()
            app.quit()
            return
        replay = getattr(args, "replay", None)
        if replay:  # the recording first; the training engine starts on Back to live
            from explorer.gui.replay import open_recording

            if open_recording(window, replay) is not None:
                return
        window.start_worker(play=bool(getattr(args, "play", False)))
        talk = getattr(args, "talk", None)
        if talk is not None:
            window.enter_talk_mode(None if talk == "default" else talk)

    _FirstFrame(window, on_first_frame)
    _close_on_interrupt(window)
    window.show()
    return int(app.exec() or 0)


def _close_on_interrupt(window: QWidget) -> None:
    """Ctrl+C in the terminal closes the window properly (settings saved, worker joined). Qt's loop
    runs no Python while idle, so a slow timer gives Python's signal handler a chance to run."""
    import signal

    def handler(_signum, _frame):
        QTimer.singleShot(0, window.close)

    try:
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)
