"""File > Export as PEFT adapter: write what the window is training as OUT/adapter + OUT/base.

    export_adapter(window, out=None, overwrite=None)

1. The running settings (the worker's, else the panel's) must be exportable
   (`explorer.core.export_adapter.export_problem`): LoRA in the lm scenario, or prefix tuning with one
   identity gate per layer. Otherwise a message says why and what would export, and nothing is written.
2. `out` (a directory chooser when None). Existing OUT/adapter or OUT/base are replaced only after
   the user confirms (`overwrite=None` asks; True replaces; False refuses with a message).
3. On a helper thread: the worker saves its trained state to a temporary file
   (`worker.save_state(path)`), and `export_state` rebuilds the adapted model on the base the run
   trained on and writes the PEFT adapter and the HF Llama base. The window keeps training and
   drawing meanwhile; a progress dialog shows, and the summary (or the one-line reason) follows.

Returns the `ExportJob` (its `finished(ok, text)` signal fires on the GUI thread), or None when
nothing was started.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import threading
from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

TITLE = "Export as PEFT adapter"


class ExportJob(QtCore.QObject):
    """One export on a helper thread; `finished(ok, text)` arrives queued on the GUI thread."""

    finished = QtCore.Signal(bool, str)

    def __init__(self, worker, out: Path, overwrite: bool, base=None, parent=None):
        super().__init__(parent)
        self.worker, self.out, self.overwrite, self.base = worker, Path(out), bool(overwrite), base
        self.result = None  # the ExportResult, once done
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="explorer-export-adapter", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="peft-explorer-export-"))
        try:
            from explorer.core.export_adapter import export_state

            state_path = tmp / "state.safetensors"
            self.worker.save_state(str(state_path))
            self.result = export_state(state_path, self.out, base=self.base, overwrite=self.overwrite)
            text = self.result.summary()
            ok = True
        except (ValueError, OSError) as exc:
            text, ok = " ".join(str(exc).split()) or type(exc).__name__, False
        except Exception as exc:  # noqa: BLE001 - said in a message; the app lives on
            text, ok = f"{type(exc).__name__}: {' '.join(str(exc).split())}", False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            self.error = text
        try:
            self.finished.emit(ok, text)
        except RuntimeError:  # the window (and this job with it) was closed meanwhile
            pass


def running_settings(window):
    """The settings the worker runs (what its trained state holds), else the panel's."""
    worker = getattr(window, "worker", None)
    settings = getattr(worker, "settings", None) if worker is not None else None
    return settings if settings is not None else window.settings


def _worker_base(worker):
    """The base model a worker adapts when it was given one (tests, scripts); None: the shipped one,
    which the saved state records and export_state finds by itself."""
    for attr in ("base_model", "_base_model"):
        model = getattr(worker, attr, None)
        if model is not None and not inspect.ismethod(model):  # a model, not an accessor
            return model
    return None


def _message(window, icon, text: str, informative: str = "") -> QtWidgets.QMessageBox:
    """A non-modal message (training and drawing go on); one at a time per window."""
    old = getattr(window, "adapter_export_message", None)
    if old is not None:
        try:
            old.close()
            old.deleteLater()
        except RuntimeError:
            pass
    box = QtWidgets.QMessageBox(icon, TITLE, text, QtWidgets.QMessageBox.Ok, window)
    box.setObjectName("adapter_export_message")
    box.setWindowModality(Qt.NonModal)
    if informative:
        box.setInformativeText(informative)
    box.show()
    window.adapter_export_message = box
    return box


def _status(window, text: str, error: bool = False) -> None:
    status = getattr(window, "status", None)
    if status is None:
        return
    (status.error if error else status.info)(text)


def export_adapter(window, out=None, overwrite: bool | None = None):
    """File > Export as PEFT adapter. See the module docstring."""
    from explorer.core.export_adapter import export_problem

    running = getattr(window, "adapter_export_job", None)
    if running is not None and running.thread.is_alive():
        _message(
            window,
            QtWidgets.QMessageBox.Information,
            "An export is already running.",
            f"It writes to {running.out}; the summary shows when it is done.",
        )
        return None
    settings = running_settings(window)
    problem = export_problem(settings)
    if problem:
        _status(window, f"Cannot export as a PEFT adapter: {problem}", error=True)
        _message(
            window,
            QtWidgets.QMessageBox.Warning,
            "This run cannot be exported as a PEFT adapter.",
            problem[:1].upper() + problem[1:] + ".",
        )
        return None
    worker = getattr(window, "worker", None)
    if worker is None:
        _message(
            window,
            QtWidgets.QMessageBox.Information,
            "Nothing trained yet.",
            "Start the training engine (Space plays, N steps), then export.",
        )
        return None
    if not callable(getattr(worker, "save_state", None)):
        _message(
            window,
            QtWidgets.QMessageBox.Warning,
            "This training engine cannot hand out its trained state.",
            "Save a recording with `python -m explorer run` and export it with "
            "`python -m explorer export RECORDING --out DIR`.",
        )
        return None
    if out is None:
        start = getattr(window, "_last_export_dir", "") or str(Path.home())
        out = QtWidgets.QFileDialog.getExistingDirectory(
            window, "Export as PEFT adapter: choose the output directory (adapter/ and base/ go inside)", start
        )
        if not out:
            return None
    out = Path(out)
    window._last_export_dir = str(out)
    if out.exists() and not out.is_dir():
        _message(window, QtWidgets.QMessageBox.Warning, f"{out}: exists and is not a directory.")
        return None
    existing = [d for d in (out / "adapter", out / "base") if d.exists()]
    if existing:
        names = " and ".join(str(d) for d in existing)
        if overwrite is None:
            answer = QtWidgets.QMessageBox.question(
                window,
                TITLE,
                f"{names} already exist{'s' if len(existing) == 1 else ''}.\n\nReplace "
                f"{'it' if len(existing) == 1 else 'them'} with this export?",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No,
                QtWidgets.QMessageBox.No,
            )
            overwrite = answer == QtWidgets.QMessageBox.Yes
            if not overwrite:
                _status(window, "Export cancelled: nothing was replaced.")
                return None
        elif not overwrite:
            _message(
                window,
                QtWidgets.QMessageBox.Warning,
                f"{names} already exist; nothing was replaced.",
                "Choose another directory, or confirm replacing them.",
            )
            return None
    job = ExportJob(worker, out, bool(overwrite), base=_worker_base(worker), parent=window)
    window.adapter_export_job = job
    progress = QtWidgets.QProgressDialog(f"Exporting to {out}…", "", 0, 0, window)
    progress.setObjectName("adapter_export_progress")
    progress.setWindowTitle(TITLE)
    progress.setCancelButton(None)
    progress.setWindowModality(Qt.NonModal)
    progress.setMinimumDuration(300)
    progress.setAutoClose(False)
    progress.setAutoReset(False)

    def done(ok: bool, text: str) -> None:
        progress.close()
        progress.deleteLater()
        if ok:
            _status(window, text.splitlines()[0])
            _message(
                window,
                QtWidgets.QMessageBox.Information,
                "Exported as a PEFT adapter.",
                text + "\n\nLoad it with transformers.LlamaForCausalLM.from_pretrained(base) and "
                "peft.PeftModel.from_pretrained(model, adapter).",
            )
        else:
            _status(window, f"Export failed: {text}", error=True)
            _message(window, QtWidgets.QMessageBox.Warning, "The export failed; nothing was written.", text)

    job.finished.connect(done)
    _status(window, f"Exporting to {out}…")
    job.start()
    return job


__all__ = ["ExportJob", "export_adapter", "running_settings"]
