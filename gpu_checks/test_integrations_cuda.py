"""The recorder on a GPU: `python -m pytest gpu_checks/test_integrations_cuda.py` (needs CUDA; not in the
default suite). Spectra of bf16 factors reduced on the device equal the dense SVD of the update; a step
that is not recorded makes no host sync (the loss stays on the device); FSDP2 and FSDP1 over NCCL gather
the adapters on the GPU (as many processes as GPUs, at most 2) and equal one process."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integrations"))

from integrations_dist_worker import run_loop  # noqa: E402
from integrations_helpers import batches, lora_llama  # noqa: E402
from test_distributed import assert_same_run, torchrun  # noqa: E402

from explorer.integrations import Recorder  # noqa: E402
from explorer.schema.recording import RecordingReader  # noqa: E402


def test_bf16_lora_and_dora_on_cuda_spectra_equal_the_dense_svd_and_unrecorded_steps_never_sync(tmp_path):
    model = lora_llama(layers=2, use_dora=True, target_modules=["q_proj", "v_proj"]).to("cuda", torch.bfloat16)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with Recorder(model, tmp_path / "rec", optimizer=opt, every=3, interval_s=0, share=None) as rec:
        for step, x in enumerate(batches(7, 4), 1):
            x = x.cuda()
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step % 3:  # not recorded: the recorder must not wait for the GPU
                torch.cuda.set_sync_debug_mode("error")
                try:
                    rec.step(step, loss=loss)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            else:
                rec.step(step, loss=loss)
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 3, 6, 7] and reader.finished and reader.config["device"].startswith("cuda")
    snap = reader.snapshot(7)
    modules = dict(model.named_modules())
    for name, m in snap.matrices.items():
        module = modules["base_model.model." + name]
        A, B = module.lora_A["default"].weight.detach().float(), module.lora_B["default"].weight.detach().float()
        dense = torch.linalg.svdvals(module.scaling["default"] * (B @ A)).cpu().numpy()
        np.testing.assert_allclose(m.spectrum, dense[: m.spectrum.size], rtol=1e-4, atol=1e-6 * dense[0])
        assert m.effective_update is not None and "DoRA" in m.spectrum_method
    assert all(isinstance(line["loss"], float) for line in reader.metrics[1:])


def test_fsdp_over_nccl_gathers_the_adapters_and_equals_one_process(tmp_path):
    nproc = min(2, torch.cuda.device_count())
    torchrun("fsdp", tmp_path / "fsdp", nproc=nproc, EXPLORER_DIST_DEVICE="cuda")
    run_loop(lora_llama(layers=2).cuda(), str(tmp_path / "single"))
    for kind in ("fsdp2", "fsdp1"):
        assert_same_run(tmp_path / "fsdp" / kind, tmp_path / "single")
