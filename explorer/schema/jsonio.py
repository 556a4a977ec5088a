"""JSON from files, read as hostile: one reader with a size and depth limit, and typed field checks.

Every reader of a JSON file or a JSON string stored in a file (recordings, saved-state metadata,
adapter configs, comparisons) goes through `read_json_file` / `parse_json`, so a file that is not
UTF-8, not JSON, nested 100,000 levels deep, of the wrong top-level type or too large is refused with
one `ValueError` line naming the file, never a RecursionError or a traceback. The `need_*` helpers
check one field's type and range before use, with messages of the same shape:
"<file>: <field> is "128", expected a whole number from 1 to 4096".
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

MAX_JSON_BYTES = 64 * 1024 * 1024  # far above any file we write; a bound on what a hostile one costs
MAX_DEPTH = 64  # our deepest file nests about 6 levels
_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class JsonFileError(ValueError):
    """A JSON file or field that cannot be used; the message is one line naming the file."""


def json_kind(value) -> str:
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: str | bytes, where: str, expect: type | None = dict, allow_nonfinite: bool = False):
    """Parse JSON text (strictly: no NaN/Infinity unless `allow_nonfinite`). `where` names the source
    in the messages; `expect` the top-level type (None: any)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonFileError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if len(data) > MAX_JSON_BYTES:
        raise JsonFileError(f"{where}: {len(data)} characters of JSON, more than the {MAX_JSON_BYTES} allowed")
    kwargs = {} if allow_nonfinite else {"parse_constant": _reject_constant}
    try:
        value = json.loads(data, **kwargs)
    except RecursionError:
        raise JsonFileError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, an integer of more than 4300 digits, NaN refused above
        raise JsonFileError(f"{where}: not valid JSON ({_one_line(exc)})") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise JsonFileError(f"{where}: not valid JSON here (nested more than {MAX_DEPTH} levels)")
    if expect is not None and not isinstance(value, expect):
        raise JsonFileError(f"{where}: the top level is a JSON {json_kind(value)}, expected a JSON {_KINDS[expect]}")
    return value


def read_json_file(
    path: str | Path, expect: type | None = dict, max_bytes: int = MAX_JSON_BYTES, allow_nonfinite: bool = False
):
    """Read and parse a JSON file: a regular file only (never a FIFO or a device), at most `max_bytes`."""
    path = Path(path)
    data = read_regular_file(path, max_bytes)
    return parse_json(data, str(path), expect=expect, allow_nonfinite=allow_nonfinite)


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; opening never blocks (a FIFO is refused)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise JsonFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JsonFileError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise JsonFileError(f"{path}: {info.st_size} bytes, more than the {max_bytes} allowed for this file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:  # the file grew while we read it
                raise JsonFileError(f"{path}: more than the {max_bytes} bytes allowed for this file")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise JsonFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _depth_exceeds(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        if d > limit:
            return True
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return False


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def shown(value) -> str:
    """A value as a message shows it: JSON, at most 60 characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- typed fields -------------------------------------------------------------------------------


def _fail(where: str, name: str, value, expected: str):
    raise JsonFileError(f"{where}: {name} is {shown(value)}, expected {expected}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value, finite: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not finite or math.isfinite(value)


def need_int(value, where: str, name: str, low: int | None = 0, high: int | None = 2**53):
    """A whole number (never a bool, never 128.5 or "128") in [low, high]."""
    expected = "a whole number" + _range(low, high)
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        _fail(where, name, value, expected)
    return value


def need_number(value, where: str, name: str, low=None, high=None, finite: bool = True, none_ok: bool = False):
    """A number (int or float, not a bool), finite unless `finite=False`, in [low, high]; None if `none_ok`."""
    if value is None and none_ok:
        return None
    expected = ("a finite number" if finite else "a number") + _range(low, high) + (" or null" if none_ok else "")
    if not is_number(value, finite):
        _fail(where, name, value, expected)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(where, name, value, expected)
    return float(value) if isinstance(value, float) else value


def need_str(value, where: str, name: str, max_len: int = 10_000, none_ok: bool = False):
    if value is None and none_ok:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        _fail(where, name, value, f"text of at most {max_len} characters" + (" or null" if none_ok else ""))
    return value


def need_bool(value, where: str, name: str):
    if not isinstance(value, bool):
        _fail(where, name, value, "true or false")
    return value


def need_dict(value, where: str, name: str, none_ok: bool = False):
    if value is None and none_ok:
        return None
    if not isinstance(value, dict):
        _fail(where, name, value, "an object" + (" or null" if none_ok else ""))
    return value


def need_list(value, where: str, name: str, max_len: int = 1_000_000):
    if not isinstance(value, list) or len(value) > max_len:
        _fail(where, name, value, f"an array of at most {max_len} items")
    return value


def _range(low, high) -> str:
    if low is not None and high is not None:
        return (
            f" from {low:g} to {high:g}"
            if isinstance(low, float) or isinstance(high, float)
            else f" from {low} to {high}"
        )
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
