"""File > Export as PEFT adapter: write what the window is training as OUT/adapter + OUT/base.

    window.features.adapter_export.export(out=None, overwrite=None)

1. The running settings (the worker's, else the panel's) must be exportable
   (`explorer.schema.exportable.export_problem`): LoRA in the lm scenario, or prefix tuning with one
   identity gate per layer. Otherwise a message says why and what would export, and nothing is written.
2. `out` (a directory chooser when None). Existing OUT/adapter or OUT/base are replaced only after
   the user confirms (`overwrite=None` asks; True replaces; False refuses with a message).
3. A background job (gui/jobs.py): the worker saves its trained state to a temporary file
   (`worker.save_state(path)`), and a child process (`export_summary`: torch never enters the GUI
   process) rebuilds the adapted model on the base the run trained on and writes the PEFT adapter and
   the HF Llama base. The window keeps training and drawing meanwhile; a progress dialog shows, and
   the summary (or the one-line reason) follows.

Returns the `Job` (its `done(summary)` or `failed(reason)` signal fires on the GUI thread), or None
when nothing was started.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path

from PySide6 import QtWidgets
from PySide6.QtCore import Qt

from explorer.engine.jobs import ChildJob
from explorer.gui.jobs import Job, thread_job
from explorer.gui.services import WindowServices
from explorer.schema.exportable import export_problem

TITLE = "Export as PEFT adapter"


EXPORT = "explorer.core.export_adapter:export_summary"  # run in a child process (engine/jobs.py)


def _export(worker, out: Path, overwrite: bool, base) -> str:
    """On the job's helper thread: the worker's trained state to a temporary file, exported by a child
    process; the summary."""
    tmp = Path(tempfile.mkdtemp(prefix="peft-explorer-export-"))
    try:
        state_path = tmp / "state.safetensors"
        worker.save_state(str(state_path))
        job = ChildJob(
            EXPORT, str(state_path), str(out), base=base, overwrite=overwrite, name="explorer-export-adapter"
        )
        return job.run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _worker_base(worker):
    """The base model a worker adapts when it was given one (tests, scripts); None: the shipped one,
    which the saved state records and export_state finds by itself."""
    for attr in ("base_model", "_base_model"):
        model = getattr(worker, attr, None)
        if model is not None and not inspect.ismethod(model):  # a model, not an accessor
            return model
    return None


class AdapterExportFeature:
    """Export as PEFT adapter, a part of the window: one export at a time, one message box."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.job: Job | None = None  # the last export started
        self.out: Path | None = None  # where it writes
        self.message: QtWidgets.QMessageBox | None = None
        self.last_dir = ""  # where the chooser opens next time

    def running_settings(self):
        """The settings the worker runs (what its trained state holds), else the panel's."""
        worker = self.window.worker
        settings = getattr(worker, "settings", None) if worker is not None else None
        return settings if settings is not None else self.window.settings

    def _message(self, icon, text: str, informative: str = "") -> QtWidgets.QMessageBox:
        """A non-modal message (training and drawing go on); one at a time."""
        if self.message is not None:
            try:
                self.message.close()
                self.message.deleteLater()
            except RuntimeError:
                pass
        box = QtWidgets.QMessageBox(icon, TITLE, text, QtWidgets.QMessageBox.Ok, self.window.widget)
        box.setObjectName("adapter_export_message")
        box.setWindowModality(Qt.NonModal)
        if informative:
            box.setInformativeText(informative)
        box.show()
        self.message = box
        return box

    def _status(self, text: str, error: bool = False) -> None:
        status = self.window.status
        (status.error if error else status.info)(text)

    def export(self, out=None, overwrite: bool | None = None) -> Job | None:
        """File > Export as PEFT adapter. See the module docstring."""
        win = self.window
        running = self.job
        if running is not None and running.running:
            self._message(
                QtWidgets.QMessageBox.Information,
                "An export is already running.",
                f"It writes to {self.out}; the summary shows when it is done.",
            )
            return None
        problem = export_problem(self.running_settings())
        if problem:
            self._status(f"Cannot export as a PEFT adapter: {problem}", error=True)
            self._message(
                QtWidgets.QMessageBox.Warning,
                "This run cannot be exported as a PEFT adapter.",
                problem[:1].upper() + problem[1:] + ".",
            )
            return None
        worker = win.worker
        if worker is None:
            self._message(
                QtWidgets.QMessageBox.Information,
                "Nothing trained yet.",
                "Start the training engine (Space plays, N steps), then export.",
            )
            return None
        if not callable(getattr(worker, "save_state", None)):
            self._message(
                QtWidgets.QMessageBox.Warning,
                "This training engine cannot hand out its trained state.",
                "Save a recording with `python -m explorer run` and export it with "
                "`python -m explorer export RECORDING --out DIR`.",
            )
            return None
        if out is None:
            out = QtWidgets.QFileDialog.getExistingDirectory(
                win.widget,
                "Export as PEFT adapter: choose the output directory (adapter/ and base/ go inside)",
                self.last_dir or str(Path.home()),
            )
            if not out:
                return None
        out = Path(out)
        self.last_dir = str(out)
        if out.exists() and not out.is_dir():
            self._message(QtWidgets.QMessageBox.Warning, f"{out}: exists and is not a directory.")
            return None
        existing = [d for d in (out / "adapter", out / "base") if d.exists()]
        if existing:
            names = " and ".join(str(d) for d in existing)
            if overwrite is None:
                answer = QtWidgets.QMessageBox.question(
                    win.widget,
                    TITLE,
                    f"{names} already exist{'s' if len(existing) == 1 else ''}.\n\nReplace "
                    f"{'it' if len(existing) == 1 else 'them'} with this export?",
                    QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No,
                    QtWidgets.QMessageBox.No,
                )
                overwrite = answer == QtWidgets.QMessageBox.Yes
                if not overwrite:
                    self._status("Export cancelled: nothing was replaced.")
                    return None
            elif not overwrite:
                self._message(
                    QtWidgets.QMessageBox.Warning,
                    f"{names} already exist; nothing was replaced.",
                    "Choose another directory, or confirm replacing them.",
                )
                return None
        job = thread_job(
            _export,
            worker,
            out,
            bool(overwrite),
            _worker_base(worker),
            name="explorer-export-adapter",
            parent=win.widget,
        )
        self.job, self.out = job, out
        progress = QtWidgets.QProgressDialog(f"Exporting to {out}…", "", 0, 0, win.widget)
        progress.setObjectName("adapter_export_progress")
        progress.setWindowTitle(TITLE)
        progress.setCancelButton(None)
        progress.setWindowModality(Qt.NonModal)
        progress.setMinimumDuration(300)
        progress.setAutoClose(False)
        progress.setAutoReset(False)

        def finished(ok: bool, text: str) -> None:
            progress.close()
            progress.deleteLater()
            if ok:
                self._status(text.splitlines()[0])
                self._message(
                    QtWidgets.QMessageBox.Information,
                    "Exported as a PEFT adapter.",
                    text + "\n\nLoad it with transformers.LlamaForCausalLM.from_pretrained(base) and "
                    "peft.PeftModel.from_pretrained(model, adapter).",
                )
            else:
                self._status(f"Export failed: {text}", error=True)
                self._message(QtWidgets.QMessageBox.Warning, "The export failed; nothing was written.", text)

        job.done.connect(lambda summary: finished(True, summary))
        job.failed.connect(lambda reason: finished(False, reason))
        self._status(f"Exporting to {out}…")
        job.start()
        return job

    def window_closing(self) -> None:
        """An export still running goes on (its child process writes OUT atomically); its result
        arrives unheard."""


__all__ = ["AdapterExportFeature"]
