"""Our engine on a user checkpoint against the loop a user would otherwise write (transformers + PEFT).

    python bench/bench_model.py [--seconds S] [--rounds R] [--quick] [--only TEXT]

Each case saves a random transformers Llama to a temporary directory (with a BPE tokenizer.json
trained on the shipped corpus) and trains LoRA on it two ways, on the same batches (the lm
scenario's, drawn from the seed and the step), with the same dtype, optimizer (AdamW, weight decay
0), learning rate and torch threads, interleaved stretch by stretch so a busy machine hurts both:

- ours: the real TrainingWorker playing with live snapshots at the default rate (held-out loss and
  samples on their own cadence: exactly what the app gets);
- theirs: AutoModelForCausalLM.from_pretrained + peft.get_peft_model, a plain loop
  (forward, fp32 cross-entropy, backward, step, loss.item()).

It prints steps/s of each and their ratio (target >= 1.0), the share of our running time spent on
snapshots, evaluation and samples, and on CUDA the peak memory of each side measured alone
(target ours <= 1.1x PEFT's). Cases: CPU, a ~30M-parameter Llama, LoRA r=16 on q,v, fp32; CUDA
(only where there is one), TinyLlama-1.1B-shaped, bf16, B=4, T=512.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from explorer.core import device as devices  # noqa: E402
from explorer.engine.worker import TrainingWorker  # noqa: E402
from explorer.schema.settings import TrainSettings  # noqa: E402

CPU_SHAPE = dict(  # 31.6M parameters
    vocab_size=8192,
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)
TINYLLAMA_SHAPE = dict(  # TinyLlama-1.1B's config.json
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def make_checkpoint(directory: Path, shape: dict, dtype: torch.dtype) -> int:
    """A random transformers Llama of `shape` with a BPE tokenizer.json; returns its parameter count."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    from explorer.schema.resources import load_corpus

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape, bos_token_id=0, eos_token_id=1)).to(dtype)
    model.save_pretrained(directory)
    n = sum(p.numel() for p in model.parameters())
    del model
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(shape["vocab_size"], 4096),
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([load_corpus("base", "train")], trainer)
    tok.save(str(directory / "tokenizer.json"))
    return n


class PeftLoop:
    """The plain transformers + PEFT training loop, on the batches our scenario draws."""

    def __init__(self, model_dir: Path, settings: TrainSettings, device: torch.device, autocast, batches):
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        dtype = autocast or torch.float32
        hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        config = LoraConfig(
            r=settings.rank, lora_alpha=settings.alpha, target_modules=list(settings.targets), lora_dropout=0.0
        )
        self.model = get_peft_model(hf, config).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        self.device, self.autocast, self.batches, self.batch_size = device, autocast, batches, settings.batch_size
        self.step = 0

    def train_step(self) -> float:
        batch = self.batches(self.step, self.batch_size)
        ctx = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else _null()
        with ctx:
            logits = self.model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def play_for(self, seconds: float) -> tuple[int, float]:
        devices.synchronize(self.device)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            self.train_step()
            steps += 1
        devices.synchronize(self.device)
        return steps, time.perf_counter() - start


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _play_ours(worker: TrainingWorker, seconds: float, last: tuple) -> tuple[tuple, tuple]:
    """(steps, running seconds) of one stretch of play, from the worker's own step count and clock."""
    worker.play()
    worker.wait_for(lambda s: s.state == "running", 120)
    time.sleep(seconds)  # a benchmark, not a test: the worker thread trains meanwhile
    worker.pause()
    end = worker.wait_for(lambda s: s.state in ("paused", "fault"), 300)
    if end.state == "fault":
        raise RuntimeError(end.fault)
    # Pausing posts the snapshot, then generates samples: wait for them, so that they do not take the
    # CPU from the other side's stretch.
    worker.wait_for(lambda s: s.state == "fault" or (s.samples or {}).get("step") == end.step, 300)
    now = (end.step, end.time)
    return (now[0] - last[0], now[1] - last[1]), now


