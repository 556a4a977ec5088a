"""The main window: each live view in a dock, the settings panel in a dock, a training toolbar, menus,

Why ~650 lines: this is where every part meets (views, docks, settings, features, status); the
parts themselves live in window_worker.py, window_actions.py, window_layout.py and window_files.py.
a status bar and the F1 overlay; the features it owns (window.features) and its file commands.

Data flow (one way): controls -> worker.configure / play / pause / step / reset; a timer on the GUI
thread takes the worker's newest snapshot (never waiting) and hands it to every visible view. The
worker module is imported on a helper thread after the window has painted, and the worker builds its
trainer elsewhere, so the window shows and answers at once. By default training runs in a child
process (engine/process_worker.py), so it never holds this process's GIL; `worker_factory` picks
another worker (THREAD_WORKER: `--in-process`, and the GUI tests, for speed).

Where the rest of the window lives: window_worker.py (starting and driving the worker through a
WorkerHost, worker_host.py), window_actions.py (actions, toolbar, menus), window_layout.py (the default dock
layout), window_files.py (save, open, export). Features reach the window only through the
WindowServices it implements (services.py): the public members under "services" below.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QMenu, QMessageBox, QWidget

from explorer.gui import shortcuts
from explorer.gui.cold_edits import COLD_EDIT_MS
from explorer.gui.compare_host import CompareHost, compare_worker_for
from explorer.gui.controls import ControlsPanel, label_of
from explorer.gui.features import Features
from explorer.gui.help_overlay import HelpOverlay
from explorer.gui.matrix_link import link_matrix_views
from explorer.gui.persistence import Persistence, layout_version
from explorer.gui.services import report_failure
from explorer.gui.status_bar import StatusBar
from explorer.gui.theme import apply_theme
from explorer.gui.window_actions import (
    ACTIONS,
    LIVE_ACTIONS,
    RECENT_MENU,
    make_actions,
    make_menus,
    make_toolbar,
)
from explorer.gui.window_files import FileCommands
from explorer.gui.window_layout import default_geometry, fit_views, place_docks, size_docks
from explorer.gui.window_worker import WorkerHosting
from explorer.schema.faults import SETTING
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings, changed_kinds, with_method_defaults

# Workers by "module:attribute", imported on a helper thread when the window first needs one.
PROCESS_WORKER = "explorer.engine.process_worker:ProcessTrainingWorker"
THREAD_WORKER = "explorer.engine.worker:TrainingWorker"
DEFAULT_WORKER = PROCESS_WORKER


def load_view_classes() -> list[type]:
    """The registered view classes (explorer.gui.views.VIEW_CLASSES), in their order."""
    from explorer.gui.views import VIEW_CLASSES

    return list(VIEW_CLASSES.values())


def apply_overrides(settings: TrainSettings, overrides: dict) -> TrainSettings:
    """Command-line overrides on top of the remembered settings; a clash (prefix in the matrix
    scenario, a rank above a small matrix) is fixed in favour of the override."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not overrides:
        return settings
    overrides = with_method_defaults(settings, overrides)  # --method full: full fine-tuning's own lr
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


