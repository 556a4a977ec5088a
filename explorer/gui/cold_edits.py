"""Edits made in the settings panel, and what a change is called on the loss view.

A cold setting restarts the adapters from the frozen base. Ticking four target boxes, or holding a
spin box's arrow, makes several cold edits within a moment: `ColdEdits` gathers them and applies them
together once `delay_ms` pass without another (one restart, not four); a hot edit (learning rate,
batch) applies at once, pending cold edits or not.

`change_label(old, new)` names what differs between two runs' settings, the way the loss view labels
a ghost curve ("r=8 → r=16") or a hot change's marker ("lr 0.01 → 0.003").
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

from explorer.schema.settings import COLD, SETTINGS_SPEC

COLD_EDIT_MS = 400  # the window's pause between the last of several cold edits and the one restart

# Settings that change what is shown, not what trains: never named in a label.
DISPLAY_ONLY = frozenset(
    {"speed", "snapshot_hz", "display_size", "attention_layers", "attention_heads", "heatmap_matrices"}
)
SHORT_NAMES = {
    "rank": "r",
    "alpha": "α",
    "use_rslora": "rsLoRA",
    "use_dora": "DoRA",
    "prefix_len": "K",
    "prefix_layers": "L",
    "batch_size": "batch",
    "seq_len": "seq",
    "target_rank": "target rank",
    "size_in": "in",
    "size_out": "out",
}
METHOD_SHORT = {"lora": "LoRA", "prefix": "prefix", "lora+prefix": "LoRA+prefix", "full": "full"}
MAX_NAMED = 2  # a label names this many changes, then "+N more"


class ColdEdits(QObject):
    """Edits from the panel, applied through `apply(changes) -> bool`: a hot one at once, cold ones
    gathered (`pending`) until `delay_ms` pass without another cold edit. `delay_ms` 0 applies every
    edit at once."""

    def __init__(self, apply: Callable[[dict], bool], delay_ms: int = 0, parent: QObject | None = None):
        super().__init__(parent)
        self._apply = apply
        self.pending: dict = {}
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(max(0, int(delay_ms)))
        self.timer.timeout.connect(self.flush)

    @property
    def delay_ms(self) -> int:
        return self.timer.interval()

    def submit(self, name: str, value) -> None:
        """A user's edit of one setting."""
        spec = SETTINGS_SPEC.get(name)
        if spec is None or spec.kind != COLD or self.delay_ms <= 0:
            self._apply({name: value})
            return
        self.pending[name] = value
        self.timer.start()  # restarted by every cold edit: the restart waits for the last one

    def flush(self) -> bool:
        """Apply the pending cold edits now (together); True if there were none or they applied."""
        self.timer.stop()
        changes, self.pending = self.pending, {}
        return self._apply(changes) if changes else True

    def drop(self, names=None) -> None:
        """Forget pending edits (of `names`, or all): newer settings came from elsewhere."""
        for name in list(self.pending) if names is None else names:
            self.pending.pop(name, None)
        if not self.pending:
            self.timer.stop()


def format_setting(name: str, value) -> str:
    """One setting's value as a label shows it: targets without '_proj', layers 'all', on / off."""
    if name == "targets":
        return ",".join(str(t).replace("_proj", "") for t in value or ())
    if name == "layers":
        return "all" if not value else ",".join(map(str, value))
    if name == "method":
        return METHOD_SHORT.get(value, str(value))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def change_parts(old: dict, new: dict) -> list[str]:
    """'r=8 → r=16' for each training setting that differs between two settings dicts, in the
    settings' order; the method and scenario read 'LoRA → full'."""
    parts = []
    for name in SETTINGS_SPEC:
        if name in DISPLAY_ONLY or name not in old or name not in new:
            continue
        a, b = old[name], new[name]
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a == b:
            continue
        va, vb = format_setting(name, a), format_setting(name, b)
        if name in ("method", "scenario"):
            parts.append(f"{va} → {vb}")
        elif name in ("lr", "batch_size"):
            short = SHORT_NAMES.get(name, name)
            parts.append(f"{short} {va} → {vb}")
        else:
            short = SHORT_NAMES.get(name, name.replace("_", " "))
            parts.append(f"{short}={va} → {short}={vb}")
    return parts


def change_label(old: dict, new: dict, none: str = "reset") -> str:
    """What changed from `old` to `new` in one short line ('r=8 → r=16, α=16 → α=32 +1 more'), or
    `none` when no training setting did (a reset)."""
    parts = change_parts(old or {}, new or {})
    if not parts:
        return none
    head = ", ".join(parts[:MAX_NAMED])
    return head if len(parts) <= MAX_NAMED else f"{head} +{len(parts) - MAX_NAMED} more"
