"""Regular expressions from files, matched in linear time.

PEFT reads some config fields as Python regular expressions (`target_modules` as a string,
`rank_pattern` / `alpha_pattern` keys). Python's `re` backtracks: `((a+))+` or `(a|a)*` against a
long module name takes exponential time, and no signal interrupts it. Here a pattern is parsed with
Python's own parser (so it means exactly what it means to PEFT) and matched by simulating its
automaton (Thompson's construction, states built lazily and cached as in a lazy DFA): time linear
in the text, whatever the pattern. What an automaton cannot do (backreferences, lookaround,
conditionals, atomic groups, possessive repeats, flags) is refused with the reason, as are patterns
over MAX_PATTERN_CHARS characters or MAX_STATES automaton states.

`SafePattern.backtracking` names what would make a backtracking matcher (Python's `re`, hence PEFT
itself) take exponential time: a repetition inside a repetition (`(a+)+`, `((a+))+`), or
alternatives that can start alike inside a repetition (`(a|a)*`, `(a|ab)+`), or more than MAX_UNBOUNDED `*`/`+` in all. Readers refuse such
patterns, so an adapter we accept never hangs PEFT either.

    p = compile_safe(r"model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj")   # UnsafePattern (a ValueError) if refused
    p.fullmatch(name), p.match(name)                               # bools, as re.fullmatch / re.match
"""

from __future__ import annotations

import functools
import sys

try:  # Python 3.11+; the module was public as sre_parse before
    import re._constants as _c
    import re._parser as _parser
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _c
    import sre_parse as _parser

import re

MAX_PATTERN_CHARS = 500
MAX_STATES = 5000
MAX_CACHE = 20_000  # cached automaton transitions per pattern; cleared beyond this

_CHAR, _SPLIT, _ASSERT, _ACCEPT = range(4)
_ALLOWED_FLAGS = _c.SRE_FLAG_UNICODE


class UnsafePattern(ValueError):
    """A pattern that is refused; the message says why."""


def _equals(c: str):
    return lambda ch: ch == c


def _differs(c: str):
    return lambda ch: ch != c


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _category(code) -> callable:
    cats = {
        _c.CATEGORY_DIGIT: str.isdecimal,
        _c.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdecimal(),
        _c.CATEGORY_SPACE: str.isspace,
        _c.CATEGORY_NOT_SPACE: lambda ch: not ch.isspace(),
        _c.CATEGORY_WORD: _word,
        _c.CATEGORY_NOT_WORD: lambda ch: not _word(ch),
    }
    if code not in cats:
        raise UnsafePattern(f"the character class {code} is not supported")
    return cats[code]


def _char_set(items) -> callable:
    negate = False
    tests = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            tests.append(_equals(chr(av)))
        elif op is _c.NOT_LITERAL:
            tests.append(_differs(chr(av)))
        elif op is _c.RANGE:
            tests.append(lambda ch, lo=av[0], hi=av[1]: lo <= ord(ch) <= hi)
        elif op is _c.CATEGORY:
            tests.append(_category(av))
        else:
            raise UnsafePattern(f"{op} inside a character class is not supported")
    if negate:
        return lambda ch: not any(t(ch) for t in tests)
    return lambda ch: any(t(ch) for t in tests)


