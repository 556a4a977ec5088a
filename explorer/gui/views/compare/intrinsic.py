"""Intrinsic rank: LoRA's ΔW spectrum against the full fine-tuning update's on the same module (log
scale), with how each spectrum was computed and how much of the full update's energy its top r hold."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.axes import LogValueAxis
from explorer.gui.views.base import Style, corner_legend, new_layout_widget, style_legend, style_plot
from explorer.gui.views.compare.runs import run_colour, run_pen


class IntrinsicTab(QtWidgets.QWidget):
    def __init__(self, style: Style, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.style_ = style
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.glw = new_layout_widget(style)
        # round labels that never overlap (pyqtgraph's own log axis drew 1 over 0.8 on a short plot)
        self.plot = self.glw.addPlot(row=0, col=0, axisItems={"left": LogValueAxis("left")})
        self.plot.hideButtons()
        self.plot.setLogMode(x=False, y=True)
        self.plot.setLabel("bottom", "index of the singular value")
        self.plot.setLabel("left", "singular value")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.legend = corner_legend(self.plot)
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(self)
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        lay.addWidget(self.caption)
        self.items: list[pg.PlotDataItem] = []

    def draw(self, snap, a, module: str) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items = []
        self.legend.clear()
        entries = [] if a is None else [(lo, fu, per[module]) for (lo, fu), per in a.intrinsic.items() if module in per]
        if not entries:
            if a is None:
                self.caption.setText("The analyses appear once the runs have trained.")
            else:
                self.caption.setText(
                    "Add a full fine-tuning run (--runs full) to compare LoRA's ΔW spectrum "
                    "with the full update's on the same module."
                )
            return
        index = {r.label: r.colour for r in snap.runs} if snap is not None else {}
        fu = entries[0][1]
        full = np.asarray(entries[0][2]["full_values"], np.float64)
        floor = 1e-12
        x = np.arange(1, full.size + 1, dtype=np.float64)
        grey = self.style_.muted
        full_item = pg.PlotDataItem(
            x,
            np.maximum(full, floor),
            pen=pg.mkPen(grey, width=1),
            symbol="o",
            symbolSize=3,
            symbolPen=None,
            symbolBrush=QtGui.QColor(grey),
        )
        self.plot.addItem(full_item)
        self.items.append(full_item)
        self.legend.addItem(full_item, f"{fu}: ΔW = W − W₀")
        lines = [f"{fu}: {entries[0][2]['full_method']}; LoRA: {entries[0][2]['lora_method']}"]
        for lo, _fu, d in entries:
            if _fu != fu:
                continue
            v = np.asarray(d["lora_values"], np.float64)
            c = index.get(lo, 0)
            item = pg.PlotDataItem(
                np.arange(1, v.size + 1, dtype=np.float64),
                np.maximum(v, floor),
                pen=run_pen(c),
                symbol="s",
                symbolSize=5,
                symbolPen=None,
                symbolBrush=QtGui.QColor(run_colour(c)),
            )
            self.plot.addItem(item)
            self.items.append(item)
            self.legend.addItem(item, lo)
            lines.append(
                f"<b>{lo}</b> (r={d['rank']}): the full update keeps {100 * d['full_energy_top_r']:.1f}% of its "
                f"energy in its top {d['rank']}; effective rank full {d['full_effective_rank']:.1f}, "
                f"LoRA {d['lora_effective_rank']:.2f}; overlap of the top-{d['rank']} subspaces "
                f"{d['overlap_left']:.2f} (out) / {d['overlap_right']:.2f} (in)"
            )
        style_legend(self.legend, self.style_)
        self.caption.setText("<br>".join(lines))

    def apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_legend(self.legend, s)
