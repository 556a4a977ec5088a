"""The inspector's Resize panel: an energy slider that shows, as it moves, what resizing the adapter
to that energy would cost and keep, and a button that writes the resized adapter.

The numbers are plain arithmetic on the spectra the adapter report already holds
(schema.rank_advice: `trade_off` for the curve, `pattern_advice` for the per-module ranks, the same
rank rule as the resize command), so moving the slider touches no factor. The resize itself runs
`python -m explorer resize ADAPTER --energy E --out DIR` in a QProcess: the GUI process never
imports torch, and a refusal comes back as the command's one line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.inspector.module_table import SortItem
from explorer.gui.views.base import Style, new_layout_widget, style_plot
from explorer.schema.format import format_count, one_line
from explorer.schema.rank_advice import ModuleSpectrum, pattern_advice, trade_off

LOW_PERCENT, HIGH_PERCENT, DEFAULT_PERCENT = 50, 100, 95
LORA_ONLY = "Resizing applies to LoRA adapters only: an AdaptionPrompt adapter has no ranks to choose."
# the folder holding the explorer package (inspector -> gui -> explorer -> that folder)
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
NO_ADAPTER = "Open a LoRA adapter to choose its ranks by energy kept."


def modules_of(report) -> list[ModuleSpectrum]:
    """What rank advice needs of each module of a LoRA report: path, ΔW's shape, rank, singular values."""
    return [
        ModuleSpectrum(m.name, (int(m.shape[0]), int(m.shape[1])), int(m.rank), np.asarray(m.singular_values, float))
        for m in report.modules
    ]


