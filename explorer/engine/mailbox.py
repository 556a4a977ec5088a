"""A one-slot mailbox: the producer overwrites, the consumer takes the latest; neither side waits.

`put` and `take` hold a lock only for an assignment (and, for an item with an `absorb(older)` method,
the call that hands it what the item it replaces carried once: a Snapshot's pooled W0), so a slow consumer never backs up the
training loop and a fast loop never floods the consumer: whatever was not taken is replaced.
`wait` is for consumers that have nothing else to do (tests, headless tools): it blocks the
consumer only, with a timeout.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._item: T | None = None
        self._fresh = False
        self.posted = 0  # items put so far
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: T) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
                absorb = getattr(item, "absorb", None)
                if absorb is not None:
                    item = absorb(self._item)
            self._item, self._fresh = item, True
            self.posted += 1
            self._cond.notify_all()

    def take(self) -> T | None:
        """The newest item if it has not been taken yet, else None. Never blocks."""
        with self._cond:
            if not self._fresh:
                return None
            self._fresh = False
            return self._item

    def peek(self) -> T | None:
        """The newest item, taken or not (None before the first put)."""
        with self._cond:
            return self._item

    def wait(self, timeout: float | None = None) -> T | None:
        """Take the next fresh item, waiting up to `timeout` seconds for one; None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._fresh, timeout):
                return None
            self._fresh = False
            return self._item
