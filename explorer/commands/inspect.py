"""`python -m explorer inspect DIR [--json] [--base DIR]`: look inside a PEFT adapter directory.

Reads LoRA (rsLoRA, DoRA, rank/alpha patterns) and AdaptionPrompt adapters. For each LoRA module:
shape, rank, alpha, scaling, ||ΔW||_F and the singular values of ΔW (from the factors, never a
dense ΔW), energy of the top k, effective and stable rank, DoRA magnitude statistics; a layer x
module grid of the norms; for adaption prompts the prompt length, layers, gates and prompt norms.
With --base (an HF Llama directory), the amplification factor of each module.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "adapter", metavar="DIR", help="a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--base", metavar="DIR", default=None, help="the HF Llama base model directory, for amplification factors"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from explorer.core.inspect_adapter import format_report, inspect_adapter

    report = inspect_adapter(args.adapter, base=args.base)
    if args.json:
        print(json.dumps(report.to_json_dict(), allow_nan=False))
    else:
        print(format_report(report))
    return 0
