"""Rank advice: which LoRA rank each module needs, from the spectra the snapshot already carries.

Top: the modules as a grid (layers as rows, projections as columns), each cell coloured by, and
labelled with, the smallest rank that keeps 95 % (or the chosen level) of its ΔW's energy Σσ².
Below: a table of the 90 / 95 / 99 % ranks per module beside today's rank, and for each level the
rank_pattern it implies for the whole adapter and its parameters against today's.

The numbers come from `explorer.schema.rank_advice` (plain numpy), the same rule the resize command
and the trainer's rank_pattern use; nothing here touches a model.
"""

from __future__ import annotations

import json

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import (
    MODULE_ORDER,
    View,
    new_layout_widget,
    qt_alive,
    split_matrix_name,
    style_colorbar,
    style_plot,
)
from explorer.schema.format import format_count
from explorer.schema.rank_advice import ENERGY_LEVELS, ModuleSpectrum, energy_ranks, pattern_advice

TABLE_HEADERS = ("module", "r", *(f"{round(100 * e)} %" for e in ENERGY_LEVELS))
PATTERN_SHOWN = 3  # rank_pattern entries written out in the summary; the rest are counted


def _kind_key(kind: str) -> tuple[int, str]:
    return (MODULE_ORDER.index(kind) if kind in MODULE_ORDER else len(MODULE_ORDER), kind)


def _pct(level: float) -> str:
    return f"{round(100 * level)} %"


