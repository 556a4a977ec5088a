"""Build the two shipped corpora from the running interpreter's standard library (run once, commit).

    python scripts/make_corpora.py [--out resources/corpora]

base    Python standard-library source, whole files, so the base model learns to write Python.
domain  The fine-tuning target, in the spirit of LLaMA-Reviewer (code review): each sample is a
        `# review: ...` comment followed by a unified diff (`---`/`+++`/`@@`/`-`/`+` lines) that
        applies a small mechanical refactoring (f-string, rename, return hint, docstring, bare
        except, isinstance, enumerate, ...) to a real stdlib function. It looks nothing like plain Python, so
        a LoRA run visibly changes the model's samples within a minute.

Everything is deterministic: files are sorted, choices use fixed seeds or CRC32 of names (stable
across Python versions), and the gzip headers carry no timestamp. The output still depends on which
stdlib the interpreter has; manifest.json records the Python version and a hash of every file.
Each corpus is split into train (first 95%) and held-out (last 5%), at file / sample boundaries.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import gzip
import hashlib
import io
import json
import random
import re
import sys
import sysconfig
import tokenize
import zlib
from pathlib import Path

SEED = 0
HELDOUT_FRACTION = 0.05
BASE_BUDGET = 1_400_000  # bytes of text; ~1.4 MB keeps the wheel small and an epoch ~minutes
DOMAIN_BUDGET = 380_000
# Parts of the stdlib that are tests, tools, vendored or generated data rather than typical code.
EXCLUDED_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "ensurepip",
    "turtledemo",
    "pydoc_data",
    "encodings",
    "__phello__",
    "__pycache__",
    "lib-dynload",
    "tkinter",
    "distutils",
    "venv",
    "curses",
}
EXCLUDED_FILES = {"this.py", "antigravity.py", "_pydecimal.py", "_pyio.py", "pickletools.py"}


def stdlib_files() -> list[tuple[str, str]]:
    """(relative path, source) for every stdlib module kept, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & EXCLUDED_DIRS or rel.parts[0].startswith("config-"):
            continue
        if rel.name in EXCLUDED_FILES:
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append((rel.as_posix(), text.replace("\r\n", "\n")))
    return out


def stable_order(name: str) -> int:
    """A pseudo-random rank from the name alone (CRC32), identical on every machine and version."""
    return zlib.crc32(name.encode())


def split_heldout(pieces: list[str]) -> tuple[str, str]:
    """First ~95% of the pieces for training, the rest held out; never splits a piece."""
    total = sum(len(p) for p in pieces)
    acc, cut = 0, len(pieces)
    for i, p in enumerate(pieces):
        if acc >= total * (1 - HELDOUT_FRACTION):
            cut = i
            break
        acc += len(p)
    cut = min(cut, len(pieces) - 1)  # always hold something out
    return "".join(pieces[:cut]), "".join(pieces[cut:])


# --- base: whole stdlib files ------------------------------------------------------------------


def make_base(files: list[tuple[str, str]]) -> tuple[str, str]:
    # Mid-sized files: small ones are mostly boilerplate, huge ones would dominate the budget.
    candidates = [(rel, text) for rel, text in files if 2_000 <= len(text) <= 60_000]
    chosen, size = [], 0
    for rel, text in sorted(candidates, key=lambda f: stable_order(f[0])):
        if size + len(text) > BASE_BUDGET:
            continue
        chosen.append((rel, text))
        size += len(text)
    # Sorted by path, each file introduced by a comment naming it (still valid Python).
    pieces = [f"# file: {rel}\n{text.rstrip()}\n\n" for rel, text in sorted(chosen)]
    return split_heldout(pieces)


# --- domain: review comments with unified diffs ------------------------------------------------

