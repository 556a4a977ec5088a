"""File > Open PEFT adapter: look inside any LoRA or AdaptionPrompt adapter directory.

    window.features.inspector.open(path=None)     # a directory chooser when path is None

opens (or reuses) the window's inspector (window.py; its parts: grid.py, module_table.py, views.py,
prompts.py; reading and analysing run in a child process through gui/jobs.py).
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from explorer.gui.inspector.grid import NormGridView
from explorer.gui.inspector.prompts import PromptPanel
from explorer.gui.inspector.window import AdapterInspector
from explorer.gui.services import WindowServices


class InspectorFeature:
    """The adapter inspector as a part of the window: one inspector window, reused for each adapter."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.last_dir = ""  # where the chooser opens next time
        self._inspector: AdapterInspector | None = None

    def inspector(self, create: bool = False) -> AdapterInspector | None:
        """The inspector window (made on first use when `create`), or None."""
        if self._inspector is not None:
            try:
                self._inspector.objectName()  # raises once Qt deleted it
            except RuntimeError:
                self._inspector = None
        if self._inspector is None and create:
            self._inspector = AdapterInspector(self.window.widget, dark=self.window.theme != "light")
        return self._inspector

    def open(self, path=None) -> AdapterInspector | None:
        """Show the inspector on the adapter in `path` (a chooser when None; None if cancelled); its
        `loaded` or `failed` signal follows."""
        if path is None:
            path = QtWidgets.QFileDialog.getExistingDirectory(
                self.window.widget,
                "Open PEFT adapter (a directory with adapter_config.json)",
                self.last_dir or str(Path.home()),
            )
            if not path:
                return None
        inspector = self.inspector(create=True)
        inspector.set_theme(self.window.theme != "light")  # the window's theme may have changed since
        inspector.show()
        inspector.raise_()
        inspector.activateWindow()
        inspector.load(path)
        self.last_dir = str(Path(path).parent)
        return inspector

    def window_closing(self) -> None:
        """The inspector belongs to the window: it closes with it (a job still running ends unheard)."""
        if self.inspector() is not None:
            self._inspector.close()


__all__ = ["AdapterInspector", "InspectorFeature", "NormGridView", "PromptPanel"]
