"""The window's file commands: one Open… (Ctrl+O) for a saved state, a settings file, a recording, a
PEFT adapter, a model directory or a dataset, with a recent-files list; Open model… / Open data…;
save the trained state or the settings (Ctrl+S); export the current view (Ctrl+E) and the metrics as
CSV. A part the window owns, through WindowServices; every failure is one line in the status bar
(WindowServices.report_failure) and changes nothing.

Files the user names are untrusted: a settings file is read on a helper thread, only when it is a
regular file (a FIFO named *.json never blocks the window) of at most MAX_SETTINGS_BYTES.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMenu

from explorer.gui.export import FILTERS, export_view, suffix_for, write_metrics_csv
from explorer.gui.jobs import Job, thread_job
from explorer.gui.services import WindowServices
from explorer.schema.files import atomic_write_text
from explorer.schema.format import one_line
from explorer.schema.jsonio import read_json_file
from explorer.schema.recording import recorded_model_change, recorded_model_problem
from explorer.schema.settings import TrainSettings

MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few hundred bytes
KIND_NAMES = {
    "state": "trained state",
    "settings": "settings",
    "recording": "recording",
    "adapter": "PEFT adapter",
    "model": "model",
    "data": "data",
}
DATA_SUFFIXES = (".txt", ".jsonl")
OPEN_FILTER = (
    "Anything the app opens (*.safetensors *.json *.jsonl *.txt);;Trained state (*.safetensors);;"
    "Settings (*.json);;Data (*.txt *.jsonl *.json);;All files (*)"
)


def kind_of(path) -> str:
    """What `path` holds, from its type and names alone (nothing is read; a FIFO is never opened):
    state, settings, recording, adapter, model or data. ValueError (one line) for anything else."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or directory") from None
    if stat.S_ISDIR(info.st_mode):
        if (path / "adapter_config.json").is_file():
            return "adapter"
        if (path / "metrics.jsonl").is_file() and (path / "config.json").is_file():
            return "recording"
        if (path / "config.json").is_file():
            return "model"
        if any(p.suffix in DATA_SUFFIXES for p in _first_entries(path)):
            return "data"
        raise ValueError(
            f"{path}: not a recording (config.json + metrics.jsonl), a PEFT adapter (adapter_config.json), "
            "a model (config.json) or a folder of .txt files"
        )
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "state"
    if suffix == ".json":
        return "settings"
    if suffix in DATA_SUFFIXES:
        return "data"
    raise ValueError(
        f"{path}: unknown file type {suffix or '(none)'!r}: the app opens .safetensors, .json, .jsonl, .txt"
    )


def _first_entries(directory: Path, limit: int = 200) -> list[Path]:
    out = []
    with os.scandir(directory) as it:
        for entry in it:
            out.append(Path(entry.path))
            if len(out) >= limit:
                break
    return out


def _read_settings(path: str):
    """The TrainSettings of a settings file, or the exception that says why not (the window reports it
    as it reports every entry point's failure)."""
    try:
        return TrainSettings.from_dict(read_json_file(path, expect=dict, max_bytes=MAX_SETTINGS_BYTES))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI thread
        return exc if isinstance(exc, Exception) else RuntimeError(type(exc).__name__)


