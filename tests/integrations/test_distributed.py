"""Recording under torchrun on the CPU (gloo, 2 processes): DDP with the HF Trainer, FSDP2 and FSDP1 with
a plain loop. One recording, written by rank 0, each recorded step once, values equal to one process
training on the same global batches; an unsupported FSDP setup says so in one line and trains on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch as st
from integrations_dist_worker import run_loop, run_trainer
from integrations_helpers import lora_llama

from explorer.schema.dirlock import LOCK_NAME
from explorer.schema.recording import RecordingReader

ROOT = Path(__file__).resolve().parents[2]


def torchrun(mode: str, out: Path, nproc: int = 2, **env_extra) -> subprocess.CompletedProcess:
    """`nproc` processes on this machine (a free port of their own); the whole group is killed on a timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env_extra}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += [str(ROOT / "tests" / "integrations" / "integrations_dist_worker.py"), mode, str(out)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def assert_same_run(got: Path, want: Path) -> None:
    a, b = RecordingReader(got), RecordingReader(want)
    assert a.steps == b.steps == [0, 2, 4, 6] and a.finished and b.finished
    records = [line for line in (got / "metrics.jsonl").read_text().splitlines() if '"snapshot"' in line]
    assert len(records) == len(a.steps)  # each recorded step written once, by one process
    assert not (got / LOCK_NAME).exists()
    for x, y in zip(a.metrics, b.metrics):
        assert x["step"] == y["step"]
        if y["loss"] is None:
            assert x["loss"] is None
        else:
            assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x.keys() == y.keys()
        for name, g in y.get("grad_norm", {}).items():
            assert x["grad_norm"][name] == pytest.approx(g, rel=1e-4)
    sa, sb = a.snapshot(6), b.snapshot(6)
    assert sa.matrices.keys() == sb.matrices.keys() and sa.budget == sb.budget
    for name, m in sb.matrices.items():
        np.testing.assert_allclose(sa.matrices[name].spectrum, m.spectrum, rtol=1e-4, atol=1e-6)
        if m.delta is not None:
            np.testing.assert_allclose(sa.matrices[name].delta, m.delta, rtol=1e-4, atol=1e-6)
            np.testing.assert_array_equal(sa.matrices[name].base, m.base)
    np.testing.assert_allclose(sa.history.loss, sb.history.loss, rtol=1e-5)
    wa = st.load_file(str(got / "adapter" / "adapter_model.safetensors"))
    wb = st.load_file(str(want / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), rtol=1e-4, atol=1e-6)


def test_ddp_trainer_writes_one_recording_equal_to_one_process(tmp_path):
    torchrun("trainer", tmp_path / "ddp" / "rec")
    run_trainer(str(tmp_path / "single" / "rec"), per_device=4)  # the same global batches in one process
    assert_same_run(tmp_path / "ddp" / "rec", tmp_path / "single" / "rec")
    cfg = RecordingReader(tmp_path / "ddp" / "rec").config["recorder"]
    assert cfg["world_size"] == 2 and cfg["layout"] == "replicated" and cfg["trainer"]["world_size"] == 2


def test_fsdp2_and_fsdp1_gather_only_the_adapters_and_equal_one_process(tmp_path):
    proc = torchrun("fsdp", tmp_path / "fsdp")
    run_loop(lora_llama(layers=2), str(tmp_path / "single"))
    for kind, layout in (("fsdp2", "dtensor"), ("fsdp1", "fsdp1")):
        assert_same_run(tmp_path / "fsdp" / kind, tmp_path / "single")
        assert RecordingReader(tmp_path / "fsdp" / kind).config["recorder"]["layout"] == layout
    # FSDP1 without use_orig_params: one line from rank 0, nothing written, training went on
    said = [line for line in proc.stderr.splitlines() if line.startswith("explorer: not recording this run")]
    assert said == [
        "explorer: not recording this run: FSDP without use_orig_params=True keeps the LoRA factors inside "
        "flat parameters (set use_orig_params=True; accelerate: fsdp_use_orig_params: true); training goes on"
    ]
    assert not (tmp_path / "fsdp" / "flat").exists()