# Each refactoring returns (edits, template-fields) or None. An edit is (row, col_start, col_end,
# replacement) on the file's 1-based lines; functions are ASCII-only so ast byte offsets equal
# character offsets.
TEMPLATES = {
    "fstring": [
        "prefer f-strings over % formatting",
        "an f-string reads better than %-interpolation here",
        "use an f-string instead of the % operator",
        "this is a good candidate for an f-string",
    ],
    "rename": [
        "`{old}` is too terse; call it `{new}`",
        "rename `{old}` to `{new}` so the intent is clear",
        "please use a descriptive name: `{new}` instead of `{old}`",
        "nit: `{new}` says more than `{old}`",
    ],
    "return_hint": [
        "add a return type hint (`-> {hint}`)",
        "annotate the return type: `{name}` returns {hint}",
        "missing return annotation; this returns {hint}",
    ],
    "docstring": [
        "missing docstring; add a one-line summary",
        "`{name}` needs a docstring",
        "please document what `{name}` does",
        "add a short docstring here",
    ],
    "bare_except": [
        "avoid a bare `except:`; it also catches KeyboardInterrupt and SystemExit",
        "catch `Exception` rather than everything",
        "a bare except hides bugs; narrow it to `Exception` at least",
    ],
    "isinstance": [
        "use isinstance() instead of comparing types",
        "`type(x) == T` ignores subclasses; use isinstance()",
        "prefer isinstance() for type checks",
    ],
    "len_check": [
        "empty sequences are falsy; no need for len() here",
        "simplify: test the container's truthiness instead of len()",
        "`if not {name}` is the idiomatic emptiness check",
    ],
    "not_in": [
        "`x not in y` reads better than `not x in y`",
        "use the `not in` operator",
        "nit: write this as `not in`",
    ],
    "literal": [
        "use a literal `{lit}` instead of `{call}`",
        "`{lit}` is faster and clearer than `{call}`",
        "nit: prefer the `{lit}` literal",
    ],
    "augmented": ["use augmented assignment (`{op}=`)", "`{name} {op}= ...` is shorter", "nit: this can be `{op}=`"],
    "enumerate": [
        "use enumerate() instead of indexing with range(len(...))",
        "iterate with enumerate(); `{seq}[{idx}]` is noise",
        "prefer `for {idx}, {item} in enumerate({seq})`",
    ],
    "keys": [
        "iterate over the dict directly; `.keys()` is redundant",
        "no need to call `.keys()` here",
        "`in {name}` already looks at the keys",
    ],
    "super": [
        "in Python 3, `super()` needs no arguments",
        "use the zero-argument form of `super()`",
        "simplify to `super()`",
    ],
}

RENAMES = {
    "s": "text",
    "f": "fileobj",
    "fp": "fileobj",
    "fh": "fileobj",
    "n": "count",
    "l": "items",
    "lst": "items",
    "res": "result",
    "ret": "result",
    "rv": "result",
    "r": "result",
    "tmp": "temp",
    "d": "mapping",
    "dct": "mapping",
    "err": "error",
    "msg": "message",
    "buf": "buffer",
    "idx": "index",
    "cnt": "count",
    "num": "number",
    "val": "value",
    "p": "path",
    "fn": "filename",
    "fname": "filename",
    "ln": "line",
    "c": "char",
    "ch": "char",
    "m": "match",
    "mo": "match",
    "k": "key",
    "v": "value",
    "i": "index",
    "pos": "position",
    "addr": "address",
    "sz": "size",
    "cfg": "config",
    "conf": "config",
    "rc": "returncode",
    "cb": "callback",
    "req": "request",
    "resp": "response",
    "hdr": "header",
    "hdrs": "headers",
    "prev": "previous",
    "cur": "current",
    "src": "source",
    "dst": "destination",
    "dest": "destination",
    "st": "stat_result",
    "ts": "timestamp",
    "nm": "name",
    "lo": "low",
    "hi": "high",
}

VERBS = {
    "parse",
    "read",
    "write",
    "load",
    "dump",
    "find",
    "add",
    "remove",
    "update",
    "check",
    "handle",
    "close",
    "open",
    "run",
    "start",
    "stop",
    "send",
    "format",
    "convert",
    "compute",
    "split",
    "join",
    "reset",
    "clear",
    "copy",
    "process",
    "validate",
    "register",
    "print",
    "emit",
    "encode",
    "decode",
    "escape",
    "quote",
    "unquote",
    "normalize",
    "resolve",
    "build",
    "make",
    "create",
    "append",
    "extend",
    "insert",
    "delete",
    "pop",
    "push",
    "put",
    "fetch",
    "visit",
    "walk",
    "match",
    "search",
    "compile",
    "save",
    "flush",
    "wait",
    "install",
    "setup",
    "apply",
    "call",
    "dispatch",
    "execute",
    "collect",
    "count",
    "render",
    "strip",
    "filter",
    "sort",
    "select",
    "scan",
    "skip",
    "expand",
    "fix",
    "translate",
    "test",
    "set",
    "get",
}