class FileCommands:
    def __init__(self, window: WindowServices):
        self.window = window
        self.recent_menu: QMenu | None = None
        self._jobs: list[Job] = []  # settings files being read
        self._pending_sources: dict[str, str] = {}  # model / data asked for, not yet in force
        window.snapshot_delivered.connect(self._on_snapshot)
        window.controls.rejected.connect(self._on_rejected)

    # ---- save ------------------------------------------------------------------------------------
    def save_state(self, path: str | None = None) -> None:
        """Ctrl+S: the trained state (.safetensors, through the engine) or the settings (.json)."""
        status = self.window.status
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self.window.widget,
                "Save state",
                str(Path.home() / "peft-explorer-state.safetensors"),
                "Trained state (*.safetensors);;Settings (*.json)",
            )
            if not path:
                return
        path = str(path)
        if path.endswith(".json"):
            try:  # temp file + fsync + rename: a failed write leaves the previous file whole
                atomic_write_text(path, json.dumps(self.window.settings.to_dict(), indent=2) + "\n")
            except Exception as exc:  # noqa: BLE001 - the entry point's boundary
                self.window.report_failure("save the settings to", exc, path)
                return
            status.info(f"Settings saved to {path}")
            return
        saver = getattr(self.window.worker, "save_state", None)
        if saver is None:
            status.error("Saving the trained state needs a running training engine (settings can be saved as .json).")
            return
        try:
            saver(path)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("save the state to", exc, path)
            return
        status.info(f"State saved to {path}")

    # ---- open ------------------------------------------------------------------------------------
    def open_file(self, path: str | None = None) -> str | None:
        """Ctrl+O: a saved state, a settings file, a recording, an adapter, a model or a dataset,
        recognised by kind_of. Returns the kind opened (a settings file follows on a helper thread)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.window.widget, "Open", str(Path.home()), OPEN_FILTER)
            if not path:
                return None
        try:
            kind = kind_of(path)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("open", exc, path)
            return None
        opener = {
            "state": self.open_state,
            "settings": self.open_settings,
            "recording": self.open_recording,
            "adapter": self.open_adapter,
            "model": self.open_model,
            "data": self.open_data,
        }[kind]
        return kind if opener(str(path)) is not None else None

    def open_settings(self, path: str) -> Job:
        """A settings .json, read and checked by a background job (gui/jobs.py); applied when it arrives."""
        path = str(path)
        job = thread_job(_read_settings, path, name="explorer-open-file", parent=self.window.widget)
        job.done.connect(lambda result: self._on_settings_read(path, result))
        self._jobs = [j for j in self._jobs if j.running] + [job]
        return job.start()

    def _on_settings_read(self, path: str, result) -> None:
        if isinstance(result, Exception):
            self.window.report_failure("open the settings", result, path)
            return
        try:
            self.window.apply_settings(result)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("apply the settings from", exc, path)
            return
        self.remember(path, "settings")
        self.window.status.info(f"Settings loaded from {path}")

    def open_state(self, path: str) -> str | None:
        worker = self.window.worker
        loader = getattr(worker, "load_state", None)
        if loader is None:
            self.window.status.error("Opening a trained state needs a running training engine.")
            return None
        try:
            if not Path(path).is_file():
                raise ValueError(f"{path}: not a regular file")
            result = loader(path)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("open the state", exc, path)
            return None
        in_force = result if isinstance(result, TrainSettings) else getattr(worker, "settings", None)
        if isinstance(in_force, TrainSettings):
            self.window.show_settings(in_force)
            self.window.store.save_settings(in_force)
        self.remember(path, "state")
        self.window.status.info(f"State opened from {path}")
        return path

    def open_recording(self, path: str | None = None, follow: bool = False, live_on_failure: bool = False):
        """Replay the recording in `path` (a chooser when None); `follow`: one still being written. A
        recording made on a model directory that is gone is refused, saying so; one whose directory
        now holds another model (its hash differs) is replayed, saying that too. Returns the replay
        controller (it reads the recording off the GUI thread; see explorer.gui.replay), or None."""
        if path is None:
            title = "Follow a run (its recording directory)" if follow else "Open recording"
            path = QFileDialog.getExistingDirectory(self.window.widget, title, str(Path.home()))
            if not path:
                return None
        try:
            problem = recorded_model_problem(path)
            if problem:
                raise ValueError(problem)
            note = recorded_model_change(path) or ""
            controller = self.window.features.replay.open(
                path, follow=follow, live_on_failure=live_on_failure, model_note=note
            )
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("open the recording", exc, path)
            return None
        if controller is not None:
            self.remember(path, "recording")
        return controller

    def open_adapter(self, path: str | None = None):
        """The adapter inspector on the PEFT adapter in `path` (a chooser when None)."""
        try:
            # a directory that is no adapter is told at once, without starting the inspector's reader
            # (which loads the analysis libraries into this process on a helper thread)
            if path is not None and not (Path(path) / "adapter_config.json").is_file():
                raise ValueError(f"{path}: not a PEFT adapter directory (no adapter_config.json)")
            inspector = self.window.features.inspector.open(path)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("open the adapter", exc, path)
            return None
        if inspector is not None and path is not None:
            self.remember(str(path), "adapter")
        return inspector

    def open_model(self, path: str | None = None) -> str | None:
        """File > Open model…: the base model of the lm scenario becomes the checkpoint in `path` (a cold
        change: new adapters on the new base; the engine refuses one that is unusable or will not fit,
        and the run in force stays)."""
        return self._set_source("model", path)

    def open_data(self, path: str | None = None) -> str | None:
        """File > Open data…: the training data of the lm scenario (a cold change)."""
        return self._set_source("data", path)

    def _set_source(self, name: str, path: str | None) -> str | None:
        widget = self.window.widget
        if path is None:
            if name == "model":
                path = QFileDialog.getExistingDirectory(
                    widget, "Open model (a Hugging Face checkpoint)", str(Path.home())
                )
            else:
                path, _ = QFileDialog.getOpenFileName(
                    widget, "Open data", str(Path.home()), "Text or JSON lines (*.txt *.jsonl *.json);;All files (*)"
                )
            if not path:
                return None
        path = str(path)
        try:
            if name == "model" and not (Path(path) / "config.json").is_file():
                raise ValueError(f"{path}: not a model directory (no config.json)")
            if name == "data" and not Path(path).exists():
                raise FileNotFoundError(f"{path}: no such file or directory")
            changes = {name: path}
            if self.window.settings.scenario != "lm":
                changes["scenario"] = "lm"
            new = self.window.settings.with_changes(**changes)
            self._pending_sources[name] = path
            if not self.window.apply_settings(new):
                self._pending_sources.pop(name, None)
                return None
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure(f"open the {name}", exc, path)
            return None
        self.window.status.info(f"Opening the {KIND_NAMES[name]} {path}: the run restarts on it")
        return path

    def _on_snapshot(self, snap) -> None:
        """A model or dataset joins the recent files once a snapshot of a run on it arrives (the engine
        may still refuse it after the panel took it: a bad checkpoint, one that will not fit)."""
        if not self._pending_sources or not isinstance(snap.settings, dict) or snap.state == "replay":
            return
        for name, path in list(self._pending_sources.items()):
            if snap.settings.get(name) == path:
                del self._pending_sources[name]
                self.remember(path, name)

    def _on_rejected(self, _name: str, _message: str) -> None:
        self._pending_sources.clear()  # refused (said by the window): not remembered

    # ---- recent files ------------------------------------------------------------------------------
    def remember(self, path: str, kind: str) -> None:
        self.window.store.add_recent(str(Path(path).absolute()), kind)

    def install_recent_menu(self, menu: QMenu) -> QMenu:
        """File > Open recent, filled from the store each time it opens (missing entries pruned)."""
        self.recent_menu = menu
        menu.aboutToShow.connect(self.fill_recent_menu)
        self.fill_recent_menu()
        return menu

    def fill_recent_menu(self) -> None:
        menu = self.recent_menu
        if menu is None:
            return
        menu.clear()
        entries = self.window.store.recent_files()
        for path, kind in entries:
            action = menu.addAction(f"{Path(path).name}  ({KIND_NAMES.get(kind, kind)})")
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda *_, p=path, k=kind: self.open_recent(p, k))
        if not entries:
            menu.addAction("(none)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear the list").triggered.connect(lambda *_: self.window.store.clear_recent())

    def open_recent(self, path: str, kind: str):
        opener = {"model": self.open_model, "data": self.open_data}.get(kind)
        return opener(path) if opener is not None else self.open_file(path)

    def export_current_view(self, path: str | None = None) -> str | None:
        """Ctrl+E: the current view (last focused or shown) as PNG or SVG."""
        status = self.window.status
        view_id = self.window.current_view_id()
        if view_id is None:
            status.error("No view to export: show one from the View menu.")
            return None
        if path is None:
            title = self.window.view_docks[view_id].windowTitle()
            path, chosen = QFileDialog.getSaveFileName(
                self.window.widget, f"Export {title}", str(Path.home() / f"{view_id}.png"), FILTERS
            )
            if not path:
                return None
            path = suffix_for(path, chosen)
        path = str(path)
        try:
            export_view(self.window.views[view_id], path)
        except Exception as exc:  # noqa: BLE001
            status.error(f"Could not export {view_id}: {one_line(exc)}")
            return None
        status.info(f"Exported {view_id} to {path}")
        return path

    def export_metrics(self, path: str | None = None) -> str | None:
        """The histories of the last snapshot (losses, gates, ranks by step) as CSV."""
        status = self.window.status
        snap = self.window.last_snapshot
        if snap is None:
            status.error("Nothing to export yet: train a few steps first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self.window.widget, "Export metrics", str(Path.home() / "metrics.csv"), "CSV (*.csv)"
            )
            if not path:
                return None
        try:
            rows = write_metrics_csv(snap, path)
        except Exception as exc:  # noqa: BLE001
            self.window.report_failure("write", exc, path)
            return None
        status.info(f"Metrics written to {path} ({rows} steps)")
        return str(path)

    def window_closing(self) -> None:
        for job in self._jobs:  # a settings read is bounded (a regular file of at most 1 MiB)
            job.wait(5)