class MainWindow(WorkerHosting, QMainWindow):
    snapshot_delivered = Signal(object)  # every snapshot taken from the worker, after the views drew it
    worker_attached = Signal(object)

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
        self.worker_host = self._make_worker_host(self.worker_factory)  # the training run's worker
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
        self._current_view_id: str | None = None
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
        self.controls = ControlsPanel(settings, configure=self._configure, cold_delay_ms=COLD_EDIT_MS)
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
        self.matrix_selection = link_matrix_views(self.views, self)  # ΔW and spectrum: one matrix
        samples_view = self.views.get("samples")
        if hasattr(samples_view, "sample_requested"):
            samples_view.sample_requested.connect(self.sample_now)
        attention_view = self.views.get("attention")
        if hasattr(attention_view, "attentionChosen"):
            attention_view.attentionChosen.connect(self.choose_attention)
        delta_view = self.views.get("delta")
        if hasattr(delta_view, "matrixChanged"):
            delta_view.matrixChanged.connect(self.choose_heatmaps)
        # the compare view's runs: in a child process unless the window trains in its own process
        self.compare_host = CompareHost(self, factory=compare_worker_for(self.worker_factory))
        self.features = Features(self)
        self.files = FileCommands(self)
        self.actions_by_name: dict[str, QAction] = make_actions(
            self,
            {
                name: self.guarded(f"carry out “{ACTIONS[name][0].rstrip('…')}”", slot)
                for name, slot in self._action_slots().items()
            },
        )
        self.toolbar, self.speed_box, self.scenario_label = make_toolbar(self, self.actions_by_name)
        self.speed_box.activated.connect(lambda _i: self.set_speed(float(self.speed_box.currentData())))
        self._show_speed(self.settings.speed)
        self._update_scenario_label()
        self.theme_actions = make_menus(
            self, self.actions_by_name, [self.controls_dock, *self.view_docks.values()], self.theme, self.set_theme
        )
        self.files.install_recent_menu(self.findChild(QMenu, RECENT_MENU))
        shortcuts.bind(self.actions_by_name, self)
        self.help_overlay = HelpOverlay(self)
        place_docks(self, self.controls_dock, self.view_docks)
        self.inapplicable_views: set[str] = set()  # the views fit_views hid (not the user)
        fit_views(self.view_docks, settings, self.inapplicable_views)
        self._default_state = self.saveState(self.layout_version())
        if restore:
            got_geometry, _ = self.store.restore_window(self, self.layout_version())
            if not got_geometry:
                default_geometry(self, self.controls_dock, self.view_docks)
        else:
            default_geometry(self, self.controls_dock, self.view_docks)
        self._apply_view_theme()

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
            proposed = getattr(view, "settingsProposed", None)
            if proposed is not None:  # a view that proposes settings (rank advice), as a cold change
                proposed.connect(lambda changes: self.controls.isEnabled() and self.controls.request(changes))
            dock = self._dock(view_id, title, view, getattr(cls, "formula_tooltip", ""))
            dock.visibilityChanged.connect(lambda visible, v=view_id: self._on_dock_visibility(v, visible))
            self.views[view_id] = view
            self.view_docks[view_id] = dock

    def _icon(self, sp):
        return self.style().standardIcon(sp)

    def _action_slots(self) -> dict[str, Callable[[], object]]:
        """What each action of window_actions.ACTIONS does."""
        f = self.features
        return {
            "play_pause": self.toggle_play,
            "step": self.step_once,
            "reset": self.reset,
            "faster": lambda: self.change_speed(+1),
            "slower": lambda: self.change_speed(-1),
            "save_state": self.files.save_state,
            "open": self.files.open_file,
            "open_model": self.files.open_model,
            "open_data": self.files.open_data,
            "export_view": self.files.export_current_view,
            "export_metrics": self.files.export_metrics,
            "open_adapter": self.files.open_adapter,
            "export_adapter": lambda: f.adapter_export.export(),
            "record": lambda: f.screen_recording.toggle(),
            "open_recording": self.files.open_recording,
            "follow_run": lambda: self.files.open_recording(follow=True),
            "record_run": lambda: f.run_recording.toggle(),
            "quit": self.close,
            "full_screen": self.toggle_full_screen,
            "talk_mode": lambda: self.enter_talk_mode(None),
            "help": self.toggle_help,
            "reset_layout": self.reset_layout,
            "about": self.about,
        }

    def report_failure(self, what: str, exc: BaseException, path=None) -> None:
        """An entry point (open, save, talk mode, replay, an adapter) failed: one line in the status bar
        and on stderr that says what failed and why; the window stays as it was and usable."""
        report_failure(self.status, what, exc, path)

    def guarded(self, what: str, fn: Callable[..., object]) -> Callable[..., object]:
        """fn, with any exception it raises reported by report_failure instead of escaping Qt's loop."""

        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the one error boundary of the window's entry points
                self.report_failure(what, exc)
                return None

        return call

    def layout_version(self) -> int:
        return layout_version(["controls", *self.view_docks])

    def size_docks(self) -> None:
        """The default share of the window for each dock (window_layout.size_docks)."""
        size_docks(self, self.controls_dock, self.view_docks)

    def default_layout(self) -> None:
        """The default arrangement for the window's size now: every dock in its place (the compact
        tabs only where the window is short), the views that do not apply hidden."""
        self.restoreState(self._default_state, self.layout_version())
        for dock in [self.controls_dock, *self.view_docks.values()]:
            if dock.isFloating():
                dock.setFloating(False)
            dock.show()
        self.inapplicable_views.clear()
        talk = self.features.made("talk")
        if talk is None or talk.active is None:
            fit_views(self.view_docks, self.settings, self.inapplicable_views)
        self.size_docks()

    def reset_layout(self) -> None:
        self.default_layout()
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

    def fit_views(self, settings: TrainSettings | None = None) -> None:
        """The views that apply to `settings` (default: those in force) in docks, the others hidden;
        not on stage (talk mode arranges its own views and puts the docks back when it leaves)."""
        talk = self.features.made("talk")
        if (talk is None or talk.active is None) and fit_views(
            self.view_docks, settings or self.settings, self.inapplicable_views
        ):
            self.size_docks()

    def _on_settings_applied(self, changes: dict, kinds: dict) -> None:
        self.store.save_settings(self.settings)
        if set(changes) == {"heatmap_matrices"}:
            return  # the ΔW view's picker: nothing to say, nothing to fit
        self.fit_views()
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
        self.speed_box.show_speed(speed)

    def set_speed(self, value: float) -> None:
        if value != self.settings.speed:
            self.controls.request({"speed": float(value)})
        self._show_speed(self.settings.speed)

    def change_speed(self, direction: int) -> None:
        """+1: faster (towards 'max'), -1: slower, along the toolbar's list."""
        self.set_speed(self.speed_box.next_speed(self.settings.speed, direction))

    def apply_settings(self, new: TrainSettings) -> bool:
        """Apply every difference between `new` and the settings in force (one configure call)."""
        changes = {k: getattr(new, k) for k in changed_kinds(self.settings, new)}
        if not changes:
            return True
        return self.controls.request(changes)

    def show_settings(self, settings: TrainSettings) -> None:
        """Show `settings` in the panel and the toolbar without applying them (a replay shows the
        recording's; a loaded state brings its own, already in force in the worker)."""
        self.controls.set_settings(settings)
        self._show_speed(settings.speed)
        self.fit_views(settings)
        self._update_scenario_label()

    # ------------------------------------------------------------------ deliver and draw
    def deliver(self, snap) -> None:
        """Hand `snap` to the status bar and every visible view."""
        self.last_snapshot = snap
        self.delivered += 1
        if snap.segment != self._segment:
            if self._segment is not None:
                for view in self._fed_views().values():
                    self.call_view(view, "clear")
            self._segment = snap.segment
        self.status.update_from(snap)
        if snap.state == "running" and not self._playing:
            self._playing = True
            self._sync_play_action()
        elif snap.state in ("paused", "fault") and self._playing and not self._want_play:
            self._playing = False
            self._sync_play_action()
        if snap.state == "fault" and snap.fault is not None:
            key = (snap.segment, snap.fault)
            if key != self._fault_seen:
                self._fault_seen = key
                self._sync_rejected_settings(snap)
                self.show_fault(snap.fault.message)
        self._update_limits(snap)
        if snap.state != "replay":
            self.speed_box.note_snapshot(snap)
        self._queue_views([v for v in self._fed_views() if self._view_visible(v)], snap)
        self.snapshot_delivered.emit(snap)

    def sample_now(self) -> None:
        """The samples view's "Sample now": fresh samples at the live run's current step."""
        worker = self.worker
        if worker is not None and not self.replaying and hasattr(worker, "sample_now"):
            worker.sample_now()

    def choose_attention(self, layers, heads) -> None:
        """The attention view's Layers / Heads: the engine sends those maps from its next snapshot on (a
        hot display setting, kept with the others); a replay shows what its recording holds."""
        if not self.replaying:
            self.controls.request({"attention_layers": layers, "attention_heads": heads})

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
            self.call_view(self.views[view_id], "update_snapshot", self._frame_snap)
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

    def call_view(self, view, method: str, *args) -> None:
        """view.method(*args) if it has one; an exception is reported in the status bar, not raised."""
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
        if snap.fault.kind != SETTING or self.worker is None:
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
        name = snap.fault.setting
        if name in self.controls.rows:
            self.controls.rows[name].show_error(snap.fault.message)

    def _forget_fault_dialog(self) -> None:
        self.fault_dialog = None

    def _close_fault_dialog(self) -> None:
        if self.fault_dialog is not None:
            box, self.fault_dialog = self.fault_dialog, None
            box.close()
            box.deleteLater()

    # ------------------------------------------------------------------ services (WindowServices)
    @property
    def widget(self) -> QMainWindow:
        return self

    @property
    def playing(self) -> bool:
        """The single run trains (or was asked to)."""
        return self._playing

    @property
    def replay(self):
        """The replay controller while a recording is shown, else None (the live run waits meanwhile)."""
        feature = self.features.made("replay")
        return feature.controller if feature is not None else None

    @property
    def replaying(self) -> bool:
        return self.replay is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def live_controls(self) -> list[QAction | QWidget]:
        return [self.actions_by_name[name] for name in LIVE_ACTIONS] + [self.controls, self.speed_box]

    def clear_views(self) -> None:
        self._frame_queue.clear()
        for view in self._fed_views().values():
            self.call_view(view, "clear")
        self._segment = None
        self.last_snapshot = None

    def current_view_id(self) -> str | None:
        """The view last focused or brought forward, if it is on screen; else the first one that is."""
        if self._current_view_id in self.views and self._view_visible(self._current_view_id):
            return self._current_view_id
        visible = self.visible_view_ids()
        return visible[0] if visible else None

    def set_current_view(self, view_id: str) -> None:
        """What Ctrl+E exports and File > Record… offers first (focus and docks set it too)."""
        if view_id not in self.views:
            raise ValueError(f"view {view_id!r} is unknown: allowed {', '.join(self.views)}")
        self._current_view_id = view_id

    def _on_focus_changed(self, _old, new) -> None:
        w = new
        while w is not None:
            if isinstance(w, QDockWidget):
                for view_id, dock in self.view_docks.items():
                    if dock is w:
                        self._current_view_id = view_id
                return
            w = w.parentWidget()

    def enter_talk_mode(self, deck: str | None = None):
        """F5 / --talk: talk mode with `deck` (None: the default deck). Returns the TalkMode or None."""
        return self.guarded("enter talk mode", self.features.talk.enter)(deck)

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
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)
        self._apply_view_theme()
        self.status.set_state(self.status.state.property("state") or "paused")

    def _apply_view_theme(self) -> None:
        for view in self.views.values():
            self.call_view(view, "set_theme", self.theme != "light")

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
                # first: talk mode and a replay give back the settings this window saves, a run
                # recording saves the worker's state before the worker stops
                self.features.window_closing()
            except Exception:  # noqa: BLE001 - never fail to close
                traceback.print_exc()
            try:
                self.store.save_window(self, self.layout_version())
                self.store.save_settings(self.settings)
                self.store.set_theme(self.theme)
                self.store.sync()
            except Exception:  # noqa: BLE001 - never fail to close
                traceback.print_exc()
            self._close_fault_dialog()
            self.compare_host.close()
            self.worker_host.close()
            try:
                QApplication.instance().focusChanged.disconnect(self._on_focus_changed)
            except (RuntimeError, TypeError):
                pass
            self._closed = True
        super().closeEvent(event)
