"""What the loss view keeps of earlier settings: a faded "ghost" of each earlier segment's training loss,
labelled with what a cold change changed ("r=8 → r=16"), and a marker on the step axis where a hot
change (learning rate, batch) took effect ("lr 0.01 → 0.003").

A cold change restarts the adapters at step 0, so the ghosts share the step axis with the live curve:
tuning by eye compares the new setting with the old ones at the same step, as TensorBoard overlays runs.
The ghosts stay until cleared (a button on the view, or the plot's context menu); at most MAX_GHOSTS,
the oldest goes first and is the faintest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from explorer.gui.views.base import Style

MAX_GHOSTS = 6
MARKER_COLOUR = "#9aa0a8"
MARKER_PLACES = (0.97, 0.82, 0.67, 0.52, 0.37, 0.22, 0.07)  # where along its line a marker's label may sit


def ghost_rgb(style: Style) -> tuple[int, int, int]:
    """Grey, not the live curve's blue: an earlier run reads as past even where the curves cross."""
    return (170, 176, 186) if style.dark else (90, 96, 106)


@dataclass
class Ghost:
    steps: np.ndarray
    loss: np.ndarray
    label: str
    curve: pg.PlotDataItem = field(repr=False)
    text: pg.TextItem = field(repr=False)


class LossGhosts:
    """The ghost curves and hot-change markers of one loss plot."""

    def __init__(self, plot: pg.PlotItem, style: Style, smooth: Callable[[np.ndarray, float], np.ndarray]):
        self.plot = plot
        self.style_ = style
        self.smooth = smooth  # how the live training curve is smoothed: (values, weight) -> smoothed
        self.ghosts: list[Ghost] = []
        self.markers: list[pg.InfiniteLine] = []
        self._smoothing = 0.0
        self._log = False
        self._shown = True
        # labels are kept apart in pixels: placed again once a new range or size has taken effect
        self._place_timer = QtCore.QTimer()
        self._place_timer.setSingleShot(True)
        self._place_timer.setInterval(0)
        self._place_timer.timeout.connect(self.place_labels)
        plot.vb.sigRangeChanged.connect(self._place_timer.start)
        plot.vb.sigResized.connect(self._place_timer.start)
        # what the legend shows for the ghosts (not in the plot: ghosts come and go)
        self.sample = pg.PlotDataItem()
        self.avoid: list = []  # items the labels keep clear of (the view's legend)

    # ---- ghosts ----------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        """The ghosts' labels, oldest first."""
        return [g.label for g in self.ghosts]

    def add(self, steps, loss, label: str) -> None:
        """Keep (steps, training loss) of a segment that ended as a ghost labelled `label`."""
        steps = np.asarray(steps, dtype=np.float64).ravel()
        loss = np.asarray(loss, dtype=np.float64).ravel()
        n = min(steps.size, loss.size)
        if n < 2:
            return  # a segment of one point draws no curve
        while len(self.ghosts) >= MAX_GHOSTS:
            self._remove(self.ghosts[0])
        curve = pg.PlotDataItem(clipToView=True, autoDownsample=True, downsampleMethod="peak")
        curve.setZValue(-10)  # behind the live curves
        text = pg.TextItem(label, anchor=(1.0, 1.0))  # above its curve's last point, ending there
        text.setZValue(20)  # over every curve, on its own background
        self.plot.addItem(curve)
        self.plot.addItem(text, ignoreBounds=True)
        self.ghosts.append(Ghost(steps[:n].copy(), loss[:n].copy(), label, curve, text))
        self._restyle_ghosts()
        self.redraw()

    def clear(self) -> None:
        """Forget every ghost (the view's "Clear ghosts")."""
        for ghost in list(self.ghosts):
            self._remove(ghost)

    def _remove(self, ghost: Ghost) -> None:
        self.plot.removeItem(ghost.curve)
        self.plot.removeItem(ghost.text)
        self.ghosts.remove(ghost)

    def set_smoothing(self, weight: float) -> None:
        self._smoothing = float(weight)
        self.redraw()

    def set_log(self, on: bool) -> None:
        self._log = bool(on)
        self.redraw()

    def set_shown(self, shown: bool) -> None:
        """Hide the ghosts and markers (a replay shows its recording alone), or show them again."""
        shown = bool(shown)
        if shown == self._shown:
            return
        self._shown = shown
        for ghost in self.ghosts:
            ghost.curve.setVisible(shown)
            ghost.text.setVisible(shown)
        for marker in self.markers:
            marker.setVisible(shown)

    def redraw(self) -> None:
        """Smooth every ghost as the live curve is smoothed; each label at its curve's last point."""
        for ghost in self.ghosts:
            y = self.smooth(ghost.loss, self._smoothing)
            ghost.curve.setData(ghost.steps, y)
            last_y = float(y[-1])
            if self._log:  # a text item is placed in view coordinates: log10 of the value on a log axis
                last_y = float(np.log10(last_y)) if last_y > 0 else 0.0
            ghost.text.setPos(float(ghost.steps[-1]), last_y)
        self.place_labels()

    def place_labels(self) -> None:
        """Each ghost's label just above its curve's end; one that would cover a newer one (ghosts of
        settings tried one after another often end at the same height) or the legend moves by a line,
        up or down, to the nearest place inside the plot that is clear. Then each marker's label, from
        the top of its line down, where it covers none of those."""
        box = self.plot.vb.sceneBoundingRect()
        obstacles = [item.sceneBoundingRect() for item in self.avoid if item.isVisible()]
        for ghost in reversed(self.ghosts):  # the newest keeps its place
            if not ghost.text.isVisible():
                continue
            ghost.text.updateTransform(force=True)  # pyqtgraph updates it when painting: now, to measure
            fallback = None
            for lift in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
                ghost.text.setAnchor((1.0, 1.0 + lift))
                rect = ghost.text.sceneBoundingRect()
                if rect.top() < box.top() or rect.bottom() > box.bottom():
                    continue  # the plot clips what leaves it
                if not any(rect.intersects(other) for other in obstacles):
                    break
                fallback = lift if fallback is None else fallback
            else:  # nowhere clear: the first place inside the plot
                ghost.text.setAnchor((1.0, 1.0 + (fallback or 0)))
                rect = ghost.text.sceneBoundingRect()
            obstacles.append(rect)
        for marker in self.markers:  # then each marker's label, down its line until it is clear
            if not marker.isVisible():
                continue
            label = marker.label
            for place, side in [(p, s) for p in MARKER_PLACES for s in (0.0, 1.0)]:  # right of the line, or left
                label.anchors = [(side, 0.0), (side, 0.0)]
                label.setPosition(place)
                label.updateTransform(force=True)
                rect = label.sceneBoundingRect()
                if box.contains(rect) and not any(rect.intersects(other) for other in obstacles):
                    break
            obstacles.append(rect)

    def _label_fill(self) -> QtGui.QBrush:
        background = QtGui.QColor(self.style_.background)
        background.setAlpha(200)
        return pg.mkBrush(background)

    def _restyle_ghosts(self) -> None:
        n = len(self.ghosts)
        rgb = ghost_rgb(self.style_)
        width = 1.5 * max(1.0, self.style_.font_scale)
        self.sample.setPen(pg.mkPen(QtGui.QColor(*rgb, 170), width=width, style=QtCore.Qt.PenStyle.DashLine))
        for i, ghost in enumerate(self.ghosts):
            alpha = int(170 - 90 * (n - 1 - i) / max(1, MAX_GHOSTS - 1))  # the newest least faded
            colour = QtGui.QColor(*rgb, alpha)
            ghost.curve.setPen(pg.mkPen(colour, width=width, style=QtCore.Qt.PenStyle.DashLine))
            ghost.text.setColor(QtGui.QColor(*rgb))
            ghost.text.fill = self._label_fill()  # legible over the curves it ends among
            ghost.text.update()
            ghost.text.setFont(self.style_.font(8.5))

    # ---- hot-change markers ------------------------------------------------------------------------
    def marker_labels(self) -> list[tuple[float, str]]:
        """(step, label) of every hot-change marker."""
        return [(float(m.value()), m.label.format) for m in self.markers]

    def mark(self, step: float, label: str) -> None:
        """A vertical marker at `step` labelled `label` (a hot change took effect there)."""
        marker = pg.InfiniteLine(
            pos=float(step),
            angle=90,
            movable=False,
            pen=pg.mkPen(MARKER_COLOUR, width=1, style=QtCore.Qt.PenStyle.DotLine),
            label=label,
            labelOpts={
                "position": MARKER_PLACES[0],
                "anchors": [(0.0, 0.0), (0.0, 0.0)],
                "color": self.style_.muted,
                "fill": self._label_fill(),
            },
        )
        marker.setZValue(-4)
        marker.setVisible(self._shown)
        self.plot.addItem(marker, ignoreBounds=True)
        marker.label.setFont(self.style_.font(8))
        self.markers.append(marker)
        self._place_timer.start()

    def clear_markers(self) -> None:
        for marker in self.markers:
            self.plot.removeItem(marker)
        self.markers = []

    def apply_style(self) -> None:
        self._restyle_ghosts()
        for marker in self.markers:
            marker.label.setColor(self.style_.muted)
            marker.label.setFont(self.style_.font(8))
            marker.label.fill = self._label_fill()
