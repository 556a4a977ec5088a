"""The command line: one entry point for the window and the headless subcommands."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _explorer(*args):
    return subprocess.run(
        [sys.executable, "-m", "explorer", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_help_lists_the_window_options_and_the_subcommands():
    out = _explorer("--help")
    assert out.returncode == 0
    for word in ("--play", "--talk", "--in-process", "--replay", "budget", "run", "inspect", "export", "compare"):
        assert word in out.stdout, word


def test_an_unknown_option_is_one_line_and_exit_2():
    out = _explorer("--no-such-option")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_run_trains_each_method_at_its_own_default_learning_rate():
    """--method full without --lr: full fine-tuning's rate, not LoRA's (which diverges; issue 16)."""
    import argparse

    from explorer.commands.run import add_arguments, settings_from_args
    from explorer.schema.settings import default_lr

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args(["--method", "full", "--out", "x"])).lr == default_lr("lm", "full")
    assert settings_from_args(parser.parse_args(["--method", "full", "--lr", "0.01", "--out", "x"])).lr == 0.01
    matrix = parser.parse_args(["--scenario", "matrix", "--method", "full", "--out", "x"])
    assert settings_from_args(matrix).lr == default_lr("matrix", "full")
