"""What the app remembers between launches, in QSettings: window geometry and dock layout, theme, and
the last training settings. Anything stored that is missing, of the wrong type or no longer valid is
ignored (and the default used), so a damaged settings file can never stop the app from starting.
"""

from __future__ import annotations

import json
import zlib

from PySide6.QtCore import QByteArray, QSettings

from explorer.gui.theme import THEMES
from explorer.schema.settings import TrainSettings

KEY_GEOMETRY = "window/geometry"
KEY_STATE = "window/state"
KEY_STATE_VERSION = "window/state_version"
KEY_THEME = "ui/theme"
KEY_SETTINGS = "training/settings"


def layout_version(dock_names: list[str]) -> int:
    """A version for QMainWindow.saveState/restoreState that changes when the set of docks changes."""
    return zlib.crc32(",".join(sorted(dock_names)).encode()) & 0x7FFFFFFF


class Persistence:
    """QSettings in the user's config folder, or in an INI file at `path` (tests, scripts)."""

    def __init__(self, path: str | None = None, qsettings: QSettings | None = None):
        if qsettings is not None:
            self.q = qsettings
        elif path:
            self.q = QSettings(str(path), QSettings.IniFormat)
        else:
            self.q = QSettings(QSettings.IniFormat, QSettings.UserScope, "peft-explorer", "peft-explorer")

    # -- theme ----------------------------------------------------------------------------------
    def theme(self, default: str = "dark") -> str:
        value = self.q.value(KEY_THEME, default)
        return value if isinstance(value, str) and value in THEMES else default

    def set_theme(self, name: str) -> None:
        if name in THEMES:
            self.q.setValue(KEY_THEME, name)

    # -- training settings ------------------------------------------------------------------------
    def load_settings(self) -> TrainSettings | None:
        raw = self.q.value(KEY_SETTINGS, None)
        if not isinstance(raw, str) or not raw:
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                return None
            return TrainSettings.from_dict(data)
        except (ValueError, TypeError):
            return None

    def save_settings(self, settings: TrainSettings) -> None:
        self.q.setValue(KEY_SETTINGS, json.dumps(settings.to_dict()))

    # -- window ---------------------------------------------------------------------------------
    def save_window(self, window, version: int) -> None:
        self.q.setValue(KEY_GEOMETRY, window.saveGeometry())
        self.q.setValue(KEY_STATE, window.saveState(version))
        self.q.setValue(KEY_STATE_VERSION, int(version))

    def restore_window(self, window, version: int) -> tuple[bool, bool]:
        """(geometry restored, dock layout restored); anything unreadable is skipped."""
        geometry = self._bytes(KEY_GEOMETRY)
        state = self._bytes(KEY_STATE)
        got_geometry = bool(geometry) and bool(window.restoreGeometry(geometry))
        got_state = False
        try:
            stored_version = int(self.q.value(KEY_STATE_VERSION, -1))
        except (TypeError, ValueError):
            stored_version = -1
        if state and stored_version == version:
            got_state = bool(window.restoreState(state, version))
        return got_geometry, got_state

    def clear_layout(self) -> None:
        for key in (KEY_GEOMETRY, KEY_STATE, KEY_STATE_VERSION):
            self.q.remove(key)

    def sync(self) -> None:
        self.q.sync()

    def _bytes(self, key: str) -> QByteArray | None:
        value = self.q.value(key, None)
        if isinstance(value, QByteArray) and not value.isEmpty():
            return value
        if isinstance(value, (bytes, bytearray)) and value:
            return QByteArray(bytes(value))
        return None
