"""Command line: `python -m explorer [app options]` opens the window; subcommands run headless.

Each subcommand lives in `explorer/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Heavy imports (torch, Qt) happen inside `run`, so `--help` stays instant.

Exit codes: 0 done; 1 an internal error (a bug: the traceback with `--debug` first, or
PEFT_EXPLORER_DEBUG=1); 2 bad input (a flag, a file, an output path) said in one line; 3 training
stopped on a fault (a diverging run: the recording keeps the last good state); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from explorer.commands import exit_codes
from explorer.schema.text import one_line

SUBCOMMANDS = {
    "budget": "Price a PEFT setting on a model (trainable parameters, storage).",
    "run": "Train headless and record the run.",
    "inspect": "Look inside a PEFT adapter directory.",
    "export": "Export a recording or saved state as a PEFT adapter and an HF Llama base.",
    "compare": "Train several settings on the same data and seed; write a comparison table.",
    "resize": "Resize a LoRA adapter to per-module ranks (best rank-k approximation of each ΔW).",
}


EXIT_INTERNAL, EXIT_INPUT, EXIT_FAULT, EXIT_INTERRUPTED = (
    exit_codes.INTERNAL,
    exit_codes.INPUT,
    exit_codes.FAULT,
    exit_codes.INTERRUPTED,
)
DEBUG_ENV = "PEFT_EXPLORER_DEBUG"
EXIT_CODES_HELP = exit_codes.HELP


class UsageError(Exception):
    """A bad command-line value: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is one line on stderr and exit code 2, never a usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s own module is imported, so one command's imports never slow
    (or break) another's start."""
    parser = OneLineParser(prog="peft-explorer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    for name, help_text in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"explorer.commands.{name}").add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get(DEBUG_ENV))
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        # Both halves of the command line: the window's options, then the headless subcommands.
        from explorer.commands import app

        parser = OneLineParser(prog="peft-explorer", description="Open the peft-explorer window.")
        app.add_arguments(parser)
        parser.print_help()
        print()
        build_parser().print_help()
        print(EXIT_CODES_HELP)
        return 0
    if not argv or argv[0] not in SUBCOMMANDS:
        from explorer.commands import app

        parser = OneLineParser(prog="peft-explorer", description="Open the peft-explorer window.")
        app.add_arguments(parser)
        return _guarded(app.run, parser.parse_args(argv), debug)
    args = build_parser(argv[0]).parse_args(argv)
    module = importlib.import_module(f"explorer.commands.{args.command}")
    return _guarded(module.run, args, debug)


def error_text(exc: BaseException) -> str:
    """One line for an error from reading or writing files: the file, then the reason."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{where}: {exc.strerror or exc}"
    if isinstance(exc, RecursionError):
        return f"the input is nested too deeply to read ({exc})"
    if isinstance(exc, MemoryError):
        return "out of memory (the input asks for more than this machine has)"
    return str(exc) or type(exc).__name__


def _report(text: str) -> None:
    sys.stderr.write(f"peft-explorer: {one_line(text)}\n")
    sys.stderr.flush()


def _guarded(run, args, debug: bool = False) -> int:
    """The error boundary of every entry point: bad input or an unusable path ends as one line and
    exit code 2; training stopped by a fault is the command's own code (3); anything else is a bug of
    ours, said as such (exit 1), with the traceback under --debug or PEFT_EXPLORER_DEBUG=1."""
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        _report("interrupted")
        return EXIT_INTERRUPTED
    except (ValueError, UsageError, OSError, RecursionError, MemoryError) as exc:
        if debug:
            traceback.print_exc()
        _report("error: " + error_text(exc))
        return EXIT_INPUT
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        _report(f"internal error: {type(exc).__name__}: {exc}{hint}")
        return EXIT_INTERNAL
