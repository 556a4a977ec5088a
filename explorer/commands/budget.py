"""`python -m explorer budget`: what a PEFT setting costs on a Llama-sized model.

Example: `python -m explorer budget --model llama-7b --method lora --rank 8 --targets q_proj,v_proj`
prints 4,194,304 trainable parameters and 8.4 MB of fp16 storage.
"""

from __future__ import annotations

import argparse

# Kept here as plain names so `--help` does not import torch (explorer.core imports it).
PRESET_NAMES = ("llama-7b", "llama-13b", "llama-2-70b")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer indices") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="llama-7b",
        help=f"a preset ({', '.join(PRESET_NAMES)}) or an HF model directory holding config.json (default llama-7b)",
    )
    parser.add_argument("--method", default="lora", choices=("lora", "prefix", "lora+prefix", "full"))
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    parser.add_argument(
        "--targets",
        default="q_proj,v_proj",
        help="comma-separated LoRA targets among q_proj,k_proj,v_proj,o_proj,"
        "gate_proj,up_proj,down_proj (default q_proj,v_proj)",
    )
    parser.add_argument(
        "--layers", type=_int_list, default=None, help="comma-separated layer indices for LoRA (default: all layers)"
    )
    parser.add_argument(
        "--dora", action="store_true", help="DoRA: add each adapted matrix's magnitude vector (out parameters)"
    )
    parser.add_argument("--prefix-len", type=int, default=10, help="prompt vectors K per layer (default 10)")
    parser.add_argument("--prefix-layers", type=int, default=30, help="prefix on the top L layers (default 30)")
    parser.add_argument(
        "--gate-shape",
        default="head",
        choices=("head", "layer"),
        help="one gate per head (paper) or per layer (PEFT AdaptionPrompt)",
    )
    parser.add_argument("--json", action="store_true", help="print the budget as JSON")


def _load_config(model: str):
    """A preset by name, else an HF directory (or its config.json) read as a LlamaConfig."""
    from pathlib import Path

    from explorer.core.llama import LlamaConfig
    from explorer.schema.budget import PRESETS
    from explorer.schema.jsonio import read_json_file

    if model in PRESETS:
        return PRESETS[model]
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(
            f"model={model!r} is neither a preset ({', '.join(PRESETS)}) nor a model directory with config.json"
        )
    data = read_json_file(path, max_bytes=16 * 1024 * 1024)  # ValueError naming the file: not UTF-8, not JSON...
    try:
        return LlamaConfig.from_hf_dict(data)
    except (TypeError, KeyError, AttributeError, OverflowError, ZeroDivisionError) as exc:
        raise ValueError(f"{path}: not a valid Llama config ({type(exc).__name__}: {exc})") from None


def run(args: argparse.Namespace) -> int:
    import json

    from explorer.schema.budget import compute_budget, format_budget

    config = _load_config(args.model)
    budget = compute_budget(
        config,
        args.method,
        rank=args.rank,
        targets=args.targets,
        layers=args.layers,
        prefix_len=args.prefix_len,
        prefix_layers=args.prefix_layers,
        gate_shape=args.gate_shape,
        use_dora=args.dora,
    )
    if args.json:
        print(json.dumps({"model": args.model, **budget.to_dict()}, indent=2))
    else:
        print(format_budget(budget, model_name=args.model))
    return 0
