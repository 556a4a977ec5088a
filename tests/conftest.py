import os
import signal
import threading
import time

# Tests never need a screen: Qt draws offscreen, and torch keeps to the machine's cores politely.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# What explorer/__init__.py does for the app, here before torch loads: OpenMP threads sleep, not spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

WINDOW_WAIT_MS = 60_000


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _application_look_restored():
    """A test that changes the application's theme, font or style sheet (talk mode, the light theme)
    leaves the next test's windows as it found them: a test comparing colours before and after talk
    mode failed after such a test in the full run, never alone."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    saved = (app.palette(), app.font(), app.styleSheet()) if app is not None else None
    yield
    app = QApplication.instance()
    if saved is not None and app is not None:
        palette, font, sheet = saved
        if app.styleSheet() != sheet:
            app.setStyleSheet(sheet)
        if app.font() != font:
            app.setFont(font)
        if app.palette() != palette:
            app.setPalette(palette)


@pytest.fixture(autouse=True)
def _collect_on_the_main_thread():
    """The app collects garbage on the GUI thread only (explorer/gui/gui_gc.py: collected on a helper
    thread, a closed window's widgets deadlocked a test run). The tests share one process between Qt
    and thread workers, so automatic collection stays off for the whole session and the cycles are
    collected here, between tests, on the main thread (and by the app's timer while Qt runs)."""
    import faulthandler
    import gc

    gc.disable()
    # A test stuck in C (a deadlock holding the GIL: pytest-timeout's handler never runs) ends the
    # session with every thread's stack after twice the per-test timeout, instead of hanging CI.
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    from explorer.gui.gui_gc import collect_due

    collect_due()


# ---------------------------------------------------------------------------------------- the window
@pytest.fixture
def store(tmp_path):
    """The settings store the test's windows share (an INI file in the test's folder)."""
    from explorer.gui.persistence import Persistence

    return Persistence(path=str(tmp_path / "settings.ini"))


@pytest.fixture
def make_window(qtbot, store):
    """make_window(settings=None, *, factory=thread_worker, start=True, ...) -> a shown MainWindow.

    settings: TrainSettings ("tiny": the tests' tiny matrix scenario; None: the app's defaults); factory: the worker factory
    (engine_helpers.thread_worker, a real TrainingWorker on one thread and the tiny byte-level model;
    None: the app's default, a child process); start: start the worker and wait until it is attached;
    shown: show the window and wait until it is exposed; size: (w, h) to resize to before showing;
    compare_kwargs: the compare host's worker arguments (default: one thread, the tiny model); the
    rest (store, restore, theme, overrides, view_classes) goes to MainWindow, restore=False unless
    given. At the end every window is closed, its workers stopped, and no thread a test started may
    be left running (helper threads get time to finish their last signal)."""
    from engine_helpers import thread_worker, tiny_byte_model, tiny_matrix

    from explorer.gui.main_window import MainWindow

    made = []
    baseline = {t.ident for t in threading.enumerate()}

    def make(
        settings="tiny",
        *,
        factory=thread_worker,
        start=True,
        shown=True,
        size=None,
        compare_kwargs=None,
        **kw,
    ):
        kw.setdefault("store", store)
        kw.setdefault("restore", False)
        win = MainWindow(tiny_matrix() if settings == "tiny" else settings, worker_factory=factory, **kw)
        win.compare_host.worker_kwargs = (
            compare_kwargs if compare_kwargs is not None else {"threads": 1, "base_model": tiny_byte_model()}
        )
        qtbot.addWidget(win)
        made.append(win)
        if size is not None:
            win.resize(*size)
            win.default_layout()  # as View > Reset layout: the test screen is smaller than `size`
        if shown:
            win.show()
            qtbot.waitExposed(win)
        if start:
            with qtbot.waitSignal(win.worker_attached, timeout=WINDOW_WAIT_MS):
                win.start_worker()
        return win

    yield make

    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    for win in made:
        worker = win.worker
        win.close()
        assert win.worker is None and win.compare_host.worker is None
        if worker is not None and hasattr(worker, "alive"):
            assert not worker.alive, "the worker outlived its window"
        win.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    for t in threading.enumerate():  # helper threads (inspect, export, encode) end once their signal is out
        if t.ident not in baseline and t.name.startswith("explorer-") and not t.name.startswith("explorer-import"):
            t.join(WINDOW_WAIT_MS / 1000)
    leftover = [
        t
        for t in threading.enumerate()
        if t.ident not in baseline and t.is_alive() and not t.name.startswith("explorer-import")
    ]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def window(request, make_window):
    """One window made by make_window with the options of the test's `window` mark, e.g.
    @pytest.mark.window(start=False, size=(1600, 900)) (a module's pytestmark sets them for all)."""
    mark = request.node.get_closest_marker("window")
    return make_window(*(mark.args if mark else ()), **(mark.kwargs if mark else {}))


# ---------------------------------------------------------------------------- the event-loop watchdog
class EventLoopStalled(Exception):
    """Raised in the test's thread when its GUI event loop has not turned for far too long."""


class _Watchdog:
    """A 25 ms QTimer on the GUI thread marks each turn of the event loop; a helper thread notes the
    longest gap. A gap over `hard_s` (a blocked GUI thread, e.g. on a FIFO) is broken with SIGALRM,
    whose handler raises EventLoopStalled in the blocked call."""

    def __init__(self, limit_s: float, hard_s: float):
        from PySide6.QtCore import QTimer

        self.limit_s, self.hard_s = limit_s, hard_s
        self.last = time.monotonic()
        self.worst = 0.0
        self.broken = False
        self._done = threading.Event()
        self._timer = QTimer()
        self._timer.setInterval(25)
        self._timer.timeout.connect(self._tick)
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="explorer-test-watchdog", daemon=True)

    def _tick(self) -> None:
        now = time.monotonic()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            gap = time.monotonic() - self.last
            if gap > self.hard_s and not self.broken:
                self.broken = True
                self.worst = max(self.worst, gap)
                signal.pthread_kill(self._main, signal.SIGALRM)

    def __enter__(self):
        def on_alarm(_signum, _frame):
            raise EventLoopStalled(f"the GUI thread was blocked for more than {self.hard_s:g} s")

        self._old = signal.signal(signal.SIGALRM, on_alarm)
        self.last = time.monotonic()
        self._timer.start()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self._timer.stop()
        self._tick()
        signal.signal(signal.SIGALRM, self._old)
        return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Tests marked @pytest.mark.stall_watchdog(limit_s=1.0) fail when their GUI event loop stalls
    for more than limit_s while the test body runs (setup, where windows are built, is not watched)."""
    mark = item.get_closest_marker("stall_watchdog")
    if mark is None:
        return (yield)
    limit_s = float(mark.kwargs.get("limit_s", 1.0))
    with _Watchdog(limit_s, hard_s=float(mark.kwargs.get("hard_s", 10 * limit_s))) as dog:
        result = yield
    if dog.worst > limit_s:
        pytest.fail(f"the GUI event loop stalled for {dog.worst:.2f} s (limit {limit_s:g} s)", pytrace=False)
    return result