def seg(lines: list[str], node: ast.AST) -> str | None:
    """Source text of a single-line node, or None if it spans lines."""
    if node.lineno != node.end_lineno:
        return None
    return lines[node.lineno - 1][node.col_offset : node.end_col_offset]


class Skip(Exception):
    """This refactoring does not fit here after all (e.g. the code spans lines)."""


def replace(node: ast.AST, text: str) -> tuple[int, int, int, str]:
    """An edit replacing a node's source; only single-line nodes are rewritten."""
    if node.lineno != node.end_lineno:
        raise Skip
    return (node.lineno, node.col_offset, node.end_col_offset, text)


def own_nodes(fn: ast.AST):
    """Nodes of `fn`'s body, not descending into nested functions, lambdas or classes."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def r_fstring(fn, lines, toks):
    for node in own_nodes(fn):
        if not (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            continue
        lit = seg(lines, node.left)
        if lit is None or lit[:1] not in "'\"" or lit[:3] in ("'''", '"""') or "{" in lit or "}" in lit or "\\" in lit:
            continue
        specs = re.findall(r"%(.)", lit)
        if not specs or any(s not in "srd%" for s in specs):
            continue
        args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        fills = [s for s in specs if s != "%"]
        if len(fills) != len(args):
            continue
        texts = [seg(lines, a) for a in args]
        if any(t is None or re.search(r"['\"\\{}:!]", t) for t in texts):
            continue
        it = iter(zip(fills, texts))

        def sub(m, it=it):
            if m.group(1) == "%":
                return "%"
            spec, text = next(it)
            return "{" + text + ("!r" if spec == "r" else "") + "}"

        return [replace(node, "f" + re.sub(r"%(.)", sub, lit))], {}
    return None


def r_rename(fn, lines, toks):
    params = {a.arg for a in ast.walk(fn) if isinstance(a, ast.arg)}
    declared = {n for node in ast.walk(fn) if isinstance(node, (ast.Global, ast.Nonlocal)) for n in node.names}
    stored = [n.id for n in own_nodes(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    names = {t.string for t in toks if t.type == tokenize.NAME}
    for old in dict.fromkeys(stored):  # first assignment order, deduplicated
        new = RENAMES.get(old)
        if not new or new in names or old in params or old in declared:
            continue
        edits, depth, ok = [], 0, True
        for i, t in enumerate(toks):
            if t.type == tokenize.OP and t.string in "([{":
                depth += 1
            elif t.type == tokenize.OP and t.string in ")]}":
                depth -= 1
            if t.type == tokenize.STRING and t.string.lstrip("rbRB")[:1] in "fF" and old in t.string:
                ok = False  # f-string internals are not tokens in 3.11; leave them alone
            if t.type != tokenize.NAME or t.string != old:
                continue
            if i and toks[i - 1].string == ".":
                continue  # an attribute of something else
            if depth and i + 1 < len(toks) and toks[i + 1].string == "=":
                ok = False  # a keyword argument of a call would change meaning
            edits.append((t.start[0], t.start[1], t.end[1], new))
        if ok and edits:
            return edits, {"old": old, "new": new}
    return None


def _signature_colon(toks):
    """Position of the ':' that ends the def's signature."""
    depth = 0
    for t in toks:
        if t.type == tokenize.OP:
            if t.string in "([{":
                depth += 1
            elif t.string in ")]}":
                depth -= 1
            elif t.string == ":" and depth == 0:
                return t.start
    return None


def r_return_hint(fn, lines, toks):
    if fn.returns is not None:
        return None
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not body or all(isinstance(s, (ast.Pass, ast.Raise)) for s in body):
        return None  # abstract stubs: the real return type lives in subclasses
    nodes = list(own_nodes(fn))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in nodes):
        return None
    values = [n.value for n in nodes if isinstance(n, ast.Return)]
    if not any(v is not None for v in values):
        hint = "None"
    elif all(
        v is not None
        and (
            isinstance(v, (ast.Compare))
            or (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not))
            or (isinstance(v, ast.Constant) and isinstance(v.value, bool))
        )
        for v in values
    ):
        hint = "bool"
    elif all(
        v is not None and (isinstance(v, ast.JoinedStr) or (isinstance(v, ast.Constant) and isinstance(v.value, str)))
        for v in values
    ):
        hint = "str"
    else:
        return None
    colon = _signature_colon(toks)
    if colon is None:
        return None
    row, col = colon
    return [(row, col, col, f" -> {hint}")], {"hint": hint}


