"""The window's actions (text, tip, icon), its training toolbar and its menus.

The window hands in the slot of each action by name; which actions exist, how they read and where
they sit in the menus is said here, once. The keys are bound by explorer.gui.shortcuts.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QComboBox, QDockWidget, QLabel, QMainWindow, QSizePolicy, QStyle, QToolBar, QWidget

from explorer.gui.theme import THEMES
from explorer.schema.format import format_rate
from explorer.schema.settings import SETTINGS_SPEC

# name: (text, tip, standard icon or None, checkable)
ACTIONS: dict[str, tuple[str, str, QStyle.StandardPixmap | None, bool]] = {
    "play_pause": ("Play", "Play / pause training", QStyle.SP_MediaPlay, False),
    "step": ("Step", "One training step", QStyle.SP_MediaSkipForward, False),
    "reset": ("Reset", "Restart the adapters from the frozen base", QStyle.SP_BrowserReload, False),
    "faster": ("Faster", "Raise the steps-per-second cap", None, False),
    "slower": ("Slower", "Lower the steps-per-second cap", None, False),
    "save_state": ("Save state…", "Save the trained state, or the settings as JSON", QStyle.SP_DialogSaveButton, False),
    "open": (
        "Open…",
        "Open a saved state, a settings file, a recording, a PEFT adapter, a model or a dataset",
        QStyle.SP_DialogOpenButton,
        False,
    ),
    "open_model": ("Open model…", "Train on a Hugging Face checkpoint directory (Llama, Mistral, Qwen2)", None, False),
    "open_data": (
        "Open data…",
        "Train on a .txt file or folder, or .jsonl / .json with text or instructions",
        None,
        False,
    ),
    "export_view": ("Export current view…", "Export the current view as PNG or SVG", None, False),
    "export_metrics": ("Export metrics (CSV)…", "Losses over the steps as CSV", None, False),
    "open_adapter": ("Open PEFT adapter…", "Look inside a PEFT adapter directory", None, False),
    "export_adapter": ("Export as PEFT adapter…", "Write what was trained as a PEFT adapter directory", None, False),
    "record": ("Record…", "Record a view or the window (GIF, MP4)", None, False),
    "open_recording": (
        "Open recording…",
        "Replay a recording (python -m explorer run, or Record run) with a step slider",
        None,
        False,
    ),
    "follow_run": (
        "Follow a run…",
        "Open a recording still being written (a training job's) and keep up with it as it grows",
        None,
        False,
    ),
    "record_run": (
        "Record run to directory…",
        "Write the live run's snapshots to a directory, to replay later",
        None,
        False,
    ),
    "quit": ("Quit", "Quit", None, False),
    "full_screen": ("Full screen", "Full screen on / off", None, True),
    "talk_mode": ("Talk mode", "Full screen, large fonts, a deck of scenes", None, False),
    "help": ("Keyboard shortcuts", "List every shortcut", None, False),
    "reset_layout": ("Reset layout", "Put every dock back where it started", None, False),
    "about": ("About", "About peft-explorer", None, False),
}
# The actions that act on the live run (a replay disables them meanwhile).
LIVE_ACTIONS = (
    "play_pause",
    "step",
    "reset",
    "faster",
    "slower",
    "save_state",
    "open",
    "open_model",
    "open_data",
    "export_adapter",
    "talk_mode",
)
RECENT_MENU = "menu_recent"  # File > Open recent (filled by window_files.FileCommands)
# None: a separator
FILE_MENU = (
    "open",
    RECENT_MENU,
    "open_model",
    "open_data",
    "save_state",
    None,
    "open_recording",
    "follow_run",
    "record_run",
    None,
    "export_view",
    "export_metrics",
    "record",
    None,
    "open_adapter",
    "export_adapter",
    None,
    "quit",
)
TRAINING_MENU = ("play_pause", "step", "reset", None, "faster", "slower")
SPEEDS = (
    (0.0, "max"),
    (1000.0, "1000 /s"),
    (300.0, "300 /s"),
    (100.0, "100 /s"),
    (30.0, "30 /s"),
    (10.0, "10 /s"),
    (3.0, "3 /s"),
    (1.0, "1 /s"),
)


def make_actions(window: QMainWindow, slots: dict[str, Callable[[], object]]) -> dict[str, QAction]:
    """One QAction per entry of ACTIONS, owned by `window`, triggering `slots[name]`."""
    actions = {}
    for name, (text, tip, icon, checkable) in ACTIONS.items():
        action = QAction(text, window)
        action.setObjectName(f"action_{name}")
        if icon is not None:
            action.setIcon(window.style().standardIcon(icon))
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.setCheckable(checkable)
        action.triggered.connect(lambda *_, slot=slots[name]: slot())
        actions[name] = action
    return actions


class SpeedBox(QComboBox):
    """The toolbar's steps-per-second cap: SPEEDS, and any other value a settings file brought.

    It offers only the caps the run can reach: from the rate a segment trains at uncapped (or below
    its cap), a cap at or above REACHABLE of that rate is greyed out (it would change nothing), 'max'
    says the rate it reaches, and a cap in force above it says the run is at its maximum."""

    REACHABLE = 0.9  # a cap is worth offering below this share of the fastest rate seen

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("speed_box")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # 'max (≈9.3 /s)' fits
        self.setToolTip(f"{SETTINGS_SPEC['speed'].help} — hot: applies at once  ([ and ])")
        self.max_rate: float | None = None  # steps/s this segment reaches uncapped (None: not measured)
        self._segment = None
        for value, text in SPEEDS:
            self.addItem(text, value)

    def show_speed(self, speed: float) -> None:
        i = self.findData(float(speed))
        if i < 0:
            self.addItem(f"{speed:g} /s", float(speed))
            i = self.count() - 1
        self.setCurrentIndex(i)
        self._sync_items()

    def note_snapshot(self, snap) -> None:
        """Learn the rate the run reaches from a live snapshot: measured while uncapped, or well below
        its cap; a new segment (other settings, another speed) measures again."""
        if snap.segment != self._segment:
            self._segment = snap.segment
            if self.max_rate is not None:
                self.max_rate = None
                self._sync_items()
        rate = float(snap.steps_per_second or 0.0)
        cap = float((snap.settings or {}).get("speed", 0.0) or 0.0)
        if snap.state != "running" or not rate > 0 or (cap > 0 and rate >= 0.8 * cap):
            return
        self.max_rate = rate if self.max_rate is None else 0.8 * self.max_rate + 0.2 * rate
        self._sync_items()

    def reachable(self, value: float) -> bool:
        """A cap of `value` steps/s slows this run (0, 'max', always counts)."""
        return value == 0 or self.max_rate is None or value < self.REACHABLE * self.max_rate

    def _sync_items(self) -> None:
        model = self.model()
        fastest = self.max_rate
        for i in range(self.count()):
            value = float(self.itemData(i))
            base = "max" if value == 0 else f"{value:g} /s"
            item = model.item(i) if hasattr(model, "item") else None
            ok = self.reachable(value)
            if value == 0:
                text = base if fastest is None else f"max (≈{format_rate(fastest)} /s)"
            elif not ok and i == self.currentIndex():
                text = f"{base}: at its maximum ≈{format_rate(fastest)} /s"
            else:
                text = base
            if self.itemText(i) != text:
                self.setItemText(i, text)
            if item is not None and item.isEnabled() != ok:
                item.setEnabled(ok)
                item.setToolTip("" if ok else f"this run trains at about {format_rate(fastest)} steps/s")

    def next_speed(self, current: float, direction: int) -> float:
        """SpeedBox.neighbour among the caps this run can reach: past the fastest reachable one is 'max'."""
        value = self.neighbour(current, direction)
        if direction > 0:
            return value if self.reachable(value) else 0.0
        while not self.reachable(value) and self.neighbour(value, direction) != value:
            value = self.neighbour(value, direction)
        return value

    @staticmethod
    def neighbour(current: float, direction: int) -> float:
        """+1: the next faster speed (towards 'max', 0), -1: the next slower one, along SPEEDS."""
        order = sorted((v for v, _ in SPEEDS), key=lambda v: float("inf") if v == 0 else v)  # slow ... max
        pos = min(
            range(len(order)),
            key=lambda i: abs((1e9 if order[i] == 0 else order[i]) - (1e9 if current == 0 else current)),
        )
        return order[max(0, min(len(order) - 1, pos + direction))]


def make_toolbar(window: QMainWindow, actions: dict[str, QAction]) -> tuple[QToolBar, SpeedBox, QLabel]:
    """Play, Step, Reset, the speed, the scenario · method label and Help, at the top of `window`."""
    bar = QToolBar("Training", window)
    bar.setObjectName("toolbar_training")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    bar.setIconSize(QSize(18, 18))
    for name in ("play_pause", "step", "reset"):
        bar.addAction(actions[name])
    bar.addSeparator()
    label = QLabel(" Speed ")
    label.setToolTip(SETTINGS_SPEC["speed"].help)
    bar.addWidget(label)
    speed_box = SpeedBox()
    bar.addWidget(speed_box)
    bar.addSeparator()
    scenario_label = QLabel()
    scenario_label.setObjectName("scenario_label")
    scenario_label.setProperty("role", "dim")
    bar.addWidget(scenario_label)
    spacer = QWidget()
    spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    bar.addWidget(spacer)
    bar.addAction(actions["help"])
    window.addToolBar(Qt.TopToolBarArea, bar)
    return bar, speed_box, scenario_label


def make_menus(
    window: QMainWindow,
    actions: dict[str, QAction],
    docks: list[QDockWidget],
    theme: str,
    set_theme: Callable[[str], None],
) -> dict[str, QAction]:
    """File, Training, View (a toggle per dock, the themes, layout, full screen, talk mode), Help.
    Returns the theme actions by theme name."""
    menu = window.menuBar().addMenu("&File")
    for name in FILE_MENU:
        if name is None:
            menu.addSeparator()
        elif name == RECENT_MENU:
            menu.addMenu("Open recent").setObjectName(RECENT_MENU)
        else:
            menu.addAction(actions[name])
    menu = window.menuBar().addMenu("&Training")
    for name in TRAINING_MENU:
        menu.addSeparator() if name is None else menu.addAction(actions[name])
    menu = window.menuBar().addMenu("&View")
    for dock in docks:
        menu.addAction(dock.toggleViewAction())
    menu.addSeparator()
    theme_menu = menu.addMenu("Theme")
    group = QActionGroup(window)
    group.setExclusive(True)
    theme_actions = {}
    for name in THEMES:
        act = QAction(name.capitalize(), window, checkable=True)
        act.setObjectName(f"action_theme_{name}")
        act.setChecked(name == theme)
        act.triggered.connect(lambda _c=False, n=name: set_theme(n))
        group.addAction(act)
        theme_menu.addAction(act)
        theme_actions[name] = act
    menu.addAction(actions["reset_layout"])
    menu.addSeparator()
    menu.addAction(actions["full_screen"])
    menu.addAction(actions["talk_mode"])
    menu = window.menuBar().addMenu("&Help")
    menu.addAction(actions["help"])
    menu.addAction(actions["about"])
    return theme_actions
