"""What ExplorerCallback costs a transformers Trainer run at its default cadence.

    python bench/bench_callback.py [--rounds R] [--steps S] [--preset 30m|tinyllama] [--device cpu|cuda]
                                   [--dtype fp32|bf16]

The same Trainer run (same seed, same batches) with and without the callback, alternating round by
round in one process, so a busy machine hurts both sides alike. Per side: the median wall time of a
step and the median process CPU time of a step (all threads: the recorder's writer thread counts),
taken between consecutive on_step_end calls of a timing callback placed after the explorer's (so
its work at the step's end is inside), warm-up steps left out. Also the recorder's own account: the
seconds it spent in the training thread and in the writer thread against the wall time.
Target: overhead <= 2 % of the step time.

30m: a Llama of 30M parameters (hidden 512, 6 layers, vocab 8000), LoRA r=16 on q, k, v, o, batch
4 x 128 tokens, fp32 on the CPU. tinyllama: TinyLlama-1.1B's shapes (random weights), LoRA r=16 on
q, k, v, o, batch 8 x 512 tokens: for a GPU in bf16.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from explorer.integrations import ExplorerCallback  # noqa: E402

PRESETS = {
    "30m": dict(
        config=dict(
            vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8
        ),
        batch=4,
        seq=128,
    ),
    "tinyllama": dict(
        config=dict(
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
        ),
        batch=8,
        seq=512,
    ),
}
WARMUP = 3


class StepClock(TrainerCallback):
    """Wall and process-CPU time between consecutive step ends."""

    def __init__(self):
        self.wall, self.cpu, self._last = [], [], None

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = (time.perf_counter(), time.process_time())
        if self._last is not None:
            self.wall.append(now[0] - self._last[0])
            self.cpu.append(now[1] - self._last[1])
        self._last = now


def run(preset: dict, steps: int, device: str, dtype: str, record_to: str | None) -> tuple[StepClock, dict | None]:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        max_position_embeddings=max(512, preset["seq"]), bos_token_id=0, eos_token_id=0, **preset["config"]
    )
    model = LlamaForCausalLM(cfg)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )
    g = torch.Generator().manual_seed(1)
    data = []
    for _ in range(preset["batch"] * (steps + 1)):
        ids = torch.randint(1, cfg.vocab_size, (preset["seq"],), generator=g)
        data.append({"input_ids": ids, "labels": ids.clone()})
    clock = StepClock()
    callbacks = ([ExplorerCallback(record_to)] if record_to else []) + [clock]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-callback-"),
        max_steps=steps,
        per_device_train_batch_size=preset["batch"],
        learning_rate=1e-3,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=dtype == "bf16",
        seed=0,
        disable_tqdm=True,
        train_sampling_strategy="sequential",
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
    trainer.train()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    cost = None
    if record_to:
        rec = callbacks[0].recorder
        cost = rec.cost()
    return clock, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="30m")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    n_params = None
    walls = {"off": [], "on": []}
    cpus = {"off": [], "on": []}
    costs = []
    out_root = Path(tempfile.mkdtemp(prefix="bench-callback-rec-"))
    try:
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for side in order:
                target = str(out_root / f"r{r}") if side == "on" else None
                clock, cost = run(preset, args.steps, args.device, args.dtype, target)
                walls[side] += clock.wall[WARMUP:]
                cpus[side] += clock.cpu[WARMUP:]
                if cost:
                    costs.append(cost)
                print(
                    f"round {r + 1} {side:>3}: median step {1e3 * statistics.median(clock.wall[WARMUP:]):.1f} ms wall, "
                    f"{1e3 * statistics.median(clock.cpu[WARMUP:]):.1f} ms CPU"
                    + (f", {cost['records']} records" if cost else ""),
                    flush=True,
                )
        if n_params is None:
            torch.manual_seed(0)
            cfg = LlamaConfig(**preset["config"])
            n_params = sum(p.numel() for p in LlamaForCausalLM(cfg).parameters())
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    w_off, w_on = statistics.median(walls["off"]), statistics.median(walls["on"])
    c_off, c_on = statistics.median(cpus["off"]), statistics.median(cpus["on"])
    spent = sum(c["record_seconds"] + c["write_seconds"] for c in costs)
    elapsed = sum(c["elapsed_seconds"] for c in costs)
    records = sum(c["records"] for c in costs)
    print(
        f"\n{args.preset} ({n_params / 1e6:.1f}M parameters, {args.device} {args.dtype}), {args.rounds} rounds x "
        f"{args.steps} steps per side, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"median step wall: {1e3 * w_off:.1f} ms without, {1e3 * w_on:.1f} ms with -> overhead {100 * (w_on / w_off - 1):+.2f} %"
    )
    print(
        f"median step CPU:  {1e3 * c_off:.1f} ms without, {1e3 * c_on:.1f} ms with -> overhead {100 * (c_on / c_off - 1):+.2f} %"
    )
    print(
        f"recorder's own account: {records} records, {spent:.3f} s recording in {elapsed:.1f} s "
        f"-> {100 * spent / elapsed:.2f} % of the wall time (target <= 2 %)"
    )


if __name__ == "__main__":
    main()
