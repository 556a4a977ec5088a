"""`python -m explorer export RECORDING_OR_SAVED_STATE --out DIR`: a PEFT adapter and its base.

Writes DIR/adapter (a PEFT adapter directory) and DIR/base (an HF directory of the base the run
trained on; for PiSSA the residual base). The adapter's base_model_name_or_path is the checkpoint
directory the run trained on (`--model DIR`, else the one its recording names, whose config and
weights-index hash must still match), or DIR/base for PiSSA. Exports LoRA (plain, rsLoRA, DoRA, any init) and
prefix runs with one identity gate per layer (PEFT AdaptionPrompt); refuses, saying why, per-head or
tanh gates, lora+prefix, full fine-tuning and the matrix scenario.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="RECORDING_OR_SAVED_STATE",
        help="a recording directory (holding state.safetensors) or a saved state file",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory for adapter/ and base/")
    parser.add_argument(
        "--base",
        "--model",
        dest="base",
        metavar="DIR",
        default=None,
        help="the HF checkpoint directory the run trained on (default: the one recorded with the run, "
        "else the shipped base model); the adapter's base_model_name_or_path names it",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing DIR/adapter and DIR/base")


def run(args: argparse.Namespace) -> int:
    from explorer.core.export_adapter import export_state

    result = export_state(args.source, args.out, base=args.base, overwrite=args.force)
    print(result.summary())
    return 0