def _summary(name: str) -> str | None:
    """A one-line docstring guessed from the function's name (get_x -> 'Return the x.')."""
    if name.startswith("__"):
        return None
    if "_" not in name.strip("_"):  # camelCase: split into lower-case words (setUp -> set up)
        name = re.sub(r"(?<=[a-z])([A-Z])(?=[a-z])", lambda m: "_" + m.group(1).lower(), name)
        name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name)
    words = [w for w in name.strip("_").split("_") if w]
    if not words:
        return None
    head, rest = words[0].lower(), " ".join(words[1:])
    if head == "get" and rest:
        return f"Return the {rest}."
    if head in ("is", "has") and rest:
        return f"Return True if this {head} {rest}."
    if "to" in words[1:-1]:
        i = words.index("to", 1)
        return f"Convert {' '.join(words[:i])} to {' '.join(words[i + 1 :])}."
    if head in VERBS and rest and rest not in ("up", "down", "in", "out", "off"):
        return f"{head.capitalize()} the {rest}."
    return " ".join(words).capitalize() + "."


def r_docstring(fn, lines, toks):
    if ast.get_docstring(fn) is not None or len(fn.body) < 2:
        return None
    summary = _summary(fn.name)
    first = fn.body[0]
    if summary is None or first.lineno == fn.lineno:
        return None
    line = lines[first.lineno - 1]
    indent = line[: len(line) - len(line.lstrip())]
    if line[len(indent) : len(indent) + 1] == "@" or first.col_offset != len(indent):
        return None
    return [(first.lineno, 0, 0, f'{indent}"""{summary}"""\n')], {}


def r_bare_except(fn, lines, toks):
    for node in own_nodes(fn):
        if isinstance(node, ast.ExceptHandler) and node.type is None:
            line = lines[node.lineno - 1]
            if line[node.col_offset :].startswith("except:"):
                c = node.col_offset + len("except")
                return [(node.lineno, c, c, " Exception")], {}
    return None


def r_isinstance(fn, lines, toks):
    for node in own_nodes(fn):
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], (ast.Eq, ast.Is))
            and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Name)
            and node.left.func.id == "type"
            and len(node.left.args) == 1
        ):
            obj, typ = seg(lines, node.left.args[0]), seg(lines, node.comparators[0])
            if isinstance(node.comparators[0], ast.Call):
                continue  # `type(x) == type(y)` compares two types; not a simple type check
            if obj and typ and seg(lines, node):
                return [replace(node, f"isinstance({obj}, {typ})")], {}
    return None


def r_len_check(fn, lines, toks):
    for node in own_nodes(fn):
        if not isinstance(node, (ast.If, ast.While)):
            continue
        t = node.test
        if (
            isinstance(t, ast.Compare)
            and len(t.ops) == 1
            and isinstance(t.left, ast.Call)
            and isinstance(t.left.func, ast.Name)
            and t.left.func.id == "len"
            and len(t.left.args) == 1
            and isinstance(t.comparators[0], ast.Constant)
            and t.comparators[0].value == 0
        ):
            obj = seg(lines, t.left.args[0])
            if obj is None or seg(lines, t) is None:
                continue
            if isinstance(t.ops[0], ast.Eq):
                return [replace(t, f"not {obj}")], {"name": obj}
            if isinstance(t.ops[0], (ast.NotEq, ast.Gt)):
                return [replace(t, obj)], {"name": obj}
    return None


