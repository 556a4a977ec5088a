"""The Recorder on any PEFT model: what it records equals what PEFT computes, it refuses what it cannot
record with one line, a killed writer leaves a readable recording, and the cadence keeps its budget."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from integrations_helpers import lora_llama, tiny_gpt2, tiny_llama, train_steps

from explorer.core.analysis import pool_matrix
from explorer.integrations import Recorder
from explorer.integrations.recorder import Cadence
from explorer.schema.dirlock import LOCK_NAME
from explorer.schema.recording import RecordingReader

ROOT = Path(__file__).resolve().parents[2]
EXACT = {"every": 1, "interval_s": 0, "share": None}


def _dense_values(module, adapter="default") -> np.ndarray:
    return torch.linalg.svdvals(module.get_delta_weight(adapter).detach().double()).numpy()


def _check_against_peft(model, reader, step):
    """Each recorded spectrum is the dense SVD of PEFT's get_delta_weight (its top r values; the rest
    of the dense spectrum is zero), and each heatmap is that ΔW as the (out, in) map."""
    snap = reader.snapshot(step)
    modules = dict(model.named_modules())
    checked = 0
    for name, m in snap.matrices.items():
        module = modules["base_model.model." + name]
        dense = _dense_values(module)
        r = m.spectrum.shape[0]
        assert r == module.r["default"]
        scale = dense[0]
        assert scale > 0
        np.testing.assert_allclose(m.spectrum, dense[:r], rtol=1e-4, atol=1e-6 * scale)
        assert np.all(dense[r:] <= 1e-5 * scale)
        if m.delta is not None:
            delta = module.get_delta_weight("default").detach()
            as_map = delta.T if module.fan_in_fan_out else delta
            assert m.shape == tuple(as_map.shape)
            np.testing.assert_allclose(m.delta, pool_matrix(as_map, 128, 128).numpy(), rtol=1e-4, atol=1e-6 * scale)
            w0 = module.get_base_layer().weight.detach()
            np.testing.assert_allclose(m.base, (w0.T if module.fan_in_fan_out else w0).numpy(), rtol=1e-6)
        checked += 1
    return snap, checked


def test_gpt2_conv1d_fan_in_fan_out_spectra_equal_the_svd_of_get_delta_weight(tmp_path):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["c_attn", "c_proj"],
        fan_in_fan_out=True,
        use_rslora=True,
        rank_pattern={"h.1.attn.c_attn": 2},
        alpha_pattern={"h.0.mlp.c_proj": 3},
    )
    model = get_peft_model(tiny_gpt2(), config)
    with Recorder(model, tmp_path / "rec", heatmaps=["*.attn.*"], **EXACT) as rec:
        train_steps(model, 4, rec)
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 1, 2, 3, 4] and reader.finished
    snap, checked = _check_against_peft(model, reader, 4)
    assert checked == 6  # c_attn, attn.c_proj, mlp.c_proj in both layers: PEFT's names
    assert set(snap.matrices) == {
        f"transformer.h.{i}.{m}" for i in (0, 1) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")
    }
    assert snap.matrices["transformer.h.1.attn.c_attn"].spectrum.shape == (2,)  # rank_pattern
    assert snap.matrices["transformer.h.0.attn.c_attn"].shape == (96, 32)  # (out, in): Conv1D's (in, out) turned
    assert snap.matrices["transformer.h.0.mlp.c_proj"].delta is None  # not a heatmap module
    assert "fan_in_fan_out" in snap.matrices["transformer.h.0.attn.c_attn"].spectrum_method
    # step 0: B = 0, the update is exactly zero
    assert all(not m.spectrum.any() for m in reader.snapshot(0).matrices.values())


def test_dora_spectra_are_those_of_the_direction_update_and_say_so(tmp_path):
    model = lora_llama(use_dora=True, target_modules=["q_proj", "v_proj", "down_proj"])
    with Recorder(model, tmp_path / "rec", **EXACT) as rec:
        train_steps(model, 3, rec)
    reader = RecordingReader(tmp_path / "rec")
    snap, checked = _check_against_peft(model, reader, 3)
    assert checked == 6
    for m in snap.matrices.values():
        assert "DoRA" in m.spectrum_method and "without the magnitude" in m.spectrum_method
    # the heatmap modules also carry W_eff - W0, equal to what PEFT's own merge writes
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    modules, merged_modules = dict(model.named_modules()), dict(merged.named_modules())
    heat = reader.config["recorder"]["heatmap_modules"]
    assert heat == [n for n in snap.matrices if "self_attn" in n] and len(heat) == 4
    for name in heat:
        m = snap.matrices[name]
        w0 = modules["base_model.model." + name].get_base_layer().weight.detach()
        update = (merged_modules[name].weight.detach() - w0).double()
        scale = float(torch.linalg.matrix_norm(update))
        np.testing.assert_allclose(m.effective_update, update.numpy(), atol=1e-5 * scale)
        np.testing.assert_allclose(m.effective_update_fro_norm, scale, rtol=1e-4)
        np.testing.assert_allclose(m.effective_update_spectrum, torch.linalg.svdvals(update).numpy(), atol=1e-5 * scale)
        assert m.effective_update_spectrum.shape == (32,) and not m.effective_update_partial  # full rank
    # DoRA's magnitude trained too: its gradient is part of the module's gradient norm
    grads = reader.metrics[-1]["grad_norm"]
    assert set(grads) == set(snap.matrices) and all(g > 0 for g in grads.values())
    assert reader.config["settings"]["use_dora"] is True


def test_what_is_recorded_per_step_and_the_adapter_written_at_close(tmp_path):
    from peft import PeftModel

    model = lora_llama(layers=3)
    with Recorder(model, tmp_path / "rec", every=2, interval_s=0, share=None, seed=0) as rec:
        opt = train_steps(model, 5, rec, lr=0.02)
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 2, 4, 5]  # every 2nd step, and the last at close
    m = reader.metrics
    assert m[0]["loss"] is None and all(isinstance(x["loss"], float) for x in m[1:])
    assert all(x["lr"] == 0.02 for x in m[1:]) and "grad_norm" not in m[0]
    # the default heatmaps: the first and last layer's attention projections
    assert reader.config["recorder"]["heatmap_modules"] == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.2.self_attn.q_proj",
        "model.layers.2.self_attn.v_proj",
    ]
    snap = reader.snapshot(5)
    assert list(snap.history.steps) == [1, 2, 3, 4, 5]  # every step's loss in the history
    assert snap.history.loss[-1] == pytest.approx(m[-1]["loss"]) and snap.state == "paused"
    assert snap.budget["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert set(snap.history.spectra) == set(reader.config["recorder"]["heatmap_modules"])
    assert reader.settings.method == "lora" and reader.settings.rank == 4 and reader.settings.alpha == 8
    events = [json.loads(x) for x in (tmp_path / "rec" / "metrics.jsonl").read_text().splitlines() if '"event"' in x]
    assert events[-1]["event"] == "finished" and events[-1]["final_step"] == 5
    assert not (tmp_path / "rec" / LOCK_NAME).exists()
    # the adapter, written by PEFT itself, loads back into the same base with the trained values
    loaded = PeftModel.from_pretrained(tiny_llama(layers=3), str(tmp_path / "rec" / "adapter"))
    want = {n: p for n, p in model.named_parameters() if "lora_" in n}
    got = {n: p for n, p in loaded.named_parameters() if "lora_" in n}
    assert want.keys() == got.keys() and all(torch.equal(want[n], got[n]) for n in want)
    assert opt is not None


def test_adaption_prompt_gates_are_recorded_per_layer(tmp_path):
    from peft import AdaptionPromptConfig, get_peft_model

    model = get_peft_model(tiny_llama(layers=3), AdaptionPromptConfig(adapter_len=4, adapter_layers=2))
    with Recorder(model, tmp_path / "rec", **EXACT) as rec:
        train_steps(model, 3, rec, lr=0.05)
    reader = RecordingReader(tmp_path / "rec")
    snap = reader.snapshot(3)
    assert [p.layer for p in snap.prefixes] == [1, 2] and not snap.matrices
    modules = dict(model.named_modules())
    for p in snap.prefixes:
        attn = modules[f"base_model.model.model.layers.{p.layer}.self_attn"]
        gate = float(attn.adaption_gate.detach())
        assert gate != 0.0 and np.allclose(p.gates, [gate] * 4)  # one gate per layer, shown per head
        assert p.prompt_norm == pytest.approx(float(attn.adaption_prompt.detach().norm()), rel=1e-5)
    assert snap.history.gates.shape == (4, 2, 4)  # steps 0..3, 2 layers, 4 heads
    assert reader.settings.method == "prefix" and reader.settings.gate_fn == "identity"
    assert reader.settings.prefix_len == 4 and reader.settings.prefix_layers == 2


def test_a_run_stopped_by_an_exception_ends_its_recording_with_a_failed_line(tmp_path):
    model = lora_llama()
    with pytest.raises(RuntimeError, match="out of patience"), Recorder(model, tmp_path / "rec", **EXACT) as rec:
        train_steps(model, 2, rec)
        raise RuntimeError("out of patience")
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 1, 2] and not reader.finished
    assert [(e["event"], e["step"], e["message"]) for e in reader.events] == [
        ("failed", 2, "RuntimeError: out of patience")
    ]
    assert not (tmp_path / "rec" / LOCK_NAME).exists() and not (tmp_path / "rec" / "adapter").exists()


# --- refusals ---------------------------------------------------------------------------------------


def test_a_model_without_adapters_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"LlamaForCausalLM has no LoRA or AdaptionPrompt adapter") as err:
        Recorder(tiny_llama(), tmp_path / "rec")
    assert "\n" not in str(err.value) and not (tmp_path / "rec").exists()


def test_a_directory_holding_another_run_is_refused(tmp_path):
    model = lora_llama()
    with Recorder(model, tmp_path / "rec", **EXACT) as rec:
        train_steps(model, 1, rec)
        with pytest.raises(ValueError, match=rf"in use by a recording process {os.getpid()}") as err:
            Recorder(model, tmp_path / "rec", overwrite=True)  # a live writer's lock holds even then
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="is not empty: choose a new directory") as err:
        Recorder(model, tmp_path / "rec")
    assert "\n" not in str(err.value)
    assert RecordingReader(tmp_path / "rec").steps == [0, 1]  # untouched by the refusals


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    from explorer.schema.files import host_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    directory = tmp_path / "rec"
    directory.mkdir()
    left = {
        "pid": int(dead.stdout),
        "host": "here",
        "host_tag": host_tag(),
        "time": time.time(),
        "purpose": "recording",
    }
    (directory / LOCK_NAME).write_text(json.dumps(left))
    model = lora_llama()
    with Recorder(model, directory, **EXACT) as rec:
        assert json.loads((directory / LOCK_NAME).read_text())["pid"] == os.getpid()
        train_steps(model, 1, rec)
    assert RecordingReader(directory).finished
    other = tmp_path / "other"
    other.mkdir()
    (other / LOCK_NAME).write_text(json.dumps({**left, "pid": 1, "host": "elsewhere", "host_tag": "0badf00d"}))
    with pytest.raises(ValueError, match="in use by a recording process 1 on host 'elsewhere'") as err:
        Recorder(model, other)  # another host's lock cannot be checked: it holds
    assert "\n" not in str(err.value)


def test_a_directory_that_cannot_be_written_is_refused(tmp_path):
    """A 0555 directory, as an ordinary user (root writes anywhere, so a forked child drops to nobody
    first; everything it needs is imported before the fork)."""
    model = lora_llama()
    target = Path(tempfile.mkdtemp(prefix="explorer-ro-")) / "ro"
    target.mkdir(mode=0o555)
    os.chmod(target, 0o555)
    os.chmod(target.parent, 0o755)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the refusal through the pipe, never return into pytest
        code = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                Recorder(model, target)
            except ValueError as exc:
                os.write(write, str(exc).encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        message = fh.read()
    _, status = os.waitpid(pid, 0)
    os.chmod(target, 0o755)
    leftovers = list(target.iterdir())
    shutil.rmtree(target.parent)
    assert os.waitstatus_to_exitcode(status) == 0
    assert message == f"{target}: cannot be written (Permission denied)"
    assert not leftovers


# --- a killed writer ----------------------------------------------------------------------------------

KILLED_WRITER = """
import sys
sys.path.insert(0, "tests/integrations")
from integrations_helpers import lora_llama, train_steps
from explorer.integrations import Recorder
model = lora_llama()
rec = Recorder(model, sys.argv[1], every=1, interval_s=0, share=None)
train_steps(model, 100000, rec)
"""


def test_a_writer_killed_mid_run_leaves_a_readable_recording(tmp_path):
    out = tmp_path / "rec"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], cwd=ROOT, env=env)
    metrics = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.is_file() and metrics.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.05)  # polling a file another process writes (no signal to wait on)
        assert proc.poll() is None, "the writer stopped before it was killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reader = RecordingReader(out)
    # Six lines were written before the kill (the last may be torn); a busy disk may have made the
    # recorder drop a record rather than stall training, so steps increase but need not be contiguous.
    assert len(reader.steps) >= 5 and reader.steps == sorted(set(reader.steps)) and reader.steps[0] == 0
    assert not reader.finished and not reader.events
    for step in (reader.steps[0], reader.steps[-1]):
        assert reader.snapshot(step).step == step
    assert (out / LOCK_NAME).exists()  # left by the dead writer: stale, so a new writer may take over
    model = lora_llama()
    with pytest.raises(ValueError, match="is not empty"):
        Recorder(model, out)
    with Recorder(model, out, overwrite=True, **EXACT) as rec:
        train_steps(model, 1, rec)
    assert RecordingReader(out).steps == [0, 1] and RecordingReader(out).finished


# --- the cadence ------------------------------------------------------------------------------------


def test_the_cadence_spaces_records_by_time_and_by_cost():
    c = Cadence(every=1, interval_s=1.0, share=0.02)
    assert c.next_after(10, 0) == 11  # no step time known yet: the next step
    c.observe_step(0.1)
    assert c.next_after(10, 0) == 20  # 1 s apart at 0.1 s a step
    c.observe_record(0.05)  # a record costing 50 ms may take 2 %: 2.5 s apart
    assert c.next_after(10, 0) == 35
    assert Cadence(every=4, interval_s=0, share=None).next_after(8, 10**9) == 12  # exactly every 4th
    for bad in ({"every": 0}, {"interval_s": -1}, {"share": 0}, {"share": 2}):
        with pytest.raises(ValueError):
            Cadence(**{"every": 1, "interval_s": 1.0, "share": 0.02, **bad})


def test_importing_the_recorder_loads_neither_transformers_nor_peft_nor_qt():
    code = (
        "import sys, explorer.integrations, explorer.integrations.recorder\n"
        "print(sorted(m for m in ('transformers', 'peft', 'PySide6', 'pyqtgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
