"""The command line: one entry point for the window and the headless subcommands."""

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_run_flags_take_rank_and_alpha_patterns():
    from explorer.cli import build_parser
    from explorer.commands.run import settings_from_args

    args = build_parser("run").parse_args(
        [
            "run",
            "--out",
            "x",
            "--rank-pattern",
            "down_proj=4,model.layers.0.self_attn.q_proj=16",
            "--alpha-pattern",
            '{"v_proj": 32}',
        ]
    )
    s = settings_from_args(args)
    assert s.rank_pattern == {"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}
    assert s.alpha_pattern == {"v_proj": 32}


@pytest.mark.parametrize(
    "flag,message",
    [
        ("q_proj", "argument --rank-pattern: rank_pattern: 'q_proj' is not PATTERN=VALUE"),
        ("q_proj=0", "rank_pattern['q_proj']=0 is out of range: allowed 1 to 4096"),
    ],
)
def test_a_bad_pattern_flag_is_one_line_and_exit_2(flag, message):
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "run", "--out", "never-written", "--rank-pattern", flag],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (ROOT / "never-written").exists()


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


def test_run_flags_choose_the_attention_maps_recorded():
    from explorer.cli import build_parser
    from explorer.commands.run import settings_from_args

    args = build_parser("run").parse_args(
        ["run", "--out", "x", "--method", "prefix", "--attention-layers", "0-3,30,31", "--attention-heads", "5"]
    )
    s = settings_from_args(args)
    assert s.attention_layers == (0, 1, 2, 3, 30, 31) and s.attention_heads == (5,)
    assert settings_from_args(build_parser("run").parse_args(["run", "--out", "x"])).attention_heads is None
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "run", "--out", "never-written", "--attention-heads", "0-40"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2 and "attention_heads=" in out.stderr and "allowed 1 to 16" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (ROOT / "never-written").exists()
