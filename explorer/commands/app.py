"""`python -m explorer [options]` (or `peft-explorer`): open the window.

The lm scenario is configured and ready (on the GPU when there is one, the CPU otherwise); training
starts on Play, or at once with --play. The window paints before torch is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

# Kept as plain names so `--help` imports neither Qt nor torch (settings.py imports neither).
from explorer.schema.settings import METHODS, SCENARIOS, SETTINGS_SPEC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--play", action="store_true", help="start training at once")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=None,
        help="lm: the small language model (default); matrix: one matrix against a planted update",
    )
    parser.add_argument(
        "--method", choices=METHODS, default=None, help="PEFT method (default: the last used, else lora)"
    )
    parser.add_argument(
        "--device",
        choices=SETTINGS_SPEC["device"].choices,
        default=None,
        help="where to train (default auto: cuda, then mps, then cpu)",
    )
    parser.add_argument(
        "--model", default=None, metavar="DIR", help="train on this Hugging Face checkpoint directory (lm scenario)"
    )
    parser.add_argument(
        "--data", default=None, metavar="PATH", help="train on this .txt file or folder, .jsonl or .json (lm scenario)"
    )
    parser.add_argument("--theme", choices=("dark", "light"), default=None, help="colour theme (remembered)")
    parser.add_argument("--reset-layout", action="store_true", help="forget the remembered window layout")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="train on a thread of this process instead of a child process (debugging; "
        "the window then competes with training for Python's GIL)",
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="DIR",
        help="open a recording (from `python -m explorer run` or the app) in replay mode",
    )
    parser.add_argument(
        "--follow",
        default=None,
        metavar="DIR",
        help="follow a recording still being written (a run with ExplorerCallback / Recorder, or "
        "`python -m explorer run`), also over a mounted filesystem: new records show as they come",
    )
    parser.add_argument(
        "--talk",
        nargs="?",
        const="default",
        default=None,
        metavar="DECK",
        help="talk mode: full screen, large fonts, a deck of scenes (default deck if none given)",
    )
    # For scripts and benchmarks: a separate settings file, and exit once the first frame is painted.
    parser.add_argument("--settings-path", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--first-frame-exit", action="store_true", help=argparse.SUPPRESS)


def talk_mode_available() -> bool:
    try:
        return importlib.util.find_spec("explorer.gui.talk") is not None
    except (ImportError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    if args.talk is not None and not talk_mode_available():
        sys.stderr.write("peft-explorer: talk mode is not built yet; opening the normal window\n")
        args.talk = None
    from explorer.gui.app import main

    return main(args)
