"""The loss curves of every run: training loss smoothed (TensorBoard's debiased EMA) as solid lines,
held-out loss as dashed lines with markers, one colour per run, a legend."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui

from explorer.gui.views.base import (
    Style,
    centre_text,
    corner_legend,
    loss_plot,
    new_layout_widget,
    style_legend,
    style_plot,
)
from explorer.gui.views.compare.runs import run_colour, run_pen
from explorer.gui.views.loss_view import ema_debiased


class RunCurves:
    """A GraphicsLayoutWidget (`glw`) with one plot; `draw(snap)` keeps one pair of curves per run."""

    def __init__(self, style: Style):
        self.style_ = style
        self.show_eval = True
        self.train_items: dict[str, pg.PlotDataItem] = {}
        self.eval_items: dict[str, pg.PlotDataItem] = {}
        self.glw = new_layout_widget(style)
        self.glw.ci.setToolTip("Training loss (solid, smoothed) and held-out loss (dashed) of every run")
        self.plot = loss_plot(self.glw)
        self.legend = corner_legend(self.plot)
        self.empty_text = centre_text(self.plot, "no runs yet")

    def labels(self) -> list[str]:
        return list(self.train_items)

    def curve_count(self) -> int:
        """Training-loss curves with data (one per run)."""
        return sum(
            1
            for item in self.train_items.values()
            if item.getOriginalDataset()[0] is not None and len(item.getOriginalDataset()[0])
        )

    def curve_colour(self, label: str) -> str:
        return self.train_items[label].opts["pen"].color().name()

    def set_show_eval(self, on: bool) -> None:
        self.show_eval = bool(on)
        for item in self.eval_items.values():
            item.setVisible(self.show_eval)

    def set_log_y(self, on: bool) -> None:
        self.plot.setLogMode(x=False, y=bool(on))

    def _sync_items(self, labels: list[str]) -> None:
        if list(self.train_items) == labels:
            return
        for item in list(self.train_items.values()) + list(self.eval_items.values()):
            self.plot.removeItem(item)
        self.legend.clear()
        self.train_items, self.eval_items = {}, {}
        opts = dict(clipToView=True, autoDownsample=True, downsampleMethod="peak")
        for i, label in enumerate(labels):
            train = pg.PlotDataItem(pen=run_pen(i), **opts)
            held = pg.PlotDataItem(
                pen=run_pen(i, dashed=True, alpha=200),
                symbol="o",
                symbolSize=4,
                symbolPen=None,
                symbolBrush=QtGui.QColor(run_colour(i)),
                **opts,
            )
            held.setVisible(self.show_eval)
            self.plot.addItem(held)
            self.plot.addItem(train)
            self.legend.addItem(train, label)
            self.train_items[label], self.eval_items[label] = train, held
        style_legend(self.legend, self.style_)

    def draw(self, snap, smoothing: float) -> None:
        self._sync_items([r.label for r in snap.runs])
        any_data = False
        for r in snap.runs:
            train, held = self.train_items[r.label], self.eval_items[r.label]
            colour = r.colour
            if train.opts["pen"].color().name().upper() != run_colour(colour).upper():
                train.setPen(run_pen(colour))
                held.setPen(run_pen(colour, dashed=True, alpha=200))
                held.setSymbolBrush(QtGui.QColor(run_colour(colour)))
            n = min(r.steps.size, r.losses.size)
            if n:
                x = r.steps[:n].astype(np.float64)
                train.setData(x, ema_debiased(r.losses[:n], smoothing))
                any_data = True
            else:
                train.setData([], [])
            m = min(r.eval_steps.size, r.eval_losses.size)
            if m:
                held.setData(r.eval_steps[:m].astype(np.float64), r.eval_losses[:m].astype(np.float64))
                any_data = True
            else:
                held.setData([], [])
        self.empty_text.setText("no runs yet" if not snap.runs else "waiting for the first step")
        self.empty_text.setVisible(not any_data)

    def clear(self) -> None:
        for item in list(self.train_items.values()) + list(self.eval_items.values()):
            item.setData([], [])
        self.empty_text.setVisible(True)

    def apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_legend(self.legend, s)
        self.empty_text.setColor(s.muted)
        self.empty_text.setFont(s.font(11))
