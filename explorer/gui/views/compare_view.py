"""Compare settings: several runs on the same data and seed, overlaid (the seed paper's RQ4, live).

Top: the run specs to compare and the Compare button, then the loss curves of every run, one colour
each (views/compare/curves.py). Middle: the Table IX-style table (views/compare/table.py). Bottom,
the LoRA paper's analyses (views/compare/analyses.py and its tabs):
- Subspace φ (Fig. 3): φ(i, j) = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j) for a chosen pair of
  LoRA runs and module, beside the control (run a against a random basis of run b's size);
- Amplification (Table 7): per module, ||ΔW||_F / ||U^T W0 V||_F, and W0 projected onto ΔW's
  k = rank(ΔW) <= r directions, W0's own top-k and a random basis (PiSSA runs marked: W0 is the residual);
- Intrinsic rank: LoRA's ΔW spectrum against the full fine-tuning update's on the same module, with
  how each spectrum was computed.

It draws `explorer.schema.compare.CompareSnapshot`s (from a CompareWorker, or `load_comparison(DIR)`
for a headless comparison). An ordinary training `Snapshot` is drawn as a one-run comparison until
the first CompareSnapshot arrives; after that, ordinary snapshots are ignored until `clear()`.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from explorer.gui.views.base import View
from explorer.gui.views.compare.analyses import TABS, AnalysisPanel
from explorer.gui.views.compare.curves import RunCurves
from explorer.gui.views.compare.runs import RUN_COLOURS
from explorer.gui.views.compare.table import TABLE_HEADERS, RunTable
from explorer.gui.views.loss_view import DEFAULT_SMOOTHING
from explorer.schema.compare import CompareSnapshot, comparison_from_snapshot, parse_run_spec, unique_labels

__all__ = ["RUN_COLOURS", "TABLE_HEADERS", "TABS", "CompareView", "split_specs"]

DEFAULT_SPECS = "lora:r=4  lora:r=8  lora:r=16  prefix:K=10  full"
SPECS_TIP = (
    "Run specs separated by spaces: METHOD[:KEY=VALUE,...], e.g. lora:r=8, lora:r=16,alpha=32, "
    "prefix:K=10,L=2, lora+prefix:r=8,K=10, full, lora:r=8,seed=1, lora:r=8,label=mine"
)


def split_specs(text: str) -> list[str]:
    """'lora:r=4  prefix:K=10; full' -> ['lora:r=4', 'prefix:K=10', 'full'] (spaces or ';' between runs)."""
    return [t for t in text.replace(";", " ").split() if t]


class CompareView(View):
    view_id = "compare"
    title = "Compare"
    formula_tooltip = (
        "Runs on the same data and seed overlaid; φ(i,j) = ‖U_aᵢᵀU_bⱼ‖²_F / min(i,j) (LoRA Fig. 3); "
        "amplification ‖ΔW‖_F / ‖UᵀW₀V‖_F (Table 7); LoRA ΔW spectrum vs the full update's"
    )

    pairChanged = QtCore.Signal(str, str)
    moduleChanged = QtCore.Signal(str)
    compareRequested = QtCore.Signal(list)  # run specs the user asked to compare (already parsed once)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._got_compare = False  # a CompareSnapshot arrived since the last clear()
        self._smoothing = DEFAULT_SMOOTHING

        content = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(content)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(3)
        ask = QtWidgets.QHBoxLayout()
        ask.addWidget(QtWidgets.QLabel("Runs", content))
        self.specs_edit = QtWidgets.QLineEdit(DEFAULT_SPECS, content)
        self.specs_edit.setToolTip(SPECS_TIP)
        self.specs_edit.setPlaceholderText(DEFAULT_SPECS)
        self.specs_edit.returnPressed.connect(self.request_compare)
        ask.addWidget(self.specs_edit, 1)
        self.compare_button = QtWidgets.QPushButton("Compare", content)
        self.compare_button.setToolTip("Train these runs on the same data and seed, taking turns, and overlay them")
        self.compare_button.clicked.connect(self.request_compare)
        ask.addWidget(self.compare_button)
        outer.addLayout(ask)
        self.spec_error = QtWidgets.QLabel(content)
        self.spec_error.setWordWrap(True)
        self.spec_error.setVisible(False)
        self.spec_error.setStyleSheet("color: #D55E00;")
        outer.addWidget(self.spec_error)
        top = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel(content)
        self.status.setTextFormat(QtCore.Qt.TextFormat.RichText)
        top.addWidget(self.status, 1)
        self.eval_box = QtWidgets.QCheckBox("held-out", content)
        self.eval_box.setChecked(True)
        self.eval_box.setToolTip("Also draw the held-out loss (dashed, with markers)")
        self.eval_box.toggled.connect(self.set_show_eval)
        top.addWidget(self.eval_box)
        self.log_box = QtWidgets.QCheckBox("log y", content)
        self.log_box.setToolTip("Logarithmic loss axis")
        self.log_box.toggled.connect(self.set_log_y)
        top.addWidget(self.log_box)
        outer.addLayout(top)

        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, content)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter, 1)
        self.curves = RunCurves(self.style_)
        self.splitter.addWidget(self.curves.glw)
        self.table = RunTable(content)
        self.splitter.addWidget(self.table)
        self.analyses = AnalysisPanel(self.style_, content)
        self.analyses.pairChanged.connect(self.pairChanged)
        self.analyses.moduleChanged.connect(self.moduleChanged)
        self.splitter.addWidget(self.analyses)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 3)
        self.set_content(content)
        self._restyle()

    # ---- the run specs ---------------------------------------------------------------------------
    def specs_text(self) -> str:
        return self.specs_edit.text()

    def set_specs_text(self, text: str) -> None:
        self.specs_edit.setText(text)

    def request_compare(self) -> list[str] | None:
        """Check the run specs typed in; emit compareRequested(specs) if they parse, else show why.
        Returns the specs, or None on an error. (Scenario-specific checks happen when the main window
        builds the CompareWorker: its ValueError belongs in `show_spec_error`.)"""
        specs = split_specs(self.specs_edit.text())
        try:
            if not specs:
                raise ValueError("no runs: type run specs separated by spaces, e.g. " + DEFAULT_SPECS)
            unique_labels([parse_run_spec(t) for t in specs])
        except ValueError as exc:
            self.show_spec_error(str(exc))
            return None
        self.show_spec_error("")
        self.compareRequested.emit(specs)
        return specs

    def show_spec_error(self, text: str) -> None:
        """A one-line problem with the run specs under the field ('' hides it)."""
        self.spec_error.setText(text)
        self.spec_error.setVisible(bool(text))

    def spec_error_text(self) -> str:
        return self.spec_error.text() if not self.spec_error.isHidden() else ""

    # ---- what the window calls -----------------------------------------------------------------------
    def update_snapshot(self, snapshot) -> None:
        """A CompareSnapshot, or an ordinary Snapshot (drawn as a one-run comparison until the first
        CompareSnapshot arrives; ignored after that until clear())."""
        if isinstance(snapshot, CompareSnapshot):
            self._got_compare = True
        elif snapshot is not None:
            if self._got_compare:
                return
            snapshot = comparison_from_snapshot(snapshot)
        super().update_snapshot(snapshot)

    def clear(self) -> None:
        self._got_compare = False
        super().clear()

    def export_item(self):
        return self

    # ---- what is drawn (for tests and talk mode) -------------------------------------------------------
    def comparison(self):
        """The comparison drawn (or to be drawn when shown)."""
        return self._snapshot

    def labels(self) -> list[str]:
        return self.curves.labels()

    def curve_count(self) -> int:
        """Training-loss curves with data (one per run)."""
        return self.curves.curve_count()

    def curve_colour(self, label: str) -> str:
        return self.curves.curve_colour(label)

    def table_rows(self) -> int:
        return self.table.rowCount()

    def table_text(self, row: int, column: int | str) -> str:
        return self.table.text(row, column)

    def pair(self) -> tuple[str, str]:
        return self.analyses.pair()

    def set_pair(self, a: str, b: str) -> bool:
        """Show φ for these two LoRA runs (rows: a); False if either is not a LoRA run of the comparison."""
        return self.analyses.set_pair(a, b)

    def module(self) -> str:
        return self.analyses.module()

    def modules(self) -> list[str]:
        return self.analyses.modules()

    def set_module(self, name: str) -> bool:
        """Analyse this matrix (full name, e.g. 'model.layers.1.self_attn.v_proj'); False if unknown."""
        return self.analyses.set_module(name)

    def tab(self) -> str:
        return self.analyses.tab()

    def set_tab(self, name: str) -> None:
        """'similarity', 'amplification' or 'intrinsic'."""
        self.analyses.set_tab(name)

    def phi(self) -> np.ndarray | None:
        """The φ matrix drawn now (rows: run a's i, columns: run b's j), or None."""
        return self.analyses.phi()

    # ---- options -----------------------------------------------------------------------------------
    def show_eval(self) -> bool:
        return self.curves.show_eval

    def set_show_eval(self, on: bool) -> None:
        if self.eval_box.isChecked() != bool(on):
            self.eval_box.setChecked(bool(on))  # comes back here through toggled
            return
        self.curves.set_show_eval(on)

    def set_log_y(self, on: bool) -> None:
        if self.log_box.isChecked() != bool(on):
            self.log_box.setChecked(bool(on))
            return
        self.curves.set_log_y(on)

    def set_smoothing(self, weight: float) -> None:
        """EMA weight for the training curves, 0 (raw) to 0.99 (TensorBoard's default 0.6)."""
        self._smoothing = float(min(max(weight, 0.0), 0.99))
        self._key = None
        self.refresh()

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snap) -> None:
        key = (
            snap.segment,
            snap.step,
            snap.state,
            tuple((r.label, r.step, r.eval_steps.size, r.fault) for r in snap.runs),
            id(snap.analysis),
        )
        if key == self._key:
            return
        self._key = key
        self._draw_status(snap)
        labels = [r.label for r in snap.runs]
        if labels != self.curves.labels() and self._got_compare and snap.runs and not self.specs_edit.hasFocus():
            self.specs_edit.setText("  ".join(r.spec for r in snap.runs))  # what runs now
        self.curves.draw(snap, self._smoothing)
        self.table.draw(snap)
        self.analyses.show_snapshot(snap)
        self.draw_count += 1

    def _draw_status(self, snap) -> None:
        n = len(snap.runs)
        parts = [f"<b>{n}</b> run{'s' if n != 1 else ''}", f"step <b>{snap.step:,}</b>", snap.scenario]
        if snap.device:
            parts.append(snap.device)
        if snap.state == "fault" and snap.fault:
            parts.append(f"<span style='color:#D55E00'>{snap.fault}</span>")
        elif snap.state:
            parts.append(snap.state)
        stopped = [r.label for r in snap.runs if r.fault]
        if stopped:
            parts.append(f"<span style='color:#D55E00'>stopped: {', '.join(stopped)}</span>")
        self.status.setText(" · ".join(parts))
        self.status.setToolTip("\n".join(f"{r.label}: {r.fault}" for r in snap.runs if r.fault))

    # ---- base hooks --------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._key = None
        self.curves.clear()
        self.table.setRowCount(0)
        self.analyses.clear()
        self.status.setText("")

    def _apply_style(self) -> None:
        self.curves.apply_style()
        self.table.apply_style(self.style_)
        self.analyses.apply_style()
        self._key = None
