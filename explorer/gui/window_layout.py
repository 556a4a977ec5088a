"""The window's default dock layout: the settings on the left, the views in columns to the right.

Functions of the window's docks (not methods of the window) so the layout can be read in one place:
`place_docks` arranges them, `size_docks` shares the space, `default_geometry` sizes the window.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow

# The default layout: columns of views (by view_id), each with the share of its column's height.
DEFAULT_COLUMNS = (
    (("delta", "loss"), (0.58, 0.42)),
    (("spectrum", "gates"), (0.58, 0.42)),
    (("attention", "samples", "budget"), (0.42, 0.26, 0.32)),
)
COLUMN_WIDTHS = (1.0, 1.0, 1.15)  # the third column holds text (samples, budget): a little wider


def view_columns(view_docks: dict[str, QDockWidget]) -> tuple[list[list[QDockWidget]], list[QDockWidget]]:
    """The view docks in DEFAULT_COLUMNS order, and the docks of views not named there."""
    cols: list[list[QDockWidget]] = []
    placed: set[str] = set()
    for names, _weights in DEFAULT_COLUMNS:
        cols.append([view_docks[n] for n in names if n in view_docks])
        placed.update(names)
    extra = [d for v, d in view_docks.items() if v not in placed]
    cols = [c for c in cols if c]
    if not cols and extra:
        cols, extra = [[extra[0]]], extra[1:]
    return cols, extra


def place_docks(window: QMainWindow, controls_dock: QDockWidget, view_docks: dict[str, QDockWidget]) -> None:
    """Settings on the left; the views in columns to the right (DEFAULT_COLUMNS); views not named
    there are tabbed behind the first column's last view."""
    window.addDockWidget(Qt.LeftDockWidgetArea, controls_dock)
    controls_dock.show()
    cols, extra = view_columns(view_docks)
    if not cols:
        return
    for d in [*(d for c in cols for d in c), *extra]:
        d.setFloating(False)
        d.show()
    window.addDockWidget(Qt.RightDockWidgetArea, cols[0][0])
    for prev, col in zip(cols, cols[1:]):
        window.splitDockWidget(prev[0], col[0], Qt.Horizontal)
    for col in cols:
        for upper, lower in zip(col, col[1:]):
            window.splitDockWidget(upper, lower, Qt.Vertical)
    for d in extra:
        window.tabifyDockWidget(cols[0][-1], d)
    if extra:
        cols[0][-1].raise_()


def size_docks(window: QMainWindow, controls_dock: QDockWidget, view_docks: dict[str, QDockWidget]) -> None:
    """Controls at their natural width; the view columns share the rest, and each column's docks
    the height, by DEFAULT_COLUMNS' weights."""
    controls = max(controls_dock.widget().minimumWidth(), 320)
    window.resizeDocks([controls_dock], [controls], Qt.Horizontal)
    cols, _extra = view_columns(view_docks)
    if not cols:
        return
    width = max(window.width() - controls - 16, 200 * len(cols))
    height = max(window.height() - 120, 300)
    weights = {n: w for names, ws in DEFAULT_COLUMNS for n, w in zip(names, ws)}
    shares = [COLUMN_WIDTHS[i] if i < len(COLUMN_WIDTHS) else 1.0 for i in range(len(cols))]
    window.resizeDocks([c[0] for c in cols], [int(width * f / sum(shares)) for f in shares], Qt.Horizontal)
    for col in cols:
        ids = [d.objectName()[len("dock_") :] for d in col]
        ws = [weights.get(i, 1.0) for i in ids]
        total = sum(ws)
        window.resizeDocks(col, [int(height * w / total) for w in ws], Qt.Vertical)


def default_geometry(window: QMainWindow, controls_dock: QDockWidget, view_docks: dict[str, QDockWidget]) -> None:
    """At most 1600 x 1000, centred on the primary screen, with the docks sized to it."""
    screen = QApplication.primaryScreen()
    if screen is not None:
        avail = screen.availableGeometry()
        w, h = min(1600, int(avail.width() * 0.92)), min(1000, int(avail.height() * 0.92))
        window.resize(w, h)
        window.move(avail.center().x() - w // 2, avail.center().y() - h // 2)
    else:
        window.resize(1600, 1000)
    size_docks(window, controls_dock, view_docks)