def r_not_in(fn, lines, toks):
    for node in own_nodes(fn):
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.Not)
            and isinstance(node.operand, ast.Compare)
            and len(node.operand.ops) == 1
            and isinstance(node.operand.ops[0], ast.In)
        ):
            a, b = seg(lines, node.operand.left), seg(lines, node.operand.comparators[0])
            if a and b and seg(lines, node):
                return [replace(node, f"{a} not in {b}")], {}
    return None


def r_literal(fn, lines, toks):
    for node in own_nodes(fn):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("dict", "list")
            and not node.args
            and not node.keywords
        ):
            lit = "{}" if node.func.id == "dict" else "[]"
            return [replace(node, lit)], {"lit": lit, "call": node.func.id + "()"}
    return None


def r_augmented(fn, lines, toks):
    ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.BitOr: "|"}
    for node in own_nodes(fn):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.BinOp)
            and type(node.value.op) in ops
            and isinstance(node.value.left, ast.Name)
            and node.value.left.id == node.targets[0].id
        ):
            right = seg(lines, node.value.right)
            if right is None or seg(lines, node) is None:
                continue
            op = ops[type(node.value.op)]
            name = node.targets[0].id
            return [replace(node, f"{name} {op}= {right}")], {"op": op, "name": name}
    return None


def r_enumerate(fn, lines, toks):
    names = {t.string for t in toks if t.type == tokenize.NAME}
    for node in own_nodes(fn):
        if not (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Call)
            and isinstance(node.iter.func, ast.Name)
            and node.iter.func.id == "range"
            and len(node.iter.args) == 1
            and isinstance(node.iter.args[0], ast.Call)
            and isinstance(node.iter.args[0].func, ast.Name)
            and node.iter.args[0].func.id == "len"
            and len(node.iter.args[0].args) == 1
            and isinstance(node.iter.args[0].args[0], ast.Name)
        ):
            continue
        idx, seq = node.target.id, node.iter.args[0].args[0].id
        item = next((c for c in ("item", "element", "entry", "value") if c not in names), None)
        if item is None or node.target.lineno != node.iter.lineno:
            continue
        uses = [
            n
            for b in node.body
            for n in ast.walk(b)
            if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)
            and n.value.id == seq
            and isinstance(n.slice, ast.Name)
            and n.slice.id == idx
        ]
        if not uses or any(not isinstance(u.ctx, ast.Load) for u in uses):
            continue
        edits = [replace(node.target, f"{idx}, {item}"), replace(node.iter, f"enumerate({seq})")]
        edits += [replace(u, item) for u in uses]
        return edits, {"idx": idx, "seq": seq, "item": item}
    return None


def r_keys(fn, lines, toks):
    for node in own_nodes(fn):
        target = None
        if isinstance(node, (ast.For, ast.comprehension)):
            target = node.iter
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            target = node.comparators[0]
        if (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Attribute)
            and target.func.attr == "keys"
            and not target.args
            and not target.keywords
        ):
            base = seg(lines, target.func.value)
            if base and seg(lines, target):
                return [replace(target, base)], {"name": base}
    return None


def r_super(fn, lines, toks):
    for node in own_nodes(fn):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "super"
            and len(node.args) == 2
            and isinstance(node.args[1], ast.Name)
            and node.args[1].id == "self"
            and seg(lines, node)
        ):
            return [replace(node, "super()")], {}
    return None


REFACTORINGS = {
    "fstring": r_fstring,
    "rename": r_rename,
    "return_hint": r_return_hint,
    "docstring": r_docstring,
    "bare_except": r_bare_except,
    "isinstance": r_isinstance,
    "len_check": r_len_check,
    "not_in": r_not_in,
    "literal": r_literal,
    "augmented": r_augmented,
    "enumerate": r_enumerate,
    "keys": r_keys,
    "super": r_super,
}


def apply_edits(lines: list[str], edits) -> list[str]:
    out = list(lines)
    # Right to left, bottom to top, so earlier offsets stay valid.
    for row, c0, c1, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out[row - 1] = out[row - 1][:c0] + text + out[row - 1][c1:]
    return out


