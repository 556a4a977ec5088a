"""Measure how persuasive the shipped pair is: does the base write Python, does the adapter visibly
adopt the domain?

    python scripts/measure_base.py [--prompts 24] [--tokens 160] [--adapt-seconds 60] [--json FILE]

Base model (resources/base):
- held-out bits per byte on the base corpus's held-out split (non-overlapping windows of the
  model's context, as scripts/train_base.py evaluates);
- samples from N fixed prompts (lines of the held-out split that open a block, evenly spread,
  each with the two lines before it, and after a def or class its docstring): the share whose complete lines tokenize as Python
  (`tokenize`, no error token; a bracket still open at the cut is fine, an unterminated string or
  a dedent to an unknown level is not); the share of distinct first lines (a base that writes the
  same line after every prompt scores 1/N) and the share of samples stuck (a piece of 20 characters
  three times, or a run of 40 blanks). Measured for each sampler named by --samplers: `argmax`,
  `argmax-nrN` (greedy, never repeating an N-byte run), `tX` (temperature X, top-k 40, a fixed seed),
  `app` (what the app's samples use).
Adaptation (--adapt-seconds > 0, or --adapt-steps): the app's default lm settings trained for that
many seconds (or steps) of one thread (what the window does on 2 shared cores), then the domain
held-out bits per byte before and after, and samples from the app's prompt by the app's rule (8
seeds, or one when it is greedy) before and after, with the share of their lines in the review format (# review:, ---, +++,
@@, +, -).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import tokenize
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_base import evaluate  # noqa: E402

from explorer.core.checkpoint import load_checkpoint  # noqa: E402
from explorer.core.resources import load_base_model  # noqa: E402
from explorer.core.tokenizer import decode, encode  # noqa: E402
from explorer.schema.resources import load_corpus  # noqa: E402

LN2 = math.log(2)
DIFF_PREFIXES = ("# review:", "--- a/", "+++ b/", "@@ ", "+", "-")
MIN_LINES = 3  # a sample must write this many lines with text to count as Python
LOOP_CHARS = 20


def _docstring_end(lines: list[str], i: int) -> int:
    """The index of the last line of the docstring that opens at line i + 1, or i when there is none."""
    j = i + 1
    if j >= len(lines):
        return i
    body = lines[j].strip()
    quote = body[:3]
    if quote not in ('"""', "'''"):
        return i
    if body.count(quote) >= 2:
        return j
    for k in range(j + 1, min(len(lines), j + 40)):
        if quote in lines[k]:
            return k
    return i


BLOCKS = ("def ", "class ", "if ", "elif ", "else:", "for ", "while ", "with ", "try:", "except")