class _Builder:
    """Thompson's construction, built backwards: each piece is compiled knowing its successor."""

    def __init__(self):
        self.kind: list[int] = []
        self.arg: list = []
        self.out: list[list[int]] = []

    def node(self, kind: int, arg=None, out=()) -> int:
        if len(self.kind) >= MAX_STATES:
            raise UnsafePattern(f"it is too complex (more than {MAX_STATES} automaton states)")
        self.kind.append(kind)
        self.arg.append(arg)
        self.out.append(list(out))
        return len(self.kind) - 1

    def seq(self, items, nxt: int) -> int:
        for op, av in reversed(list(items)):
            nxt = self.item(op, av, nxt)
        return nxt

    def item(self, op, av, nxt: int) -> int:
        if op is _c.LITERAL:
            return self.node(_CHAR, _equals(chr(av)), [nxt])
        if op is _c.NOT_LITERAL:
            return self.node(_CHAR, _differs(chr(av)), [nxt])
        if op is _c.ANY:
            return self.node(_CHAR, lambda ch: ch != "\n", [nxt])
        if op is _c.IN:
            return self.node(_CHAR, _char_set(av), [nxt])
        if op is _c.AT:
            return self.node(_ASSERT, av, [nxt])
        if op is _c.BRANCH:
            return self.node(_SPLIT, None, [self.seq(alt, nxt) for alt in av[1]])
        if op is _c.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            if add_flags or del_flags:
                raise UnsafePattern("inline flags such as (?i:...) are not supported")
            return self.seq(body, nxt)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):  # greedy or lazy: the same set of matches
            low, high, body = av
            if high is _c.MAXREPEAT:
                loop = self.node(_SPLIT)
                self.out[loop] = [self.seq(body, loop), nxt]
                cur = loop
            else:
                cur = nxt
                for _ in range(high - low):
                    cur = self.node(_SPLIT, None, [self.seq(body, cur), cur])
            for _ in range(low):
                cur = self.seq(body, cur)
            return cur
        reasons = {
            _c.GROUPREF: "backreferences are not supported",
            _c.GROUPREF_EXISTS: "conditional groups are not supported",
            _c.ASSERT: "lookahead and lookbehind are not supported",
            _c.ASSERT_NOT: "lookahead and lookbehind are not supported",
        }
        for name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
            if hasattr(_c, name) and op is getattr(_c, name):
                raise UnsafePattern("atomic groups and possessive repeats are not supported")
        raise UnsafePattern(reasons.get(op, f"{op} is not supported"))


def _assert_holds(code, text: str, i: int) -> bool:
    n = len(text)
    if code in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
        return i == 0
    if code == _c.AT_END:
        return i == n or (i == n - 1 and text[i] == "\n")
    if code == _c.AT_END_STRING:
        return i == n
    if code in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
        if n == 0 and code == _c.AT_NON_BOUNDARY and sys.version_info < (3, 14):
            return False  # before 3.14, re's \B never matches the empty string
        before = i > 0 and _word(text[i - 1])
        after = i < n and _word(text[i])
        return (before != after) == (code == _c.AT_BOUNDARY)
    raise UnsafePattern(f"the anchor {code} is not supported")


