"""What the app remembers between launches, in QSettings: window geometry and dock layout, theme, the
last training settings and the files opened lately. Anything stored that is missing, of the wrong type or no longer valid is
ignored (and the default used), so a damaged settings file can never stop the app from starting.
"""

from __future__ import annotations

import json
import os
import zlib

from PySide6.QtCore import QByteArray, QSettings

from explorer.gui.theme import THEMES
from explorer.schema.settings import TrainSettings

KEY_GEOMETRY = "window/geometry"
KEY_STATE = "window/state"
KEY_STATE_VERSION = "window/state_version"
KEY_THEME = "ui/theme"
KEY_SETTINGS = "training/settings"
KEY_RECENT = "files/recent"
MAX_RECENT = 10
RECENT_KINDS = ("state", "settings", "recording", "adapter", "model", "data")


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

    # -- recent files ---------------------------------------------------------------------------
    def recent_files(self) -> list[tuple[str, str]]:
        """(path, kind) of the files opened lately, newest first; entries whose path is gone (or that
        are damaged) are dropped, and the list stored again without them."""
        raw = self.q.value(KEY_RECENT, None)
        try:
            data = json.loads(raw) if isinstance(raw, str) and raw else []
        except ValueError:
            data = []
        entries = []
        for item in data if isinstance(data, list) else []:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and item[1] in RECENT_KINDS
                and (item[0], item[1]) not in entries
            ):
                entries.append((item[0], item[1]))
        kept = [(p, k) for p, k in entries[:MAX_RECENT] if os.path.lexists(p)]
        if kept != entries or (raw and not entries):
            self._store_recent(kept)
        return kept

    def add_recent(self, path: str, kind: str) -> None:
        if kind not in RECENT_KINDS:
            raise ValueError(f"recent file kind {kind!r}: allowed {', '.join(RECENT_KINDS)}")
        entries = [(p, k) for p, k in self.recent_files() if p != path]
        self._store_recent([(path, kind), *entries][:MAX_RECENT])

    def clear_recent(self) -> None:
        self.q.remove(KEY_RECENT)

    def _store_recent(self, entries: list[tuple[str, str]]) -> None:
        self.q.setValue(KEY_RECENT, json.dumps([list(e) for e in entries]))

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
