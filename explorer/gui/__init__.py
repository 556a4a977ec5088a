"""The window: PySide6 + pyqtgraph views and controls over the engine's snapshots."""

# First, before any Qt painting: PySide6 6.12.0 on Python 3.11 otherwise aborts (see the module).
from explorer.gui import _pyside_guard  # noqa: F401
