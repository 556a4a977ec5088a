"""Amplification (LoRA paper, Table 7): per module and run, ||ΔW||_F / ||U^T W0 V||_F as bars, and the
figures behind it in a table (W0 projected onto ΔW's k = rank(ΔW) <= r directions, W0's own top-k, a
random basis); PiSSA runs are marked, their W0 being the residual."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

from explorer.gui.views.base import Style, new_layout_widget, style_plot
from explorer.gui.views.compare.runs import run_colour, short_module
from explorer.schema.format import format_value

# k = rank(ΔW): the directions the projections use (at most r; σ = 0 directions are left out)
AMP_HEADERS = ("run", "module", "k", "‖ΔW‖_F", "‖UᵀW₀V‖_F", "W₀ top-k", "random", "factor")


class AmplificationTab(QtWidgets.QWidget):
    def __init__(self, style: Style, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.style_ = style
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.glw = new_layout_widget(style)
        self.plot = self.glw.addPlot(row=0, col=0)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(False, False)
        self.plot.setLabel("left", "amplification factor")
        self.plot.showGrid(y=True, alpha=0.15)
        lay.addWidget(self.glw, 1)
        self.table = QtWidgets.QTableWidget(0, len(AMP_HEADERS), self)
        self.table.setHorizontalHeaderLabels(list(AMP_HEADERS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.table, 1)
        self.bars: list[pg.BarGraphItem] = []

    def draw(self, snap, a, module: str) -> None:
        """The analysis `a` of `snap` (None: not computed yet); rows of `module` in bold."""
        for bar in self.bars:
            self.plot.removeItem(bar)
        self.bars = []
        rows = [] if a is None else [(label, row) for label, rs in a.amplification.items() for row in rs]
        t = self.table
        t.setRowCount(len(rows))
        index = {r.label: r.colour for r in snap.runs} if snap is not None else {}
        for i, (label, row) in enumerate(rows):
            residual = row.get("w0") == "residual"
            values = (
                label + (" (W₀ = PiSSA residual)" if residual else ""),
                short_module(row["module"]),
                str(row["rank"]),
                format_value(row["delta_fro"]),
                format_value(row["proj_delta"]),
                format_value(row["proj_w0_top"]),
                format_value(row["proj_random"]),
                format_value(row["factor"], 3),
            )
            for col, text in enumerate(values):
                item = t.item(i, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    t.setItem(i, col, item)
                item.setText(text)
            t.item(i, 1).setToolTip(row["module"])
            t.item(i, 0).setToolTip(
                "PiSSA: W₀ is the residual W − s·B₀A₀ (W's top-r directions moved into the adapter), so this "
                "factor is not the LoRA paper's Table 7 figure"
                if residual
                else ""
            )
            t.item(i, 2).setToolTip(f"rank(ΔW) = {row['rank']} of the adapter's r = {row.get('adapter_rank', '?')}")
            bold = row["module"] == module
            for col in range(len(values)):
                f = t.item(i, col).font()
                f.setBold(bold)
                t.item(i, col).setFont(f)
        if not rows:
            return
        labels = list(a.amplification)
        modules = []
        for _, row in rows:
            if row["module"] not in modules:
                modules.append(row["module"])
        width = 0.8 / max(1, len(labels))
        for k, label in enumerate(labels):
            by_module = {row["module"]: row["factor"] for row in a.amplification[label]}
            xs = [i - 0.4 + width * (k + 0.5) for i, m in enumerate(modules) if m in by_module]
            ys = [by_module[m] if math.isfinite(by_module[m]) else 0.0 for m in modules if m in by_module]
            bar = pg.BarGraphItem(
                x=xs,
                height=ys,
                width=width * 0.9,
                brush=QtGui.QColor(run_colour(index.get(label, k))),
                pen=pg.mkPen(None),
            )
            self.plot.addItem(bar)
            self.bars.append(bar)
        ticks = [(i, short_module(m).replace("layer ", "L").replace(" · ", " ")) for i, m in enumerate(modules)]
        self.plot.getAxis("bottom").setTicks([ticks])
        self.plot.setXRange(-0.6, len(modules) - 0.4, padding=0)
        self.plot.enableAutoRange(axis="y")

    def clear(self) -> None:
        self.table.setRowCount(0)

    def apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        self.table.setFont(s.font(9))
        self.table.horizontalHeader().setFont(s.font(9))
        self.table.resizeRowsToContents()
