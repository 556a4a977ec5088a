"""The adapter inspector's window: what is inside a PEFT adapter directory.

A header (peft_type, r / alpha / scaling, rsLoRA, DoRA, targets, parameters, file size), a layer x
module grid of ||ΔW||_F (grid.py: click a cell to select that module), a table of every module
(module_table.py), and the selected module's ΔW heatmap and spectrum drawn by the SAME DeltaView and
SpectrumView as live training (views.py). AdaptionPrompt adapters show prompts.py's page instead.
"Compare with base model…" (an HF Llama directory) adds the LoRA paper's amplification factor per
module and W₀ in the heatmap. Reading and analysing need torch: they run in a child process
(gui/jobs.py, engine/jobs.py), which returns plain data (the report, each module pooled for the
views) and ends when a newer load supersedes it or the inspector closes (a hostile file costs a
process, not the window), with a progress bar; a bad directory shows a message with the reader's one
line, the previous inspection stays and the app keeps running. Beside the pages, resize_panel.py's
energy slider shows the parameters each energy level keeps and writes the resized adapter (the resize
command, in a child process).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.inspector.grid import NormGridView
from explorer.gui.inspector.module_table import ENERGY_KS, ModuleTable
from explorer.gui.inspector.prompts import PromptPanel
from explorer.gui.inspector.resize_panel import ResizePanel
from explorer.gui.inspector.views import InspectorDeltaView, InspectorSpectrumView
from explorer.gui.jobs import Job, child_job
from explorer.schema.format import format_bytes, format_count, one_line, short_json

# Reading and analysing an adapter, in a child process: plain data back (engine/jobs.py).
INSPECT = "explorer.core.inspect_adapter:inspect_for_views"


class AdapterInspector(QtWidgets.QMainWindow):
    """What is inside a PEFT adapter directory. One per main window, reused for each adapter."""

    loaded = QtCore.Signal(object)  # the AdapterReport now shown
    failed = QtCore.Signal(str)  # the one-line reason an adapter (or a base) was refused
    busyChanged = QtCore.Signal(bool)
    moduleSelected = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, dark: bool = True):
        super().__init__(parent, Qt.Window)
        self.setObjectName("adapter_inspector")
        self.setWindowTitle("PEFT adapter inspector")
        self.setAttribute(Qt.WA_DeleteOnClose, False)
        self.report = None
        self.error_box: QtWidgets.QMessageBox | None = None
        self.last_error: str = ""
        self._generation = 0
        self._jobs: dict[int, Job] = {}
        self._busy_label = ""
        self._selected: str | None = None
        self._selection_count = 0
        self._dark = bool(dark)
        self._build()
        self._apply_theme()
        self.resize(1440, 900)
        self.lora_page.setSizes([800, 640])

    # ---- construction
    def _build(self) -> None:
        central = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.setSpacing(6)

        top = QtWidgets.QHBoxLayout()
        self.header = QtWidgets.QLabel(central)
        self.header.setObjectName("inspector_header")
        self.header.setTextFormat(Qt.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.header.setText("Open a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
        self.header.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Preferred)
        top.addWidget(self.header, 1)
        buttons = QtWidgets.QVBoxLayout()
        self.open_button = QtWidgets.QPushButton("Open adapter…", central)
        self.open_button.setToolTip("Inspect another PEFT adapter directory")
        self.open_button.clicked.connect(lambda: self.choose_and_load())
        self.base_button = QtWidgets.QPushButton("Compare with base model…", central)
        self.base_button.setToolTip(
            "An HF Llama directory (config.json + model.safetensors): adds the "
            "amplification factor of each module and W₀ to the heatmap"
        )
        self.base_button.clicked.connect(lambda: self.choose_base())
        self.base_button.setEnabled(False)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.base_button)
        buttons.addStretch(1)
        top.addLayout(buttons)
        outer.addLayout(top)

        status_row = QtWidgets.QHBoxLayout()
        self.progress = QtWidgets.QProgressBar(central)
        self.progress.setObjectName("inspector_progress")
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QtWidgets.QLabel(central)
        self.status.setObjectName("inspector_status")
        self.status.setProperty("role", "dim")
        status_row.addWidget(self.progress)
        status_row.addWidget(self.status, 1)
        outer.addLayout(status_row)

        self.pages = QtWidgets.QStackedWidget(central)
        # LoRA page: grid + table on the left, ΔW heatmap + spectrum on the right
        lora = QtWidgets.QSplitter(Qt.Horizontal)
        left = QtWidgets.QSplitter(Qt.Vertical)
        grid_box = QtWidgets.QWidget()
        gl = QtWidgets.QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.setSpacing(2)
        self.grid_title = QtWidgets.QLabel("<b>‖ΔW‖<sub>F</sub> by layer and module</b> · click a cell")
        self.grid_title.setTextFormat(Qt.RichText)
        gl.addWidget(self.grid_title)
        self.grid = NormGridView(grid_box)
        self.grid.moduleClicked.connect(self.select_module)
        gl.addWidget(self.grid, 1)
        left.addWidget(grid_box)

        table_box = QtWidgets.QWidget()
        tl = QtWidgets.QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(2)
        row = QtWidgets.QHBoxLayout()
        self.table_title = QtWidgets.QLabel("<b>Modules</b>")
        self.table_title.setTextFormat(Qt.RichText)
        row.addWidget(self.table_title)
        row.addStretch(1)
        row.addWidget(QtWidgets.QLabel("energy of the top k, k ="))
        self.k_box = QtWidgets.QComboBox()
        for k in ENERGY_KS:
            self.k_box.addItem(str(k), k)
        self.k_box.setCurrentIndex(0)
        self.k_box.setToolTip("k for the top-k energy column: Σᵢ≤ₖ σᵢ² / Σ σᵢ²")
        self.k_box.currentIndexChanged.connect(lambda _i: self._fill_energy())
        row.addWidget(self.k_box)
        tl.addLayout(row)
        self.table = ModuleTable()
        self.table.itemSelectionChanged.connect(self._table_selection_changed)
        tl.addWidget(self.table, 1)
        left.addWidget(table_box)
        left.setStretchFactor(0, 2)
        left.setStretchFactor(1, 3)

        right = QtWidgets.QSplitter(Qt.Vertical)
        self.delta_view = InspectorDeltaView()
        self.delta_view.picker.hide()
        self.spectrum_view = InspectorSpectrumView()
        self.spectrum_view.picker.hide()
        right.addWidget(self.delta_view)
        right.addWidget(self.spectrum_view)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        lora.addWidget(left)
        lora.addWidget(right)
        lora.setStretchFactor(0, 5)
        lora.setStretchFactor(1, 4)
        self.lora_page = lora
        self.lora_splitters = (lora, left, right)
        self.pages.addWidget(lora)
        self.prompt_panel = PromptPanel()
        self.pages.addWidget(self.prompt_panel)
        # before any adapter is shown, and after one could not be opened: words, not empty axes
        self.message_page = QtWidgets.QLabel(
            "Open a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."
        )
        self.message_page.setObjectName("inspector_message")
        self.message_page.setAlignment(Qt.AlignCenter)
        self.message_page.setWordWrap(True)
        self.message_page.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pages.addWidget(self.message_page)
        self.pages.setCurrentWidget(self.message_page)
        # beside every page: an AdaptionPrompt adapter's panel says why it has nothing to resize
        self.resize_panel = ResizePanel()
        body = QtWidgets.QSplitter(Qt.Horizontal)
        body.addWidget(self.pages)
        body.addWidget(self.resize_panel)
        body.setStretchFactor(0, 4)
        body.setStretchFactor(1, 1)
        body.setSizes([1080, 360])
        outer.addWidget(body, 1)
        self.setCentralWidget(central)

    # ---- theme
    def _apply_theme(self) -> None:
        for v in (self.delta_view, self.spectrum_view, self.grid, self.prompt_panel, self.resize_panel):
            v.set_theme(self._dark)

    def set_theme(self, dark: bool) -> None:
        if bool(dark) != self._dark:
            self._dark = bool(dark)
            self._apply_theme()

    # ---- loading
    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def choose_and_load(self) -> None:
        start = str(Path(self.report.path).parent) if self.report is not None else str(Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open PEFT adapter (a directory with adapter_config.json)", start
        )
        if path:
            self.load(path)

    def choose_base(self) -> None:
        if self.report is None:
            return
        start = self.report.base or str(Path(self.report.path).parent)
        path = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Base model for amplification (an HF Llama directory)", start
        )
        if path:
            self.compare_with_base(path)

    def load(self, path, base=None) -> int:
        """Read and analyse an adapter directory in a child process; `loaded` or `failed` follows.
        Returns the job's number. A newer load supersedes (and ends) an older one still running."""
        from_path = str(path)
        base = None if base is None else str(base)
        return self._start(from_path, base, from_path, f"Reading {from_path}…")

    def compare_with_base(self, base_dir) -> int | None:
        """Re-analyse the adapter shown now against an HF Llama base (amplification, W₀)."""
        if self.report is None:
            return None
        base_dir = str(base_dir)
        return self._start(self.report.path, base_dir, base_dir, f"Comparing with the base model {base_dir}…")

    def _start(self, path: str, base: str | None, label: str, text: str) -> int:
        self._generation += 1
        g = self._generation
        for old in self._jobs.values():
            old.cancel()  # its process ends; it is heard no more
        job = child_job(INSPECT, path, base, progress=True, label=label, name="explorer-inspect-adapter", parent=self)
        job.progress.connect(lambda done, total, g=g: self._on_progress(g, done, total))
        job.done.connect(lambda report, g=g: self._on_done(g, report))
        job.failed.connect(lambda message, g=g: self._on_failed(g, message))
        self._jobs = {g: job}
        self._busy_label = text
        self.progress.setRange(0, 0)  # busy until the first module is done
        self.progress.show()
        self.status.setText(text)
        self.open_button.setEnabled(True)
        self.base_button.setEnabled(False)
        self.busyChanged.emit(True)
        job.start()
        return g

    def _finish(self, g: int) -> bool:
        """True when job g is the current one (and is now retired)."""
        if g not in self._jobs:
            return False
        del self._jobs[g]
        self.progress.hide()
        self.base_button.setEnabled(self.report is not None and self.report.peft_type == "LORA")
        self.busyChanged.emit(False)
        return True

    def _on_progress(self, g: int, done: int, total: int) -> None:
        if g not in self._jobs:
            return
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("module %v of %m")

    def _on_failed(self, g: int, message: str) -> None:
        if not self._finish(g):
            return
        self.last_error = message
        self.status.setText(("Kept the previous adapter. " if self.report is not None else "") + message)
        if self.report is None:  # nothing to keep showing: the reason takes the plots' place
            self.message_page.setText(f"Cannot open this adapter.\n\n{message}")
            self.pages.setCurrentWidget(self.message_page)
        self._show_error(message)
        self.failed.emit(message)

    def _show_error(self, message: str) -> None:
        if self.error_box is None:
            box = QtWidgets.QMessageBox(
                QtWidgets.QMessageBox.Warning, "Cannot open this adapter", message, QtWidgets.QMessageBox.Ok, self
            )
            box.setObjectName("inspector_error")
            box.setWindowModality(Qt.NonModal)
            box.finished.connect(lambda _r: setattr(self, "error_box", None))
            self.error_box = box
        else:
            self.error_box.setText(message)
        self.error_box.setInformativeText(
            "The previous inspection stays as it was."
            if self.report is not None
            else "Pick a directory with adapter_config.json and adapter_model.safetensors."
        )
        self.error_box.show()
        self.error_box.raise_()

    def _on_done(self, g: int, report) -> None:
        if not self._finish(g):
            return
        self.last_error = ""
        self.show_report(report)
        self.loaded.emit(report)

    # ---- showing a report
    def show_report(self, report) -> None:
        keep = self._selected if self.report is not None and self.report.path == report.path else None
        self.report = report
        self._selected = None
        self.setWindowTitle(f"PEFT adapter · {Path(report.path).name}")
        self.header.setText(self._header_html(report))
        amp = sum(1 for m in report.modules if m.amplification)
        self.status.setText(
            f"Analysed {len(report.modules)} module{'s' if len(report.modules) != 1 else ''} in {report.seconds:.2f} s (spectra from "
            "the factors, no dense ΔW)" + (f"; amplification against {report.base}" if amp else "")
            if report.peft_type == "LORA"
            else f"Read {len(report.adaption_prompt.layers)} prompt layers in {report.seconds:.2f} s"
        )
        self.base_button.setEnabled(report.peft_type == "LORA")
        self.resize_panel.set_report(report)
        if report.peft_type == "LORA":
            self.pages.setCurrentWidget(self.lora_page)
            self.grid.set_grid(report.grid, report.modules)
            self.grid.setVisible(report.grid is not None)
            self.grid_title.setText(
                "<b>‖ΔW‖<sub>F</sub> by layer and module</b> · click a cell"
                if report.grid is not None
                else "<b>‖ΔW‖<sub>F</sub></b>: no modules inside numbered layers"
            )
            self._fill_table(report)
            names = [m.name for m in report.modules]
            if names:
                self.select_module(keep if keep in names else names[0])
            else:
                self.delta_view.clear()
                self.spectrum_view.clear()
        else:
            self.pages.setCurrentWidget(self.prompt_panel)
            self.prompt_panel.set_prompts(report.adaption_prompt)

    def _header_html(self, r) -> str:
        e = html.escape
        cfg = r.config
        name = Path(r.path).name or r.path
        lines = [f"<span style='font-size:13pt'><b>{e(name)}</b></span> &nbsp; <span>{e(r.path)}</span>"]
        facts = [f"<b>{e(r.peft_type)}</b>"]
        if r.peft_type == "LORA":
            ranks = sorted({m.rank for m in r.modules})
            alphas = sorted({m.alpha for m in r.modules})
            scalings = sorted({m.scaling for m in r.modules})
            facts.append(
                "r = " + (str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}…{ranks[-1]}")
                if ranks
                else f"r = {cfg.get('r')}"
            )
            facts.append(
                "α = " + (f"{alphas[0]:g}" if len(alphas) == 1 else f"{alphas[0]:g}…{alphas[-1]:g}")
                if alphas
                else f"α = {cfg.get('lora_alpha')}"
            )
            facts.append(
                "scaling = " + (f"{scalings[0]:.4g}" if len(scalings) == 1 else f"{scalings[0]:.4g}…{scalings[-1]:.4g}")
                if scalings
                else ""
            )
            facts.append("rsLoRA (α/√r)" if cfg.get("use_rslora") else "α/r scaling")
            if cfg.get("use_dora"):
                facts.append("<b>DoRA</b>")
            facts.append(f"{len(r.modules)} module{'s' if len(r.modules) != 1 else ''}")
        else:
            ap = r.adaption_prompt
            facts.append(f"prompt length K = {ap.adapter_len}")
            facts.append(f"top L = {ap.adapter_layers} layers ({ap.layers[0].layer}–{ap.layers[-1].layer})")
            facts.append(f"hidden size {ap.hidden_size}")
            facts.append("one identity gate per layer")
        facts.append(f"{format_count(r.trainable_parameters)} parameters")
        facts.append(f"{format_bytes(r.file_bytes)} on disk ({', '.join(r.dtypes)})")
        lines.append(" · ".join(f for f in facts if f))
        more = []
        targets = cfg.get("target_modules")
        if targets is not None:
            shown = targets if isinstance(targets, str) else ", ".join(map(str, targets))
            more.append(f"targets: {e(shown)}")
        if cfg.get("layers_to_transform") is not None:
            more.append(f"layers: {e(str(cfg['layers_to_transform']))}")
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg.get(key):
                more.append(f"{key}: {e(short_json(cfg[key]))}")
        if cfg.get("base_model_name_or_path"):
            more.append(f"trained on: {e(str(cfg['base_model_name_or_path']))}")
        if r.base:
            more.append(f"<b>compared with base</b> {e(r.base)}")
        parts = r.trainable_parts.counts()
        if set(parts) - {"lora_A", "lora_B"}:  # more than the factors: say what the count is made of
            more.append("trains " + " + ".join(f"{k} {format_count(v)}" for k, v in parts.items()))
        counted = {*r.trainable_parts.modules_to_save_tensors, *r.trainable_parts.bias_tensors}
        others = [n for n in r.other_tensors if n not in counted]
        if others:
            more.append(f"{len(others)} other tensors (not analysed, not counted)")
        if more:
            lines.append(" · ".join(more))
        return "<br>".join(lines)

    def _fill_table(self, report) -> None:
        self.table.fill(report, int(self.k_box.currentData() or 1))
        self.table_title.setText(f"<b>Modules</b> ({len(report.modules)})")

    def _fill_energy(self) -> None:
        if self.report is not None and self.report.peft_type == "LORA":
            self.table.fill_energy(self.report, int(self.k_box.currentData() or 1))

    def _table_selection_changed(self) -> None:
        name = self.table.selected_name()
        if name and name != self._selected:
            self.select_module(name)

    # ---- selecting a module
    def module_names(self) -> list[str]:
        return [] if self.report is None else [m.name for m in self.report.modules]

    def selected_module(self) -> str | None:
        return self._selected

    def select_module(self, name: str) -> bool:
        """Show this module's ΔW heatmap and spectrum; select its grid cell and table row."""
        if self.report is None or name not in self.module_names():
            return False
        try:
            snap = self._snapshot_for(name)
        except (ValueError, OSError, RuntimeError) as exc:
            self.status.setText(f"Cannot draw {name}: {one_line(exc)}")
            return False
        self._selected = name
        self.delta_view.update_snapshot(snap)
        self.spectrum_view.update_snapshot(snap)
        self.grid.select(name)
        self.table.select_name(name)
        self.moduleSelected.emit(name)
        return True

    def _snapshot_for(self, name: str):
        from explorer.schema.snapshot import Snapshot

        ms = self.report.matrices.get(name)
        if ms is None:
            raise ValueError(f"module {name} has no pooled ΔW in this report")
        m = self.report.module(name)
        self._selection_count += 1
        snap = Snapshot(
            step=0,
            time=0.0,
            segment=self._selection_count,
            loss=None,
            eval_loss=None,
            lr=0.0,
            steps_per_second=0.0,
            device="file",
            memory_bytes=0,
            settings={"scenario": "adapter", "method": "lora", "rank": int(m.rank)},
            matrices={name: ms},
            state="paused",
        )
        snap.has_base = self.report.base is not None
        return snap

    # ---- closing
    def closeEvent(self, event):  # noqa: N802 - Qt API
        for job in self._jobs.values():
            job.cancel()  # a job still running ends with its process, unheard
        self._jobs = {}
        if self.error_box is not None:
            self.error_box.close()
        super().closeEvent(event)
