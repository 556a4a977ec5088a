"""Which adapted matrices' pooled heatmaps a live snapshot carries, and how the pooled W0 travels once.

Every adapted matrix's norms and spectrum go in every snapshot (a few numbers each, r for LoRA), but
its pooled heatmaps (ΔW, W0, W_eff - W0, the planted target) are display_size² floats each: a 7B
model with LoRA on all seven projections has 224 matrices, 29 MB of heatmaps per snapshot at
display_size 128 (a 70B one 73 MB), about 1 GB/s at 30 snapshots a second. So the engine sends them
only for the matrices named by the setting `heatmap_matrices` (the ΔW view's choice; None: the
first matrix, which is where the pickers start). Headless runs (`run`, `compare`) record them all.

W0 (and the matrix scenario's target) are the same pooled arrays at every step of a segment: the
engine sends them with the first snapshot of a segment, of a new choice or of a new display size, and
leaves them out (None) after that. Two things keep them on the way to the views:

- `carry_held(new, older)`: a one-slot mailbox that replaces an untaken snapshot hands its held
  arrays to the one replacing it (`Snapshot.absorb`), so "latest wins" never loses them;
- `HeldHeatmaps.fill(snap)`: the window keeps the last ones it received per matrix and puts them back
  into each later snapshot of the same segment, so every view and the run recorder see whole ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

# At most this many matrices' heatmaps at once: the window asks for the one the ΔW view shows; a few
# more leave room for side-by-side views without letting a settings file ask for all 224.
MAX_HEATMAPS = 4
MAX_NAME_CHARS = 512
# the arrays that stay the same within a segment at one display size, sent once
HELD_ARRAYS = ("base", "target")


def heatmap_names(asked: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    """The matrices whose heatmaps are sent: those `asked` names that are `available`, in the order of
    `available`; else (nothing asked, or none of it here: another model's names) the first one."""
    if asked:
        wanted = set(asked)
        kept = tuple(n for n in available if n in wanted)
        if kept:
            return kept[:MAX_HEATMAPS]
    return tuple(available[:1])


def check_names(name: str, value) -> None:
    """ValueError (one line) unless `value` is None or 1 to MAX_HEATMAPS distinct matrix names."""
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}={_short(value)} is not a list of matrix names")
    if not 1 <= len(set(value)) <= MAX_HEATMAPS or len(value) != len(set(value)):
        raise ValueError(f"{name}={_short(list(value))}: allowed 1 to {MAX_HEATMAPS} distinct names (None: the first)")
    for v in value:
        if not v or len(v) > MAX_NAME_CHARS or not v.isprintable():
            raise ValueError(f"{name}: {_short(v)} is not a matrix name (printable, 1 to {MAX_NAME_CHARS} characters)")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_place(m, held) -> bool:
    """Whether `held`'s W0 fits `m`: the same matrix pooled to the same shape (the pooled shape fixes the
    pooling: mean pooling of `shape` to that many rows and columns)."""
    return (
        m.delta is not None
        and tuple(m.shape) == tuple(held.shape)
        and held.base is not None
        and tuple(held.base.shape) == tuple(m.delta.shape)
    )


def carry_held(new, older):
    """`new` with the held arrays (W0, target) that it leaves out and `older` (a snapshot of the same
    segment it replaces before anyone took it) carries; `new` itself when there is nothing to carry.
    Never changes either argument: another thread may be reading them."""
    if older is None or older.segment != new.segment or not older.matrices or not new.matrices:
        return new
    matrices = None
    for name, m in new.matrices.items():
        old = older.matrices.get(name)
        if old is None or m.delta is None or not _same_place(m, old):
            continue
        missing = {f: getattr(old, f) for f in HELD_ARRAYS if getattr(m, f) is None and getattr(old, f) is not None}
        if missing:
            if matrices is None:
                matrices = dict(new.matrices)
            matrices[name] = dataclasses.replace(m, **missing)
    return new if matrices is None else dataclasses.replace(new, matrices=matrices)


class HeldHeatmaps:
    """The window's copy of the held arrays of the matrices it is sent heatmaps of (one live run: a
    new worker starts with a new one, or `clear()`)."""

    def __init__(self) -> None:
        self._segment = None
        self._held: dict = {}  # name -> MatrixSnapshot holding them

    def clear(self) -> None:
        self._segment, self._held = None, {}

    def fill(self, snap):
        """`snap` with its left-out W0 / target put back from the last ones received for the same
        matrix, segment and pooled shape (a new snapshot object: the engine's is not changed). What
        has not arrived yet stays None (the ΔW view says it is on the way)."""
        if snap is None or not snap.matrices:
            return snap
        if snap.segment != self._segment:
            self._segment, self._held = snap.segment, {}
        matrices = None
        for name, m in snap.matrices.items():
            if m.delta is None:
                continue
            if m.base is not None:
                self._held[name] = m
                continue
            held = self._held.get(name)
            if held is None or not _same_place(m, held):
                continue
            missing = {f: getattr(held, f) for f in HELD_ARRAYS if getattr(m, f) is None}
            if matrices is None:
                matrices = dict(snap.matrices)
            matrices[name] = dataclasses.replace(m, **missing)
        # only the matrices with heatmaps now: memory stays at a few of them however many were viewed
        if len(self._held) > MAX_HEATMAPS:
            now = {n for n, m in snap.matrices.items() if m.delta is not None}
            self._held = {n: m for n, m in self._held.items() if n in now}
        return snap if matrices is None else dataclasses.replace(snap, matrices=matrices)
