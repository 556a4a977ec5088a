"""`python -m explorer resize ADAPTER_DIR (--energy E | --rank K | --rank-pattern JSON) --out DIR [--base DIR]`.

Each module's new factors are the best rank-k approximation of its ΔW (Eckart–Young), computed from
the factors (QR of B and Aᵀ, SVD of the small core), never from a dense ΔW; the result is a PEFT
adapter whose rank_pattern / alpha_pattern make PEFT's scaling give exactly that ΔW. Prints a table
(module, rank before → after, energy kept, parameters) and the totals; with --base, the largest
logit difference between the original and the resized adapter on a fixed text.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "adapter", metavar="ADAPTER_DIR", help="a PEFT LoRA adapter directory (adapter_config.json + safetensors)"
    )
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--energy",
        type=float,
        metavar="E",
        help="keep, in every module, the smallest rank holding this share of ΔW's energy Σσ² (0 < E <= 1)",
    )
    how.add_argument("--rank", type=int, metavar="K", help="the same rank K for every module (at most its rank today)")
    how.add_argument(
        "--rank-pattern",
        metavar="JSON",
        help='PEFT-style pattern keys -> ranks, e.g. \'{"q_proj": 4, "model.layers.0.self_attn.v_proj": 2}\' '
        "(inline JSON or a .json file); modules no key matches keep their rank",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory (must not exist or be empty)")
    parser.add_argument(
        "--base",
        metavar="MODEL_DIR",
        default=None,
        help="an HF Llama directory: report the largest logit difference, original vs resized, on a fixed text",
    )


def _pattern_text(value: str) -> str:
    """Inline JSON, or the text of a .json file named by the argument."""
    if value.lstrip().startswith("{"):
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--rank-pattern: {value!r} is neither a JSON object nor a file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--rank-pattern: {path} cannot be read ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from explorer.core.resize import format_plan, resize_adapter

    pattern = None if args.rank_pattern is None else _pattern_text(args.rank_pattern)
    result = resize_adapter(
        args.adapter, args.out, energy=args.energy, rank=args.rank, rank_pattern=pattern, base=args.base
    )
    print(format_plan(result.plan))
    if result.logit_difference is not None:
        print(
            f"largest logit difference, original vs resized adapter, on a fixed text of {result.text_tokens} tokens "
            f"({result.tokenized}): {result.logit_difference:.3g} (the original adapter moves the base's logits by "
            f"up to {result.adapter_effect:.3g})"
        )
    print(f"written to {result.out}")
    return 0
