"""The inspector's table of modules: one row per adapted matrix, sortable by any column (numbers
sort as numbers), with the top-k energy for a chosen k; a row carries its module's name.
"""

from __future__ import annotations

from PySide6 import QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.views.base import module_key
from explorer.schema.format import format_value

ENERGY_KS = (1, 2, 4, 8, 16)


class SortItem(QtWidgets.QTableWidgetItem):
    """A cell that sorts by a number (or a string) while showing formatted text."""

    def __init__(self, text: str, key=None, tip: str = ""):
        super().__init__(text)
        self._key = key if key is not None else text
        self.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)
        if tip:
            self.setToolTip(tip)
        if isinstance(key, (int, float)):
            self.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)

    def __lt__(self, other):  # noqa: D105
        a, b = self._key, getattr(other, "_key", other.text())
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def _sort_key(v):
    """Numbers for sorting; missing / NaN values sort first."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("-inf")
    return v if v == v else float("-inf")


class ModuleTable(QtWidgets.QTableWidget):
    COLUMNS = (
        "module",
        "shape",
        "r",
        "α",
        "scaling",
        "‖ΔW‖F",
        "σ₁",
        "eff. rank",
        "st. rank",
        "top-k energy",
        "DoRA ‖m‖ mean",
        "amplification",
    )
    COLUMN_TIPS = {
        "r": "rank r of this module (rank_pattern honoured)",
        "α": "lora_alpha of this module (alpha_pattern honoured)",
        "scaling": "α/r, or α/√r with rsLoRA",
        "‖ΔW‖F": "Frobenius norm of ΔW = scaling·B·A",
        "σ₁": "largest singular value of ΔW (its spectral norm)",
        "eff. rank": "effective rank exp(H(σ/Σσ)) (Roy & Vetterli)",
        "st. rank": "stable rank Σσᵢ² / σ₁²",
        "top-k energy": "share of ‖ΔW‖F² in the top k singular values (pick k above the table)",
        "DoRA ‖m‖ mean": "DoRA: mean of the magnitude vector m (min..max in the tooltip)",
        "amplification": "‖ΔW‖F / ‖Uᵀ W₀ V‖F over ΔW's own singular directions, the rank(ΔW) ≤ r with σ > 0 "
        "(LoRA paper, section 7); "
        "needs the base model",
    }

    def __init__(self, parent=None):
        super().__init__(0, len(self.COLUMNS), parent)
        self.setObjectName("module_table")
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        for col, name in enumerate(self.COLUMNS):
            tip = self.COLUMN_TIPS.get(name)
            if tip:
                self.horizontalHeaderItem(col).setToolTip(tip)
        self.verticalHeader().hide()
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.ElideLeft)  # long module paths keep their end
        header = self.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.Interactive)
        header.setStretchLastSection(False)
        header.setSortIndicator(0, Qt.AscendingOrder)

    def fill(self, report, k: int) -> None:
        """A row per module of a LoRA `report`, the energy column for the top `k`."""
        self.setSortingEnabled(False)
        self.blockSignals(True)
        self.clearContents()
        self.setRowCount(len(report.modules))
        has_dora = any(m.dora is not None for m in report.modules)
        has_amp = any(m.amplification for m in report.modules)
        for row, m in enumerate(report.modules):
            s1 = m.singular_values[0] if m.singular_values else 0.0
            cells = [
                SortItem(m.name, (m.layer if m.layer is not None else 1 << 30, module_key(m.module), m.name), m.name),
                SortItem(f"{m.shape[0]}×{m.shape[1]}", m.shape[0] * m.shape[1]),
                SortItem(str(m.rank), m.rank),
                SortItem(f"{m.alpha:g}", m.alpha),
                SortItem(format_value(m.scaling), m.scaling),
                SortItem(format_value(m.fro_norm), m.fro_norm),
                SortItem(format_value(s1), s1),
                SortItem(f"{m.effective_rank:.2f}", m.effective_rank),
                SortItem(f"{m.stable_rank:.2f}", m.stable_rank),
                SortItem("", 0.0),
            ]
            if m.dora is not None:
                d = m.dora
                tip = f"m: min {d.min:.4g}, max {d.max:.4g}, std {d.std:.3g}"
                if d.row_scale_mean is not None:
                    tip += (
                        f"; row scale m/‖W₀+ΔW‖ {d.row_scale_min:.4g}…{d.row_scale_max:.4g} "
                        f"(mean {d.row_scale_mean:.4g})"
                    )
                cells.append(SortItem(format_value(d.mean), d.mean, tip))
            else:
                cells.append(SortItem("–", float("-inf")))
            if m.amplification:
                factor = m.amplification.get("factor")
                tip = ", ".join(
                    f"{k} = {format_value(v)}" for k, v in m.amplification.items() if isinstance(v, (int, float))
                )
                cells.append(SortItem(format_value(factor, 3), _sort_key(factor), tip))
            else:
                cells.append(SortItem("–", float("-inf")))
            for col, item in enumerate(cells):
                item.setData(Qt.UserRole, m.name)
                self.setItem(row, col, item)
        # α and scaling the same everywhere: the header says so, the columns make room
        self.setColumnHidden(self.COLUMNS.index("α"), len({m.alpha for m in report.modules}) <= 1)
        self.setColumnHidden(self.COLUMNS.index("scaling"), len({m.scaling for m in report.modules}) <= 1)
        self.setColumnHidden(self.COLUMNS.index("DoRA ‖m‖ mean"), not has_dora)
        self.setColumnHidden(self.COLUMNS.index("amplification"), not has_amp)
        self.fill_energy(report, k)
        self.blockSignals(False)
        self.setSortingEnabled(True)
        metrics = self.fontMetrics()
        longest = max((metrics.horizontalAdvance(m.name) for m in report.modules), default=80)
        self.setColumnWidth(0, min(longest + 24, 260))

    def fill_energy(self, report, k: int) -> None:
        """The share of ‖ΔW‖F² in each module's top `k` singular values."""
        col = self.COLUMNS.index("top-k energy")
        self.horizontalHeaderItem(col).setText(f"top-{k} energy")
        sorting = self.isSortingEnabled()
        self.setSortingEnabled(False)
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is None:
                continue
            m = report.module(item.data(Qt.UserRole))
            e = m.energy_top_k.get(k)
            if e is None and m.cumulative_energy:
                e = m.cumulative_energy[min(k, len(m.cumulative_energy)) - 1]
            cell = SortItem(f"{e:.1%}" if e is not None else "–", e if e is not None else float("-inf"))
            cell.setData(Qt.UserRole, m.name)
            self.setItem(row, col, cell)
        self.setSortingEnabled(sorting)

    def selected_name(self) -> str | None:
        items = self.selectedItems()
        return items[0].data(Qt.UserRole) if items else None

    def select_name(self, name: str) -> None:
        """Select and show the row of module `name` (no itemSelectionChanged)."""
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is not None and item.data(Qt.UserRole) == name:
                if self.currentRow() != row or not item.isSelected():
                    self.blockSignals(True)
                    self.selectRow(row)
                    self.blockSignals(False)
                    self.viewport().update()
                self.scrollToItem(item)
                return