def peak_memory(side: str, model_dir: Path, settings: TrainSettings, steps: int = 5) -> int:
    """Peak CUDA bytes allocated by one side alone (loaded, then `steps` training steps)."""
    from explorer.engine.scenarios import lm_sources
    from explorer.engine.trainer import Trainer

    lm_sources._USER_CACHE.clear()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    if side == "ours":
        t = Trainer(settings)
        for _ in range(steps):
            t.train_step()
        t.snapshot(settings.display_size)
    else:
        from explorer.core.checkpoint import read_config
        from explorer.core.hf_tokenizer import load_tokenizer
        from explorer.engine.scenarios.lm_sources import ShippedCorpus

        cfg = read_config(model_dir)
        tok = load_tokenizer(model_dir, cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id)
        dev = torch.device("cuda")
        corpus = ShippedCorpus(tok, settings.seq_len, dev)
        loop = PeftLoop(model_dir, settings, dev, torch.bfloat16, lambda k, b: corpus.batch(settings.seed, k, b))
        for _ in range(steps):
            loop.train_step()
        t = loop
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del t
    lm_sources._USER_CACHE.clear()
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def run_case(name: str, shape: dict, settings: TrainSettings, seconds: float, rounds: int) -> None:
    from explorer.engine.scenarios import build_scenario

    print(f"\n== {name}")
    device = devices.resolve_device(settings.device)
    autocast = devices.resolve_dtype(settings.dtype, device)
    threads = devices.worker_threads() if device.type == "cpu" else 1
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        model_dir = Path(tmp) / "model"
        n = make_checkpoint(model_dir, shape, autocast or torch.float32)
        settings = settings.with_changes(model=str(model_dir))
        print(
            f"model             random Llama, {n / 1e6:.1f}M parameters ({shape['num_hidden_layers']} layers of "
            f"{shape['hidden_size']}), {settings.dtype}, {device}; LoRA r={settings.rank} on {','.join(settings.targets)}; "
            f"B={settings.batch_size}, T={settings.seq_len}; torch threads {threads}"
        )
        if device.type == "cuda":
            ours_peak = peak_memory("ours", model_dir, settings)
            theirs_peak = peak_memory("peft", model_dir, settings)
            print(
                f"peak memory       ours {ours_peak / 1e9:.2f} GB vs PEFT {theirs_peak / 1e9:.2f} GB: "
                f"{ours_peak / theirs_peak:.3f}x (target <= 1.1)"
            )
        torch.set_num_threads(threads)
        worker = TrainingWorker(settings, threads=threads)
        worker.start()
        first = worker.wait_for(timeout=600)
        if first.state == "fault":
            raise RuntimeError(first.fault)
        scenario = build_scenario(settings, device, autocast)  # the same cached base, the same batches
        loop = PeftLoop(model_dir, settings, device, autocast, scenario.batch)
        loop.play_for(min(seconds, 2.0))  # warm-up: first-call allocations and kernel choices
        loop.step = 0
        last = (first.step, first.time)
        instrument_before = worker.instrument_seconds
        totals = {"ours": [0, 0.0], "peft": [0, 0.0]}
        try:
            for _ in range(rounds):
                delta, last = _play_ours(worker, seconds, last)
                totals["ours"][0] += delta[0]
                totals["ours"][1] += delta[1]
                steps, secs = loop.play_for(seconds)
                totals["peft"][0] += steps
                totals["peft"][1] += secs
            instrument = worker.instrument_seconds - instrument_before
        finally:
            worker.close()
    ours = totals["ours"][0] / totals["ours"][1]
    theirs = totals["peft"][0] / totals["peft"][1]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"steps/s           ours {ours:.2f} (live snapshots) vs transformers + PEFT {theirs:.2f}: "
        f"ratio {ours / theirs:.3f} (target >= 1.0) {'OK' if ours >= theirs else 'BELOW TARGET'}"
    )
    print(
        f"instrumentation   {100 * instrument / totals['ours'][1]:.2f}% of our running time "
        f"(snapshots, held-out loss, samples; {instrument:.3f} s of {totals['ours'][1]:.1f} s); load average {load:.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per stretch of each side (default 10)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds per case (default 6)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 5 s")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 5.0, 2
    print(f"torch {torch.__version__}; {len(os.sched_getaffinity(0))} cores; cuda: {torch.cuda.is_available()}")
    lora = dict(method="lora", rank=16, alpha=32.0, targets=("q_proj", "v_proj"), lr=1e-3)
    cases = [("CPU, ~30M Llama, fp32", CPU_SHAPE, TrainSettings(device="cpu", batch_size=4, seq_len=64, **lora))]
    if torch.cuda.is_available():
        cases.append(
            (
                "CUDA, TinyLlama-1.1B shape, bf16",
                TINYLLAMA_SHAPE,
                TrainSettings(device="cuda", dtype="bf16", batch_size=4, seq_len=512, **lora),
            )
        )
    for name, shape, settings in cases:
        if args.only and args.only not in name:
            continue
        run_case(name, shape, settings, args.seconds, args.rounds)
    if not torch.cuda.is_available():
        print("\n== CUDA, TinyLlama-1.1B shape, bf16\nnot yet measured: no GPU on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
