"""`python -m explorer resize`: the table, the written adapter, and bad input as one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer.core.peft_files import read_adapter, write_adaption_prompt_adapter
from tests.core.test_resize import random_adapter

ROOT = Path(__file__).resolve().parents[2]


# ---- the command -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "explorer", "resize", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_command_prints_the_table_and_writes_a_loadable_adapter(tmp_path):
    random_adapter(tmp_path / "a")
    out = run_cli(str(tmp_path / "a"), "--rank", "3", "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    row = next(line for line in lines if line.startswith("model.layers.0.self_attn.q_proj"))
    assert "8 → 3" in row and "384 → 144" in row  # 8·(24+24) → 3·(24+24)
    total = next(line for line in lines if line.startswith("total (4 modules)"))
    assert "1,344 → 504" in total and "-62.5 %" in total  # 2·8·(48 + 36) → 2·3·(48 + 36)
    assert read_adapter(tmp_path / "out").module("model.layers.1.self_attn.v_proj").rank == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--energy", "1.5"], "energy=1.5 is out of range: allowed 0 < energy <= 1"),
        (["--energy", "0"], "energy=0.0 is out of range"),
        (["--energy", "nan"], "energy=nan is out of range"),
        (["--rank", "0"], "rank=0 is out of range: allowed whole numbers >= 1"),
        (["--rank-pattern", '{"gate_proj": 2}'], "key 'gate_proj' names no module"),
        (["--rank-pattern", '{"q_proj": 0}'], "rank 0 for 'q_proj' is out of range"),
        (["--rank-pattern", "{nope"], "--rank-pattern: not valid JSON"),
        (["--rank-pattern", '{"(a+)+": 2}'], "nested repetition"),
        (["--rank", "2", "--energy", "0.5"], "not allowed with argument"),
        ([], "one of the arguments --energy --rank --rank-pattern is required"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    random_adapter(tmp_path / "a")
    out_dir = tmp_path / "new" / "out"
    result = run_cli(str(tmp_path / "a"), *args, "--out", str(out_dir))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "new").exists()


def test_a_non_empty_out_dir_is_refused_and_left_alone(tmp_path):
    random_adapter(tmp_path / "a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_cli(str(tmp_path / "a"), "--rank", "2", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "out"]  # no temporary directory left
    # an empty directory is fine: the adapter takes its place
    (tmp_path / "out" / "keep.txt").unlink()
    assert run_cli(str(tmp_path / "a"), "--rank", "2", "--out", str(tmp_path / "out")).returncode == 0
    assert read_adapter(tmp_path / "out").lora[0].rank == 2


def test_adaption_prompt_and_base_rewriting_inits_are_refused(tmp_path):
    write_adaption_prompt_adapter(tmp_path / "p", {1: (torch.randn(4, 64), torch.zeros(1))})
    result = run_cli(str(tmp_path / "p"), "--rank", "2", "--out", str(tmp_path / "o1"))
    assert result.returncode == 2 and "ADAPTION_PROMPT adapter; resize cuts LoRA ranks" in result.stderr
    random_adapter(tmp_path / "a")
    cfg_path = tmp_path / "a/adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["init_lora_weights"] = "pissa_niter_4"
    cfg_path.write_text(json.dumps(cfg))
    result = run_cli(str(tmp_path / "a"), "--energy", "0.9", "--out", str(tmp_path / "o2"))
    assert result.returncode == 2 and "init_lora_weights='pissa_niter_4'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_rank_pattern_from_a_file(tmp_path):
    random_adapter(tmp_path / "a")
    (tmp_path / "p.json").write_text('{"v_proj": 1}')
    result = run_cli(str(tmp_path / "a"), "--rank-pattern", str(tmp_path / "p.json"), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    ranks = {f.name: f.rank for f in read_adapter(tmp_path / "o").lora}
    assert ranks["model.layers.0.self_attn.v_proj"] == 1 and ranks["model.layers.0.self_attn.q_proj"] == 8
