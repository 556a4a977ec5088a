"""Stepping through a deck's scenes in talk mode, with what presenter clickers send.

Keys (from `shortcuts.SHORTCUTS`, group "Talk mode", so the F1 list and the bindings agree):
Space / PageDown / Right: next scene; PageUp / Left: previous; Home / End: first / last;
B or '.': blank the screen (B or any key shows it again); P: play / pause the scene; R: restart the
scene; + / -: larger / smaller type; Esc: leave talk mode.

The keys are read by an application-wide event filter while talk mode is on, so they work whatever
has the keyboard focus (a view's picker, the compare view's spec field): the filter takes the
ShortcutOverride (so the window's own Space / Right shortcuts don't fire) and the key press.

Entering a scene always starts it from a known state, so a deck plays the same way every time:
the single run gets exactly the scene's settings (one configure call) and is reset to step 0; a
scene with `runs` starts a fresh comparison (compare_host) at step 0. The views are arranged at once
(no animation: a fast cut). A scene that plays holds at step 0 until the presenter presses P (or for
its deck's `hold` seconds), so the audience sees the starting state (ΔW = 0, gates at 0) and the
speaker says so before it moves.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPalette, QWindow
from PySide6.QtWidgets import QApplication, QWidget

from explorer.gui.services import WindowServices
from explorer.gui.shortcuts import SHORTCUTS
from explorer.schema.deck import Deck, Scene

TALK_GROUP = "Talk mode"
PLAY_DELAY_MS = None  # None: a playing scene holds until P or its `hold`; a number overrides every hold
_IGNORED_MODIFIERS = Qt.ShiftModifier | Qt.KeypadModifier
_MODIFIER_KEYS = {
    Qt.Key_Shift,
    Qt.Key_Control,
    Qt.Key_Alt,
    Qt.Key_Meta,
    Qt.Key_AltGr,
    Qt.Key_CapsLock,
    Qt.Key_NumLock,
    Qt.Key_ScrollLock,
    Qt.Key_Super_L,
    Qt.Key_Super_R,
}


def _combo(key: int, modifiers) -> tuple[int, int]:
    return int(key), int(modifiers.value if hasattr(modifiers, "value") else modifiers) & ~int(_IGNORED_MODIFIERS.value)


def talk_key_map() -> dict[tuple[int, int], str]:
    """{(key, modifiers): action} for the talk-mode shortcuts (Shift and keypad ignored)."""
    out = {}
    for s in SHORTCUTS:
        if s.group != TALK_GROUP:
            continue
        for text in s.keys:
            seq = QKeySequence(text)
            if seq.count():
                c = seq[0]
                out[_combo(c.key(), c.keyboardModifiers())] = s.action
    return out


class BlankScreen(QWidget):
    """Black over the whole window (B): the audience looks at the speaker."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("talk_blank")
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QPalette.Window, QColor("#000000"))
        self.setPalette(pal)
        self.setCursor(Qt.BlankCursor)
        self.hide()

    def cover(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()


class DeckPlayer(QObject):
    """Scenes of `deck` on `window`; `arrange(scene)` shows the scene's views (talk mode's stage)."""

    sceneEntered = Signal(int)
    blankChanged = Signal(bool)
    leaveRequested = Signal()
    fontStep = Signal(int)  # +1 larger type, -1 smaller

    def __init__(
        self,
        window: WindowServices,
        deck: Deck,
        arrange: Callable[[Scene], None] | None = None,
        play_delay_ms: int | None = PLAY_DELAY_MS,
    ):
        super().__init__(window.widget)
        self.window = window
        self.deck = deck
        self.arrange = arrange
        self.play_delay_ms = None if play_delay_ms is None else int(play_delay_ms)
        self.index = -1
        self.errors: list[str] = []
        self.keymap = talk_key_map()
        self.blank = BlankScreen(window.widget)
        self._focus: str | None = None
        self._running = False
        self._play_timer = QTimer(self)
        self._play_timer.setSingleShot(True)
        self._play_timer.timeout.connect(self._play_scene)
        self._commands = {
            "talk_next": self.next,
            "talk_previous": self.previous,
            "talk_first": self.first,
            "talk_last": self.last,
            "talk_blank": self.toggle_blank,
            "talk_play": self.toggle_play,
            "talk_restart": self.restart,
            "talk_leave": self.leaveRequested.emit,
            "talk_larger": lambda: self.fontStep.emit(+1),
            "talk_smaller": lambda: self.fontStep.emit(-1),
        }

    # ------------------------------------------------------------------ lifecycle
    @property
    def scene(self) -> Scene | None:
        return self.deck.scenes[self.index] if 0 <= self.index < len(self.deck.scenes) else None

    @property
    def blanked(self) -> bool:
        return self.blank.isVisible()

    def start(self, index: int = 0) -> None:
        self._running = True
        QApplication.instance().installEventFilter(self)
        self.window.snapshot_delivered.connect(self._on_snapshot)
        self.enter(index)

    def stop(self) -> None:
        """Stop listening, hold still: keys released, no pending play, the comparison ended."""
        if not self._running:
            return
        self._running = False
        QApplication.instance().removeEventFilter(self)
        try:
            self.window.snapshot_delivered.disconnect(self._on_snapshot)
        except (RuntimeError, TypeError):
            pass
        self._play_timer.stop()
        self.set_blank(False)
        self.window.compare_host.stop()
        self.window.pause()

    # ------------------------------------------------------------------ scenes
    def enter(self, index: int) -> None:
        """Show scene `index` (clamped) from its known starting state."""
        if not self.deck.scenes:
            return
        index = max(0, min(len(self.deck.scenes) - 1, int(index)))
        scene = self.deck.scenes[index]
        self.index = index
        w = self.window
        host = w.compare_host
        self._play_timer.stop()
        w.pause()
        if not scene.runs:
            host.stop()
        # the single run: exactly the scene's settings, step 0 (a compare scene's budget and
        # settings views show the scene's base settings)
        if not w.apply_settings(scene.settings):
            self.errors.append(f"scene {index + 1}: the settings could not be applied")
        w.reset()
        if self.arrange is not None:
            self.arrange(scene)
        self._focus = scene.focus
        if scene.runs:
            host.start(scene.settings, list(scene.runs), play=False)
            compare = w.views.get("compare")
            if compare is not None and hasattr(compare, "set_tab"):
                compare.set_tab(_compare_tab(scene))
        hold_ms = self.hold_ms(scene)
        if hold_ms is not None:
            self._play_timer.start(hold_ms)
        self.sceneEntered.emit(index)

    def hold_ms(self, scene: Scene) -> int | None:
        """How long `scene` holds at step 0 before it plays by itself; None: until P."""
        if not scene.play:
            return None
        if self.play_delay_ms is not None:
            return self.play_delay_ms
        return None if scene.hold is None else int(round(scene.hold * 1000))

    def next(self) -> None:
        if self.index < len(self.deck.scenes) - 1:
            self.enter(self.index + 1)

    def previous(self) -> None:
        if self.index > 0:
            self.enter(self.index - 1)

    def first(self) -> None:
        self.enter(0)

    def last(self) -> None:
        self.enter(len(self.deck.scenes) - 1)

    def restart(self) -> None:
        self.enter(self.index)

    def toggle_play(self) -> None:
        scene = self.scene
        if scene is None:
            return
        self._play_timer.stop()
        if scene.runs:
            self.window.compare_host.toggle_play()
        else:
            self.window.toggle_play()

    def _play_scene(self) -> None:
        scene = self.scene
        if scene is None or not self._running:
            return
        if scene.runs:
            self.window.compare_host.play()
        else:
            self.window.play()

    def _on_snapshot(self, snap) -> None:
        """The scene's `focus` matrix goes to the delta view once a snapshot has it."""
        name = self._focus
        if not name or name not in (getattr(snap, "matrices", None) or {}):
            return
        delta = self.window.views.get("delta")
        if delta is not None and hasattr(delta, "picker"):
            delta.picker.set_names(list(snap.matrices))
            if delta.picker.set_current(name):
                self._focus = None

    # ------------------------------------------------------------------ blank
    def set_blank(self, on: bool) -> None:
        if on == self.blanked:
            return
        if on:
            self.blank.cover()
        else:
            self.blank.hide()
        self.blankChanged.emit(on)

    def toggle_blank(self) -> None:
        self.set_blank(not self.blanked)

    # ------------------------------------------------------------------ keys
    def _ours(self, obj) -> bool:
        if isinstance(obj, QWidget):
            return obj.window() is self.window.widget
        if isinstance(obj, QWindow):
            return obj is self.window.widget.windowHandle()
        return False

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        kind = event.type()
        if kind not in (QEvent.KeyPress, QEvent.ShortcutOverride) or not self._running or not self._ours(obj):
            return False
        if self.window.help_overlay.isVisible():
            return False  # F1's list takes its own keys (Esc closes it)
        key = event.key()
        if key in _MODIFIER_KEYS or key == 0:
            return False
        if self.blanked:  # any key brings the picture back, and does only that
            if kind == QEvent.KeyPress and not event.isAutoRepeat():
                self.set_blank(False)
            event.accept()
            return True
        action = self.keymap.get(_combo(key, event.modifiers()))
        if action is None:
            return False
        event.accept()
        if kind == QEvent.KeyPress and (not event.isAutoRepeat() or action in ("talk_larger", "talk_smaller")):
            self._commands[action]()
        return True


def _compare_tab(scene: Scene) -> str:
    """The compare view's analysis that fits the runs: LoRA against full fine-tuning (intrinsic
    rank), else the subspace similarity of two LoRA runs, else amplification."""
    methods = [r.settings.method for r in scene.runs]
    lora = sum(m in ("lora", "lora+prefix") for m in methods)
    if "full" in methods and lora:
        return "intrinsic"
    if lora >= 2:
        return "similarity"
    return "amplification"
