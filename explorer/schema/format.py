"""The one set of formatters for what people read: the window's views and status bar, the adapter
inspector, and the commands' tables and progress lines. Plain Python (no numpy, no torch, no Qt).

Numbers that are missing or not finite read "–" (never "nan" or a made-up 0); sizes are in decimal
units, as the papers give them (8,388,608 bytes -> "8.4 MB").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

MISSING = "–"


def _number(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def format_count(n) -> str:
    """4194304 -> '4,194,304'."""
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError, OverflowError):
        return MISSING


def format_short(n) -> str:
    """4194304 -> '4.19M', 1229760 -> '1.23M', 6738415616 -> '6.74B', 512 -> '512'."""
    v = _number(n)
    if v is None or not math.isfinite(v):
        return MISSING
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


def format_bytes(n) -> str:
    """Decimal units: 896 -> '896 B', 8192 -> '8.2 kB', 8388608 -> '8.4 MB', 1.4e11 -> '140 GB'."""
    v = _number(n)
    if v is None or not math.isfinite(v) or v < 0:
        return MISSING
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= div:
            scaled = v / div
            return f"{scaled:.1f} {unit}" if scaled < 100 else f"{scaled:,.0f} {unit}"
    return f"{v:.0f} B"


def format_value(x, digits: int = 4) -> str:
    """A measured value with `digits` significant digits: 0.012345 -> '0.01235'; None, NaN -> '–';
    infinities -> '∞', '-∞'; what is not a number is shown as it is."""
    if x is None:
        return MISSING
    v = _number(x)
    if v is None:
        return str(x)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{digits}g}"


def format_fixed(x, digits: int = 4) -> str:
    """A loss in a column of losses: a fixed number of decimals (they line up); None, NaN, ∞ -> '–'."""
    v = _number(x)
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.{digits}f}"


def format_rate(x) -> str:
    """Steps per second: 1234.5 -> '1234', 45.67 -> '45.7', 2.345 -> '2.35'; None, NaN -> '–'."""
    v = _number(x)
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def format_age(made_at, now) -> str:
    """How old something made at step `made_at` is at step `now`: 'new', '1 step old', '40 steps old';
    '40 steps ahead' when it was made later (a replay showing the nearest record)."""
    try:
        age = int(now) - int(made_at)
    except (TypeError, ValueError, OverflowError):
        return MISSING
    if age == 0:
        return "new"
    n = abs(age)
    return f"{n:,} step{'' if n == 1 else 's'} {'old' if age > 0 else 'ahead'}"


def format_clock(seconds) -> str:
    """Elapsed or remaining time as m:ss (75.4 -> '1:15'); not finite -> '?'."""
    v = _number(seconds)
    if v is None or not math.isfinite(v):
        return "?"
    v = max(0, int(round(v)))
    return f"{v // 60}:{v % 60:02d}"


def one_line(text) -> str:
    """A message on one line: runs of whitespace (newlines too) become one space."""
    return " ".join(str(text).split())


def short_json(value, width: int = 80) -> str:
    """`value` as compact JSON, cut to `width` characters with '...'."""
    s = json.dumps(value, separators=(",", ":"))
    return s if len(s) <= width else s[: width - 3] + "..."


def format_ranges(values: Sequence[int], dash: str = "–", sep: str = ", ", empty: str = "–") -> str:
    """(0, 1, 2, 3, 30, 31) -> '0–3, 30–31'; () -> `empty`. The controls' layer fields write
    '0-3,30-31' (dash='-', sep=',') so that the text parses back."""
    values = sorted(set(int(v) for v in values))
    if not values:
        return empty
    parts, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}{dash}{prev}")
        if v is not None:
            start = prev = v
    return sep.join(parts)


def parse_ranges(text: str, what: str, max_span: int = 100_000) -> list[tuple[int, int]]:
    """'0-3, 30,31' -> [(0, 3), (30, 30), (31, 31)]: the inclusive ranges a list of numbers and
    ranges names (the text format_ranges writes, either dash). ValueError (one line, naming `what`)
    for a part that is not a number or a range, one that runs backwards, or one wider than max_span."""
    out = []
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d{1,6})(?:[-–—:](\d{1,6}))?", part)
        if not m:
            raise ValueError(f"{what}: {part!r} is not a number or a range (e.g. 0-3,30,31, all, or empty)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ValueError(f"{what}: {part!r} runs backwards (write {b}-{a})")
        if b - a > max_span:
            raise ValueError(f"{what}: {part!r} spans more than {max_span}")
        out.append((a, b))
    return out
