"""Train the small shipped base model on the base corpus (stdlib Python) and save resources/base/.

    python scripts/train_base.py [--steps N] [--max-minutes M] [--threads T] ...

Writes an HF Llama directory (config.json + model.safetensors, fp32) that both explorer and
transformers load, plus training.json recording steps, time, losses, corpus, seed and this command.
Byte-level (vocab 256), grouped-query attention (4 query heads share 2 KV heads), AdamW with linear
warmup and cosine decay over --steps. With the same torch version and thread count a rerun gives
the same weights; --max-minutes is only a safety cap for a busy machine (a run it stops is recorded
as stopped early, its learning rate not fully annealed), so pick --steps to fit the time.

--init DIR goes on training a saved model (its config wins over the size flags) with a fresh
schedule: a second stage on a busy machine instead of starting over. training.json then lists the
earlier stages (from DIR/training.json) under "stages", and its totals (steps, seconds, tokens
seen) cover every stage.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from explorer.core.checkpoint import load_checkpoint
from explorer.core.llama import LlamaConfig, LlamaForCausalLM, generate, lm_loss, save_pretrained
from explorer.core.tokenizer import decode, encode
from explorer.schema.resources import load_corpus

LN2 = math.log(2)


def as_ids(text: str) -> torch.Tensor:
    return torch.tensor(encode(text), dtype=torch.long)


def unigram_bits_per_byte(train: torch.Tensor, heldout: torch.Tensor) -> float:
    """Cross-entropy of the held-out bytes under the training byte frequencies (add-one smoothed):
    the score of a model that ignores context, which the trained model must clearly beat."""
    counts = torch.bincount(train, minlength=256).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[heldout].mean() / LN2)


@torch.no_grad()
def evaluate(
    model: LlamaForCausalLM, ids: torch.Tensor, seq_len: int, max_windows: int | None = None, batch_size: int = 32
) -> float:
    """Mean next-byte loss (nats) over non-overlapping windows, evenly spread when capped."""
    n = (len(ids) - 1) // seq_len
    starts = torch.arange(n) * seq_len
    if max_windows is not None and n > max_windows:
        starts = starts[torch.linspace(0, n - 1, max_windows).long()]
    model.eval()
    total = 0.0
    for chunk in starts.split(batch_size):
        x = torch.stack([ids[s : s + seq_len] for s in chunk.tolist()])
        y = torch.stack([ids[s + 1 : s + seq_len + 1] for s in chunk.tolist()])
        total += float(lm_loss(model(x), y)) * len(chunk)
    model.train()
    return total / len(starts)


def lr_at(progress: float, peak: float, warmup: float, min_frac: float) -> float:
    """Linear warmup over the first `warmup` fraction, then cosine from peak to min_frac * peak."""
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--max-minutes", type=float, default=12.0, help="safety cap on wall time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU may be shared)")
    ap.add_argument("--seed", type=int, default=0)
    # Batch 8 beat batch 16 at equal bytes seen (held-out 1.94 vs 2.29 nats after 0.8M bytes): at this
    # size more, smaller steps learn faster, and each step is cheaper on a shared CPU.
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=0.03, help="fraction of training")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=344)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--init", type=Path, default=None, help="go on training this saved model (a second stage)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "resources" / "base")
    args = ap.parse_args(argv)
    command = "python " + shlex.join(["scripts/train_base.py", *sys.argv[1:]] if argv is None else argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, heldout = as_ids(load_corpus("base", "train")), as_ids(load_corpus("base", "heldout"))
    unigram = unigram_bits_per_byte(train, heldout)
    print(
        f"corpus: {len(train):,} train bytes, {len(heldout):,} held-out bytes; unigram baseline {unigram:.3f} bits/byte"
    )

    config = LlamaConfig(
        vocab_size=256,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.seq_len,
    )
    gen = torch.Generator().manual_seed(args.seed)
    earlier: list[dict] = []
    if args.init is not None:
        model = load_checkpoint(args.init).train()
        config = model.config
        record = args.init / "training.json"
        if record.is_file():
            before = json.loads(record.read_text())
            earlier = [*before.pop("stages", []), {k: v for k, v in before.items() if not k.startswith("sample")}]
    else:
        model = LlamaForCausalLM(config)
        model.init_weights(gen)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, {config}")

    # Decay the matrices (embeddings included) but not the RMSNorm gains, as GPT-style recipes do.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    budget_s = args.max_minutes * 60
    t0 = time.perf_counter()
    ema, step, stopped_early = None, 0, False
    for step in range(1, args.steps + 1):
        if time.perf_counter() - t0 > budget_s:
            print(f"time cap reached after {step - 1} of {args.steps} steps; stopping early")
            step, stopped_early = step - 1, True
            break
        lr = lr_at((step - 1) / args.steps, args.lr, args.warmup, args.min_lr_frac)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(train) - args.seq_len - 1, (args.batch_size,), generator=gen)
        x = torch.stack([train[s : s + args.seq_len] for s in starts.tolist()])
        y = torch.stack([train[s + 1 : s + args.seq_len + 1] for s in starts.tolist()])
        loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            print(f"step {step:5d}  loss {ema:.3f}  lr {lr:.2e}  {time.perf_counter() - t0:6.0f}s", flush=True)
        if args.eval_every and step % args.eval_every == 0:
            h = evaluate(model, heldout, args.seq_len, max_windows=64)
            print(f"  held-out (64 windows) {h:.3f} nats = {h / LN2:.3f} bits/byte", flush=True)
    seconds = time.perf_counter() - t0

    model.eval()
    heldout_loss = evaluate(model, heldout, args.seq_len)
    train_loss = evaluate(model, train, args.seq_len, max_windows=256)
    prompt = as_ids("def ")[None]
    greedy = decode(generate(model, prompt, 200, temperature=0)[0].tolist())
    sampled = decode(
        generate(model, prompt, 200, temperature=0.8, top_k=40, generator=torch.Generator().manual_seed(args.seed))[
            0
        ].tolist()
    )
    print(
        f"done: {step} steps in {seconds:.0f}s; train {train_loss:.3f}, held-out {heldout_loss:.3f} nats "
        f"= {heldout_loss / LN2:.3f} bits/byte (unigram {unigram:.3f})"
    )
    print("greedy:\n" + greedy + "\nsampled:\n" + sampled)

    save_pretrained(model, args.out)
    for f in args.out.iterdir():  # atomic writes create 0600 files; shipped files must be world-readable
        f.chmod(0o644)
    stage_steps, stage_seconds = step, seconds
    if earlier:
        step += sum(int(e.get("stage_steps", e["steps"])) for e in earlier)
        seconds += sum(float(e.get("stage_seconds", e["seconds"])) for e in earlier)
    info = {
        "steps": step,
        "stage_steps": stage_steps,
        "stage_seconds": round(stage_seconds, 1),
        "stopped_early": stopped_early,
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "seed": args.seed,
        "corpus": "base (resources/corpora/base.*.txt.gz: Python standard-library source)",
        "train_bytes": len(train),
        "heldout_bytes": len(heldout),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_seen": stage_steps * args.batch_size * args.seq_len
        + sum(int(e.get("stage_tokens_seen", e["tokens_seen"])) for e in earlier),
        "stage_tokens_seen": stage_steps * args.batch_size * args.seq_len,
        "optimizer": f"AdamW(betas=(0.9, 0.95), weight_decay={args.weight_decay}), peak lr {args.lr}, "
        f"warmup {args.warmup:.0%}, cosine to {args.min_lr_frac} x peak, grad clip 1.0",
        "parameters": n_params,
        "train_loss": round(train_loss, 4),
        "heldout_loss": round(heldout_loss, 4),
        "heldout_bits_per_byte": round(heldout_loss / LN2, 4),
        "unigram_heldout_bits_per_byte": round(unigram, 4),
        "loss_eval": f"mean next-byte cross-entropy (nats) over non-overlapping {args.seq_len}-byte windows; "
        "train over 256 evenly spaced windows, held-out over all",
        "sample_greedy": greedy,
        "sample_t0.8": sampled,
        "torch": torch.__version__,
        "command": command,
    }
    if earlier:
        info["stages"] = earlier
    (args.out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
