"""Text from files shown on a terminal or in a table: never a control character.

A module name, a label or a path from a hostile file may hold ANSI escapes ("\\x1b[2J" clears the
screen) or line breaks that forge output; `printable` shows each such character as its Python escape.
"""

from __future__ import annotations


def printable(text) -> str:
    """`text` with every non-printable character (controls, escapes, line breaks) escaped; printable
    Unicode (accents, CJK) is kept as it is."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def one_line(text, limit: int = 2000) -> str:
    """`printable`, on one line, at most `limit` characters."""
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
