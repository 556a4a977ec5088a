"""The settings panel, generated from `SETTINGS_SPEC`.

One row per setting: a label, an editor that enforces the setting's range or choices, and a tag that
says whether a change applies at once (hot) or restarts the adapters from the frozen base (cold).
Rows that do not apply to the current scenario or method are hidden. A change is validated here
(`TrainSettings.with_changes`), then handed to `configure` (the worker's); a ValueError from either
shows next to the control it names and the control returns to the value in force.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.gui.cold_edits import ColdEdits
from explorer.gui.editors import LogSpinBox, format_layers, number_field, parse_layers
from explorer.schema.settings import (
    COLD,
    HOT,
    PATTERNS,
    SETTINGS_SPEC,
    TrainSettings,
    format_pattern,
    parse_pattern,
    with_method_defaults,
)

# Where each setting goes; a setting missing here still gets a row, under "Other".
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Run", ("scenario", "method", "device", "dtype", "seed")),
    (
        "LoRA",
        (
            "rank",
            "alpha",
            "use_rslora",
            "init",
            "dropout",
            "use_dora",
            "targets",
            "layers",
            "rank_pattern",
            "alpha_pattern",
        ),
    ),
    ("Prefix (zero-init, gated)", ("prefix_len", "prefix_layers", "gate_shape", "gate_fn", "prompt_init")),
    ("Optimisation", ("lr", "batch_size", "seq_len")),
    ("Matrix", ("size_in", "size_out", "target_rank", "noise", "preset")),
    ("Display", ("snapshot_hz", "display_size")),
]
# Settings with their own widget elsewhere (the toolbar's speed box; the model and the data are
# chosen with File > Open model / Open data; the attention maps sent, in the attention view's
# Layers / Heads fields; the heatmaps sent, by the ΔW view's matrix picker).
ELSEWHERE = frozenset(
    {
        "speed",
        "model",
        "data",
        "eval_data",
        "prompt",
        "loss_on",
        "attention_layers",
        "attention_heads",
        "heatmap_matrices",
    }
)

LABELS = {
    "scenario": "Scenario",
    "method": "Method",
    "device": "Device",
    "dtype": "Precision",
    "seed": "Seed",
    "rank": "Rank r",
    "alpha": "Alpha α",
    "use_rslora": "rsLoRA",
    "init": "Init",
    "dropout": "Dropout",
    "use_dora": "DoRA",
    "targets": "Targets",
    "layers": "Layers",
    "rank_pattern": "Rank pattern",
    "alpha_pattern": "Alpha pattern",
    "prefix_len": "Prompt length K",
    "prefix_layers": "Prefix layers L",
    "gate_shape": "Gate shape",
    "gate_fn": "Gate function",
    "prompt_init": "Prompt init",
    "lr": "Learning rate",
    "batch_size": "Batch size",
    "seq_len": "Sequence length",
    "size_in": "Size in",
    "size_out": "Size out",
    "target_rank": "Target rank",
    "noise": "Noise",
    "preset": "Preset",
    "speed": "Speed",
    "snapshot_hz": "Snapshots / s",
    "display_size": "Display size",
}
CHOICE_LABELS = {
    "lora": "LoRA",
    "prefix": "Prefix (zero-init)",
    "lora+prefix": "LoRA + prefix",
    "full": "Full fine-tuning",
    "lm": "Language model",
    "matrix": "Matrix",
    "auto": "auto (GPU if any)",
    "cpu": "CPU",
    "cuda": "CUDA",
    "mps": "MPS",
    "fp32": "fp32",
    "bf16": "bf16",
    "kaiming": "Kaiming (PEFT)",
    "gaussian": "Gaussian",
    "pissa": "PiSSA",
    "head": "per head",
    "layer": "per layer",
    "tanh": "tanh",
    "identity": "identity",
    "normal": "N(0, 1)",
    "tokens": "token embeddings",
    "none": "none",
    "seed": "seed notebook",
}
KIND_TEXT = {HOT: "hot: applies at once, training continues", COLD: "cold: restarts the adapters from the frozen base"}
# Settings whose range spans decades step along a ladder instead of by a fixed amount.
LOG_LADDERS = {"lr": (1.0, 2.0, 5.0), "alpha": (1.0, 2.0, 4.0, 8.0)}
INT_MAX = 2**31 - 1


def label_of(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def is_relevant(name: str, settings: TrainSettings) -> bool:
    spec = SETTINGS_SPEC[name]
    if spec.scenario is not None and spec.scenario != settings.scenario:
        return False
    return not (spec.methods is not None and settings.method not in spec.methods)


def setting_named_in(message: str) -> str | None:
    """The setting a ValueError names ("rank=300 is out of range ..."), if it names one."""
    m = re.match(r"\s*([a-z_]+)\s*(=|is\b|:)", message)
    if m and m.group(1) in SETTINGS_SPEC:
        return m.group(1)
    for name in SETTINGS_SPEC:
        if re.search(rf"\b{name}\b", message):
            return name
    return None


def _is_int(name: str) -> bool:
    return isinstance(getattr(TrainSettings(), name), int) and not isinstance(getattr(TrainSettings(), name), bool)


def _fmt(x: float) -> str:
    return f"{x:g}"


MIN_WIDTH = 240  # the settings panel's floor; wider rows scroll sideways


class SettingRow(QWidget):
    """One setting: label, editor, hot/cold tag; an error line beneath that shows only on error."""

    committed = Signal(str, object)  # name, new value (from the user)

    def __init__(self, name: str, value, parent=None):
        super().__init__(parent)
        self.name = name
        self.spec = SETTINGS_SPEC[name]
        self._value = value
        self._quiet = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 1, 0, 1)
        outer.setSpacing(1)
        line = QHBoxLayout()
        line.setSpacing(6)
        self.label = QLabel(label_of(name))
        self.label.setMinimumWidth(96)
        self.label.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        self.editor = self._make_editor(value)
        self.editor.setObjectName(f"control_{name}")
        self.tag = QLabel(self.spec.kind)
        self.tag.setProperty("role", self.spec.kind)
        self.tag.setObjectName(f"tag_{name}")
        self.tag.setAlignment(Qt.AlignCenter)
        self.tag.setFixedSize(34, 18)
        line.addWidget(self.label, 0, Qt.AlignVCenter)
        line.addWidget(self.editor, 1)
        line.addWidget(self.tag, 0, Qt.AlignVCenter)
        outer.addLayout(line)
        self.error = QLabel("")
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.setObjectName(f"error_{name}")
        self.error.hide()
        outer.addWidget(self.error)
        tip = self.tooltip()
        for w in (self, self.label, self.editor, self.tag):
            w.setToolTip(tip)
        self.set_value(value)

    # -- description ----------------------------------------------------------------------------
    def range_text(self) -> str:
        s = self.spec
        if s.choices is not None:
            if self.name == "targets":
                return "one or more of " + ", ".join(s.choices)
            return "one of " + ", ".join(map(str, s.choices))
        if s.low is not None and self.name not in PATTERNS:
            high = self.high()
            return f"{_fmt(s.low)} to {_fmt(high)}"
        if self.name == "layers":
            return "layer indices, e.g. 0,1,4-7 (empty: all)"
        if self.name in PATTERNS:
            return f"PATTERN=VALUE pairs, values {_fmt(s.low)} to {_fmt(s.high)} (empty: none)"
        return "on or off"

    def tooltip(self) -> str:
        return (
            f"<b>{label_of(self.name)}</b> <code>{self.name}</code><br>{self.spec.help}<br>"
            f"Allowed: {self.range_text()}<br><i>{KIND_TEXT[self.spec.kind]}</i>"
        )

    def high(self):
        ed = self.editor
        if isinstance(ed, (QSpinBox, QDoubleSpinBox)):
            return ed.maximum()
        return self.spec.high

    # -- editors ---------------------------------------------------------------------------------
    def _make_editor(self, value) -> QWidget:
        s, name = self.spec, self.name
        if name == "targets":
            box = QWidget()
            grid = QGridLayout(box)
            grid.setContentsMargins(0, 0, 0, 0)
            grid.setHorizontalSpacing(8)
            grid.setVerticalSpacing(0)
            self._checks = {}
            for i, choice in enumerate(s.choices):
                cb = QCheckBox(choice.replace("_proj", ""))
                cb.setObjectName(f"control_targets_{choice}")
                cb.clicked.connect(self._targets_clicked)
                grid.addWidget(cb, i // 3, i % 3)  # three to a row: the panel fits a 1280 px window
                self._checks[choice] = cb
            return box
        if name == "layers":
            ed = QLineEdit()
            ed.setPlaceholderText("all")
            ed.setClearButtonEnabled(True)
            ed.editingFinished.connect(self._layers_finished)
            return ed
        if name in PATTERNS:
            ed = QLineEdit()
            ed.setPlaceholderText("none: r and α everywhere" if name == "rank_pattern" else "none: α everywhere")
            ed.setClearButtonEnabled(True)
            ed.editingFinished.connect(self._pattern_finished)
            return ed
        if s.choices is not None:
            ed = QComboBox()
            # its width from the panel, not its longest choice (which held the panel ~400 px wide)
            ed.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            ed.setMinimumContentsLength(8)
            for choice in s.choices:
                ed.addItem(CHOICE_LABELS.get(str(choice), str(choice)), choice)
            ed.activated.connect(lambda _i: self._emit(ed.currentData()))
            return ed
        if isinstance(value, bool):
            ed = QCheckBox()
            ed.clicked.connect(lambda checked: self._emit(bool(checked)))
            return ed
        if _is_int(name):
            ed = number_field(QSpinBox())
            ed.setRange(int(s.low), int(min(s.high, INT_MAX)))
            ed.setKeyboardTracking(False)
            ed.setAccelerated(True)
            ed.valueChanged.connect(lambda v: self._emit(int(v)))
            return ed
        if name in LOG_LADDERS or (s.low and s.low > 0 and s.high / s.low >= 1e4):
            ed = number_field(LogSpinBox(LOG_LADDERS.get(name, (1.0, 2.0, 5.0))))
            ed.setRange(float(s.low), float(s.high))
            ed.setKeyboardTracking(False)
            ed.editingFinished.connect(lambda: self._emit(float(ed.value())))
            return ed
        ed = number_field(QDoubleSpinBox())
        span = float(s.high) - float(s.low)
        ed.setDecimals(2 if span <= 1 else (2 if span <= 200 else 1))
        ed.setSingleStep(0.05 if span <= 1 else (0.1 if span <= 20 else (1.0 if span <= 200 else 10.0)))
        ed.setRange(float(s.low), float(s.high))
        ed.setKeyboardTracking(False)
        ed.valueChanged.connect(lambda v: self._emit(float(v)))
        return ed

    def _targets_clicked(self) -> None:
        self._emit(tuple(c for c, cb in self._checks.items() if cb.isChecked()))

    def _layers_finished(self) -> None:
        text = self.editor.text().strip()
        try:
            value = parse_layers(text)
        except ValueError as exc:
            self.show_error(str(exc))
            self.set_value(self._value)
            return
        self._emit(value)

    def _pattern_finished(self) -> None:
        try:
            value = parse_pattern(self.name, self.editor.text())
        except ValueError as exc:
            self.show_error(str(exc))
            self.set_value(self._value)
            return
        self._emit(value)

    def _emit(self, value) -> None:
        if self._quiet or value == self._value:
            return
        self.committed.emit(self.name, value)

    # -- value -------------------------------------------------------------------------------------
    def value(self):
        return self._value

    def hold(self, value) -> None:
        """`value` is shown and waits to apply (ColdEdits): the next edit is compared with it."""
        self._value = value

    def set_value(self, value) -> None:
        """Show `value` (the one in force) without emitting anything."""
        self._value = value
        self._quiet = True
        try:
            ed = self.editor
            if self.name == "targets":
                for c, cb in self._checks.items():
                    cb.setChecked(c in tuple(value))
            elif self.name == "layers":
                ed.setText(format_layers(value))
            elif self.name in PATTERNS:
                ed.setText(format_pattern(value))
            elif isinstance(ed, QComboBox):
                i = ed.findData(value)
                if i >= 0:
                    ed.setCurrentIndex(i)
            elif isinstance(ed, QCheckBox):
                ed.setChecked(bool(value))
            elif isinstance(ed, (QSpinBox, QDoubleSpinBox)):
                ed.setValue(value)
        finally:
            self._quiet = False

    def set_high(self, high) -> None:
        ed = self.editor
        if isinstance(ed, (QSpinBox, QDoubleSpinBox)):
            high = min(high, self.spec.high)
            if ed.maximum() != high:
                self._quiet = True
                try:
                    ed.setMaximum(high)
                finally:
                    self._quiet = False
                    if ed.value() != self._value and self._value is not None and self._value <= high:
                        self.set_value(self._value)
                tip = self.tooltip()
                for w in (self, self.label, self.editor, self.tag):
                    w.setToolTip(tip)

    def set_choice_enabled(self, choice, enabled: bool) -> None:
        ed = self.editor
        if isinstance(ed, QComboBox) and isinstance(ed.model(), QStandardItemModel):
            i = ed.findData(choice)
            if i >= 0:
                ed.model().item(i).setEnabled(enabled)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def clear_error(self) -> None:
        self.error.clear()
        self.error.hide()


class ControlsPanel(QScrollArea):
    """Every setting, grouped; `configure(**changes) -> {name: kind}` applies them (raises ValueError)."""

    applied = Signal(dict, dict)  # changes, {name: "hot" | "cold"}
    rejected = Signal(str, str)  # setting name ("" if none named), message

    def __init__(
        self,
        settings: TrainSettings | None = None,
        configure: Callable[..., dict] | None = None,
        parent=None,
        cold_delay_ms: int = 0,
    ):
        super().__init__(parent)
        self.setObjectName("controls")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        # A narrow window scrolls the settings sideways rather than being held wide by them (1280 x 720)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.settings = settings or TrainSettings()
        self.configure = configure
        self.rows: dict[str, SettingRow] = {}
        self.groups: dict[str, QGroupBox] = {}
        self._model_limits: dict[str, int] = {}
        # the user's edits: cold ones within cold_delay_ms of each other apply as one restart
        self.edits = ColdEdits(self._apply_edits, cold_delay_ms, self)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self._legend())
        placed: set[str] = set()
        groups = [(title, tuple(n for n in names if n in SETTINGS_SPEC)) for title, names in GROUPS]
        rest = tuple(n for n in SETTINGS_SPEC if n not in ELSEWHERE and all(n not in names for _, names in GROUPS))
        if rest:
            groups.append(("Other", rest))
        for title, names in groups:
            names = tuple(n for n in names if n not in ELSEWHERE and n not in placed)
            if not names:
                continue
            box = QGroupBox(title)
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(6, 4, 6, 4)
            box_layout.setSpacing(2)
            for name in names:
                row = SettingRow(name, getattr(self.settings, name))
                row.committed.connect(self._on_committed)
                box_layout.addWidget(row)
                self.rows[name] = row
                placed.add(name)
            layout.addWidget(box)
            self.groups[title] = box
        layout.addStretch(1)
        self.setWidget(body)
        # The natural width is a preference (size_docks), never a floor: at most MIN_WIDTH is enforced
        self.natural_width = body.sizeHint().width() + 24
        self.setMinimumWidth(min(self.natural_width, MIN_WIDTH))
        self._refresh()

    def _legend(self) -> QWidget:
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(2, 0, 2, 0)
        h.setSpacing(4)
        for kind, text in ((HOT, "at once"), (COLD, "restarts adapters")):
            tag = QLabel(kind)
            tag.setProperty("role", kind)
            tag.setFixedWidth(34)
            tag.setAlignment(Qt.AlignCenter)
            tag.setToolTip(KIND_TEXT[kind])
            h.addWidget(tag)
            note = QLabel(text)
            note.setProperty("role", "dim")
            h.addWidget(note)
            h.addSpacing(6)
        h.addStretch(1)
        return w

    # -- applying ----------------------------------------------------------------------------------
    def _on_committed(self, name: str, value) -> None:
        self.edits.submit(name, value)
        if name in self.edits.pending:
            self.rows[name].hold(value)  # a change back to the value in force is an edit too

    def _apply_edits(self, changes: dict) -> bool:
        """The user's edits: a new method brings its own default learning rate unless the user set
        the rate by hand (schema.settings.with_method_defaults)."""
        changes = {k: v for k, v in changes.items() if getattr(self.settings, k) != v}
        if not changes:
            self._refresh()
            return True
        return self.request(with_method_defaults(self.settings, self._with_companions(changes)))

    def request(self, changes: dict) -> bool:
        """Validate and apply `changes` now; on a ValueError show it and keep the settings in force."""
        self.edits.drop(changes)  # an explicit request wins over the user's pending edits of the same settings
        changes = self._with_companions(changes)
        try:
            new = self.settings.with_changes(**changes)
            kinds = self.configure(**changes) if self.configure is not None else {}
        except ValueError as exc:
            self.reject(str(exc), next(iter(changes)))
            return False
        for name in changes:
            if name in self.rows:
                self.rows[name].clear_error()
        self.settings = new
        self._refresh()
        self.applied.emit(dict(changes), dict(kinds or {}))
        return True

    def _with_companions(self, changes: dict) -> dict:
        """Changes that would leave the others invalid bring a fix along (matrix: LoRA or full only;
        a smaller matrix clamps the ranks)."""
        out = dict(changes)
        s = self.settings
        try:
            s.with_changes(**out)
            return out
        except (ValueError, TypeError):
            pass
        if out.get("scenario") == "matrix" and s.method not in ("lora", "full") and "method" not in out:
            out["method"] = "lora"
        if "size_in" in out or "size_out" in out:
            cap = min(out.get("size_in", s.size_in), out.get("size_out", s.size_out))
            if s.rank > cap and "rank" not in out:
                out["rank"] = cap
            if s.target_rank > cap and "target_rank" not in out:
                out["target_rank"] = cap
        return out

    def reject(self, message: str, fallback_name: str | None = None) -> None:
        name = setting_named_in(message) or fallback_name
        for row_name, row in self.rows.items():
            row.set_value(self.edits.pending.get(row_name, getattr(self.settings, row_name)))
        if name in self.rows:
            self.rows[name].show_error(message)
            if not self.rows[name].isVisible():
                self.rows[name].error.show()
        self.rejected.emit(name or "", message)

    def set_settings(self, settings: TrainSettings) -> None:
        """Show `settings` (already in force) in every control."""
        self.edits.drop()
        self.settings = settings
        for row in self.rows.values():
            row.clear_error()
        self._refresh()

    def set_model_limit(self, name: str, high: int | None) -> None:
        """A limit that depends on the model, e.g. rank <= min(in, out) of the adapted matrices."""
        if high is None:
            self._model_limits.pop(name, None)
        else:
            self._model_limits[name] = int(high)
        self._refresh_limits()

    def _refresh(self) -> None:
        s = self.settings
        for name, row in self.rows.items():
            row.set_value(self.edits.pending.get(name, getattr(s, name)))  # a pending edit stays shown
            row.setVisible(is_relevant(name, s))
        for _title, box in self.groups.items():
            box.setVisible(any(not row.isHidden() for row in box.findChildren(SettingRow)))
        if "method" in self.rows:
            for m in SETTINGS_SPEC["method"].choices:
                try:
                    s.with_changes(method=m)
                    ok = True
                except ValueError:
                    ok = False
                self.rows["method"].set_choice_enabled(m, ok)
        self._refresh_limits()

    def _refresh_limits(self) -> None:
        s = self.settings
        limits = dict(self._model_limits)
        if s.scenario == "matrix":
            cap = min(s.size_in, s.size_out)
            limits["rank"] = min(limits.get("rank", cap), cap)
            limits["target_rank"] = cap
        for name in ("rank", "target_rank"):
            if name in self.rows:
                self.rows[name].set_high(limits.get(name, SETTINGS_SPEC[name].high))
