"""PEFT's rule for `rank_pattern` / `alpha_pattern` keys, written once for the core (injection,
resizing) and the plain-data budget.

A key is a regular expression that must match the END of a module's path, after a dot or as the
whole path (peft.utils.other.get_pattern_key); the first matching key wins. Keys come from files, so
they are matched with the linear-time matcher (schema/safe_regex.py), never Python's `re`.
"""

from __future__ import annotations

from explorer.schema.safe_regex import compile_safe


def peft_key_regex(key: str) -> str:
    """The expression PEFT composes from a key."""
    return rf"(.*\.)?({key})$"


def pattern_key(keys, module_name: str) -> str | None:
    """The first key of `keys` that matches the end of `module_name`, or None."""
    for key in keys:
        if compile_safe(peft_key_regex(key)).match(module_name):
            return key
    return None


__all__ = ["pattern_key", "peft_key_regex"]
