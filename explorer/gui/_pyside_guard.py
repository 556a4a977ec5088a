"""Guard against PySide6 6.12.0's None reference-count bug on Python < 3.12.

PySide6/shiboken6 6.12.0 returns None from void C++ methods (QPainter.setPen, drawLine, save, ...)
without taking a reference, so every such call lowers None's reference count by one; True and False
lose references the same way on some paths (pyqtgraph's painting hits both). On Python 3.11 these
singletons are not immortal: after a few thousand painted items (seconds of a live plot) a count
reaches zero and the interpreter aborts with "Fatal Python error: none_dealloc: deallocating None"
(or bool_dealloc). 6.11.3 does not have the bug; on Python >= 3.12 the singletons are immortal and
the bug is harmless.

The guard raises the reference counts of None, True and False by 2**40 once, which is what Python
3.12 does by making them immortal: the stray decrements can then never reach zero. It runs only on
CPython < 3.12 with a shiboken6 6.12.x, and only once per process.
"""

from __future__ import annotations

import ctypes
import sys

_BUMP = 1 << 40
_done = False


def affected() -> bool:
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    try:
        import shiboken6
    except ImportError:
        return False
    return str(getattr(shiboken6, "__version__", "")).startswith("6.12.")


def protect_none() -> bool:
    """Make None, True and False practically immortal when this PySide6 needs it; True if the guard was applied."""
    global _done
    if _done or not affected():
        return False
    # PyObject starts with Py_ssize_t ob_refcnt (non-debug CPython builds)
    for singleton in (None, True, False, Ellipsis, NotImplemented):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _BUMP
    _done = True
    return True


protect_none()
