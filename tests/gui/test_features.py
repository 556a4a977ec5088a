"""The window's features use the window only through WindowServices (explorer/gui/services.py):
read from their sources, every use of the window is a member of that interface, and nothing is set
on the window from outside."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from explorer.gui.services import WindowServices

GUI = Path(__file__).resolve().parents[2] / "explorer" / "gui"
FEATURE_SOURCES = sorted(
    [
        *(GUI / name for name in ("talk.py", "deck_player.py", "replay.py", "run_recording.py")),
        *(GUI / name for name in ("screen_recording.py", "adapter_export.py", "window_files.py")),
        *(GUI / "inspector").glob("*.py"),
    ]
)


def _members() -> set[str]:
    tree = ast.parse((GUI / "services.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == WindowServices.__name__)
    out = set()
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            out.add(node.name)
    return out


def _is_window(node: ast.AST, aliases: set[str]) -> bool:
    """`window`, `self.window` or a local name bound to one of them."""
    if isinstance(node, ast.Name):
        return node.id == "window" or node.id in aliases
    return isinstance(node, ast.Attribute) and node.attr == "window" and isinstance(node.value, ast.Name)


def window_uses(source: str) -> list[tuple[int, str, bool]]:
    """(line, member, stored) for every attribute of the window the code touches."""
    uses = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.Lambda)):
            continue
        aliases = {
            t.id
            for n in ast.walk(func)
            if isinstance(n, ast.Assign) and _is_window(n.value, set())
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for n in ast.walk(func):
            if isinstance(n, ast.Attribute) and _is_window(n.value, aliases):
                uses.append((n.lineno, n.attr, isinstance(n.ctx, ast.Store)))
            elif (
                isinstance(n, ast.Call)
                and getattr(n.func, "id", "") in ("setattr", "getattr")
                and n.args
                and _is_window(n.args[0], aliases)
            ):
                uses.append((n.lineno, f"{n.func.id}(...)", True))
    return uses


def test_the_checker_sees_what_it_should():
    bad = (
        "def f(window):\n"
        "    w = window\n"
        "    w._private()\n"
        "    window.status.info('x')\n"
        "    window.extra = 1\n"
        "    getattr(window, 'worker', None)\n"
    )
    assert sorted(window_uses(bad)) == [
        (3, "_private", False),
        (4, "status", False),
        (5, "extra", True),
        (6, "getattr(...)", True),
    ]


@pytest.mark.parametrize("path", FEATURE_SOURCES, ids=lambda p: str(p.relative_to(GUI)))
def test_features_use_only_window_services(path):
    members = _members()
    assert {"widget", "status", "settings", "deliver"} <= members
    wrong = [
        f"{path.name}:{line}: {name}{' (set)' if stored else ''}"
        for line, name, stored in window_uses(path.read_text())
        if stored or name not in members
    ]
    assert not wrong, "the window used outside WindowServices:\n" + "\n".join(wrong)


def test_no_private_window_members_are_reached_from_outside():
    """Across explorer/gui: nothing reaches a private member of a `window` (or an alias of one) and
    nothing sets an attribute on it (main_window.py's own `self._...` is the window itself)."""
    wrong = []
    for path in GUI.rglob("*.py"):
        for line, name, stored in window_uses(path.read_text()):
            if name.startswith("_") or (stored and name != "getattr(...)"):
                wrong.append(f"{path.relative_to(GUI)}:{line}: {name}")
    assert not wrong, "\n".join(wrong)
