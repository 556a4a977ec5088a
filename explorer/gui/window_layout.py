"""The window's default dock layout: the settings on the left, the views in columns to the right.

Functions of the window's docks (not methods of the window) so the layout can be read in one place:
`place_docks` arranges them, `size_docks` shares the space, `default_geometry` sizes the window,
`fit_views` hides the docks of views that do not apply to the method and scenario in force (and shows
them again when they apply), so an empty panel never holds space the plots could use.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow

# The default layout: columns of views (by view_id), each with the share of its column's height.
DEFAULT_COLUMNS = (
    (("delta", "loss"), (0.58, 0.42)),
    (("spectrum", "gates", "budget"), (0.45, 0.25, 0.30)),
    (("attention", "samples", "tokens"), (0.24, 0.42, 0.34)),
)
COLUMN_WIDTHS = (1.0, 1.0, 1.15)  # the third column holds text (samples, tokens): a little wider
EXTRA_HOST = "budget"
VIEW_MIN = (200, 120)  # a view's floor in a dock: its own minimum size hint is a wish (it clips below it)
# On a short window (a 1280 x 720 projector) a column of three views gives each less height than a
# plot with its pickers and caption needs, and they clip. There the second view of each pair is
# tabbed behind the first (both text views; the gates behind the budget), which stays in front.
COMPACT_TABS = (("tokens", "samples"), ("gates", "budget"))
COMPACT_BELOW = 230  # px of column height per view under which the column goes compact
CONTROLS_SHARE = 0.27  # the settings' most of the window's width: the rest (and any growth) is the plots'
CONTROLS_WIDTH = 300  # ... and at least this (the panel scrolls sideways when narrower than its rows)


def view_applies(view_id: str, settings) -> bool:
    """Whether `view_id` has anything to show for `settings` (method and scenario): gates and prefix
    attention need prefix layers in the language model, samples and the token view need text, ΔW and its spectrum need a
    trained weight, rank advice needs LoRA modules. Views not named here always apply."""
    lm = settings.scenario == "lm"
    if view_id in ("gates", "attention"):
        return lm and settings.uses_prefix()
    if view_id in ("samples", "tokens"):
        return lm
    if view_id in ("delta", "spectrum"):
        return settings.method != "prefix"
    if view_id == "rank":  # rank advice is about LoRA modules
        return settings.uses_lora()
    return True


def fit_views(view_docks: dict[str, QDockWidget], settings, hidden: set[str]) -> bool:
    """Hide the docks of views that do not apply to `settings`; show again those this function hid
    (`hidden`, updated in place) once they apply. A dock the user closed stays closed. Returns whether
    anything changed."""
    changed = False
    for view_id, dock in view_docks.items():
        applies = view_applies(view_id, settings)
        if not applies and not dock.isHidden():
            dock.hide()
            hidden.add(view_id)
            changed = True
        elif applies and view_id in hidden:
            hidden.discard(view_id)
            dock.show()
            changed = True
    return changed


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
    there are tabbed behind EXTRA_HOST."""
    window.addDockWidget(Qt.LeftDockWidgetArea, controls_dock)
    controls_dock.show()
    for d in view_docks.values():
        # A view's minimum size hint (the compare table's ~390 px, a heatmap's pickers) would add up
        # along a column and across the columns and hold the window wider and taller than 1280 x 720
        hint = d.widget().minimumSizeHint()
        d.widget().setMinimumSize(min(max(hint.width(), 1), VIEW_MIN[0]), min(max(hint.height(), 1), VIEW_MIN[1]))
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
    # Views not named in DEFAULT_COLUMNS (compare) are tabbed behind the widest column's first view
    # (the budget, which every method and scenario shows), where a table is readable at 1280 x 720
    host = view_docks.get(EXTRA_HOST) or cols[0][-1]
    for d in extra:
        window.tabifyDockWidget(host, d)
    if extra:
        host.raise_()


def size_docks(window: QMainWindow, controls_dock: QDockWidget, view_docks: dict[str, QDockWidget]) -> None:
    """Controls at their natural width; the view columns share the rest, and each column's docks
    the height, by DEFAULT_COLUMNS' weights."""
    panel = controls_dock.widget()
    natural = getattr(panel, "natural_width", panel.minimumWidth())
    controls = max(panel.minimumWidth(), min(natural, max(CONTROLS_WIDTH, int(window.width() * CONTROLS_SHARE))))
    window.resizeDocks([controls_dock], [controls], Qt.Horizontal)
    height = max(window.height() - 120, 300)
    compact_columns(window, view_docks, height)
    tabbed = _tabbed_views(window, view_docks)
    cols, _extra = view_columns({v: d for v, d in view_docks.items() if not d.isHidden() and v not in tabbed})
    if not cols:
        return
    width = max(window.width() - controls - 16, 200 * len(cols))
    weights = {n: w for names, ws in DEFAULT_COLUMNS for n, w in zip(names, ws)}
    shares = [COLUMN_WIDTHS[i] if i < len(COLUMN_WIDTHS) else 1.0 for i in range(len(cols))]
    window.resizeDocks([c[0] for c in cols], [int(width * f / sum(shares)) for f in shares], Qt.Horizontal)
    for col in cols:
        ids = [d.objectName()[len("dock_") :] for d in col]
        ws = [weights.get(i, 1.0) for i in ids]
        total = sum(ws)
        window.resizeDocks(col, [int(height * w / total) for w in ws], Qt.Vertical)


def _tabbed_views(window: QMainWindow, view_docks: dict[str, QDockWidget]) -> set[str]:
    """The COMPACT_TABS views now tabbed with their hosts: they share the host's place and are not
    sized on their own."""
    return {
        view
        for view, host in COMPACT_TABS
        if view in view_docks
        and host in view_docks
        and view_docks[host] in window.tabifiedDockWidgets(view_docks[view])
    }


def compact_columns(window: QMainWindow, view_docks: dict[str, QDockWidget], height: int) -> None:
    """Tab COMPACT_TABS' views behind their hosts in the columns that would give a view less than
    COMPACT_BELOW px. Sizing the default layout does this (the window's first layout, View > Reset
    layout, views coming and going); a window made taller later keeps its tabs until the layout is
    reset, as any arrangement the user made. A view moved out of its place is left alone."""
    columns = {n: names for names, _w in DEFAULT_COLUMNS for n in names}
    shown = {v: d for v, d in view_docks.items() if not d.isHidden() and not d.isFloating()}
    for view, host in COMPACT_TABS:
        dock, host_dock = shown.get(view), shown.get(host)
        if dock is None or host_dock is None or host_dock in window.tabifiedDockWidgets(dock):
            continue
        column = [n for n in columns.get(view, ()) if n in shown and n not in _tabbed_views(window, view_docks)]
        if height / max(len(column), 1) < COMPACT_BELOW:
            window.tabifyDockWidget(host_dock, dock)
            host_dock.raise_()


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
