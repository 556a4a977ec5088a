"""The measuring and training scripts import against the current tree, and measure_base's checks
judge text as they say."""

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def measure():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import measure_base
        import train_base  # noqa: F401 (its imports must resolve: measure_base uses its evaluate)

        yield measure_base
    finally:
        sys.path.remove(str(SCRIPTS))


def test_python_is_told_from_text_that_is_not(measure):
    prompt = "def f(x):\n"
    assert measure.tokenizes(prompt, "    y = x + 1\n    if y:\n        return (y,\n")  # open bracket at the cut
    assert not measure.tokenizes(prompt, "    y = 1\n")  # too few lines to judge
    assert not measure.tokenizes(prompt, '    s = "open\n    t = 2\n    u = 3\n')  # unterminated string
    assert not measure.tokenizes(prompt, "        y = 1\n    z = 2\n  w = 3\n")  # dedent to no level


def test_loops_and_runaway_whitespace_are_stuck(measure):
    assert measure.stuck("the server the server the server the server the server the server")
    assert measure.stuck("x = 1\n" + " " * 60)
    assert not measure.stuck("def f(x):\n    return x + 1\n\ndef g(y):\n    return y * 2\n")


def test_prompts_open_blocks_and_keep_docstrings(measure):
    text = 'a = 1\n\ndef f(x):\n    """Doc.\n\n    More."""\n    return x\n\nif a:\n    pass\n'
    prompts = measure.prompts_from(text, 2)
    assert prompts[0] == 'a = 1\n\ndef f(x):\n    """Doc.\n\n    More."""\n'  # two lines before, the docstring
    assert prompts[1] == "    return x\n\nif a:\n"
    with pytest.raises(ValueError, match="only 2 blocks"):
        measure.prompts_from(text, 3)
    assert measure.diff_share("# review: x\n--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n c") == 6 / 7
