"""Atomic file writes: a crash mid-write leaves the previous file intact, never half a file.

Every file we write goes through `atomic_replace` (or `atomic_write_bytes` / `atomic_write_text` on
top of it): the data goes into a private temporary directory beside the target
(`.<name>.peft-tmp.<host>.<pid>.<random>/<name>`), is fsynced, given the user's ordinary file mode
(0666 less the umask; a library that writes its own temporary file would leave 0600) and renamed over
the target in one step; the directory entry is fsynced too. Whatever a writer leaves in the private
directory (the safetensors library's own hidden `.tmpXXXX`, half a file after a full disk) goes with
it. A process killed mid-write leaves the private directory behind: the next write into the same
directory removes those of dead processes on this host.

Errors are `OSError`s whose `filename` is the target, so the command line can say which file and why.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

TMP_MARK = ".peft-tmp."
_STALE_RE = re.compile(r"\.peft-tmp\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-f]+$")
_swept: set[str] = set()  # directories already cleared of stale temporaries by this process


def host_tag() -> str:
    """Eight hex digits naming this host (temporaries and locks of another host are never touched)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this id exists (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: what an ordinary open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def sweep_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporaries that dead processes of this host left in `directory`; returns them."""
    directory = Path(directory)
    removed = []
    me = host_tag()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _STALE_RE.search(entry.name)
        if m is None or m["host"] != me or pid_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass  # another process got there first, or we may not; not ours to insist on
    return removed


def _named(exc: OSError, path: Path) -> OSError:
    """The same error, naming the file the caller asked for rather than our temporary."""
    err = OSError(exc.errno, exc.strerror or str(exc), str(path))
    return err


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems (and Windows) cannot open a directory; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_dir_name(name: str) -> str:
    # Bounded, so a target whose name is near the filesystem's limit still gets a temporary.
    stem = name[:80]
    return f".{stem}{TMP_MARK}{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}"


def private_temp_dir(parent: str | Path, name: str) -> Path:
    """A new private directory in `parent` for building `name` before it is moved into place; named
    so that one left by a killed process is swept by the next write into `parent`. Remove it when done."""
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temporaries(parent)
        tmp_dir = parent / _temp_dir_name(name)
        os.mkdir(tmp_dir, 0o700)
    except OSError as exc:
        raise _named(exc, parent / name) from None
    return tmp_dir


@contextlib.contextmanager
def atomic_replace(path: str | Path):
    """Yield a temporary path; once the block has written it, it is fsynced and renamed over `path`.

    Nothing is left beside `path` if the block or the rename fails (the error names `path`)."""
    path = Path(path)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        key = str(parent.resolve())
        if key not in _swept:
            _swept.add(key)
            sweep_stale_temporaries(parent)
        tmp_dir = parent / _temp_dir_name(path.name)
        os.mkdir(tmp_dir, 0o700)
    except OSError as exc:
        raise _named(exc, path) from None
    tmp = tmp_dir / path.name
    try:
        yield tmp
        try:
            if not tmp.is_file():
                raise OSError(errno.ENOENT, "the writer produced no file")
            os.chmod(tmp, umask_mode())
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(parent)
        except OSError as exc:
            raise _named(exc, path) from None
    except OSError as exc:
        # A writer's own OSError (a full disk mid-write) names our temporary: name the target instead.
        if exc.filename is not None and str(exc.filename).startswith(str(tmp_dir)):
            raise _named(exc, path) from None
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically, with the user's ordinary file mode."""
    path = Path(path)
    with atomic_replace(path) as tmp:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            finally:
                os.close(fd)
        except OSError as exc:
            raise _named(exc, path) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