class SafePattern:
    """A compiled pattern: `match` and `fullmatch` answer as `re` would, in time linear in the text."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        if not isinstance(pattern, str):
            raise UnsafePattern("a pattern must be text")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise UnsafePattern(f"it has {len(pattern)} characters (at most {MAX_PATTERN_CHARS})")
        try:
            re.compile(pattern)  # the errors `re` gives, in its words
            parsed = _parser.parse(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise UnsafePattern(f"it is not a valid pattern ({exc})") from None
        if parsed.state.flags & ~_ALLOWED_FLAGS:
            raise UnsafePattern("flags such as (?i) are not supported")
        b = _Builder()
        accept = b.node(_ACCEPT)
        try:
            self.start = b.seq(parsed.data if hasattr(parsed, "data") else parsed, accept)
        except RecursionError:
            raise UnsafePattern("it is nested too deeply") from None
        self._kind, self._arg, self._out = b.kind, b.arg, b.out
        self.backtracking = _backtracking_risk(parsed.data, pattern)
        self._accept = accept
        self._has_asserts = _ASSERT in b.kind
        self._closures: dict = {}
        self._steps: dict = {}

    @property
    def states(self) -> int:
        return len(self._kind)

    def _closure(self, states: frozenset, text: str, i: int) -> frozenset:
        context = None
        if self._has_asserts:
            n = len(text)
            context = (
                i == 0,
                i == n,
                i == n - 1 and text[i] == "\n",
                i > 0 and _word(text[i - 1]),
                i < n and _word(text[i]),
            )
        key = (states, context)
        hit = self._closures.get(key)
        if hit is not None:
            return hit
        seen = set()
        stack = list(states)
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            kind = self._kind[s]
            if kind == _SPLIT or kind == _ASSERT and _assert_holds(self._arg[s], text, i):
                stack.extend(self._out[s])
        result = frozenset(s for s in seen if self._kind[s] in (_CHAR, _ACCEPT))
        self._remember(self._closures, key, result)
        return result

    def _step(self, states: frozenset, ch: str) -> frozenset:
        key = (states, ch)
        hit = self._steps.get(key)
        if hit is not None:
            return hit
        result = frozenset(self._out[s][0] for s in states if self._kind[s] == _CHAR and self._arg[s](ch))
        self._remember(self._steps, key, result)
        return result

    @staticmethod
    def _remember(cache: dict, key, value) -> None:
        if len(cache) >= MAX_CACHE:
            cache.clear()
        cache[key] = value

    def _run(self, text: str, full: bool) -> bool:
        current = self._closure(frozenset([self.start]), text, 0)
        for i, ch in enumerate(text):
            if not full and self._accept in current:
                return True
            current = self._step(current, ch)
            if not current:
                return False
            current = self._closure(current, text, i + 1)
        return self._accept in current

    def match(self, text: str) -> bool:
        """As bool(re.match(pattern, text)): a match starting at the beginning."""
        return self._run(text, full=False)

    def fullmatch(self, text: str) -> bool:
        """As bool(re.fullmatch(pattern, text))."""
        return self._run(text, full=True)


@functools.lru_cache(maxsize=256)
def compile_safe(pattern: str) -> SafePattern:
    """The SafePattern of `pattern` (cached); UnsafePattern says why a pattern is refused."""
    return SafePattern(pattern)


def _first_chars(items) -> tuple[list, bool]:
    """The character tests a match of `items` can start with, and whether it can match empty
    (anchors are treated as passable: an over-estimate, which only makes the check stricter)."""
    b = _Builder()
    accept = b.node(_ACCEPT)
    start = b.seq(items, accept)
    seen, stack, tests = set(), [start], []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if b.kind[node] == _CHAR:
            tests.append(b.arg[node])
        elif b.kind[node] != _ACCEPT:
            stack.extend(b.out[node])
    return tests, accept in seen


def _overlap(alternatives, probe: str) -> bool:
    firsts = []
    for alt in alternatives:
        tests, empty = _first_chars(alt)
        if empty:
            return True  # an empty alternative inside a loop: as ambiguous as it gets
        firsts.append({ch for ch in probe if any(t(ch) for t in tests)})
    return any(firsts[i] & firsts[j] for i in range(len(firsts)) for j in range(i + 1, len(firsts)))


MAX_UNBOUNDED = 4  # `.*` after `.*` costs a backtracking matcher a factor of the text's length each


def _backtracking_risk(items, pattern: str) -> str | None:
    probe = "".join(chr(i) for i in range(128)) + "".join(sorted(set(pattern)))
    unbounded = 0

    def walk(items, looped: bool) -> str | None:
        for op, av in items:
            if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
                low, high, body = av
                loops = high is _c.MAXREPEAT or high > 1
                if high is _c.MAXREPEAT:
                    nonlocal unbounded
                    unbounded += 1
                    if unbounded > MAX_UNBOUNDED:
                        return f"more than {MAX_UNBOUNDED} unbounded repetitions (* or +)"
                if loops and looped:
                    return "a nested repetition"
                found = walk(body, looped or loops)
                if found:
                    return found
            elif op is _c.SUBPATTERN:
                found = walk(av[3], looped)
                if found:
                    return found
            elif op is _c.BRANCH:
                if looped and _overlap(av[1], probe):
                    return "alternatives that can start alike inside a repetition"
                for alt in av[1]:
                    found = walk(alt, looped)
                    if found:
                        return found
        return None

    return walk(items, False)
