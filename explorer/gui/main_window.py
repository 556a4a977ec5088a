"""The main window: each live view in a dock, the settings panel in a dock, a training toolbar, menus,
a status bar and the F1 overlay.

Data flow (one way): controls -> worker.configure / play / pause / step / reset; a timer on the GUI
thread takes the worker's newest snapshot (never waiting) and hands it to every visible view. The
worker module is imported on a helper thread after the window has painted, and the worker builds its
trainer elsewhere, so the window shows and answers at once. By default training runs in a child
process (engine/process_worker.py), so it never holds this process's GIL; `worker_factory` picks
another worker (THREAD_WORKER: `--in-process`, and the GUI tests, for speed).
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QStyle,
    QToolBar,
    QWidget,
)

from explorer.gui import shortcuts
from explorer.gui.compare_host import CompareHost
from explorer.gui.controls import ControlsPanel, label_of, setting_named_in
from explorer.gui.help_overlay import HelpOverlay
from explorer.gui.persistence import Persistence, layout_version
from explorer.gui.status_bar import StatusBar
from explorer.gui.theme import apply_theme
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings, changed_kinds

# Workers by "module:attribute", imported on a helper thread when the window first needs one.
PROCESS_WORKER = "explorer.engine.process_worker:ProcessTrainingWorker"
THREAD_WORKER = "explorer.engine.worker:TrainingWorker"
DEFAULT_WORKER = PROCESS_WORKER
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
# The default layout: columns of views (by view_id), each with the share of its column's height.
DEFAULT_COLUMNS = (
    (("delta", "loss"), (0.58, 0.42)),
    (("spectrum", "gates"), (0.58, 0.42)),
    (("attention", "samples", "budget"), (0.42, 0.26, 0.32)),
)
COLUMN_WIDTHS = (1.0, 1.0, 1.15)  # the third column holds text (samples, budget): a little wider
DRAIN_MS = 25  # 40 Hz: the worker sends at most snapshot_hz (30) anyway

# Features other parts of the app provide. Each is `module:function(window, ...)`; while the module
# does not exist the action says so in the status bar.
FEATURE_HOOKS = {
    "open_adapter": ("explorer.gui.adapter_inspector", "open_adapter", "Open adapter"),
    "export_adapter": ("explorer.gui.adapter_export", "export_adapter", "Export as PEFT adapter"),
    "talk_mode": ("explorer.gui.talk", "enter_talk_mode", "Talk mode"),
    "record": ("explorer.gui.recording", "toggle_recording", "Recording"),
    "open_recording": ("explorer.gui.replay", "open_recording", "Replay"),
    "record_run": ("explorer.gui.replay", "toggle_run_recording", "Recording the run"),
}


def load_view_classes() -> list[type]:
    """The registered view classes (explorer.gui.views.VIEW_CLASSES), in their order."""
    try:
        from explorer.gui.views import VIEW_CLASSES
    except ImportError:
        return []
    return list(VIEW_CLASSES.values()) if isinstance(VIEW_CLASSES, dict) else list(VIEW_CLASSES)


def apply_overrides(settings: TrainSettings, overrides: dict) -> TrainSettings:
    """Command-line overrides on top of the remembered settings; a clash (prefix in the matrix
    scenario, a rank above a small matrix) is fixed in favour of the override."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not overrides:
        return settings
    try:
        return settings.with_changes(**overrides)
    except ValueError:
        pass
    fixes = dict(overrides)
    if fixes.get("scenario", settings.scenario) == "matrix" and "method" not in fixes:
        fixes["method"] = "lora"
    try:
        return settings.with_changes(**fixes)
    except ValueError:
        return TrainSettings().with_changes(**overrides)


