"""The Table IX-style table of a comparison: per run what trains, its share, storage, final losses,
speed, and the same setting on LLaMA-7B; the first cell carries the run's colour (struck through when
the run stopped)."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import Style
from explorer.gui.views.compare.runs import run_colour
from explorer.schema.format import format_bytes, format_count, format_short, format_value

TABLE_HEADERS = (
    "run",
    "method",
    "trainable params",
    "share",
    "storage (fp16)",
    "train loss",
    "held-out loss",
    "steps/s",
    "LLaMA-7B params",
    "LLaMA-7B storage",
)
TABLE_TIPS = (
    "The run's label (its spec without punctuation, or label=...)",
    "lora, prefix, lora+prefix or full (fine-tuning every weight)",
    "Parameters that train: LoRA r·(in+out) per matrix, prefix L·(K·C + gates), full: all",
    "Trainable parameters as a share of the base model's",
    "The trainable weights saved in fp16 (2 bytes each)",
    "Mean training loss over the last 10% of steps (at most the last 1,000)",
    "Held-out loss at the last evaluation",
    "Steps per second of the run's own training steps (the runs take turns)",
    "The same setting priced on LLaMA-7B (32 layers, hidden 4096)",
    "Its fp16 storage on LLaMA-7B",
)


class RunTable(QtWidgets.QTableWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(0, len(TABLE_HEADERS), parent)
        self.setHorizontalHeaderLabels(list(TABLE_HEADERS))
        for i, tip in enumerate(TABLE_TIPS):
            self.horizontalHeaderItem(i).setToolTip(tip)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumHeight(60)

    def text(self, row: int, column: int | str) -> str:
        col = TABLE_HEADERS.index(column) if isinstance(column, str) else column
        item = self.item(row, col)
        return "" if item is None else item.text()

    def draw(self, snap) -> None:
        if self.rowCount() != len(snap.runs):
            self.setRowCount(len(snap.runs))
            self.fit()
        for row, r in enumerate(snap.runs):
            values = (
                r.label,
                r.method,
                format_count(r.trainable_params),
                f"{100 * r.share:.3g}%",
                format_bytes(r.storage_bytes),
                format_value(r.final_loss),
                format_value(r.final_eval_loss),
                f"{r.steps_per_second:.1f}" if r.steps_per_second else "–",
                format_short(r.llama7b_trainable_params),
                format_bytes(r.llama7b_storage_bytes),
            )
            for col, text in enumerate(values):
                item = self.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    if col >= 2:
                        item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                    self.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
            first = self.item(row, 0)
            icon_key = (r.colour, bool(r.fault))
            if first.data(QtCore.Qt.ItemDataRole.UserRole) != icon_key:
                first.setData(QtCore.Qt.ItemDataRole.UserRole, icon_key)
                pix = QtGui.QPixmap(12, 12)
                pix.fill(QtGui.QColor(run_colour(r.colour)))
                first.setIcon(QtGui.QIcon(pix))
                first.setToolTip(f"{r.spec}" + (f"\nstopped: {r.fault}" if r.fault else ""))
                font = first.font()
                font.setStrikeOut(bool(r.fault))
                first.setFont(font)

    def fit(self) -> None:
        """Tall enough for every run (up to 8 rows; more scroll), so the table never hides a run."""
        self.resizeRowsToContents()
        rows = min(self.rowCount(), 8)
        h = self.horizontalHeader().sizeHint().height() + 2 * self.frameWidth()
        h += sum(self.rowHeight(i) for i in range(rows)) if rows else self.verticalHeader().defaultSectionSize()
        h += self.horizontalScrollBar().sizeHint().height()
        self.setMinimumHeight(h)

    def apply_style(self, style: Style) -> None:
        self.setFont(style.font(9))
        self.horizontalHeader().setFont(style.font(9))
        self.fit()