def render_diff(rel, fn, lines, edits, comment) -> str | None:
    lo, hi = fn.lineno, fn.end_lineno
    before = lines[lo - 1 : hi]
    after = apply_edits(lines, edits)[lo - 1 : hi]
    after = "".join(after).splitlines(keepends=True)  # docstring insertions add a line
    body = list(difflib.unified_diff(before, after, f"a/{rel}", f"b/{rel}", n=2))
    if not body or len(body) > 30:
        return None
    out = [f"# review: {comment}\n"]
    for line in body:
        m = re.match(r"@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@", line)
        if m:  # difflib numbers lines within the function; shift to the file's numbering
            a, b = int(m.group(1)) + lo - 1, int(m.group(3)) + lo - 1
            heading = f" {lines[lo - 1].strip()}" if a > lo else ""
            line = f"@@ -{a}{m.group(2) or ''} +{b}{m.group(4) or ''} @@{heading}\n"
        out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out) + "\n"


def function_samples(rel: str, text: str):
    """(kind, sample) for every refactoring that applies to a function of this file."""
    try:
        tree = ast.parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, tokenize.TokenError, ValueError):
        return
    lines = text.splitlines(keepends=True)
    for fn in sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), key=lambda n: n.lineno
    ):
        src = "".join(lines[fn.lineno - 1 : fn.end_lineno])
        if not src.isascii() or fn.decorator_list and fn.lineno != fn.decorator_list[0].end_lineno + 1:
            continue
        toks = [t for t in tokens if fn.lineno <= t.start[0] <= fn.end_lineno]
        for kind, refactor in REFACTORINGS.items():
            try:
                found = refactor(fn, lines, toks)
            except Skip:
                continue
            if not found:
                continue
            edits, fields = found
            # Templates are chosen per function, deterministically and version-independently.
            templates = TEMPLATES[kind]
            comment = templates[stable_order(f"{rel}:{fn.name}:{kind}") % len(templates)]
            sample = render_diff(rel, fn, lines, edits, comment.format(**{"name": fn.name, **fields}))
            if sample:
                yield kind, f"{rel}:{fn.lineno}", sample


def make_domain(files: list[tuple[str, str]]) -> tuple[str, str]:
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for rel, text in files:
        for kind, key, sample in function_samples(rel, text):
            by_kind.setdefault(kind, []).append((key, sample))
    print("domain: candidates per kind", {k: len(v) for k, v in sorted(by_kind.items())}, file=sys.stderr)
    rng = random.Random(SEED)
    for kind in sorted(by_kind):
        rng.shuffle(by_kind[kind])
    # Round-robin over kinds so rare refactorings are all used and common ones fill the rest;
    # each function contributes at most one sample.
    chosen, used, size = [], set(), 0
    queues = [by_kind[k] for k in sorted(by_kind)]
    while size < DOMAIN_BUDGET and any(queues):
        for q in queues:
            while q:
                key, sample = q.pop()
                if key not in used:
                    used.add(key)
                    chosen.append(sample)
                    size += len(sample)
                    break
    rng.shuffle(chosen)
    return split_heldout(chosen)


def write_gz(path: Path, text: str) -> str:
    """Write gzip without a timestamp or file name, so reruns give identical bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "resources" / "corpora")
    args = ap.parse_args(argv)
    files = stdlib_files()
    corpora = {"base": make_base(files), "domain": make_domain(files)}
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "python": sys.version.split()[0],
        "stdlib": "sysconfig stdlib of the generating interpreter",
        "command": "python scripts/make_corpora.py",
        "heldout_fraction": HELDOUT_FRACTION,
        "files": {},
    }
    for name, (train, heldout) in corpora.items():
        for split, text in (("train", train), ("heldout", heldout)):
            fname = f"{name}.{split}.txt.gz"
            digest = write_gz(args.out / fname, text)
            manifest["files"][fname] = {"chars": len(text), "bytes_utf8": len(text.encode()), "sha256": digest}
            print(f"{fname}: {len(text):,} chars, {(args.out / fname).stat().st_size:,} bytes gzipped")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
