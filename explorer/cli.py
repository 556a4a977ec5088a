"""Command line: `python -m explorer [app options]` opens the window; subcommands run headless.

Each subcommand lives in `explorer/commands/<name>.py` and exposes `add_arguments(parser)` and
`run(args) -> int`. Heavy imports (torch, Qt) happen inside `run`, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "budget": "Price a PEFT setting on a model (trainable parameters, storage).",
    "run": "Train headless and record the run.",
    "inspect": "Look inside a PEFT adapter directory.",
    "export": "Export a recording or saved state as a PEFT adapter and an HF Llama base.",
    "compare": "Train several settings on the same data and seed; write a comparison table.",
}


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
    if argv[:1] in (["-h"], ["--help"]):
        # Both halves of the command line: the window's options, then the headless subcommands.
        from explorer.commands import app

        parser = OneLineParser(prog="peft-explorer", description="Open the peft-explorer window.")
        app.add_arguments(parser)
        parser.print_help()
        print()
        build_parser().print_help()
        return 0
    if not argv or argv[0] not in SUBCOMMANDS:
        from explorer.commands import app

        parser = OneLineParser(prog="peft-explorer", description="Open the peft-explorer window.")
        app.add_arguments(parser)
        return _guarded(app.run, parser.parse_args(argv))
    args = build_parser(argv[0]).parse_args(argv)
    module = importlib.import_module(f"explorer.commands.{args.command}")
    return _guarded(module.run, args)


def _guarded(run, args) -> int:
    """Bad settings end as one line and exit code 2, never a traceback."""
    try:
        return int(run(args) or 0)
    except (ValueError, UsageError, FileNotFoundError) as exc:
        sys.stderr.write(f"peft-explorer: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("peft-explorer: interrupted\n")
        return 130
