"""docs/reference.md is in the repository, and every module that cites it names it by that path."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reference_is_in_the_repository_and_cited_by_its_path():
    reference = ROOT / "docs" / "reference.md"
    assert reference.is_file()
    text = reference.read_text(encoding="utf-8")
    citing = []
    for path in sorted([*ROOT.glob("explorer/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]):
        source = path.read_text(encoding="utf-8")
        for m in re.finditer(r"(\S*)reference\.md", source):
            if path.name == "test_docs.py":
                continue
            assert m.group(1).endswith("docs/"), f"{path.relative_to(ROOT)} cites {m.group(0)!r}, not docs/reference.md"
            citing.append(path.name)
    assert {"analysis.py", "budget.py", "peft_files.py", "prefix.py", "analyses.py", "lora.py"} <= set(citing)
    # The formulas the code implements have their sections.
    for heading in (
        "### Dropout",
        "### DoRA's effective update",
        "### Spectrum of a dense update",
        "numerical rank",
        "Rank-deficient ΔW",
        "PiSSA",
        "4,456,448",
    ):
        assert heading in text, heading
