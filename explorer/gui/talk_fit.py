"""Plots on the stage keep a usable height: a view whose type, at the talk font scale, leaves one of
its plots shorter than MIN_PLOT_PX is given smaller type (the next smaller talk scale, down to 1.0)
until every plot fits. Large type is for the captions and axes a room reads; a plot squeezed to a
line (its labels, pickers and captions grew into its room) shows nothing at all.

    fit_views(views, start, scales, restyle)   # restyle(view_id, scale) restyles one view

When even type at 1.0 leaves a plot too short (a 720-line projector, the largest type), talk mode
makes its own captions smaller too (TalkMode._fit).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QWidget

MIN_PLOT_PX = 56  # the data area of a plot on stage: a few lines of its type, a tenth of a 576-line stage
LOWEST_SCALE = 1.0


def plot_heights(view: QWidget) -> list[float]:
    """The heights in pixels of the data areas (pyqtgraph ViewBoxes) `view` shows now."""
    import pyqtgraph as pg

    heights = []
    for gv in view.findChildren(pg.GraphicsView):
        scene = gv.scene()
        if scene is None or not gv.isVisible():
            continue
        for item in scene.items():
            if isinstance(item, pg.ViewBox) and item.isVisible() and _in_layout(item):
                heights.append(float(item.sceneBoundingRect().height()))
    return heights


def _in_layout(box) -> bool:
    """False for a ViewBox that belongs to a hidden part (e.g. a plot taken out of its layout)."""
    item = box
    while item is not None:
        if not item.isVisible():
            return False
        item = item.parentItem()
    return True


def smallest_plot(view: QWidget) -> float | None:
    """The height of `view`'s shortest plot, or None when it shows none (a text view)."""
    heights = plot_heights(view)
    return min(heights) if heights else None


def shortfall(views: dict[str, QWidget]) -> float:
    """How many pixels the shortest plots of `views` lack, all together, to reach MIN_PLOT_PX."""
    lack = 0.0
    for view in views.values():
        shortest = smallest_plot(view)
        if shortest is not None:
            lack += max(0.0, MIN_PLOT_PX - shortest)
    return lack


def settle() -> None:
    """Run the layouts that the last restyle or resize asked for (widgets and pyqtgraph's), so that
    the plots' heights can be read: posted layout requests, a few rounds (one layout's result is the
    next one's request)."""
    for _ in range(4):
        QCoreApplication.sendPostedEvents(None, QEvent.LayoutRequest)


def fit_views(
    views: dict[str, QWidget],
    start: dict[str, float],
    scales: tuple[float, ...],
    restyle: Callable[[str, float], None],
) -> tuple[dict[str, float], list[str]]:
    """Each view of `views` (id -> view on the stage) at its `start` scale, or at the largest of
    `scales` below it at which its plots keep MIN_PLOT_PX (LOWEST_SCALE at worst). Returns the scale
    each view got, and the views whose plots are still too short at LOWEST_SCALE.

    Larger type never leaves a plot more room, so the scale is found by bisection: a restyle of a
    view takes up to a tenth of a second, and trying every scale from 3.0 down made + take a second."""
    settle()
    given, short = {}, []
    for view_id, view in views.items():
        candidates = [start[view_id]] + sorted((s for s in scales if LOWEST_SCALE <= s < start[view_id]), reverse=True)

        def fits(i: int, view_id=view_id, view=view, candidates=candidates) -> bool:
            restyle(view_id, candidates[i])
            settle()
            shortest = smallest_plot(view)
            return shortest is None or shortest >= MIN_PLOT_PX

        if fits(0):
            given[view_id] = candidates[0]
            continue
        last = len(candidates) - 1
        if last == 0 or not fits(last):
            given[view_id] = candidates[last]
            short.append(view_id)
            continue
        bad, good = 0, last  # candidates[bad] does not fit, candidates[good] does
        while good - bad > 1:
            mid = (bad + good) // 2
            if fits(mid):
                good = mid
            else:
                bad = mid
        restyle(view_id, candidates[good])
        settle()
        given[view_id] = candidates[good]
    return given, short
