"""Compare: run specs, round-robin runs on the same data and seed, the table against the budget
function, the LoRA paper's analyses against dense computations, the compare command, the worker."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401

from explorer.cli import build_parser, main
from explorer.core.adapters import count_trainable
from explorer.engine.compare import (
    CompareRunner,
    CompareWorker,
    amplification_table,
    intrinsic_rank,
    random_control,
    seed_similarity,
    subspace_similarity_between,
)
from explorer.schema.budget import PRESETS, compute_budget
from explorer.schema.compare import TABLE_COLUMNS, load_comparison, parse_run_spec
from explorer.schema.recording import RecordingReader

Q0 = "model.layers.0.self_attn.q_proj"


def lm_runner(*specs, **changes) -> CompareRunner:
    return CompareRunner(tiny_lm(**changes), list(specs), base_model=tiny_byte_model())


# ---- run specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, label, overrides",
    [
        ("lora:r=8", "lora-r8", {"method": "lora", "rank": 8}),
        ("lora:r=16,alpha=32", "lora-r16-alpha32", {"method": "lora", "rank": 16, "alpha": 32.0}),
        ("prefix:K=10,L=2", "prefix-K10-L2", {"method": "prefix", "prefix_len": 10, "prefix_layers": 2}),
        ("lora+prefix:r=8,K=10", "lora+prefix-r8-K10", {"method": "lora+prefix", "rank": 8, "prefix_len": 10}),
        ("full", "full", {"method": "full"}),
        (" LoRA:r=8,label=mine ", "mine", {"method": "lora", "rank": 8}),
        (
            "lora:r=4,targets=q_proj+o_proj,layers=0+1,use_rslora=yes,seed=3",
            "lora-r4-targetsq_proj+o_proj-layers0+1-use_rslorayes-seed3",
            {
                "method": "lora",
                "rank": 4,
                "targets": ("q_proj", "o_proj"),
                "layers": (0, 1),
                "use_rslora": True,
                "seed": 3,
            },
        ),
        (
            "lora:rank=4,layers=all,lr=1e-3",
            "lora-rank4-layersall-lr1e-3",
            {"method": "lora", "rank": 4, "layers": None, "lr": 1e-3},
        ),
        ("full:targets=v_proj", "full-targetsv_proj", {"method": "full", "targets": ("v_proj",)}),
    ],
)
def test_run_specs_parse(text, label, overrides):
    spec = parse_run_spec(text)
    assert spec.label == label
    assert spec.overrides == overrides
    assert spec.explicit_label == ("label=" in text)


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ["empty", "lora, prefix, lora+prefix, full"]),
        ("lorax:r=8", ["'lorax'", "unknown", "lora, prefix"]),
        ("lora:rnk=8", ["unknown key 'rnk'", "allowed r, K, L, label"]),
        ("lora:r=eight", ["r='eight'", "whole number"]),
        ("lora:alpha=big", ["alpha='big'", "not a number"]),
        ("lora:alpha=nan", ["alpha='nan'", "finite"]),
        ("lora:r=0", ["rank=0", "out of range", "1 to 4096"]),
        ("lora:r=8,r=4", ["rank is given twice"]),
        ("lora:r", ["'r'", "KEY=VALUE"]),
        ("lora:r=", ["no value"]),
        ("lora:", ["nothing after ':'"]),
        ("lora:r=8,,alpha=4", ["empty item"]),
        ("prefix:r=8", ["r=8 does not apply to method 'prefix'", "lora, lora+prefix"]),
        ("lora:K=10", ["K=10 does not apply to method 'lora'", "prefix, lora+prefix"]),
        ("lora:seq_len=32", ["seq_len is shared by every run", "--seq-len"]),
        ("lora:device=cpu", ["device is shared"]),
        ("lora:method=full", ["method is given before ':'"]),
        ("lora:label=a/b", ["label='a/b'", "letters, digits"]),
        ("lora:use_dora=maybe", ["use_dora='maybe'", "true or false"]),
        ("lora:targets=q_proj+x_proj", ["x_proj", "allowed q_proj"]),
        ("lora:init=svd", ["init='svd'", "kaiming, gaussian, pissa"]),
    ],
)
def test_bad_run_specs_name_the_problem(text, words):
    with pytest.raises(ValueError) as err:
        parse_run_spec(text)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_labels_are_made_unique_and_explicit_duplicates_refused():
    r = CompareRunner(tiny_matrix(), ["lora:r=2", "lora:r=2", "lora:r=2,label=lora-r2-2"])
    assert r.labels == ["lora-r2", "lora-r2-3", "lora-r2-2"]
    with pytest.raises(ValueError, match="label='x' is given to two runs"):
        CompareRunner(tiny_matrix(), ["lora:label=x", "full:label=x"])
    with pytest.raises(ValueError, match=r"run 'prefix-K3' \(prefix:K=3\).*not available in the matrix scenario"):
        CompareRunner(tiny_matrix(), ["lora:r=2", "prefix:K=3"])
    with pytest.raises(ValueError, match="no runs to compare"):
        CompareRunner(tiny_matrix(), [])


# ---- the same data, the same seed ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["matrix", "lm"])
def test_identical_settings_and_seed_give_identical_curves_bit_for_bit(scenario):
    specs = ["lora:r=2", "lora:r=2"]
    r = CompareRunner(tiny_matrix(), specs) if scenario == "matrix" else lm_runner(*specs)
    for k in range(6):
        r.step_round()
        if k % 2:
            r.evaluate()
    a, b = r.snapshot().runs
    assert a.steps.size == 6 and np.array_equal(a.steps, b.steps)
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.eval_losses, b.eval_losses)
    assert a.final_loss == b.final_loss and a.final_eval_loss == b.final_eval_loss
    ta, tb = r.runs[0].trainer.trained_tensors(), r.runs[1].trainer.trained_tensors()
    assert list(ta) == list(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(
        ta[next(iter(ta))], r.runs[0].trainer.scenario.build(r.runs[0].settings).get_parameter(next(iter(ta)))
    )  # they did train


def test_different_methods_see_identical_batches():
    r = lm_runner("lora:r=2", "prefix:K=3", "lora+prefix:r=2,K=2", "full", "lora:r=2,seed=1")
    seen: dict[str, list] = {}
    for run in r.runs:
        scenario = run.trainer.scenario
        original = scenario.batch

        def spy(step, batch_size, _orig=original, _label=run.label):
            b = _orig(step, batch_size)
            seen.setdefault(_label, []).append((step, b.clone()))
            return b

        scenario.batch = spy
    for _ in range(3):
        r.step_round()
    ref = seen["lora-r2"]
    assert [s for s, _ in ref] == [0, 1, 2]
    for label in ("prefix-K3", "lora+prefix-r2-K2", "full"):
        assert [s for s, _ in seen[label]] == [0, 1, 2]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(ref, seen[label])), label
    # another seed is another data order (that is what the two-seed control is about)
    assert not torch.equal(ref[0][1], seen["lora-r2-seed1"][0][1])


def test_a_run_that_diverges_stops_and_the_others_go_on():
    r = CompareRunner(tiny_matrix(), ["lora:r=2", "full"])
    r.step_round()
    r.trainer("full").inject_fault("nan")
    faults = r.step_round()
    assert len(faults) == 1 and faults[0].startswith("full: non-finite loss at step 1")
    assert "restored the weights of step 0" in faults[0] and "this run stopped" in faults[0]
    r.step_round()
    snap = r.snapshot()
    assert [x.step for x in snap.runs] == [3, 0]
    assert snap.runs[1].fault.kind == "diverged" and snap.runs[0].fault is None
    assert snap.runs[1].fault.message == faults[0].removeprefix("full: ")


# ---- the table against the budget function ------------------------------------------------------------


def test_table_trainable_parameters_agree_with_the_budget_function():
    r = lm_runner(
        "lora:r=2",
        "lora:r=4,targets=q_proj+k_proj+o_proj,layers=1",
        "prefix:K=3,L=1",
        "prefix:K=2,L=2,gate_shape=layer",
        "lora+prefix:r=2,K=3",
        "full",
        "lora:r=2,use_dora=true",
        "lora+prefix:r=2,K=2,use_dora=true,targets=q_proj+down_proj",
    )
    r.step_round()
    rows = r.snapshot().table_rows()
    assert [row["run"] for row in rows] == r.labels
    config = tiny_byte_model().config
    for run, row in zip(r.runs, rows):
        s = run.trainer.settings
        kw = dict(
            rank=s.rank,
            targets=s.targets,
            layers=None if s.layers is None else list(s.layers),
            prefix_len=s.prefix_len,
            prefix_layers=s.prefix_layers,
            gate_shape=s.gate_shape,
            use_dora=s.use_dora,
        )
        expected = compute_budget(config, s.method, **kw)
        assert row["trainable_params"] == expected.trainable_params == count_trainable(run.trainer.model), run.label
        assert row["storage_bytes"] == expected.storage_bytes_fp16
        assert row["share"] == pytest.approx(expected.share)
        llama = compute_budget(PRESETS["llama-7b"], s.method, **kw)
        assert row["llama7b_trainable_params"] == llama.trainable_params
        assert row["llama7b_storage_bytes"] == llama.storage_bytes_fp16
        assert row["steps_per_second"] > 0 and row["steps"] == 1
    assert set(TABLE_COLUMNS) == set(rows[0])


def test_the_paper_settings_price_as_the_reference_says_on_llama_7b():
    r = CompareRunner(tiny_matrix(rank=2), ["lora:r=8", "lora:r=16", "lora:r=8,use_dora=true"])
    rows = r.snapshot().table_rows()
    # DoRA adds a magnitude per output row of each adapted matrix: PEFT counts 4,456,448.
    assert [row["llama7b_trainable_params"] for row in rows] == [4_194_304, 8_388_608, 4_456_448]
    assert [row["llama7b_storage_bytes"] for row in rows] == [8_388_608, 16_777_216, 8_912_896]
    assert rows[2]["trainable_params"] == 8 * (32 + 24) + 24  # the matrix scenario: A, B and m


# ---- the LoRA paper's analyses ------------------------------------------------------------------------


def test_phi_of_a_matrix_with_itself_is_one_along_the_diagonal():
    r = lm_runner("lora:r=4", "lora:r=4", "lora:r=2,seed=1", "lora:r=4,seed=1")
    for _ in range(3):
        r.step_round()
    a = r.runs[0].trainer
    phi = subspace_similarity_between(a, a, Q0)
    assert phi.shape == (4, 4)
    np.testing.assert_allclose(np.diagonal(phi), 1.0, atol=1e-5)
    assert (phi >= 0).all() and (phi <= 1).all()
    # the same through the runner's analyses: the identical run is the same subspace
    an = r.analyses()
    np.testing.assert_allclose(np.diagonal(an.phi("lora-r4", "lora-r4-2", Q0)), 1.0, atol=1e-5)
    assert an.phi("lora-r2-seed1", "lora-r4", Q0).shape == (2, 4)
    np.testing.assert_array_equal(an.phi("lora-r4", "lora-r2-seed1", Q0), an.phi("lora-r2-seed1", "lora-r4", Q0).T)
    assert len(an.pairs) == 6 and an.modules[0] == Q0
    # two seeds at one rank, with the random control far below the identical-run value
    seeds = seed_similarity(r.runs[0].trainer, r.runs[3].trainer, Q0)
    assert seeds["seeds"] == [0, 1] and seeds["phi"].shape == seeds["control"].shape == (4, 4)
    assert seeds["control"][0, 0] < 0.5
    ctrl = random_control(a, Q0, 4)
    np.testing.assert_array_equal(ctrl, an.control[("lora-r4", "lora-r4-2")][Q0])
    with pytest.raises(ValueError, match="one rank"):
        seed_similarity(r.runs[0].trainer, r.runs[2].trainer, Q0)
    with pytest.raises(ValueError, match="two seeds"):
        seed_similarity(r.runs[0].trainer, r.runs[1].trainer, Q0)


@torch.no_grad()
def _dense_amplification(W0, A, B, scaling):
    W0, A, B = W0.double(), A.double(), B.double()
    delta = scaling * B @ A
    r = A.shape[0]
    U, S, Vh = torch.linalg.svd(delta)
    p = torch.linalg.matrix_norm(U[:, :r].T @ W0 @ Vh[:r].T)
    w0 = torch.linalg.svdvals(W0)
    return {
        "delta_fro": float(torch.linalg.matrix_norm(delta)),
        "proj_delta": float(p),
        "proj_w0_top": float(w0[:r].square().sum().sqrt()),
        "w0_fro": float(torch.linalg.matrix_norm(W0)),
        "factor": float(torch.linalg.matrix_norm(delta) / p),
    }


def test_amplification_matches_a_direct_dense_computation():
    r = lm_runner("lora:r=2", "lora:r=4")
    for _ in range(4):
        r.step_round()
    cached = r.analyses().amplification
    again = r.analyses().amplification  # the cache gives the same figures the second time
    for run in r.runs:
        rows = amplification_table(run.trainer)
        assert [x["module"] for x in rows] == [x["module"] for x in cached[run.label]]
        for row, crow, crow2 in zip(rows, cached[run.label], again[run.label]):
            m = run.trainer.model.get_submodule(row["module"])
            want = _dense_amplification(m.base_layer.weight, m.lora_A.weight, m.lora_B.weight, m.scaling)
            for key, value in want.items():
                assert row[key] == pytest.approx(value, rel=1e-4), (row["module"], key)
                assert crow[key] == pytest.approx(value, rel=1e-4), (row["module"], key)
            assert crow == crow2
            assert row["rank"] == run.trainer.settings.rank and 0 < row["proj_random"] < row["proj_w0_top"]


def test_intrinsic_rank_matches_dense_spectra():
    r = lm_runner("lora:r=2", "full")
    for _ in range(3):
        assert r.step_round() == []
    with torch.no_grad():
        _check_intrinsic(r)


def _check_intrinsic(r):
    d = intrinsic_rank(r.trainer("lora-r2"), r.trainer("full"), Q0)
    m = r.trainer("lora-r2").model.get_submodule(Q0)
    lora_dense = torch.linalg.svdvals(m.scaling * m.lora_B.weight.double() @ m.lora_A.weight.double())
    np.testing.assert_allclose(d["lora_values"], lora_dense[:2].numpy(), rtol=1e-4, atol=1e-7)
    full = r.trainer("full")
    delta = full.model.get_submodule(Q0).weight.double() - full.scenario.base.get_submodule(Q0).weight.double()
    full_dense = torch.linalg.svdvals(delta).numpy()
    np.testing.assert_allclose(d["full_values"], full_dense, rtol=1e-4, atol=1e-7)
    assert d["full_method"] == f"exact svd, all {min(delta.shape)} values"
    s2 = full_dense**2
    assert d["full_energy_top_r"] == pytest.approx(s2[:2].sum() / s2.sum(), rel=1e-4)
    assert 0 <= d["overlap_left"] <= 1 and 0 <= d["overlap_right"] <= 1
    assert ("lora-r2", "full") in r.analyses().intrinsic


# ---- the command -------------------------------------------------------------------------------------


def _check_outputs(out, labels, steps):
    with open(out / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["run"] for row in rows] == labels
    assert list(rows[0]) == list(TABLE_COLUMNS)
    for row in rows:
        assert int(row["trainable_params"]) > 0 and int(row["storage_bytes"]) == 2 * int(row["trainable_params"])
        assert math.isfinite(float(row["final_loss"])) and math.isfinite(float(row["final_eval_loss"]))
    md = (out / "table.md").read_text()
    assert "| run | method | trainable params |" in md
    for label in labels:
        assert f"| `{label}` |" in md
        rec = RecordingReader(out / "runs" / label)
        assert rec.finished and rec.config["final_step"] == steps and rec.config["compare"]["label"] == label
        assert rec.steps[0] == 0 and rec.steps[-1] == steps
        last = rec.snapshot(steps)
        assert last.step == steps and last.eval_loss is not None
        assert rec.state_path is not None
    analysis = json.loads((out / "analysis.json").read_text())
    loaded = load_comparison(out)
    assert [r.label for r in loaded.runs] == labels
    assert [r.final_eval_loss for r in loaded.runs] == pytest.approx([float(row["final_eval_loss"]) for row in rows])
    return rows, md, analysis, loaded


def test_compare_command_on_the_matrix_scenario(tmp_path):
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        "-m",
        "explorer",
        "compare",
        "--scenario",
        "matrix",
        "--size",
        "24",
        "--target-rank",
        "3",
        "--runs",
        "lora:r=2",
        "--runs",
        "lora:r=4,label=four",
        "--runs",
        "full",
        "--steps",
        "12",
        "--seed",
        "3",
        "--record-every",
        "4",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "12/12" in done.stderr and "wrote" in done.stderr
    rows, md, analysis, loaded = _check_outputs(out, ["lora-r2", "four", "full"], 12)
    assert RecordingReader(out / "runs" / "four").steps == [0, 4, 8, 12]
    assert RecordingReader(out / "runs" / "four").settings.seed == 3
    assert [p["a"] + "|" + p["b"] for p in analysis["similarity"]] == ["lora-r2|four"]
    phi = np.asarray(analysis["similarity"][0]["modules"]["W"]["phi"])
    assert phi.shape == (2, 4)
    assert set(analysis["amplification"]) == {"lora-r2", "four"}
    assert analysis["amplification"]["four"][0]["factor"] > 0
    assert [(x["lora"], x["full"]) for x in analysis["intrinsic"]] == [("lora-r2", "full"), ("four", "full")]
    assert "exact svd, all 24 values" in md
    assert loaded.analysis.phi("four", "lora-r2", "W").shape == (4, 2)
    # the directory is not empty now: a second run refuses, --overwrite replaces it
    assert main(cmd[3:]) == 2
    assert main(cmd[3:] + ["--overwrite", "--steps", "4", "--quiet"]) == 0
    assert RecordingReader(out / "runs" / "four").steps == [0, 4]


def test_compare_command_on_a_tiny_language_model(tmp_path, capsys):
    from explorer.commands import compare

    out = tmp_path / "lm"
    args = build_parser("compare").parse_args(
        [
            "compare",
            "--scenario",
            "lm",
            "--runs",
            "lora:r=2",
            "--runs",
            "lora:r=4",
            "--runs",
            "prefix:K=3,L=1",
            "--runs",
            "full",
            "--steps",
            "6",
            "--seq-len",
            "16",
            "--batch-size",
            "2",
            "--lr",
            "0.01",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert compare.run(args, base_model=tiny_byte_model()) == 0
    err = capsys.readouterr().err
    assert "6/6" in err and "lora-r2" in err
    rows, md, analysis, loaded = _check_outputs(out, ["lora-r2", "lora-r4", "prefix-K3-L1", "full"], 6)
    assert [p["a"] + "|" + p["b"] for p in analysis["similarity"]] == ["lora-r2|lora-r4"]
    assert set(analysis["similarity"][0]["modules"]) == {
        f"model.layers.{i}.self_attn.{t}" for i in (0, 1) for t in ("q_proj", "v_proj")
    }
    assert analysis["methods"]["amplification"].startswith("factor = ||ΔW||_F / ||U^T W0 V||_F")
    assert "prefix-K3-L1" not in analysis["amplification"]
    assert RecordingReader(out / "runs" / "prefix-K3-L1").snapshot(6).prefixes


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--runs", "lora:r=eight"], ["r='eight'"]),
        (["--runs", "lora:r=2", "--runs", "prefix:K=3"], ["prefix-K3", "not available in the matrix scenario"]),
        (["--runs", "lora:r=2", "--steps", "-1"], ["steps=-1"]),
    ],
)
def test_compare_command_errors_are_one_line_and_exit_2(tmp_path, capsys, flags, words):
    code = main(["compare", "--scenario", "matrix", "--size", "16", "--out", str(tmp_path / "x"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err
    assert not (tmp_path / "x").exists()


# ---- the worker ------------------------------------------------------------------------------------------


def test_compare_worker_plays_pauses_steps_resets_and_stops():
    worker = CompareWorker(tiny_matrix(), ["lora:r=2", "full"], threads=1)
    try:
        worker.start()
        first = worker.wait_for(lambda s: s.step == 0, 60)
        assert [r.label for r in first.runs] == ["lora-r2", "full"] and first.analysis is not None
        worker.step(3)
        snap = worker.wait_for(lambda s: s.step == 3, 60)
        assert snap.state == "paused" and [r.step for r in snap.runs] == [3, 3]
        assert snap.analysis is not None and snap.analysis.step == 3
        assert all(r.eval_steps[-1] == 3 for r in snap.runs)
        worker.play()
        worker.wait_for(lambda s: s.state == "running" and s.step > 5, 60)
        worker.pause()
        paused = worker.wait_for(lambda s: s.state == "paused", 60)
        assert paused.runs[0].steps.tolist() == list(range(paused.step)) and not worker.running
        worker.reset()
        again = worker.wait_for(lambda s: s.segment == 1, 60)
        assert again.step == 0 and again.runs[0].steps.tolist() == [0]
        worker.set_runs(specs=["lora:r=4"])
        rebuilt = worker.wait_for(lambda s: s.segment == 2, 60)
        assert [r.label for r in rebuilt.runs] == ["lora-r4"]
        with pytest.raises(ValueError, match="rank=0"):
            worker.set_runs(specs=["lora:r=0"])
        with pytest.raises(ValueError, match="at least 1"):
            worker.step(0)
    finally:
        worker.close()
    assert not worker.alive and no_engine_threads()
    assert not any(t.name == CompareWorker.thread_name for t in __import__("threading").enumerate())


def test_compare_worker_reports_runs_it_cannot_build():
    with pytest.raises(ValueError, match="not available in the matrix scenario"):
        CompareWorker(tiny_matrix(), ["prefix:K=3"])
    worker = CompareWorker(tiny_lm(), ["lora:r=2"], base_model=tiny_byte_model(), threads=1)
    worker._base = tiny_lm(seq_len=200)  # longer than the tiny model's context: fails in the thread
    with worker:
        snap = worker.wait_for(lambda s: s.state == "fault", 60)
        assert snap.fault.kind == "start" and "could not start the comparison" in snap.fault.message
        assert "seq_len=200" in snap.fault.message and snap.runs == []
    assert not worker.alive


def test_amplification_of_a_pissa_run_says_its_w0_is_the_residual():
    from explorer.commands.compare import table_markdown

    r = CompareRunner(tiny_matrix(), ["lora:r=2", "lora:r=2,init=pissa"])
    for _ in range(3):
        r.step_round()
    snap = r.snapshot(analysis=True)
    rows = snap.analysis.amplification
    assert [row["w0"] for row in rows["lora-r2"]] == ["pretrained"]
    assert [row["w0"] for row in rows["lora-r2-initpissa"]] == ["residual"]
    assert all(row["rank"] <= row["adapter_rank"] == 2 for rs in rows.values() for row in rs)
    text = table_markdown(snap, {"scenario": "matrix", "steps": 3, "seed": 0, "base": "W0", "device": "cpu"})
    assert "`lora-r2-initpissa`: PiSSA, so W0 here is the residual" in text


def test_compare_worker_says_when_every_run_has_stopped():
    """The comparison's own fault (kind all-stopped) once the last run diverges; play then says so
    again instead of stepping nothing."""
    with CompareWorker(tiny_matrix(), ["lora:r=2"], threads=1) as worker:
        worker.wait_for(lambda s: s.step == 0, 60)
        worker.step(2)
        worker.wait_for(lambda s: s.step == 2, 60)
        worker._command("call", _Inject(worker, "nan"))
        worker.play()
        snap = worker.wait_for(lambda s: s.state == "fault", 60)
        assert snap.fault.kind == "all-stopped" and snap.fault.message.startswith("every run stopped: lora-r2: ")
        assert snap.runs[0].fault.kind == "diverged" and not worker.running
        worker.play()
        again = worker.wait_for(lambda s: s.state == "fault", 60)
        assert again.fault == snap.fault and again.step == snap.step
        worker.reset()
        fresh = worker.wait_for(lambda s: s.state == "paused", 60)
        assert fresh.fault is None and fresh.runs[0].fault is None and fresh.step == 0


class _Inject:
    """A call into the worker's thread that arms a fault in every run's trainer."""

    def __init__(self, worker, kind):
        self.worker, self.kind = worker, kind

    def run(self):
        for r in self.worker._runner.runs:
            r.trainer.inject_fault(self.kind)
