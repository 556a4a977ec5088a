"""Child processes named by string: the engine's way to run torch code for a process that never imports it.

    proc, conn = spawn("explorer.engine.relay_child:main", arg, ..., name="peft-explorer-training")

starts a spawned (never forked: the GUI process has Qt threads) daemon child that imports the module
named before the colon and calls the function after it with (its end of a duplex pipe, *args). The
caller never imports that module: import-linter's graph, which also sees imports inside functions,
stays free of torch on the caller's side. This module itself imports nothing heavy; the child
imports it first, to find the function.

Arguments travel pickled between our own two processes (multiprocessing's rules); anything heavier
than plain data (a test's nn.Module) is better pickled by the caller into bytes (`pickle.dumps`), so
the child unpickles it where torch is at hand.
"""

from __future__ import annotations

import importlib
import multiprocessing


def resolve(name: str):
    """The object `name` ("package.module:attribute") names; ValueError when it names nothing."""
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{name!r}: expected 'module:attribute'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except AttributeError:
        raise ValueError(f"{name!r}: module {module_name} has no {attr}") from None


def _run_named(entry: str, conn, *args) -> None:
    resolve(entry)(conn, *args)


def spawn(entry: str, *args, name: str):
    """Start `entry(conn, *args)` in a spawned daemon child. Returns (process, the parent's end of the
    pipe); the child's end is closed here, so the parent reads end-of-file once the child is gone."""
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_run_named, args=(entry, child_conn, *args), name=name, daemon=True)
    try:
        proc.start()
    finally:
        child_conn.close()
    return proc, parent_conn


def one_line(exc: BaseException) -> str:
    """An exception as the one line a user reads (the type named unless it is a ValueError / OSError)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