def prompts_from(text: str, count: int) -> list[str]:
    """`count` prompts evenly spread over the lines of `text` that open a block (def, class, if, for,
    while, with, try, except, else): the two lines before it, that line and, after a def or class,
    its docstring; ending in a newline, so the model must write the indented code that follows."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        opener = line.lstrip()
        if opener.startswith(BLOCKS) and line.rstrip().endswith(":") and len(line) < 100 and i >= 2:
            end = _docstring_end(lines, i) if opener.startswith(("def ", "class ")) else i
            found.append("\n".join(lines[i - 2 : end + 1]) + "\n")
    if len(found) < count:
        raise ValueError(f"the held-out split has only {len(found)} blocks, {count} prompts asked for")
    return [found[round(i * (len(found) - 1) / max(1, count - 1))] for i in range(count)]


def tokenizes(prompt: str, continuation: str) -> bool:
    """Whether the continuation has at least MIN_LINES complete lines with text, and they tokenize as
    Python after the prompt."""
    lines = continuation[: continuation.rfind("\n") + 1]
    if sum(bool(line.strip()) for line in lines.split("\n")) < MIN_LINES:
        return False
    text = prompt + lines
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.ERRORTOKEN and not tok.string.isspace():
                return False
    except tokenize.TokenError as exc:
        return "multi-line statement" in str(exc)  # cut inside brackets: the lines so far are Python
    except (IndentationError, SyntaxError):
        return False
    return True


def stuck(continuation: str) -> bool:
    """A loop (a piece of LOOP_CHARS characters with text in it, three times or more) or a runaway of
    whitespace (LOOP_CHARS * 2 blanks in a row)."""
    if " " * (2 * LOOP_CHARS) in continuation.replace("\n", " "):
        return True
    seen: dict[str, int] = {}
    for i in range(len(continuation) - LOOP_CHARS + 1):
        piece = continuation[i : i + LOOP_CHARS]
        if piece.strip():
            seen[piece] = seen.get(piece, 0) + 1
            if seen[piece] >= 3:
                return True
    return False


def first_line(continuation: str) -> str:
    return next((line.strip() for line in continuation.split("\n") if line.strip()), "")


def sample_texts(model, prompts: list[str], tokens: int, sampler) -> list[str]:
    out = []
    for p in prompts:
        ids = torch.tensor([encode(p)])
        out.append(decode(sampler(model, ids, tokens)[0, ids.shape[1] :].tolist()))
    return out


def python_figures(prompts: list[str], texts: list[str]) -> dict:
    n = len(texts)
    return {
        "python_share": sum(tokenizes(p, t) for p, t in zip(prompts, texts)) / n,
        "distinct_first_lines": len({first_line(t) for t in texts}) / n,
        "stuck_share": sum(stuck(t) for t in texts) / n,
    }


def diff_share(text: str) -> float:
    lines = [line for line in text.split("\n") if line.strip()]
    return sum(line.startswith(DIFF_PREFIXES) for line in lines) / max(1, len(lines))


def named_sampler(name: str):
    """(model, ids, tokens) -> ids: `argmax`, `tX` (temperature X, top-k 40, seed 0) or `app`."""
    from explorer.engine.sampling import sample

    if name == "app":
        from explorer.engine.scenarios import lm

        return lm.generate_sample
    if name == "argmax":
        return lambda m, ids, n: sample(m, ids, n, temperature=0)
    if name.startswith("argmax-nr"):  # greedy, never repeating an n-gram of that many bytes
        size = int(name[len("argmax-nr") :])
        return lambda m, ids, n: sample(m, ids, n, temperature=0, no_repeat=size)
    if name.startswith("t"):
        temperature = float(name[1:])
        return lambda m, ids, n: sample(m, ids, n, temperature, 40, torch.Generator().manual_seed(0))
    raise ValueError(f"--samplers: {name!r} is unknown: allowed argmax, tX (e.g. t0.5), app")


def review_figures(model, prompt_ids: torch.Tensor, seeds: int) -> dict:
    """The app's sampler from the app's prompt with `seeds` seeds (one when the rule is greedy): the
    share of lines in the review format, and the text of seed 0 (what the app shows)."""
    from explorer.engine.scenarios import lm

    seeds = seeds if lm.SAMPLE_TEMPERATURE > 0 else 1
    texts = []
    for seed in range(seeds):
        ids = lm.generate_sample(model, prompt_ids, lm.SAMPLE_TOKENS, torch.Generator().manual_seed(seed))
        texts.append(decode(ids[0, prompt_ids.shape[1] :].tolist()))
    return {"diff_line_share": sum(diff_share(t) for t in texts) / seeds, "sample": texts[0]}


def adaptation(seconds: float, steps: int = 0, seeds: int = 8, base=None) -> dict:
    from explorer.engine.scenarios import lm
    from explorer.engine.trainer import Trainer
    from explorer.schema.settings import TrainSettings

    t = Trainer(TrainSettings(device="cpu"), base_model=base)
    prompt = t.scenario.prompt_ids
    before = {"heldout_bits_per_byte": t.eval_loss() / LN2, **review_figures(t.model.eval(), prompt, seeds)}
    t.model.train()
    t0 = time.perf_counter()
    while (t.step < steps) if steps else (time.perf_counter() - t0 < seconds):
        t.train_step()
    seconds = time.perf_counter() - t0
    after = {"heldout_bits_per_byte": t.eval_loss() / LN2, **review_figures(t.model.eval(), prompt, seeds)}
    return {
        "settings": "the app's defaults (lm, lora r=8 on q_proj, v_proj, lr 1e-2, batch 16, seq 64), 1 thread",
        "seconds": round(seconds, 1),
        "steps": t.step,
        "prompt": lm.SAMPLE_PROMPT,
        "before": before,
        "after": after,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--adapt-seconds", type=float, default=60.0)
    ap.add_argument(
        "--adapt-steps", type=int, default=0, help="train this many steps instead (comparable on a busy machine)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samplers", default="argmax,app", help="comma-separated: argmax, tX (e.g. t0.5), app")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--base", type=Path, default=None, help="a model directory instead of resources/base")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = (load_base_model() if args.base is None else load_checkpoint(args.base)).eval()
    heldout_text = load_corpus("base", "heldout")
    heldout = torch.tensor(encode(heldout_text), dtype=torch.long)
    seq = model.config.max_position_embeddings
    bpb = evaluate(model, heldout, seq) / LN2
    out: dict = {"params": sum(p.numel() for p in model.parameters()), "heldout_bits_per_byte": round(bpb, 4)}
    print(f"base: {out['params']:,} parameters, held-out {bpb:.4f} bits/byte")

    prompts = prompts_from(heldout_text, args.prompts)
    for name in args.samplers.split(","):
        sampler = named_sampler(name.strip())
        texts = sample_texts(model, prompts, args.tokens, sampler)
        figures = python_figures(prompts, texts)
        out[name] = {k: round(v, 3) for k, v in figures.items()}
        out[name]["example"] = prompts[0] + texts[0]
        print(f"{name}: " + ", ".join(f"{k} {v:.0%}" for k, v in figures.items()))
        for p, t in list(zip(prompts, texts))[:3]:
            print("  ---\n" + (p + t).replace("\n", "\n  "))

    if args.adapt_seconds > 0 or args.adapt_steps > 0:
        a = adaptation(args.adapt_seconds, args.adapt_steps, base=None if args.base is None else model)
        out["adaptation"] = a
        print(
            f"adaptation: {a['steps']} steps in {a['seconds']:.0f} s; domain held-out "
            f"{a['before']['heldout_bits_per_byte']:.3f} -> {a['after']['heldout_bits_per_byte']:.3f} bits/byte; "
            f"diff/review lines {a['before']['diff_line_share']:.0%} -> {a['after']['diff_line_share']:.0%}"
        )
        for key in ("before", "after"):
            print(f"  --- {key}\n" + (a["prompt"] + a[key]["sample"]).replace("\n", "\n  "))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