class ResizePanel(QtWidgets.QWidget):
    """Energy slider, parameters against energy kept, per-module ranks, and "Resize to this…"."""

    resizeFinished = QtCore.Signal(bool, str)  # ok, the result line or the one-line reason

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("resize_panel")
        self.style_ = Style()
        self.report = None
        self.modules: list[ModuleSpectrum] = []
        self.levels = np.arange(LOW_PERCENT, HIGH_PERCENT + 1) / 100.0
        self.curve_parameters = np.zeros(0, np.int64)
        self.curve_kept = np.zeros(0, np.float64)
        self.advice = None  # the PatternAdvice at the slider's value
        self.process: QtCore.QProcess | None = None
        self.last_result = ""
        self._build()
        self.set_report(None)

    # ---- construction
    def _build(self) -> None:
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 0, 0, 0)
        lay.setSpacing(4)
        title = QtWidgets.QLabel("<b>Resize</b> · ranks by energy kept (best rank-k ΔW per module)")
        title.setTextFormat(Qt.RichText)
        title.setWordWrap(True)
        lay.addWidget(title)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("energy"))
        self.slider = QtWidgets.QSlider(Qt.Horizontal)
        self.slider.setObjectName("resize_energy")
        self.slider.setRange(LOW_PERCENT, HIGH_PERCENT)
        self.slider.setValue(DEFAULT_PERCENT)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(5)
        self.slider.setToolTip("Each module keeps the smallest rank holding this share of its ΔW's energy Σσ²")
        self.slider.valueChanged.connect(lambda _v: self._show_level())
        row.addWidget(self.slider, 1)
        self.energy_label = QtWidgets.QLabel(f"{DEFAULT_PERCENT} %")
        self.energy_label.setMinimumWidth(44)
        row.addWidget(self.energy_label)
        lay.addLayout(row)
        self.summary = QtWidgets.QLabel()
        self.summary.setObjectName("resize_summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.summary)

        self.glw = new_layout_widget(self.style_)
        self.glw.setMinimumHeight(150)
        self.glw.setToolTip(
            "One point per slider level (50–100 %): every module keeps at least that share of its Σσ², so the "
            "whole adapter keeps at least as much (x); y counts the LoRA factors' values"
        )
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "energy kept, whole adapter (%)")
        self.plot.setLabel("left", "parameters")
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#56B4E9", width=2))
        self.marker = pg.ScatterPlotItem(size=10, brush=pg.mkBrush("#E69F00"), pen=pg.mkPen("#000000"))
        self.plot.addItem(self.marker)
        lay.addWidget(self.glw, 2)

        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setObjectName("resize_table")
        self.table.setHorizontalHeaderLabels(["module", "rank", "energy kept"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.Stretch)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeToContents)
        lay.addWidget(self.table, 3)

        self.button = QtWidgets.QPushButton("Resize to this…")
        self.button.setObjectName("resize_button")
        self.button.setToolTip("Write the adapter with these ranks to a new folder (python -m explorer resize)")
        self.button.clicked.connect(lambda: self.choose_and_resize())
        lay.addWidget(self.button)
        self.result = QtWidgets.QLabel()
        self.result.setObjectName("resize_result")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.result)
        self._apply_style()

    def set_theme(self, dark: bool) -> None:
        self.style_.dark = bool(dark)
        self._apply_style()

    def _apply_style(self) -> None:
        self.glw.setBackground(self.style_.background)
        style_plot(self.plot, self.style_)

    # ---- the adapter shown
    @property
    def energy(self) -> float:
        return self.slider.value() / 100.0

    def set_energy(self, energy: float) -> None:
        self.slider.setValue(round(float(energy) * 100))

    def set_report(self, report) -> None:
        """Show the trade-off of a LoRA report; anything else says why there is nothing to resize."""
        self.report = report
        lora = report is not None and report.peft_type == "LORA" and bool(report.modules)
        self.modules = modules_of(report) if lora else []
        for w in (self.slider, self.glw, self.table):
            w.setEnabled(lora)
        self._sync_button()
        self.result.clear()
        if not lora:
            self.advice = None
            self.curve_parameters = np.zeros(0, np.int64)
            self.curve_kept = np.zeros(0, np.float64)
            self.curve.setData([], [])
            self.marker.setData([], [])
            self.table.setRowCount(0)
            self.summary.setText(LORA_ONLY if report is not None and report.peft_type != "LORA" else NO_ADAPTER)
            return
        self.curve_parameters, self.curve_kept = trade_off(self.modules, self.levels)
        self.curve.setData(100.0 * self.curve_kept, self.curve_parameters.astype(float))
        self._show_level()

    def level_index(self) -> int:
        return int(self.slider.value() - LOW_PERCENT)

    def _show_level(self) -> None:
        self.energy_label.setText(f"{self.slider.value()} %")
        if not self.modules:
            return
        i = self.level_index()
        self.advice = advice = pattern_advice(self.modules, self.levels[i])
        params, kept = int(self.curve_parameters[i]), float(self.curve_kept[i])
        today = advice.parameters_today
        share = f" ({100.0 * params / today:.1f} % of today's {format_count(today)})" if today else ""
        self.summary.setText(
            f"parameters {format_count(params)}{share} · energy kept {100.0 * kept:.2f} % of the whole "
            f"adapter (least in one module {100.0 * advice.least_kept:.2f} %) · default r = {advice.r}"
        )
        self.marker.setData([100.0 * kept], [float(params)])
        today_ranks = {m.name: m.rank for m in self.modules}
        self.table.setRowCount(len(self.modules))
        for row, name in enumerate(advice.ranks):
            k = advice.ranks[name]
            items = (
                SortItem(name, name),
                SortItem(f"{today_ranks[name]} → {k}", k),
                SortItem(f"{100.0 * advice.kept[name]:.2f} %", advice.kept[name]),
            )
            for col, item in enumerate(items):
                if col:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(row, col, item)

    def shown_ranks(self) -> dict[str, int]:
        """module path -> the new rank the table shows now (read back from the table's text)."""
        out = {}
        for row in range(self.table.rowCount()):
            out[self.table.item(row, 0).text()] = int(self.table.item(row, 1).text().split("→")[1])
        return out

    # ---- resizing
    @property
    def running(self) -> bool:
        return self.process is not None

    def _sync_button(self) -> None:
        self.button.setEnabled(bool(self.modules) and not self.running)

    def choose_out_dir(self) -> str:
        """A new folder for the resized adapter ('' when cancelled); the command refuses a non-empty one."""
        src = Path(self.report.path)
        suggested = src.parent / f"{src.name}-energy{self.slider.value()}"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Write the resized adapter to (a new or empty folder)",
            str(suggested),
            "",
            "",
            QtWidgets.QFileDialog.DontConfirmOverwrite,
        )
        return path

    def choose_and_resize(self) -> None:
        if not self.modules or self.running:
            return
        out = self.choose_out_dir()
        if out:
            self.resize_to(out)

    def resize_to(self, out_dir) -> bool:
        """Start `python -m explorer resize` at the slider's energy; `resizeFinished` follows."""
        if not self.modules or self.running:
            return False
        energy = self.energy
        proc = QtCore.QProcess(self)
        env = QtCore.QProcessEnvironment.systemEnvironment()
        # the child must import this same explorer package, wherever the GUI found it
        root = str(PACKAGE_ROOT)
        paths = [p for p in env.value("PYTHONPATH", "").split(os.pathsep) if p]
        env.insert("PYTHONPATH", os.pathsep.join([root, *[p for p in paths if p != root]]))
        proc.setProcessEnvironment(env)
        proc.setProgram(sys.executable)
        proc.setArguments(
            ["-m", "explorer", "resize", str(self.report.path), "--energy", f"{energy:g}", "--out", str(out_dir)]
        )
        proc.finished.connect(lambda code, status: self._process_done(proc, code, status))
        proc.errorOccurred.connect(lambda error: self._process_error(proc, error))
        self.process = proc
        self._sync_button()
        self.result.setText(f"Resizing to {100 * energy:g} % energy into {out_dir}…")
        proc.start()
        return True

    def _process_error(self, proc, error) -> None:
        if error == QtCore.QProcess.FailedToStart and proc is self.process:
            self._report_result(False, f"cannot start {sys.executable}: {proc.errorString()}")

    def _process_done(self, proc, code: int, status) -> None:
        if proc is not self.process:
            return
        out = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace").splitlines()
        err = bytes(proc.readAllStandardError()).decode("utf-8", "replace").splitlines()
        out = [line.strip() for line in out if line.strip()]
        err = [line.strip() for line in err if line.strip()]
        if status == QtCore.QProcess.NormalExit and code == 0:
            # the totals row of the command's table, then "written to DIR"
            totals = next((line for line in reversed(out) if line.startswith("total (")), "")
            line = " ".join(totals.split()) + (" · " if totals else "") + (out[-1] if out else "done")
            self._report_result(True, line)
        else:
            reason = err[-1] if err else f"the resize command ended with exit code {code}"
            self._report_result(False, one_line(reason))

    def _report_result(self, ok: bool, line: str) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            proc.deleteLater()
        self.last_result = line
        self.result.setProperty("role", "" if ok else "error")
        self.result.style().unpolish(self.result)
        self.result.style().polish(self.result)
        self.result.setText(("Resized: " if ok else "Not resized: ") + line)
        self._sync_button()
        self.resizeFinished.emit(ok, line)
