"""An exclusive lock on an output directory, so two runs never write into one recording.

    with DirLock(out, "run"):        # DirLockBusy (a ValueError) when another live process holds it
        ...write into out...

The lock is the plain file `DIR/.peft-explorer.lock`, created atomically (O_CREAT | O_EXCL, which NFS
honours from v3 on) and holding {"pid", "host", "time", "purpose"} as JSON. It is removed on release.
A lock left by a process that died is taken over when that process was on this host and no longer
exists (an unreadable lock older than STALE_UNREADABLE_S counts as left behind). A lock of another
host cannot be checked and is never taken over: the message says who holds it and which file to
delete if that run is known to be gone. Taking a stale lock over is itself guarded by a second
O_EXCL file, so two processes that both find it stale cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from explorer.schema.files import host_tag, pid_alive

LOCK_NAME = ".peft-explorer.lock"
GUARD_SUFFIX = ".takeover"
STALE_UNREADABLE_S = 30.0  # a lock is written right after it is created: empty for longer means its writer died
STALE_GUARD_S = 30.0


class DirLockBusy(ValueError):
    """Another process holds the directory's lock; the message is one line naming it."""


def _host() -> str:
    return socket.gethostname()


def _read(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096)
        info = json.loads(data.decode("utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


class DirLock:
    """The lock of one directory (created if missing). Re-entrant use is an error: take it once."""

    def __init__(self, directory: str | Path, purpose: str = "write"):
        self.dir = Path(directory)
        self.path = self.dir / LOCK_NAME
        self.purpose = purpose
        self.held = False

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _record(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": _host(),
            "host_tag": host_tag(),
            "time": time.time(),
            "purpose": self.purpose,
        }
        return json.dumps(info).encode()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._record())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _stale(self, info: dict | None) -> bool:
        if info is None:
            return _age(self.path) > STALE_UNREADABLE_S
        pid = info.get("pid")
        if info.get("host_tag") != host_tag() or not isinstance(pid, int) or isinstance(pid, bool):
            return False
        return not pid_alive(pid)

    def _take_over(self) -> bool:
        """Remove a stale lock under the takeover guard; True when it was removed (then try again)."""
        guard = self.path.with_name(LOCK_NAME + GUARD_SUFFIX)
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _age(guard) > STALE_GUARD_S:  # its holder died mid-takeover
                guard.unlink(missing_ok=True)
            return False
        os.close(fd)
        try:
            if self.path.exists() and self._stale(_read(self.path)):  # still the same stale lock?
                self.path.unlink(missing_ok=True)
                return True
            return not self.path.exists()
        finally:
            guard.unlink(missing_ok=True)

    def acquire(self) -> None:
        if self.held:
            raise RuntimeError(f"{self.path}: already held by this object")
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return
            info = _read(self.path)
            if self._stale(info) and self._take_over():
                continue
            break
        raise DirLockBusy(
            f"{self.dir}: in use by {_holder(_read(self.path))} (lock file {self.path}; delete it only if that run is gone)"
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        info = _read(self.path)
        # Remove only our own lock (a lock taken over after we were presumed dead is someone else's).
        if info is None or (info.get("pid") == os.getpid() and info.get("host_tag") == host_tag()):
            self.path.unlink(missing_ok=True)


def _holder(info: dict | None) -> str:
    if info is None:
        return "another process (its lock file is being written or is damaged)"
    pid, host, purpose = info.get("pid"), info.get("host"), info.get("purpose")
    when = info.get("time")
    since = ""
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        since = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}" if 0 < when < 1e11 else ""
    what = f"a {purpose} " if isinstance(purpose, str) and purpose.isidentifier() else "a "
    return f"{what}process {pid!r} on host {str(host)[:64]!r}{since}"


def holder_alive(directory: str | Path) -> bool | None:
    """Whether the process holding `directory`'s lock still runs: False when there is no lock or its
    process of this host is gone, True when it runs, None when that cannot be told (another host's
    lock, an unreadable one). A follower uses it to tell a slow run from a dead one."""
    path = Path(directory) / LOCK_NAME
    if not path.exists():
        return False
    info = _read(path)
    if info is None:
        return None
    pid = info.get("pid")
    if info.get("host_tag") != host_tag() or not isinstance(pid, int) or isinstance(pid, bool):
        return None
    return pid_alive(pid)
