"""Start-up: the QApplication, the window, the first frame (the themes are explorer.gui.theme's).

`main(args)` is what `python -m explorer` runs: the window is shown (and painted) before torch is
imported; the worker module is imported on a helper thread and the worker builds its trainer in its
own thread, so the first frame never waits on a model.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QWidget

from explorer.gui.gui_gc import install_gui_gc
from explorer.gui.theme import apply_theme

APP_NAME = "peft-explorer"
ORG_NAME = "peft-explorer"
_PROCESS_T0 = time.perf_counter()


def make_app(argv: list[str] | None = None, theme: str = "dark") -> QApplication:
    app = QApplication.instance()
    if app is None:
        # Crisp fonts and pixel-exact plots on high-DPI screens.
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    install_gui_gc(app)  # widgets are freed on the GUI thread only (gui_gc.py says why)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationDisplayName("PEFT Explorer")
    font = app.font()
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
        app.setFont(font)
    apply_theme(theme, app)
    return app


class _FirstFrame(QObject):
    """Calls `callback(seconds_since_process_start)` once, after the window's first paint."""

    def __init__(self, window: QWidget, callback):
        super().__init__(window)
        self._callback = callback
        self._done = False
        window.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if not self._done and event.type() == QEvent.Paint:
            self._done = True
            obj.removeEventFilter(self)
            elapsed = time.perf_counter() - _PROCESS_T0
            QTimer.singleShot(0, lambda: self._callback(elapsed))
        return False


def main(args) -> int:
    """Open the window. `args` comes from `explorer.commands.app.add_arguments`."""
    from explorer.gui.main_window import THREAD_WORKER, MainWindow
    from explorer.gui.persistence import Persistence

    store = Persistence(path=getattr(args, "settings_path", None))
    if getattr(args, "reset_layout", False):
        store.clear_layout()
    theme = getattr(args, "theme", None) or store.theme()
    app = make_app(theme=theme)
    settings = store.load_settings()
    overrides = {
        k: getattr(args, k) for k in ("scenario", "method", "device", "model", "data") if getattr(args, k, None)
    }
    if ("model" in overrides or "data" in overrides) and "scenario" not in overrides:
        overrides["scenario"] = "lm"  # a model or a dataset is the language model's
    worker = THREAD_WORKER if getattr(args, "in_process", False) else None  # None: the child process
    window = MainWindow(settings, store=store, theme=theme, overrides=overrides, worker_factory=worker)
    if getattr(args, "theme", None):
        store.set_theme(args.theme)

    first_frame_exit = getattr(args, "first_frame_exit", False)

    def on_first_frame(elapsed: float) -> None:
        if first_frame_exit:
            print(f"first frame {elapsed:.3f} s", flush=True)
            window.close()
            app.quit()
            return
        follow = getattr(args, "follow", None)
        recording = follow or getattr(args, "replay", None)
        # the recording first; the training engine starts on Back to live (or when it cannot be shown)
        if recording and window.files.open_recording(recording, follow=bool(follow), live_on_failure=True) is not None:
            return
        talk = getattr(args, "talk", None)
        if talk is not None:
            # once the engine runs: a scene's settings applied while it is still starting would be
            # lost (it starts with the settings of the moment), and the first scene would show the last run
            deck = None if talk == "default" else talk

            def enter_talk(_worker=None) -> None:
                window.worker_attached.disconnect(enter_talk)
                window.enter_talk_mode(deck)

            window.worker_attached.connect(enter_talk)
        window.start_worker(play=bool(getattr(args, "play", False)))

    _FirstFrame(window, on_first_frame)
    _close_on_interrupt(window)
    window.show()
    return int(app.exec() or 0)


def _close_on_interrupt(window: QWidget) -> None:
    """Ctrl+C in the terminal closes the window properly (settings saved, worker joined). Qt's loop
    runs no Python while idle, so a slow timer gives Python's signal handler a chance to run."""
    import signal

    def handler(_signum, _frame):
        QTimer.singleShot(0, window.close)

    try:
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)
