"""The window's file commands: save and open the trained state or the settings (Ctrl+S, Ctrl+O),
export the current view (Ctrl+E) and the metrics as CSV. A part the window owns, through
WindowServices; every failure is one line in the status bar and changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from explorer.gui.export import FILTERS, export_view, suffix_for, write_metrics_csv
from explorer.gui.services import WindowServices
from explorer.schema.format import one_line
from explorer.schema.settings import TrainSettings


class FileCommands:
    def __init__(self, window: WindowServices):
        self.window = window

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
            try:
                Path(path).write_text(json.dumps(self.window.settings.to_dict(), indent=2) + "\n")
            except OSError as exc:
                status.error(f"Could not save {path}: {exc}")
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
            status.error(f"Could not save the state: {exc}")
            return
        status.info(f"State saved to {path}")

    def open_file(self, path: str | None = None) -> None:
        """Ctrl+O: a settings file (.json) or a saved state (.safetensors)."""
        status = self.window.status
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self.window.widget, "Open", str(Path.home()), "State or settings (*.safetensors *.json);;All files (*)"
            )
            if not path:
                return
        path = str(path)
        if path.endswith(".json"):
            try:
                data = json.loads(Path(path).read_text())
                new = TrainSettings.from_dict(data)
            except (OSError, ValueError, TypeError) as exc:
                status.error(f"{path}: not a settings file ({exc})")
                return
            self.window.apply_settings(new)
            status.info(f"Settings loaded from {path}")
            return
        worker = self.window.worker
        loader = getattr(worker, "load_state", None)
        if loader is None:
            status.error("Opening a trained state needs a running training engine.")
            return
        try:
            result = loader(path)
        except Exception as exc:  # noqa: BLE001
            status.error(f"Could not open {path}: {exc}")
            return
        in_force = result if isinstance(result, TrainSettings) else getattr(worker, "settings", None)
        if isinstance(in_force, TrainSettings):
            self.window.show_settings(in_force)
            self.window.store.save_settings(in_force)
        status.info(f"State opened from {path}")

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
        except (OSError, ValueError) as exc:
            status.error(f"Could not write {path}: {exc}")
            return None
        status.info(f"Metrics written to {path} ({rows} steps)")
        return str(path)

    def window_closing(self) -> None:
        pass
