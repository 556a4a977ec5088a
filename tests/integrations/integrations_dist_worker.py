"""Run under `python -m torch.distributed.run --nproc_per_node 2` by test_distributed.py (and gpu_checks).

    integrations_dist_worker.py trainer OUT        HF Trainer under DDP (gloo, CPU), ExplorerCallback
    integrations_dist_worker.py fsdp OUT           plain loops under FSDP2, FSDP1 (use_orig_params) and
                                                   FSDP1 without use_orig_params (unsupported: trains on)
Each rank trains on its half of the same global batches as the single-process reference in the test.
EXPLORER_DIST_DEVICE=cuda runs the FSDP loops on the GPUs with NCCL (gpu_checks), else the CPU and gloo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from integrations_helpers import batches, lora_llama, token_data  # noqa: E402

from explorer.integrations import ExplorerCallback, Recorder  # noqa: E402

STEPS = 6
PER_RANK = 2
EXACT = {"every": 2, "interval_s": 0, "share": None}


def trainer_args(output_dir: str, per_device: int, steps: int = STEPS):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=per_device,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        train_sampling_strategy="sequential",  # the same samples per global step as one process
    )


def run_trainer(out: str, per_device: int) -> None:
    from transformers import Trainer

    model = lora_llama(layers=2)
    args = trainer_args(str(Path(out).parent / "trainer"), per_device)
    trainer = Trainer(model=model, args=args, train_dataset=token_data(), callbacks=[ExplorerCallback(out, **EXACT)])
    trainer.train()


def local_rows(x: torch.Tensor) -> torch.Tensor:
    """This rank's share of a global batch."""
    if not dist.is_initialized():
        return x
    n = x.shape[0] // dist.get_world_size()
    return x[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def device() -> torch.device:
    if os.environ.get("EXPLORER_DIST_DEVICE") == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def run_loop(model, out: str, lr: float = 1e-2) -> Recorder:
    """The plain loop of the README: the recorder's pre-step hook takes the gradient norms."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    with Recorder(model, out, optimizer=opt, lr=lr, **EXACT) as rec:
        for step, x in enumerate(batches(STEPS, 2 * PER_RANK), 1):
            x = local_rows(x).to(next(model.parameters()).device)
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step, loss=loss)
    return rec


def run_fsdp(out: str) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    dev = device()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    model = lora_llama(layers=2).to(dev)
    for layer in model.base_model.model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    run_loop(model, f"{out}/fsdp2")

    model = lora_llama(layers=2)
    wrapped = FullyShardedDataParallel(
        model,
        use_orig_params=True,
        device_id=dev,
        auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
    )
    run_loop(wrapped, f"{out}/fsdp1")

    from peft.utils.other import fsdp_auto_wrap_policy

    model = lora_llama(layers=2)
    flat = FullyShardedDataParallel(
        model, use_orig_params=False, device_id=dev, auto_wrap_policy=fsdp_auto_wrap_policy(model)
    )
    rec = run_loop(flat, f"{out}/flat")  # unsupported: says so, records nothing, training goes on
    assert not rec.active
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "trainer":
        run_trainer(out, PER_RANK)
        if dist.is_initialized():  # the Trainer leaves its process group up
            dist.barrier()
            dist.destroy_process_group()
    elif mode == "fsdp":
        run_fsdp(out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    # Everything is written and the group is down. On a busy machine the interpreter's own teardown
    # still raced gloo's C++ threads now and then ("terminate called without an active exception",
    # exit -6 on rank 1, after the recording was complete), so the worker leaves without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