class MainWindow(QMainWindow):
    snapshot_delivered = Signal(object)  # every snapshot taken from the worker, after the views drew it
    worker_attached = Signal(object)
    _worker_module_loaded = Signal(object, str)

    def __init__(
        self,
        settings: TrainSettings | None = None,
        *,
        store: Persistence | None = None,
        theme: str | None = None,
        overrides: dict | None = None,
        worker_factory: Callable[[TrainSettings], object] | str | None = None,
        view_classes: list[type] | None = None,
        restore: bool = True,
    ):
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("PEFT Explorer")
        self.store = store or Persistence()
        self.theme = theme or self.store.theme()
        self.worker_factory = worker_factory if worker_factory is not None else DEFAULT_WORKER
        self.worker = None
        self.last_snapshot = None
        self.delivered = 0
        self.view_errors: dict[str, str] = {}
        self.fault_dialog: QMessageBox | None = None
        self._fault_seen: tuple | None = None
        self._segment = None
        self._playing = False
        self._want_play = False
        self._pending_steps = 0
        self._closing = False
        self._closed = False
        self._loading = False
        self._worker_dead_reported = False
        self._current_view_id: str | None = None
        self.replay = None  # explorer.gui.replay's controller while a recording is shown
        self._frame_queue: list[str] = []
        self._frame_snap = None
        self._frame_scheduled = False
        self._frame_rotation = 0
        self.view_costs_ms: dict[str, deque] = {}  # update + paint time of each view's last draws

        settings = apply_overrides(settings or TrainSettings(), overrides or {})
        self.setDockNestingEnabled(True)
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowNestedDocks | QMainWindow.AllowTabbedDocks)
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.TopLeftCorner, Qt.LeftDockWidgetArea)

        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.controls = ControlsPanel(settings, configure=self._configure)
        self.controls.applied.connect(self._on_settings_applied)
        self.controls.rejected.connect(self._on_settings_rejected)
        self.controls_dock = self._dock(
            "controls",
            "Settings",
            self.controls,
            "Every PEFT and training setting. hot: applies at once; cold: restarts the adapters from the frozen base.",
        )
        self.views: dict[str, QWidget] = {}
        self.view_docks: dict[str, QDockWidget] = {}
        self._make_views(view_classes if view_classes is not None else load_view_classes())
        self.compare_host = CompareHost(self)  # the compare view's runs (a CompareWorker)
        self.actions_by_name: dict[str, QAction] = {}
        self._make_actions()
        self._make_toolbar()
        self._make_menus()
        shortcuts.bind(self.actions_by_name, self)
        self.help_overlay = HelpOverlay(self)
        self._default_layout()
        self._default_state = self.saveState(self.layout_version())
        if restore:
            got_geometry, _ = self.store.restore_window(self, self.layout_version())
            if not got_geometry:
                self._default_geometry()
        else:
            self._default_geometry()
        self._apply_view_theme()

        self.drain_timer = QTimer(self)
        self.drain_timer.setTimerType(Qt.PreciseTimer)
        self.drain_timer.setInterval(DRAIN_MS)
        self.drain_timer.timeout.connect(self.drain)
        self._worker_module_loaded.connect(self._on_worker_module_loaded)
        QApplication.instance().focusChanged.connect(self._on_focus_changed)
        self.status.info("Ready. Space plays, N steps, F1 lists every shortcut.")
        self._sync_play_action()

    # ------------------------------------------------------------------ construction
    def _dock(self, name: str, title: str, widget: QWidget, tip: str = "") -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable | QDockWidget.DockWidgetClosable
        )
        if tip:
            dock.setToolTip(tip)
        return dock

    def _make_views(self, classes: list[type]) -> None:
        for cls in classes:
            view_id = getattr(cls, "view_id", "") or cls.__name__
            title = getattr(cls, "title", "") or view_id
            try:
                view = cls()
            except Exception as exc:  # a broken view must not take the window down
                view = QLabel(f"{title} could not be created:\n{exc}")
                view.setAlignment(Qt.AlignCenter)
                view.setWordWrap(True)
                self.view_errors[view_id] = f"{type(exc).__name__}: {exc}"
            dock = self._dock(view_id, title, view, getattr(cls, "formula_tooltip", ""))
            dock.visibilityChanged.connect(lambda visible, v=view_id: self._on_dock_visibility(v, visible))
            self.views[view_id] = view
            self.view_docks[view_id] = dock

    def _icon(self, sp):
        return self.style().standardIcon(sp)

    def _action(self, name: str, text: str, slot, tip: str = "", icon=None, checkable=False) -> QAction:
        action = QAction(text, self)
        action.setObjectName(f"action_{name}")
        if icon is not None:
            action.setIcon(self._icon(icon))
        action.setToolTip(tip or text)
        action.setStatusTip(tip or text)
        action.setCheckable(checkable)
        action.triggered.connect(lambda *_: slot())
        self.actions_by_name[name] = action
        return action

    def _make_actions(self) -> None:
        a = self._action
        a("play_pause", "Play", self.toggle_play, "Play / pause training", QStyle.SP_MediaPlay)
        a("step", "Step", self.step_once, "One training step", QStyle.SP_MediaSkipForward)
        a("reset", "Reset", self.reset, "Restart the adapters from the frozen base", QStyle.SP_BrowserReload)
        a("faster", "Faster", lambda: self.change_speed(+1), "Raise the steps-per-second cap")
        a("slower", "Slower", lambda: self.change_speed(-1), "Lower the steps-per-second cap")
        a(
            "save_state",
            "Save state…",
            self.save_state,
            "Save the trained state, or the settings as JSON",
            QStyle.SP_DialogSaveButton,
        )
        a("open", "Open…", self.open_file, "Open a saved state or a settings file", QStyle.SP_DialogOpenButton)
        a("export_view", "Export current view…", self.export_current_view, "Export the current view as PNG or SVG")
        a("export_metrics", "Export metrics (CSV)…", self.export_metrics, "Losses over the steps as CSV")
        a(
            "open_adapter",
            "Open PEFT adapter…",
            lambda: self.run_feature("open_adapter"),
            "Look inside a PEFT adapter directory",
        )
        a(
            "export_adapter",
            "Export as PEFT adapter…",
            lambda: self.run_feature("export_adapter"),
            "Write what was trained as a PEFT adapter directory",
        )
        a("record", "Record…", lambda: self.run_feature("record"), "Record a view or the window (GIF, MP4)")
        a(
            "open_recording",
            "Open recording…",
            lambda: self.run_feature("open_recording"),
            "Replay a recording (python -m explorer run, or Record run) with a step slider",
        )
        a(
            "record_run",
            "Record run to directory…",
            lambda: self.run_feature("record_run"),
            "Write the live run's snapshots to a directory, to replay later",
        )
        a("quit", "Quit", self.close, "Quit")
        a("full_screen", "Full screen", self.toggle_full_screen, "Full screen on / off", checkable=True)
        a("talk_mode", "Talk mode", lambda: self.enter_talk_mode(None), "Full screen, large fonts, a deck of scenes")
        a("help", "Keyboard shortcuts", self.toggle_help, "List every shortcut")
        a("reset_layout", "Reset layout", self.reset_layout, "Put every dock back where it started")
        a("about", "About", self.about, "About peft-explorer")

    def _make_toolbar(self) -> None:
        bar = QToolBar("Training", self)
        bar.setObjectName("toolbar_training")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        bar.setIconSize(QSize(18, 18))
        for name in ("play_pause", "step", "reset"):
            bar.addAction(self.actions_by_name[name])
        bar.addSeparator()
        label = QLabel(" Speed ")
        label.setToolTip(SETTINGS_SPEC["speed"].help)
        bar.addWidget(label)
        self.speed_box = QComboBox()
        self.speed_box.setObjectName("speed_box")
        self.speed_box.setToolTip(f"{SETTINGS_SPEC['speed'].help} — hot: applies at once  ([ and ])")
        for value, text in SPEEDS:
            self.speed_box.addItem(text, value)
        self._show_speed(self.settings.speed)
        self.speed_box.activated.connect(lambda _i: self.set_speed(float(self.speed_box.currentData())))
        bar.addWidget(self.speed_box)
        bar.addSeparator()
        self.scenario_label = QLabel()
        self.scenario_label.setObjectName("scenario_label")
        self.scenario_label.setProperty("role", "dim")
        bar.addWidget(self.scenario_label)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        bar.addWidget(spacer)
        bar.addAction(self.actions_by_name["help"])
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.toolbar = bar
        self._update_scenario_label()

    def _make_menus(self) -> None:
        acts = self.actions_by_name
        m = self.menuBar().addMenu("&File")
        for name in (
            "open",
            "save_state",
            None,
            "open_recording",
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
        ):
            m.addSeparator() if name is None else m.addAction(acts[name])
        m = self.menuBar().addMenu("&Training")
        for name in ("play_pause", "step", "reset", None, "faster", "slower"):
            m.addSeparator() if name is None else m.addAction(acts[name])
        m = self.menuBar().addMenu("&View")
        self.view_menu = m
        m.addAction(self.controls_dock.toggleViewAction())
        for dock in self.view_docks.values():
            m.addAction(dock.toggleViewAction())
        m.addSeparator()
        theme_menu = m.addMenu("Theme")
        group = QActionGroup(self)
        group.setExclusive(True)
        self.theme_actions = {}
        for name in ("dark", "light"):
            act = QAction(name.capitalize(), self, checkable=True)
            act.setObjectName(f"action_theme_{name}")
            act.setChecked(name == self.theme)
            act.triggered.connect(lambda _c=False, n=name: self.set_theme(n))
            group.addAction(act)
            theme_menu.addAction(act)
            self.theme_actions[name] = act
        m.addAction(acts["reset_layout"])
        m.addSeparator()
        m.addAction(acts["full_screen"])
        m.addAction(acts["talk_mode"])
        m = self.menuBar().addMenu("&Help")
        m.addAction(acts["help"])
        m.addAction(acts["about"])

    def layout_version(self) -> int:
        return layout_version(["controls", *self.view_docks])

    def _columns(self) -> tuple[list[list[QDockWidget]], list[QDockWidget]]:
        """The view docks in DEFAULT_COLUMNS order, and the docks of views not named there."""
        cols: list[list[QDockWidget]] = []
        placed: set[str] = set()
        for names, _weights in DEFAULT_COLUMNS:
            cols.append([self.view_docks[n] for n in names if n in self.view_docks])
            placed.update(names)
        extra = [d for v, d in self.view_docks.items() if v not in placed]
        cols = [c for c in cols if c]
        if not cols and extra:
            cols, extra = [[extra[0]]], extra[1:]
        return cols, extra

    def _default_layout(self) -> None:
        """Settings on the left; the views in columns to the right (DEFAULT_COLUMNS); views not named
        there are tabbed behind the first column's last view."""
        self.addDockWidget(Qt.LeftDockWidgetArea, self.controls_dock)
        self.controls_dock.show()
        cols, extra = self._columns()
        if not cols:
            return
        for d in [*(d for c in cols for d in c), *extra]:
            d.setFloating(False)
            d.show()
        self.addDockWidget(Qt.RightDockWidgetArea, cols[0][0])
        for prev, col in zip(cols, cols[1:]):
            self.splitDockWidget(prev[0], col[0], Qt.Horizontal)
        for col in cols:
            for upper, lower in zip(col, col[1:]):
                self.splitDockWidget(upper, lower, Qt.Vertical)
        for d in extra:
            self.tabifyDockWidget(cols[0][-1], d)
        if extra:
            cols[0][-1].raise_()

    def _default_geometry(self) -> None:
        screen = QApplication.primaryScreen()
        if screen is not None:
            avail = screen.availableGeometry()
            w, h = min(1600, int(avail.width() * 0.92)), min(1000, int(avail.height() * 0.92))
            self.resize(w, h)
            self.move(avail.center().x() - w // 2, avail.center().y() - h // 2)
        else:
            self.resize(1600, 1000)
        self._size_docks()

    def _size_docks(self) -> None:
        """Controls at their natural width; the view columns share the rest, and each column's docks
        the height, by DEFAULT_COLUMNS' weights."""
        controls = max(self.controls.minimumWidth(), 320)
        self.resizeDocks([self.controls_dock], [controls], Qt.Horizontal)
        cols, _extra = self._columns()
        if not cols:
            return
        width = max(self.width() - controls - 16, 200 * len(cols))
        height = max(self.height() - 120, 300)
        weights = {n: w for names, ws in DEFAULT_COLUMNS for n, w in zip(names, ws)}
        shares = [COLUMN_WIDTHS[i] if i < len(COLUMN_WIDTHS) else 1.0 for i in range(len(cols))]
        self.resizeDocks([c[0] for c in cols], [int(width * f / sum(shares)) for f in shares], Qt.Horizontal)
        for col in cols:
            ids = [d.objectName()[len("dock_") :] for d in col]
            ws = [weights.get(i, 1.0) for i in ids]
            total = sum(ws)
            self.resizeDocks(col, [int(height * w / total) for w in ws], Qt.Vertical)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, self.layout_version())
        for dock in [self.controls_dock, *self.view_docks.values()]:
            if dock.isFloating():
                dock.setFloating(False)
            dock.show()
        self._size_docks()
        self.status.info("Layout reset.")

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> TrainSettings:
        return self.controls.settings

    def _configure(self, **changes) -> dict:
        """The panel's hook: the worker validates and applies; before it exists, we validate."""
        if self.worker is not None:
            return self.worker.configure(**changes)
        return changed_kinds(self.settings, self.settings.with_changes(**changes))

    def _on_settings_applied(self, changes: dict, kinds: dict) -> None:
        self.store.save_settings(self.settings)
        self._show_speed(self.settings.speed)
        self._update_scenario_label()
        parts = []
        for name, value in changes.items():
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            parts.append(f"{label_of(name)} = {shown}")
        cold = any(k == "cold" for k in kinds.values()) or any(
            SETTINGS_SPEC[n].kind == "cold" for n in changes if n in SETTINGS_SPEC
        )
        tail = "adapters restarted from the frozen base (cold)" if cold else "applied at once (hot)"
        if self.worker is None:
            tail = "will apply when training starts"
        self.status.info(f"{'; '.join(parts)}: {tail}")

    def _on_settings_rejected(self, name: str, message: str) -> None:
        self.status.error(message)

    def _update_scenario_label(self) -> None:
        s = self.settings
        self.scenario_label.setText(f"  {s.scenario} · {s.method}  ")

    def _show_speed(self, speed: float) -> None:
        i = self.speed_box.findData(float(speed))
        if i < 0:
            self.speed_box.addItem(f"{speed:g} /s", float(speed))
            i = self.speed_box.count() - 1
        self.speed_box.setCurrentIndex(i)

    def set_speed(self, value: float) -> None:
        if value != self.settings.speed:
            self.controls.request({"speed": float(value)})
        self._show_speed(self.settings.speed)

    def change_speed(self, direction: int) -> None:
        """+1: faster (towards 'max'), -1: slower, along the toolbar's list."""
        values = [v for v, _ in SPEEDS]
        current = self.settings.speed
        order = sorted(values, key=lambda v: float("inf") if v == 0 else v)  # slow ... max
        pos = min(
            range(len(order)),
            key=lambda i: abs((1e9 if order[i] == 0 else order[i]) - (1e9 if current == 0 else current)),
        )
        pos = max(0, min(len(order) - 1, pos + direction))
        self.set_speed(order[pos])

    # ------------------------------------------------------------------ worker
    def start_worker(self, play: bool = False) -> None:
        """Make the worker and start it. With the default factory the worker module (torch) is imported
        on a helper thread, so this returns at once; `worker_attached` fires when it runs."""
        self._want_play = self._want_play or play
        if self.worker is not None or self._loading or self._closed:
            return
        self.status.set_state("starting")
        if not isinstance(self.worker_factory, str):
            self._create_worker(self.worker_factory)
            return
        self._loading = True
        self.status.info("Loading the training engine…")
        module_name, _, attr = self.worker_factory.partition(":")

        def load():
            try:
                factory = getattr(importlib.import_module(module_name), attr)
                self._worker_module_loaded.emit(factory, "")
            except BaseException as exc:  # noqa: BLE001 - reported in the window
                self._worker_module_loaded.emit(None, f"{type(exc).__name__}: {exc}")

        threading.Thread(target=load, name="explorer-import-engine", daemon=True).start()

    def _on_worker_module_loaded(self, factory, error: str) -> None:
        self._loading = False
        if self._closed:
            return
        if factory is None:
            self.show_fault(f"The training engine could not be loaded: {error}")
            return
        self.worker_factory = factory
        self._create_worker(self.worker_factory)

    def _create_worker(self, factory) -> None:
        try:
            worker = factory(self.settings)
            worker.start()
        except Exception as exc:  # noqa: BLE001 - bad settings or a broken engine: say so, live on
            self.show_fault(f"Training could not start: {exc}")
            return
        self.worker = worker
        self._worker_dead_reported = False
        if self._want_play:
            worker.play()
            self._playing = True
        while self._pending_steps > 0:
            worker.step(self._pending_steps)
            self._pending_steps = 0
        self._want_play = False
        self.drain_timer.start()
        self._sync_play_action()
        self.status.set_state("running" if self._playing else "paused")
        self.status.info("Training engine ready." + ("" if self._playing else " Space plays."))
        self.worker_attached.emit(worker)

    def _stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        self.drain_timer.stop()
        if worker is not None:
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - closing must not raise at exit
                traceback.print_exc()

    def toggle_play(self) -> None:
        self.pause() if self._playing else self.play()

    def play(self) -> None:
        self.compare_host.pause()  # the single run and a comparison never train at once
        self._playing = True
        if self.worker is None:
            self.start_worker(play=True)
        elif not self._worker_alive():
            self.show_fault("The training engine has stopped. Press Reset (R) to start a new one.")
            self._playing = False
        else:
            self.worker.play()
        self._sync_play_action()

    def pause(self) -> None:
        self._playing = False
        self._want_play = False
        if self.worker is not None:
            self.worker.pause()
        self._sync_play_action()

    def step_once(self) -> None:
        self.compare_host.pause()
        self._playing = False
        if self.worker is None:
            self._pending_steps += 1
            self.start_worker()
        elif self._worker_alive():
            self.worker.step(1)
        self._sync_play_action()

    def reset(self) -> None:
        """Restart the adapters from the frozen base, paused. A dead worker is replaced by a new one."""
        self._playing = False
        self._fault_seen = None
        self._close_fault_dialog()
        self._frame_queue.clear()
        for view in self._fed_views().values():
            self._view_call(view, "clear")
        if self.worker is not None and not self._worker_alive():
            self._stop_worker()
        if self.worker is None:
            self.start_worker()
        else:
            self.worker.reset()
        self.status.info("Reset: adapters restarted from the frozen base.")
        self._sync_play_action()

    def _worker_alive(self) -> bool:
        try:
            return bool(self.worker is not None and self.worker.alive)
        except Exception:  # noqa: BLE001
            return False

    def _sync_play_action(self) -> None:
        act = self.actions_by_name["play_pause"]
        if self._playing:
            act.setText("Pause")
            act.setIcon(self._icon(QStyle.SP_MediaPause))
        else:
            act.setText("Play")
            act.setIcon(self._icon(QStyle.SP_MediaPlay))

    # ------------------------------------------------------------------ drain and deliver
    def drain(self) -> None:
        """Timer slot: take the newest snapshot (never waits) and draw it."""
        worker = self.worker
        if worker is None or self.replay is not None:  # replaying: the live run waits in its mailbox
            return
        try:
            snap = worker.latest()
        except Exception as exc:  # noqa: BLE001
            self.show_fault(f"Reading from the training engine failed: {exc}")
            return
        if snap is None:
            if not self._worker_alive() and not self._worker_dead_reported and not self._closing:
                self._worker_dead_reported = True
                self._playing = False
                self._sync_play_action()
                self.status.set_state("stopped")
                self.show_fault("The training engine has stopped. Press Reset (R) to start a new one.")
            return
        self.deliver(snap)

    def deliver(self, snap) -> None:
        """Hand `snap` to the status bar and every visible view."""
        self.last_snapshot = snap
        self.delivered += 1
        if snap.segment != self._segment:
            if self._segment is not None:
                for view in self._fed_views().values():
                    self._view_call(view, "clear")
            self._segment = snap.segment
        self.status.update_from(snap)
        if snap.state == "running" and not self._playing:
            self._playing = True
            self._sync_play_action()
        elif snap.state in ("paused", "fault") and self._playing and not self._want_play:
            self._playing = False
            self._sync_play_action()
        if snap.state == "fault" and snap.fault:
            key = (snap.segment, snap.fault)
            if key != self._fault_seen:
                self._fault_seen = key
                self._sync_rejected_settings(snap)
                self.show_fault(snap.fault)
            if not self._worker_alive():
                self._worker_dead_reported = True  # the worker said why it stopped: no second message
        self._update_limits(snap)
        self._queue_views([v for v in self._fed_views() if self._view_visible(v)], snap)
        self.snapshot_delivered.emit(snap)

    def _fed_views(self) -> dict:
        """The views the single run draws in: all but those a running comparison owns."""
        return {v: view for v, view in self.views.items() if not self.compare_host.owns(v)}

    def _queue_views(self, view_ids: list[str], snap) -> None:
        """Draw `snap` in these views, one view per event-loop slice, so seven views never add up to
        one long freeze. Views still waiting for an older snapshot go first, with the newest one; the
        starting view rotates so none starves."""
        self._frame_snap = snap
        waiting = [v for v in self._frame_queue if v in view_ids]
        ids = list(view_ids)
        if ids:
            k = self._frame_rotation % len(ids)
            ids = ids[k:] + ids[:k]
            self._frame_rotation += 1
        self._frame_queue = waiting + [v for v in ids if v not in waiting]
        if not self._frame_scheduled:
            self._draw_queued()

    def _draw_queued(self) -> None:
        """One view per slice: its update now, its paint when the event loop next runs (pyqtgraph
        scenes repaint from queued calls), then the next view; so a snapshot never becomes one long
        repaint of every view, and input and timers get their turn between views."""
        self._frame_scheduled = False
        while self._frame_queue:
            view_id = self._frame_queue.pop(0)
            if self._closed or not self._view_visible(view_id):
                continue
            t_view = time.perf_counter()
            self._view_call(self.views[view_id], "update_snapshot", self._frame_snap)
            self.view_costs_ms.setdefault(view_id, deque(maxlen=512)).append((time.perf_counter() - t_view) * 1000.0)
            if self._frame_queue:
                self._frame_scheduled = True
                QTimer.singleShot(0, self._draw_queued)
            return

    def _view_visible(self, view_id: str) -> bool:
        """Shown on screen: not closed, not squeezed to nothing, window not minimised, and not a tab
        behind another (Qt keeps those 'visible' but moves them outside the window). visibleRegion()
        is no test: opaque children, e.g. a scroll area, leave their parent none."""
        view = self.views[view_id]
        if not view.isVisible() or view.width() <= 1 or view.height() <= 1 or self.windowState() & Qt.WindowMinimized:
            return False
        if self.view_docks[view_id].isFloating():
            return True
        return self.rect().intersects(QRect(view.mapTo(self, QPoint(0, 0)), view.size()))

    def visible_view_ids(self) -> list[str]:
        return [v for v in self.views if self._view_visible(v)]

    def _view_call(self, view, method: str, *args) -> None:
        fn = getattr(view, method, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - one broken view must not stop the others
            view_id = getattr(view, "view_id", type(view).__name__)
            if view_id not in self.view_errors:
                traceback.print_exc()
                self.status.error(f"View '{view_id}' failed to draw: {exc}")
            self.view_errors[view_id] = f"{type(exc).__name__}: {exc}"

    def _on_dock_visibility(self, view_id: str, visible: bool) -> None:
        if visible:
            self._current_view_id = view_id
            if self.last_snapshot is not None:
                QTimer.singleShot(0, lambda: self._push_last(view_id))

    def _push_last(self, view_id: str) -> None:
        if (
            self.last_snapshot is not None
            and self._view_visible(view_id)
            and view_id not in self._frame_queue
            and not self.compare_host.owns(view_id)
        ):
            self._frame_queue.append(view_id)
            if not self._frame_scheduled:
                self._frame_snap = self.last_snapshot
                self._draw_queued()

    def _update_limits(self, snap) -> None:
        """rank <= min(in, out) of every adapted matrix (LoRA in the lm scenario)."""
        s = snap.settings or {}
        if s.get("scenario") == "lm" and s.get("method") in ("lora", "lora+prefix") and snap.matrices:
            cap = min(min(m.shape) for m in snap.matrices.values())
            self.controls.set_model_limit("rank", cap)

    # ------------------------------------------------------------------ faults
    def show_fault(self, message: str) -> None:
        """A fault: in the status bar and in a dialog that does not block (the timer keeps draining)."""
        self.status.error(message)
        self.status.set_state("fault")
        info = "Your settings are kept. Change a setting, or press Reset (R) and then Play (Space) to train again."
        if self.fault_dialog is None:
            box = QMessageBox(QMessageBox.Warning, "Training stopped", message, QMessageBox.Ok, self)
            box.setObjectName("fault_dialog")
            box.setWindowModality(Qt.NonModal)
            box.setAttribute(Qt.WA_ShowWithoutActivating)  # the keyboard stays with the window
            box.setInformativeText(info)
            box.finished.connect(lambda _r: self._forget_fault_dialog())
            self.fault_dialog = box
        else:
            self.fault_dialog.setText(message)
        self.fault_dialog.show()
        self.fault_dialog.raise_()

    def _sync_rejected_settings(self, snap) -> None:
        """The engine could not apply a change (e.g. a rank above this model's min(in, out)): it keeps
        the previous settings, and so do the controls; the message goes beside the control."""
        if "could not apply" not in snap.fault or self.worker is None:
            return
        try:
            in_force = self.worker.settings
        except Exception:  # noqa: BLE001
            return
        if isinstance(in_force, TrainSettings) and in_force != self.settings:
            self.controls.set_settings(in_force)
            self.store.save_settings(in_force)
            self._show_speed(in_force.speed)
            self._update_scenario_label()
        name = setting_named_in(snap.fault)
        if name in self.controls.rows:
            self.controls.rows[name].show_error(snap.fault)

    def _forget_fault_dialog(self) -> None:
        self.fault_dialog = None

    def _close_fault_dialog(self) -> None:
        if self.fault_dialog is not None:
            box, self.fault_dialog = self.fault_dialog, None
            box.close()
            box.deleteLater()

    # ------------------------------------------------------------------ files
    def save_state(self, path: str | None = None) -> None:
        """Ctrl+S: the trained state (.safetensors, through the engine) or the settings (.json)."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self,
                "Save state",
                str(Path.home() / "peft-explorer-state.safetensors"),
                "Trained state (*.safetensors);;Settings (*.json)",
            )
            if not path:
                return
        path = str(path)
        if path.endswith(".json"):
            try:
                Path(path).write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n")
            except OSError as exc:
                self.status.error(f"Could not save {path}: {exc}")
                return
            self.status.info(f"Settings saved to {path}")
            return
        saver = getattr(self.worker, "save_state", None)
        if saver is None:
            self.status.error(
                "Saving the trained state needs a running training engine (settings can be saved as .json)."
            )
            return
        try:
            saver(path)
        except Exception as exc:  # noqa: BLE001
            self.status.error(f"Could not save the state: {exc}")
            return
        self.status.info(f"State saved to {path}")

    def open_file(self, path: str | None = None) -> None:
        """Ctrl+O: a settings file (.json) or a saved state (.safetensors)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open", str(Path.home()), "State or settings (*.safetensors *.json);;All files (*)"
            )
            if not path:
                return
        path = str(path)
        if path.endswith(".json"):
            try:
                data = json.loads(Path(path).read_text())
                new = TrainSettings.from_dict(data)
            except (OSError, ValueError, TypeError) as exc:
                self.status.error(f"{path}: not a settings file ({exc})")
                return
            self.apply_settings(new)
            self.status.info(f"Settings loaded from {path}")
            return
        loader = getattr(self.worker, "load_state", None)
        if loader is None:
            self.status.error("Opening a trained state needs a running training engine.")
            return
        try:
            result = loader(path)
        except Exception as exc:  # noqa: BLE001
            self.status.error(f"Could not open {path}: {exc}")
            return
        if isinstance(result, TrainSettings):
            self.controls.set_settings(result)
            self.store.save_settings(result)
        elif isinstance(getattr(self.worker, "settings", None), TrainSettings):
            self.controls.set_settings(self.worker.settings)
            self.store.save_settings(self.worker.settings)
        self._update_scenario_label()
        self.status.info(f"State opened from {path}")

    def apply_settings(self, new: TrainSettings) -> bool:
        """Apply every difference between `new` and the settings in force (one configure call)."""
        changes = {k: getattr(new, k) for k in changed_kinds(self.settings, new)}
        if not changes:
            return True
        return self.controls.request(changes)

    def current_view_id(self) -> str | None:
        if self._current_view_id in self.views and self._view_visible(self._current_view_id):
            return self._current_view_id
        visible = self.visible_view_ids()
        return visible[0] if visible else None

    def _on_focus_changed(self, _old, new) -> None:
        w = new
        while w is not None:
            if isinstance(w, QDockWidget):
                for view_id, dock in self.view_docks.items():
                    if dock is w:
                        self._current_view_id = view_id
                return
            w = w.parentWidget()

    def export_current_view(self, path: str | None = None) -> str | None:
        """Ctrl+E: the current view (last focused or shown) as PNG or SVG."""
        view_id = self.current_view_id()
        if view_id is None:
            self.status.error("No view to export: show one from the View menu.")
            return None
        view = self.views[view_id]
        if path is None:
            from explorer.gui.export import FILTERS, suffix_for

            path, chosen = QFileDialog.getSaveFileName(
                self, f"Export {self.view_docks[view_id].windowTitle()}", str(Path.home() / f"{view_id}.png"), FILTERS
            )
            if not path:
                return None
            path = suffix_for(path, chosen)
        path = str(path)
        try:
            export_view(view, path)
        except Exception as exc:  # noqa: BLE001
            self.status.error(f"Could not export {view_id}: {' '.join(str(exc).split())}")
            return None
        self.status.info(f"Exported {view_id} to {path}")
        return path

    def export_metrics(self, path: str | None = None) -> str | None:
        snap = self.last_snapshot
        if snap is None:
            self.status.error("Nothing to export yet: train a few steps first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export metrics", str(Path.home() / "metrics.csv"), "CSV (*.csv)"
            )
            if not path:
                return None
        from explorer.gui.export import write_metrics_csv

        try:
            rows = write_metrics_csv(snap, path)
        except (OSError, ValueError) as exc:
            self.status.error(f"Could not write {path}: {exc}")
            return None
        self.status.info(f"Metrics written to {path} ({rows} steps)")
        return str(path)

    # ------------------------------------------------------------------ features of others
    def run_feature(self, key: str, *args):
        """Call a feature another module provides (FEATURE_HOOKS); say so if it is not built yet."""
        module_name, func_name, title = FEATURE_HOOKS[key]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) or exc.name == module_name:
                self.status.info(f"{title}: not available yet.")
                return None
            raise
        return getattr(module, func_name)(self, *args)

    def enter_talk_mode(self, deck: str | None = None):
        return self.run_feature("talk_mode", deck)

    # ------------------------------------------------------------------ window
    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()
        self.actions_by_name["full_screen"].setChecked(self.isFullScreen())

    def toggle_help(self) -> None:
        self.help_overlay.toggle()

    def set_theme(self, name: str) -> None:
        apply_theme(name, root=self)
        self.theme = name
        self.store.set_theme(name)
        if name in getattr(self, "theme_actions", {}):
            self.theme_actions[name].setChecked(True)
        self._apply_view_theme()
        self.status.set_state(self.status.state.property("state") or "paused")

    def _apply_view_theme(self) -> None:
        for view in self.views.values():
            self._view_call(view, "set_theme", self.theme != "light")

    def about(self) -> None:
        box = QMessageBox(
            QMessageBox.Information,
            "About PEFT Explorer",
            "PEFT Explorer: watch LoRA and zero-init prefix tuning train, live.",
            QMessageBox.Ok,
            self,
        )
        box.setWindowModality(Qt.NonModal)
        box.show()

    def closeEvent(self, event):  # noqa: N802 - Qt API
        if not self._closed:
            self._closing = True
            try:
                self.store.save_window(self, self.layout_version())
                self.store.save_settings(self.settings)
                self.store.set_theme(self.theme)
                self.store.sync()
            except Exception:  # noqa: BLE001 - never fail to close
                traceback.print_exc()
            self._close_fault_dialog()
            self.compare_host.close()
            self._stop_worker()
            try:
                QApplication.instance().focusChanged.disconnect(self._on_focus_changed)
            except (RuntimeError, TypeError):
                pass
            self._closed = True
        super().closeEvent(event)


def export_view(view, path: str) -> None:
    """PNG (at 2x the on-screen resolution) or SVG of a view: explorer.gui.export."""
    from explorer.gui.export import export_view as export

    export(view, path)
