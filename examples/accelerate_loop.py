"""Watch your own run: a plain accelerate training loop over a PEFT LoRA model, recorded for the explorer.

    python examples/accelerate_loop.py runs/accelerate-demo         # under a minute on a CPU
    torchrun --nproc_per_node 2 examples/accelerate_loop.py runs/accelerate-ddp   # accelerate reads torchrun's env
    python -m explorer --replay runs/accelerate-demo

The recorder is made after `accelerator.prepare` (it reads the wrapped model: DDP, FSDP with
use_orig_params=True or FSDP2), on every process; only the main process writes. It takes the gradient
norms from a hook on the optimizer, so the loop itself gains one line: `rec.step(...)`.
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup

from explorer.integrations import Recorder

VOCAB = 128


def rule_batches(n: int, length: int = 32, seed: int = 0) -> torch.Tensor:
    """Sequences that follow next = (7 * token + 3) mod VOCAB from a random start (see trainer_callback.py)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.empty(n, length, dtype=torch.long)
    ids[:, 0] = torch.randint(1, VOCAB, (n,), generator=g)
    for i in range(1, length):
        ids[:, i] = (7 * ids[:, i - 1] + 3) % VOCAB
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="recording directory (new or empty)")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
    args = parser.parse_args()

    accelerator = Accelerator(gradient_accumulation_steps=args.accumulation, cpu=not torch.cuda.is_available())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 10, args.steps)
    samples = 8 * args.steps * args.accumulation * accelerator.num_processes
    loader = DataLoader(rule_batches(samples), batch_size=8, shuffle=True)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    with Recorder(model, args.out, optimizer=optimizer, seed=0, batch_size=8 * accelerator.num_processes) as rec:
        step = 0
        for ids in loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=ids, labels=ids).loss
                accelerator.backward(loss)
                lr = scheduler.get_last_lr()[0]  # the rate this step uses
                optimizer.step()  # the recorder's hook takes the gradient norms here
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:  # one optimizer step done
                step += 1
                rec.step(step, loss=loss, lr=lr)  # <- the one line in the loop
                if step == args.steps:
                    break
    if accelerator.is_main_process:
        print(f"recorded {step} steps: python -m explorer --replay {args.out}")


if __name__ == "__main__":
    main()
