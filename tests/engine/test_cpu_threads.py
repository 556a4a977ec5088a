"""The CPU thread count (issue 17): OpenMP's passive wait policy set before torch loads, the default
chosen from free cores and the model's size, and --threads / threads= bounded everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401

from explorer.cli import main as cli_main
from explorer.core import cpu_threads
from explorer.core.cpu_threads import check_threads, choose_threads, work_threads

ROOT = Path(__file__).resolve().parents[2]
LM_FLOPS = 2.0 * 16 * 64 * 128 * 344  # the shipped lm at its defaults (batch 16 x 64 tokens, MLP 128 x 344)
MATRIX_FLOPS = 2.0 * 16 * 128 * 128  # the matrix scenario at its defaults


# ------------------------------------------------------------------------------ the choice, from numbers
@pytest.mark.parametrize(
    "cores, busy, flops, reserve, passive, expected",
    [
        (2, 0.0, LM_FLOPS, 0, True, 2),  # an idle 2-core machine, a model worth 2 threads
        (2, 1.0, LM_FLOPS, 0, True, 1),  # one core taken by someone else: one thread
        (2, 3.0, LM_FLOPS, 0, True, 1),  # overloaded: still at least one
        (2, 0.4, LM_FLOPS, 0, True, 2),  # a core more than half free counts (passive threads yield)
        (2, 0.4, LM_FLOPS, 0, False, 1),  # ... but not when OpenMP threads spin
        (2, 0.0, LM_FLOPS, 1, True, 1),  # beside the GUI: a core left for the window
        (16, 0.0, LM_FLOPS, 0, True, 3),  # many idle cores: no more than the small model can use
        (16, 12.0, LM_FLOPS, 0, True, 3),  # 4 free cores, the model can use 3
        (16, 14.0, LM_FLOPS, 1, True, 1),
        (2, 0.0, MATRIX_FLOPS, 0, True, 1),  # the 128 x 128 matrix: one thread whatever is free
        (16, 0.0, 2.0 * 16 * 4096 * 4096, 0, True, 16),  # a 4096 x 4096 matrix: every free core
        (8, 2.0, None, 0, True, 6),  # work unknown: the free cores
        (1, 0.0, LM_FLOPS, 1, True, 1),  # one core beside the GUI: still one thread
    ],
)
def test_choose_threads(cores, busy, flops, reserve, passive, expected):
    assert choose_threads(cores, busy, flops, reserve=reserve, passive=passive) == expected


def test_work_threads_grow_with_the_matrix_products():
    assert work_threads(MATRIX_FLOPS) == 1
    assert work_threads(LM_FLOPS) == 3
    assert work_threads(2.0 * 16 * 4096 * 4096) > 16
    assert work_threads(None) > 1000


def test_scenarios_report_their_matrix_products():
    from explorer.engine.trainer import Trainer

    assert Trainer(tiny_matrix()).matmul_flops() == 2.0 * 8 * 24 * 32  # tiny_matrix: 24 x 32, batch 8
    lm = Trainer(tiny_lm(), base_model=tiny_byte_model())  # hidden 32, MLP 64
    assert lm.matmul_flops() == 2.0 * lm.settings.batch_size * lm.settings.seq_len * 32 * 64


def test_cpu_ticks_parse_proc_stat_for_our_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  300 0 100 1000 50 0 0 0 0 0\ncpu0 100 0 50 500 25 0 0 0 0 0\ncpu1 200 0 50 500 25 0 0 0 0 0\nintr 12345\n"
    )
    assert cpu_threads._cpu_ticks(None, str(stat)) == (400, 1450)
    assert cpu_threads._cpu_ticks({1}, str(stat)) == (250, 775)
    assert cpu_threads._cpu_ticks({0}, str(tmp_path / "missing")) is None


def test_others_busy_cores_on_this_machine():
    busy = cpu_threads.others_busy_cores(0.05)
    if not Path("/proc/stat").exists():
        assert busy is None
        return
    assert 0.0 <= busy <= os.cpu_count() + 0.5


def test_default_threads_stays_in_bounds():
    n = cpu_threads.default_threads(LM_FLOPS)
    assert 1 <= n <= min(cpu_threads.usable_cores(), work_threads(LM_FLOPS))
    assert cpu_threads.default_threads(MATRIX_FLOPS) == 1


# ------------------------------------------------------------------------------ the bound on a request
@pytest.mark.parametrize("bad", [-1, 9, 1_000_000, 2.5, "2", True])
def test_check_threads_refuses_in_one_line(bad):
    with pytest.raises(ValueError) as err:
        check_threads(bad, cores=2)
    text = str(err.value)
    assert text.startswith(
        f"threads={bad!r}" if not isinstance(bad, int) or isinstance(bad, bool) else f"threads={bad}"
    )
    assert "\n" not in text and "1 to 8" in text


def test_check_threads_accepts_automatic_and_the_range():
    assert check_threads(None, cores=2) == 0
    assert check_threads(0, cores=2) == 0
    assert check_threads(1, cores=2) == 1
    assert check_threads(8, cores=2) == 8


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("value", ["-1", "1000000"])
def test_threads_flag_out_of_range_is_one_line_and_exit_2(command, value, tmp_path, capsys):
    argv = [command, "--scenario", "matrix", "--steps", "1", "--threads", value, "--out", str(tmp_path / "o")]
    if command == "compare":
        argv += ["--runs", "lora:r=2"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"peft-explorer: error: threads={value} is out of range") and "\n" not in err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_workers_refuse_a_bad_thread_count():
    from explorer.engine.compare import CompareWorker
    from explorer.engine.process_worker import ProcessTrainingWorker
    from explorer.engine.worker import TrainingWorker

    for make in (
        lambda: TrainingWorker(tiny_matrix(), threads=-1),
        lambda: ProcessTrainingWorker(tiny_matrix(), threads=1_000_000),
        lambda: CompareWorker(tiny_matrix(), ["lora:r=2"], threads=-3),
    ):
        with pytest.raises(ValueError, match="threads=.* is out of range"):
            make()


# ------------------------------------------------------------------------------ where it is applied
def test_thread_worker_chooses_for_its_model_and_keeps_a_request():
    import torch

    from explorer.engine.worker import TrainingWorker

    before = torch.get_num_threads()
    try:
        with TrainingWorker(tiny_matrix()) as w:  # default: a 24 x 32 matrix is worth one thread
            w.step(1)
            w.wait_for(lambda s: s.step == 1, 60)
            assert w.threads == 1
        with TrainingWorker(tiny_matrix(), threads=2) as w:
            w.step(1)
            w.wait_for(lambda s: s.step == 1, 60)
            assert w.threads == 2
    finally:
        torch.set_num_threads(before)
    assert no_engine_threads()


def test_run_records_the_thread_count(tmp_path):
    import json

    out = tmp_path / "run"
    argv = ["run", "--scenario", "matrix", "--steps", "2", "--quiet", "--out", str(out)]
    assert cli_main(argv) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == 1  # 128 x 128: one thread pays
    assert cli_main([*argv, "--overwrite", "--threads", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] == 2


# ------------------------------------------------------------------------------ OpenMP's wait policy
def _policy(prelude: str, env_policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    code = prelude + "import os, explorer; print(os.environ['OMP_WAIT_POLICY'], explorer.OPENMP_PASSIVE)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_passive_wait_policy_is_set_before_torch_loads():
    assert _policy("", None).split() == ["PASSIVE", "True"]
    assert _policy("", "active").split() == ["active", "False"]  # the user's choice is kept


def test_torch_loaded_first_is_known_to_spin():
    # the variable still reaches child processes, but this process's OpenMP already read it
    assert _policy("import torch; ", None).split() == ["PASSIVE", "False"]
