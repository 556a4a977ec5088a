"""Every keyboard shortcut in one table: the window binds them from here and the F1 overlay lists them
from here, so the two can never disagree.

Each shortcut is a QAction on the main window (window-wide). A text field that has focus keeps the keys
it types with (Space, Right, letters), as Qt gives a focused editor first refusal on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence


@dataclass(frozen=True)
class Shortcut:
    action: str  # name of the window's action (MainWindow.actions[action])
    keys: tuple[str, ...]  # QKeySequence strings; the first is shown in menus
    text: str  # what it does, for menus and the help overlay
    group: str = "Training"


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("play_pause", ("Space",), "Play / pause training"),
    Shortcut("step", ("N", "Right"), "One training step"),
    Shortcut("reset", ("R",), "Reset: restart the adapters from the frozen base"),
    Shortcut("faster", ("]",), "Faster (raise the steps-per-second cap)"),
    Shortcut("slower", ("[",), "Slower (lower the steps-per-second cap)"),
    Shortcut("save_state", ("Ctrl+S",), "Save the trained state (or the settings)", "File"),
    Shortcut("open", ("Ctrl+O",), "Open a saved state or settings file", "File"),
    Shortcut("export_view", ("Ctrl+E",), "Export the current view (PNG, SVG, CSV)", "File"),
    Shortcut("quit", ("Ctrl+Q",), "Quit", "File"),
    Shortcut("full_screen", ("F11",), "Full screen on / off", "Window"),
    Shortcut("help", ("F1",), "This list of shortcuts", "Window"),
    Shortcut("talk_mode", ("F5",), "Talk mode: full screen, large type, the default deck of scenes", "Window"),
    # Talk mode only (explorer.gui.deck_player reads these keys; what presenter clickers send)
    Shortcut("talk_next", ("Space", "PgDown", "Right"), "Next scene", "Talk mode"),
    Shortcut("talk_previous", ("PgUp", "Left"), "Previous scene", "Talk mode"),
    Shortcut("talk_first", ("Home",), "First scene", "Talk mode"),
    Shortcut("talk_last", ("End",), "Last scene", "Talk mode"),
    Shortcut("talk_blank", ("B", "."), "Blank the screen (B or any key shows it again)", "Talk mode"),
    Shortcut("talk_play", ("P",), "Play / pause the training of the scene", "Talk mode"),
    Shortcut("talk_restart", ("R",), "Restart the scene from step 0", "Talk mode"),
    Shortcut("talk_larger", ("+", "="), "Larger type (remembered)", "Talk mode"),
    Shortcut("talk_smaller", ("-",), "Smaller type (remembered)", "Talk mode"),
    Shortcut("talk_leave", ("Esc",), "Leave talk mode (the window comes back as it was)", "Talk mode"),
    # Replay mode only (explorer.gui.replay binds these while a recording is shown)
    # (two keys: back, on)
    Shortcut("replay_play", ("Space",), "Play / pause the replay", "Replay"),
    Shortcut("replay_step", ("Left", "Right"), "Previous / next recorded step", "Replay"),
    Shortcut("replay_ends", ("Home", "End"), "First / last recorded step", "Replay"),
)


def shortcut_for(action: str) -> Shortcut:
    for s in SHORTCUTS:
        if s.action == action:
            return s
    raise KeyError(action)


def native_text(keys: tuple[str, ...]) -> str:
    return " / ".join(QKeySequence(k).toString(QKeySequence.NativeText) for k in keys)


def bind(actions: dict[str, QAction], window) -> None:
    """Give each action in `actions` its keys from SHORTCUTS and make it work anywhere in `window`."""
    for s in SHORTCUTS:
        action = actions.get(s.action)
        if action is None:
            continue
        action.setShortcuts([QKeySequence(k) for k in s.keys])
        action.setShortcutContext(Qt.WindowShortcut)
        tip = action.toolTip() or s.text
        if "(" not in tip:
            action.setToolTip(f"{tip} ({native_text(s.keys)})")
        if action not in window.actions():
            window.addAction(action)