class RankView(View):
    view_id = "rank"
    title = "Rank advice"
    formula_tooltip = (
        "rank at e = the smallest k with Σᵢ≤ₖ σᵢ² ≥ e · Σ σᵢ² (e = 90, 95, 99 %), from each module's ΔW spectrum; "
        "parameters k·(out + in) per module"
    )

    # settings a person asked for with the restart button, e.g. {"rank": 4, "rank_pattern": {...}}; the
    # window hands them to its settings panel (a cold change: a new segment from the frozen base)
    settingsProposed = QtCore.Signal(dict)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._proposal: dict | None = None
        self._seq_name = colormaps.SEQUENTIAL
        self._modules: list[ModuleSpectrum] = []
        self._ranks: dict[str, dict[float, int]] = {}
        self._grid = np.zeros((0, 0), np.float64)
        self._rows: list[str] = []
        self._cols: list[str] = []
        self._cells: list[pg.TextItem] = []
        self._tick_key = None

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Colour: rank keeping", content))
        self.level_box = QtWidgets.QComboBox(content)
        self.level_box.addItems([_pct(e) for e in ENERGY_LEVELS])
        self.level_box.setCurrentIndex(ENERGY_LEVELS.index(0.95))
        self.level_box.setToolTip("The share of each module's Σσ² that the coloured rank keeps")
        self.level_box.currentIndexChanged.connect(self._level_picked)
        top.addWidget(self.level_box)
        top.addWidget(QtWidgets.QLabel("of the energy", content))
        top.addStretch(1)
        lay.addLayout(top)

        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.invertY(True)
        self.plot.getAxis("left").setStyle(tickLength=0)
        self.plot.getAxis("bottom").setStyle(tickLength=0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.bar = colormaps.colorbar(self._seq_name, width=12)
        self.glw.addItem(self.bar, row=0, col=1)
        self.plot.vb.sigResized.connect(self._resized)
        # grid, table and summary share the height in a splitter, so a small dock clips none of them
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, content)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.glw)
        lay.addWidget(self.splitter, 1)

        self.table = QtWidgets.QTableWidget(0, len(TABLE_HEADERS), content)
        self.table.setHorizontalHeaderLabels(list(TABLE_HEADERS))
        self.table.horizontalHeaderItem(1).setToolTip("today's rank r")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(70)
        self.splitter.addWidget(self.table)
        self.summary = QtWidgets.QLabel()
        self.summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.summary)
        scroll.setMinimumHeight(40)
        self.splitter.addWidget(scroll)
        for i, stretch in enumerate((3, 2, 2)):
            self.splitter.setStretchFactor(i, stretch)
        self.restart = QtWidgets.QPushButton("Restart with these ranks", content)
        self.restart.setObjectName("rank_restart")
        self.restart.setEnabled(False)
        self.restart.clicked.connect(self._restart_clicked)
        lay.addWidget(self.restart, 0, QtCore.Qt.AlignmentFlag.AlignLeft)
        self.caption = QtWidgets.QLabel(content)
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.set_content(content)
        self._restyle()

    # ---- public (what a person reads, for tests) --------------------------------------------------
    def level(self) -> float:
        return ENERGY_LEVELS[self.level_box.currentIndex()]

    def set_level(self, level: float) -> None:
        self.level_box.setCurrentIndex(ENERGY_LEVELS.index(level))

    def ranks(self) -> dict[str, dict[float, int]]:
        """module path -> {level: rank} as shown (0 where ΔW = 0)."""
        return {k: dict(v) for k, v in self._ranks.items()}

    def grid(self) -> tuple[list[str], list[str], np.ndarray]:
        """(row labels, column labels, ranks at the chosen level; NaN where no module is)."""
        return list(self._rows), list(self._cols), self._grid.copy()

    def cell_texts(self) -> list[str]:
        return [c.textItem.toPlainText() for c in self._cells if c.isVisible()]

    def table_rows(self) -> list[list[str]]:
        t = self.table
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]

    def summary_text(self) -> str:
        return QtGui.QTextDocumentFragment.fromHtml(self.summary.text()).toPlainText()

    def proposal(self) -> dict | None:
        """The settings the restart button would ask for ({"rank", "rank_pattern"}), or None."""
        return None if self._proposal is None else dict(self._proposal)

    def export_item(self):
        return self

    def _restart_clicked(self) -> None:
        if self._proposal is not None:
            self.settingsProposed.emit(dict(self._proposal))

    # ---- drawing ---------------------------------------------------------------------------------
    def _level_picked(self, _index: int) -> None:
        self._key = None
        self.refresh()

    def _draw(self, snapshot) -> None:
        method = (snapshot.settings or {}).get("method", "")
        matrices = snapshot.matrices or {}
        if method not in ("lora", "lora+prefix"):
            text = {
                "prefix": "No LoRA modules: prefix tuning trains prompt vectors and gates, which have no rank.",
                "full": "Rank advice is for LoRA modules; full fine-tuning's update is in the spectrum view.",
            }.get(method, "No LoRA modules in this run.")
            self.show_message(text)
            self._key = None
            return
        if not matrices:
            self.show_message("No rank advice yet: waiting for the first snapshot with weights.")
            self._key = None
            return
        self.hide_message()
        key = (snapshot.segment, snapshot.step, snapshot.time, tuple(id(m.spectrum) for m in matrices.values()))
        if key == self._key:
            return
        self._key = key
        modules = []
        for name, m in matrices.items():
            values = np.asarray(m.spectrum, dtype=np.float64).ravel()
            values = values[np.isfinite(values)]
            # the QR path gives exactly r values: today's rank of the module
            modules.append(ModuleSpectrum(name, tuple(m.shape), int(values.size), values))
        modules.sort(key=lambda m: self._order(m.name))
        self._modules = modules
        self._ranks = {m.name: energy_ranks(m.values) for m in modules}
        self._draw_grid()
        self._fill_table()
        self._write_summary(snapshot)
        self.draw_count += 1

    @staticmethod
    def _order(name: str):
        layer, kind = split_matrix_name(name)
        return (layer is None, layer or 0, _kind_key(kind), name)

    def _draw_grid(self) -> None:
        level = self.level()
        rows: list[int | None] = sorted(
            {split_matrix_name(m.name)[0] for m in self._modules}, key=lambda v: (v is None, v or 0)
        )
        cols = sorted({split_matrix_name(m.name)[1] for m in self._modules}, key=_kind_key)
        grid = np.full((len(rows), len(cols)), np.nan)
        top = max(m.rank for m in self._modules) or 1
        for m in self._modules:
            layer, kind = split_matrix_name(m.name)
            grid[rows.index(layer), cols.index(kind)] = self._ranks[m.name][level]
        self._grid = grid
        self._rows = ["–" if r is None else f"L{r}" for r in rows]
        self._cols = cols
        # colours by hand: a missing module is transparent, not the map's lowest colour
        lut = colormaps.lut(self._seq_name)
        index = np.clip(np.nan_to_num(grid / top) * (len(lut) - 1), 0, len(lut) - 1).astype(np.intp)
        rgba = lut[index].copy()
        rgba[np.isnan(grid)] = 0
        self.image.setImage(rgba, autoLevels=False)
        self.image.setRect(QtCore.QRectF(0, 0, len(cols), len(rows)))
        self.bar.setLevels((0.0, float(top)))
        self.plot.setRange(xRange=(0, len(cols)), yRange=(0, len(rows)), padding=0)
        self._place_cells(grid, lut, index)
        self._tick_key = None
        self._set_ticks()

    def _place_cells(self, grid: np.ndarray, lut: np.ndarray, index: np.ndarray) -> None:
        needed = grid.size
        while len(self._cells) < needed:
            cell = pg.TextItem(anchor=(0.5, 0.5))
            self.plot.addItem(cell, ignoreBounds=True)
            self._cells.append(cell)
        font = self.style_.font(8.5, bold=True)
        for i, cell in enumerate(self._cells):
            if i >= needed:
                cell.hide()
                continue
            r, c = divmod(i, grid.shape[1])
            if np.isnan(grid[r, c]):
                cell.hide()
                continue
            red, green, blue = (int(v) for v in lut[index[r, c], :3])
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 140
            cell.setColor("#000000" if light else "#ffffff")
            cell.setFont(font)
            cell.setText(str(int(grid[r, c])))
            cell.setPos(c + 0.5, r + 0.5)
            cell.show()

    def _set_ticks(self) -> None:
        """Every layer label while the rows are tall enough for them, else every n-th."""
        if not self._rows:
            return
        line = QtGui.QFontMetrics(self.style_.font()).height()
        pitch = self.plot.vb.height() / len(self._rows)
        every = max(1, int(np.ceil(line * 1.05 / max(pitch, 1e-6))))
        key = (tuple(self._rows), tuple(self._cols), every)
        if key == self._tick_key:
            return
        self._tick_key = key
        self.plot.getAxis("left").setTicks([[(i + 0.5, r) for i, r in enumerate(self._rows) if i % every == 0], []])
        self.plot.getAxis("bottom").setTicks([[(j + 0.5, c) for j, c in enumerate(self._cols)], []])

    def _resized(self) -> None:
        if not qt_alive(self, self.plot, self.bar):
            return
        colormaps.align_colorbar(self.bar, self.plot)
        self._set_ticks()

    def _fill_table(self) -> None:
        t = self.table
        if t.rowCount() != len(self._modules):
            t.setRowCount(len(self._modules))
        for row, m in enumerate(self._modules):
            layer, kind = split_matrix_name(m.name)
            ranks = self._ranks[m.name]
            label = kind if layer is None else f"L{layer} {kind}"
            values = (label, str(m.rank), *(str(ranks[e]) for e in ENERGY_LEVELS))
            for col, text in enumerate(values):
                item = t.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    if col >= 1:
                        item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                    t.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
            t.item(row, 0).setToolTip(m.name)

    def _write_summary(self, snapshot) -> None:
        self._set_proposal(None, snapshot)
        if all(not np.any(m.values > 0) for m in self._modules):
            self.summary.setText(
                "ΔW = 0 in every module"
                + (" (B starts at zero)" if snapshot.step == 0 else "")
                + ": nothing to advise yet."
            )
            self.caption.setText(f"{len(self._modules)} LoRA modules · step {snapshot.step:,}")
            return
        lines = []
        chosen = None
        for level in ENERGY_LEVELS:
            a = pattern_advice(self._modules, level)
            if level == self.level():
                chosen = a
            n = len(a.rank_pattern)
            others = f" + {n} in rank_pattern" if n else " everywhere"
            lines.append(
                f"<b>{_pct(level)}</b>: r = {a.r}{others} · <b>{format_count(a.parameters)}</b> of "
                f"{format_count(a.parameters_today)} parameters ({100 * a.ratio:.0f} %) · "
                f"{100 * a.energy_kept:.1f} % of the energy"
            )
        pattern = chosen.rank_pattern
        shown = dict(list(pattern.items())[:PATTERN_SHOWN])
        text = json.dumps({"r": chosen.r, "rank_pattern": shown}, separators=(", ", ": "))
        if len(pattern) > PATTERN_SHOWN:
            text = text[:-2] + f", … {len(pattern) - PATTERN_SHOWN} more}}}}"
        lines.append(f"<span style='font-family: monospace'>{_pct(chosen.energy)}: {text.replace('<', '&lt;')}</span>")
        self.summary.setText("<br>".join(lines))
        self.summary.setToolTip(json.dumps({"r": chosen.r, "rank_pattern": pattern}, indent=1))
        self._set_proposal(chosen, snapshot)
        self.caption.setText(f"{len(self._modules)} LoRA modules · energy = Σσ² of each ΔW · step {snapshot.step:,}")

    def _set_proposal(self, advice, snapshot) -> None:
        """The chosen level's ranks as settings for the restart button; disabled when they are in force."""
        settings = snapshot.settings or {}
        self._proposal = None
        if advice is not None and settings.get("scenario", "lm") == "lm":
            self._proposal = {"rank": int(advice.r), "rank_pattern": dict(advice.rank_pattern)}
        in_force = self._proposal is not None and (
            settings.get("rank") == self._proposal["rank"]
            and (settings.get("rank_pattern") or {}) == self._proposal["rank_pattern"]
        )
        self.restart.setEnabled(self._proposal is not None and not in_force)
        level = _pct(self.level())
        self.restart.setText(f"Restart with the {level} ranks" if not in_force else f"The {level} ranks are in force")
        self.restart.setToolTip(
            f"Start a new segment with r and the rank_pattern that keep {level} of each module's energy: a cold "
            "change, the adapters restart from the frozen base"
            if self._proposal is not None
            else "Per-module ranks are a setting of the language-model scenario"
        )

    def _clear(self) -> None:
        self._key = None
        self._modules, self._ranks = [], {}
        self._grid = np.zeros((0, 0), np.float64)
        self._rows, self._cols = [], []
        self.image.clear()
        for cell in self._cells:
            cell.hide()
        self.table.setRowCount(0)
        self.summary.setText("")
        self.caption.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_colorbar(self.bar, s)
        name = colormaps.sequential_for(s.high_contrast)
        if name != self._seq_name:
            self._seq_name = name
            self.bar.setColorMap(colormaps.colormap(name))
        self._tick_key = None
        self._key = None
