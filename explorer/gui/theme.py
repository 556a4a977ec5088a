"""The two themes (dark, light) and what applying one means: Qt palette, a small style sheet,
pyqtgraph's defaults, and a restyle of the plots that already exist.

A module of its own (not app.py's start-up code) so that any widget can ask for the current theme's
colours without importing the window: nothing here imports another explorer.gui module.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("dark", "light")


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


def palette_for(t: Theme) -> QPalette:
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


def style_sheet_for(t: Theme) -> str:
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
    QToolButton[role="mode"] {{ color: {t.text}; background: {t.button}; border: 1px solid {t.alt_base};
                                border-radius: 3px; padding: 2px 6px; }}
    QToolButton[role="mode"]:hover {{ border-color: {t.highlight}; }}
    QToolButton[role="mode"]:checked {{ color: #ffffff; background: {t.highlight}; border-color: {t.highlight}; }}
    QToolButton[role="mode"]:disabled {{ color: {t.dim_text}; background: {t.window}; }}
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
    app.setPalette(palette_for(t))
    app.setStyleSheet(style_sheet_for(t))
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
