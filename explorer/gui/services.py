"""What the window offers the features it owns (talk mode, replay, run recording, screen recording,
the adapter inspector, export as adapter, the file commands): one typed interface.

A feature is made with the window as a `WindowServices` and uses nothing else of it: no private
attributes, no attributes set on the window from outside (tests/gui/test_features.py reads the
features' sources to hold them to that). The window keeps each feature's state in the feature.
`widget` is the window as a Qt widget: the parent of dialogs, the owner of docks and event filters,
what goes full screen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from PySide6.QtCore import SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMainWindow, QToolBar, QWidget

from explorer.gui.compare_host import CompareHost
from explorer.gui.controls import ControlsPanel
from explorer.gui.help_overlay import HelpOverlay
from explorer.gui.persistence import Persistence
from explorer.gui.status_bar import StatusBar
from explorer.schema.format import one_line
from explorer.schema.settings import TrainSettings
from explorer.schema.snapshot import Snapshot

# What report_failure says for failures whose message is not one of ours (a ValueError of a reader
# names the file and the reason; a RecursionError or MemoryError says nothing useful on its own).
_PLAIN_KINDS = (ValueError, OSError)


def failure_line(what: str, exc: BaseException, path=None) -> str:
    """'Could not <what> <path>: <reason>' on one line (the path left out when the reason names it),
    the exception's kind added when its text is not ours."""
    text = one_line(exc) if str(exc).strip() else ""
    if path is not None and str(path) not in text:
        what = f"{what} {path}"
    if isinstance(exc, MemoryError):
        text = "not enough memory" + (f" ({text})" if text else "")
    elif isinstance(exc, RecursionError):
        text = "nested too deeply to read"
    elif not isinstance(exc, _PLAIN_KINDS) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"Could not {what}: {text}"


def report_failure(status: StatusBar, what: str, exc: BaseException, path=None) -> str:
    """Say in the status bar (and on stderr) that `what` (on `path`) failed and why; returns the line."""
    line = failure_line(what, exc, path)
    try:
        sys.stderr.write(f"peft-explorer: {line}\n")
    except (OSError, ValueError):  # no usable stderr (a closed terminal)
        pass
    status.error(line)
    return line


@runtime_checkable
class WindowServices(Protocol):
    # ---- the window's parts
    @property
    def widget(self) -> QMainWindow: ...

    status: StatusBar
    store: Persistence
    controls: ControlsPanel
    controls_dock: QDockWidget
    views: dict[str, QWidget]
    view_docks: dict[str, QDockWidget]
    actions_by_name: dict[str, QAction]
    toolbar: QToolBar
    help_overlay: HelpOverlay
    compare_host: CompareHost
    snapshot_delivered: SignalInstance  # every snapshot the views were handed (live or replayed)
    theme: str  # "dark" or "light"
    worker: object | None  # the training worker (engine API), None before it starts
    features: object  # the window's features (explorer.gui.features.Features): what the file commands open

    # ---- state
    @property
    def settings(self) -> TrainSettings: ...

    @property
    def last_snapshot(self) -> Snapshot | None: ...

    @property
    def playing(self) -> bool: ...

    @property
    def replaying(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def layout_version(self) -> int: ...

    def current_view_id(self) -> str | None: ...

    def live_controls(self) -> list[QAction | QWidget]:
        """The actions and widgets that act on the live run (a replay disables them)."""
        ...

    # ---- failures
    def report_failure(self, what: str, exc: BaseException, path=None) -> None:
        """One line in the status bar saying that `what` (on `path`) failed and why; the app stays usable."""
        ...

    def guarded(self, what: str, fn: Callable[..., object]) -> Callable[..., object]:
        """fn with every exception it raises reported (report_failure) instead of raised; None then."""
        ...

    # ---- the run
    def apply_settings(self, new: TrainSettings) -> bool: ...

    def show_settings(self, settings: TrainSettings) -> None:
        """Show these settings in the panel and the toolbar without applying them."""
        ...

    def start_worker(self, play: bool = False) -> None: ...

    def play(self) -> None: ...

    def pause(self) -> None: ...

    def toggle_play(self) -> None: ...

    def reset(self) -> None: ...

    # ---- the views
    def deliver(self, snap: Snapshot) -> None: ...

    def clear_views(self) -> None:
        """Every view the single run feeds back to empty, and no snapshot last delivered."""
        ...

    def call_view(self, view: QWidget, method: str, *args) -> None:
        """view.method(*args) if it has one; an exception is reported, not raised."""
        ...
