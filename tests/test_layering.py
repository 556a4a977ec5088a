"""The core and the engine know no window: they import no Qt, directly or through anything they import."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6")


def _modules_under(package: str) -> list[str]:
    base = ROOT / package.replace(".", "/")
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in base.rglob("*.py") if p.name != "__main__.py"
    )


@pytest.mark.parametrize("package", ["explorer.core", "explorer.engine"])
def test_importing_everything_loads_no_qt(package):
    modules = _modules_under(package)
    assert modules, f"nothing found under {package}"
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{package} pulled in Qt: {out.stdout.strip()}"


def test_no_qt_import_statement_in_core_sources():
    for package in ("explorer/core", "explorer/engine"):
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")):
                    assert not any(q in stripped.split()[1] for q in QT_MODULES), f"{path}: {stripped}"
