"""The layers, checked at run time: the core and the engine know no window (they import no Qt,
directly or through anything they import), and the GUI process never imports torch, whatever the
user does in it (every view and feature used offscreen, then `sys.modules` looked at).
import-linter checks the same statically (pyproject.toml's contracts, run by .ci/run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6")


def _modules_under(package: str) -> list[str]:
    base = ROOT / package.replace(".", "/")
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in base.rglob("*.py") if p.name != "__main__.py"
    )


@pytest.mark.parametrize("package", ["explorer.core", "explorer.engine", "explorer.integrations"])
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
    for package in ("explorer/core", "explorer/engine", "explorer/integrations"):
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")):
                    assert not any(q in stripped.split()[1] for q in QT_MODULES), f"{path}: {stripped}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    "package", ["explorer.schema", "explorer.core", "explorer.gui", "explorer.commands", "explorer.integrations"]
)
def test_no_import_cycles(package):
    """Every import counts, the ones inside functions too (grimp reads them all): a module that needs
    another lazily is still tied to it."""
    import grimp  # comes with import-linter (the [test] extra)

    graph = grimp.build_graph("explorer", cache_dir=None)
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}
    assert _cycles(edges) == [], f"import cycles in {package}"


TOUR_DECK = """
title = "tour"

[[scene]]
title = "A matrix"
caption = "One matrix."
views = ["delta", "loss"]
layout = "row"
play = true
[scene.settings]
scenario = "matrix"
method = "lora"
rank = 2
size_in = 32
size_out = 24
target_rank = 3
device = "cpu"

[[scene]]
title = "Two ranks"
caption = "Compared."
views = ["compare"]
layout = "focus"
play = true
[scene.settings]
scenario = "matrix"
method = "lora"
size_in = 32
size_out = 24
target_rank = 3
device = "cpu"
[[scene.runs]]
label = "r=1"
settings = { rank = 1 }
[[scene.runs]]
label = "r=4"
settings = { rank = 4 }
"""


@pytest.mark.timeout(900)
def test_the_gui_process_never_imports_torch_whatever_is_used(tmp_path):
    """tests/gui_tour.py in a fresh interpreter: the window trains (in a child process), every view
    draws, a comparison runs, an adapter is inspected, the run is exported, a recording is replayed,
    talk mode plays a deck; torch stays out of that process (the engine's children import it)."""
    from explorer.cli import main
    from explorer.core.peft_files import write_lora_adapter

    g = torch.Generator().manual_seed(0)
    adapter = tmp_path / "adapter"
    factors = {
        f"model.layers.{i}.self_attn.{m}": {"A": torch.randn(2, 64, generator=g), "B": torch.randn(64, 2, generator=g)}
        for i in range(2)
        for m in ("q_proj", "v_proj")
    }
    write_lora_adapter(adapter, factors, r=2, lora_alpha=4.0, target_modules=["q_proj", "v_proj"])
    recording = tmp_path / "recording"
    assert (
        main(["run", "--scenario", "matrix", "--steps", "6", "--out", str(recording), "--quiet", "--threads", "1"]) == 0
    )
    deck = tmp_path / "tour.toml"
    deck.write_text(TOUR_DECK)
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "gui_tour.py"), str(tmp_path), str(adapter), str(recording), str(deck)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=840,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout
    assert "worker: ProcessTrainingWorker" in lines and "compare: ProcessCompareWorker" in lines, lines
    assert "inspected: 4 modules" in lines and "exported: True" in lines and "replayed: 7 records" in lines, lines
    assert "talk: done" in lines and "errors: none" in lines, lines
    assert "torch modules: 0" in lines, lines
