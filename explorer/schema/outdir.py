"""Output directories: replace only what is recognisably ours, and hold the directory's lock.

`claim_output_dir` is the one way a writer (a recording, a comparison, an export) takes its output
directory: a path that is a file, a non-empty directory without --overwrite, or a non-empty directory
that is not ours (a model directory, someone's notes) is refused with one line and nothing touched;
otherwise the directory is created if need be and its lock (explorer.schema.dirlock) taken, so a
second writer on the same directory is refused while the first runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from explorer.schema.dirlock import GUARD_SUFFIX, LOCK_NAME, DirLock
from explorer.schema.files import TMP_MARK
from explorer.schema.jsonio import JsonFileError, read_json_file

MAX_MARKER_BYTES = 16 * 1024 * 1024


def housekeeping(name: str) -> bool:
    """Our lock and temporaries: present in a directory we use, never a reason to call it foreign."""
    return name in (LOCK_NAME, LOCK_NAME + GUARD_SUFFIX) or TMP_MARK in name


def entries(directory: Path) -> list[str]:
    """The names in `directory` other than our housekeeping files, sorted."""
    return sorted(n for n in os.listdir(directory) if not housekeeping(n))


def marker_problem(path: Path, fmt: str) -> str | None:
    """None when `path` is a JSON object whose "format" is `fmt`; else what is wrong, in words."""
    if not path.is_file():
        return f"it has no {path.name}"
    try:
        data = read_json_file(path, max_bytes=MAX_MARKER_BYTES)
    except (JsonFileError, OSError):
        return f"its {path.name} is not readable JSON"
    if data.get("format") != fmt:
        return f"its {path.name} is not a {fmt} file"
    return None


def foreign_entries(directory: Path, known: Callable[[str, bool], bool]) -> str | None:
    """The first entry that `known(name, is_dir)` does not accept, as a message; None when all are."""
    for name in entries(directory):
        if not known(name, (directory / name).is_dir()):
            return f"it holds {name!r}, which is not part of one"
    return None


def claim_output_dir(
    directory: str | Path,
    *,
    what: str,
    overwrite: bool,
    ours: Callable[[Path], str | None],
    flag: str = "--overwrite",
) -> DirLock:
    """Check, create and lock an output directory; return the held lock (release it when done).

    `what` names the kind ("recording"); `ours(dir)` says why a non-empty directory is not one of
    ours (None when it is). After a successful claim with `overwrite`, the caller may delete what
    `ours` accepted."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: is a file, not a directory: allowed a new or empty directory")

    def check() -> None:
        if not directory.is_dir() or not entries(directory):
            return
        if not overwrite:
            raise ValueError(
                f"{directory}: is not empty: choose a new directory (or pass {flag} to replace the {what} there)"
            )
        problem = ours(directory)
        if problem is not None:
            raise ValueError(
                f"{directory}: not a {what} of peft-explorer ({problem}): refused to replace it, nothing changed"
            )

    check()
    lock = DirLock(directory, what)
    lock.acquire()
    try:
        check()  # again under the lock: what was there may have changed while we waited
    except BaseException:
        lock.release()
        raise
    return lock
