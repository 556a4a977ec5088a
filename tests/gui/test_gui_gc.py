"""Garbage in reference cycles (a closed window's widgets) is freed on the GUI thread, never on a
helper thread that happens to allocate (explorer/gui/gui_gc.py: that deadlocked a CI run)."""

import gc
import threading

from explorer.gui.app import make_app
from explorer.gui.gui_gc import COLLECT_MS


class _Cycle:
    freed_on: list = []

    def __init__(self):
        self.me = self  # only the cyclic collector can free it

    def __del__(self):
        _Cycle.freed_on.append(threading.current_thread().name)


def test_a_cycle_is_freed_on_the_gui_thread_while_a_helper_thread_allocates(qtbot):
    make_app()
    assert not gc.isenabled()
    _Cycle.freed_on.clear()
    gc.collect()  # counts start at 0: the helper's allocations are what crosses the thresholds
    _Cycle()

    kept = []

    def allocate():  # far past the first threshold: automatic collection would run here
        kept.extend([None] for _ in range(50 * gc.get_threshold()[0]))

    helper = threading.Thread(target=allocate, name="explorer-test-allocator")
    helper.start()
    helper.join()
    qtbot.waitUntil(lambda: bool(_Cycle.freed_on), timeout=20 * COLLECT_MS)
    assert _Cycle.freed_on == [threading.main_thread().name]
