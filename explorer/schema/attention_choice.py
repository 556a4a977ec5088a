"""Which prefix layers and heads the attention maps cover: plain rules shared by the engine (which
sends only those maps: 8 x 8 maps of a 64-token probe are 1.2 MB where all 32 x 32 of a 7B model
are 19 MB, and all 80 x 64 of a 70B one 97 MB, per snapshot) and the attention view's picker.

Layers are named by their number in the model (24 is the model's layer 24), heads by their index.
The settings `attention_layers` / `attention_heads` hold a choice (None: the default subset).
"""

from __future__ import annotations

from collections.abc import Sequence

from explorer.schema.format import format_ranges, parse_ranges

# At most this many rows and columns at once: at 16 x 16 maps each map is still ~30 px wide in a
# 600 px dock, enough to see where a head looks; more is colour noise.
MAX_SHOWN = 16
# The default subset: the deepest DEFAULT_SHOWN prefix layers and the first DEFAULT_SHOWN heads.
# The deepest layers because prefixes sit on the top L layers (LLaMA-Adapter), so the last ones are
# prefix layers whatever L is, they lie nearest the output the loss acts on, and a contiguous range
# reads as one range in the caption and is easy to shift by typing. Heads carry no order, so the
# first ones.
DEFAULT_SHOWN = 8


def parse_choice(text: str, available: Sequence[int], what: str) -> tuple[int, ...] | None:
    """The numbers `text` names among `available`, ascending; None for '' (the default subset).
    'all' names every available one. ValueError (one line) for text that is not a list of numbers
    and ranges, a number not available, or more than MAX_SHOWN."""
    text = text.strip().lower()
    if text == "":
        return None
    available = sorted(set(int(v) for v in available))
    if text == "all":
        chosen = available
    else:
        chosen = set()
        for a, b in parse_ranges(text, what):
            missing = [v for v in range(a, b + 1) if v not in available]
            if missing:
                raise ValueError(f"{what}: {missing[0]} is not here (there are {format_ranges(available)})")
            chosen.update(range(a, b + 1))
        chosen = sorted(chosen)
    if len(chosen) > MAX_SHOWN:
        raise ValueError(
            f"{what}: {len(chosen)} at once is too many to read; at most {MAX_SHOWN} (e.g. "
            f"{format_ranges(available[-MAX_SHOWN:])})"
        )
    return tuple(chosen) or None


def default_choice(available: Sequence[int], deepest: bool) -> tuple[int, ...]:
    available = sorted(set(int(v) for v in available))
    return tuple(available[-DEFAULT_SHOWN:] if deepest else available[:DEFAULT_SHOWN])


def chosen(asked: Sequence[int] | None, available: Sequence[int], deepest: bool) -> tuple[int, ...]:
    """What `asked` names that is `available`, else (nothing asked, or none of it there) the default:
    the deepest DEFAULT_SHOWN (`deepest`) or the first DEFAULT_SHOWN."""
    available = sorted(set(int(v) for v in available))
    if asked is not None:
        have = set(available)
        kept = tuple(sorted({int(v) for v in asked if int(v) in have}))
        if kept:
            return kept[:MAX_SHOWN]
    return default_choice(available, deepest)


def attention_cells(
    layers_asked: Sequence[int] | None, heads_asked: Sequence[int] | None, prefix_layers: Sequence[int], n_heads: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(model layers, heads) whose probe attention maps are sent and shown, ascending."""
    return chosen(layers_asked, prefix_layers, deepest=True), chosen(heads_asked, range(int(n_heads)), deepest=False)
