"""Watch your own run: a transformers Trainer fine-tuning a PEFT LoRA model, recorded for the explorer.

    python examples/trainer_callback.py runs/trainer-demo           # under a minute on a CPU
    python -m explorer --replay runs/trainer-demo                   # then look at it

The model is a tiny Llama built from a config (random weights, nothing downloaded) learning a fixed
next-token rule, so the loss falls within the run. The one line that records it
is the `callbacks=[ExplorerCallback(...)]` argument; everything else is an ordinary Trainer script.
Under torchrun the same script records once, from rank 0:

    torchrun --nproc_per_node 2 examples/trainer_callback.py runs/trainer-ddp
"""

from __future__ import annotations

import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from explorer.integrations import ExplorerCallback

VOCAB = 128


def rule_data(n: int, length: int = 32, seed: int = 0) -> list[dict]:
    """Sequences that follow a fixed rule, next = (7 * token + 3) mod VOCAB, from a random start: the
    base model knows nothing of it, the adapter learns it, and the loss falls within the run."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.empty(length, dtype=torch.long)
        ids[0] = torch.randint(1, VOCAB, (1,), generator=g)
        for i in range(1, length):
            ids[i] = (7 * ids[i - 1] + 3) % VOCAB
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="recording directory (new or empty)")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()

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
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    training = TrainingArguments(
        output_dir=f"{args.out}-trainer",
        max_steps=args.steps,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        logging_steps=10,
        disable_tqdm=True,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=rule_data(2000),
        callbacks=[ExplorerCallback(args.out)],  # <- the one line
    )
    trainer.train()
    if training.process_index == 0:
        print(f"recorded: python -m explorer --replay {args.out}")


if __name__ == "__main__":
    main()
