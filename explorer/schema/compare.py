"""Comparisons as plain data: run specs, the rows and analyses the compare view draws, and reading a
headless comparison back from its directory. No torch: the GUI process reads these.

## Run specs (`parse_run_spec`)

    METHOD[:KEY=VALUE[,KEY=VALUE...]]

METHOD is `lora`, `prefix`, `lora+prefix` or `full`. KEY is one of the aliases `r` (rank), `K`
(prefix_len), `L` (prefix_layers), `label` (the run's name in the table, the legend and its
recording directory), or any per-run TrainSettings field: rank, alpha, use_rslora, init, dropout,
use_dora, targets, layers, rank_pattern, alpha_pattern, prefix_len, prefix_layers, gate_shape,
gate_fn, prompt_init, lr, batch_size, seed. Examples:

    lora:r=8                 lora:r=16,alpha=32          lora:r=8,targets=q_proj+v_proj+o_proj
    prefix:K=10,L=2          lora+prefix:r=8,K=10        full
    lora:r=8,label=mine      lora:r=8,seed=1             lora:r=8,layers=0+1   (layers=all: every layer)
    lora:r=8,rank_pattern=down_proj=4+model.layers.0.self_attn.q_proj=16,alpha_pattern=v_proj=32

Lists (targets, layers) and a pattern's PATTERN=VALUE pairs are joined with `+`; booleans are true/false (or yes/no, on/off, 1/0). A
key that does not apply to the method (`prefix:r=8`) is an error, except that `full` accepts
targets and layers (which matrices' ΔW = W - W0 the analyses look at). Settings that define the data
or the device (scenario, model, data, prompt, seq_len, the matrix scenario's sizes, device, dtype,
display settings) are shared by every run and set for the whole comparison, not per run. `seed` and
`batch_size` may be set per run, but a run with another seed or batch size sees other batches (that
is the point of the two-seed similarity control). The default label is the spec without punctuation: `lora-r8`,
`prefix-K10-L2`, `full`; a repeated default gets `-2`, `-3`...
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from explorer.schema.budget import PRESETS, compute_budget
from explorer.schema.faults import Fault
from explorer.schema.settings import (
    METHODS,
    PATTERNS,
    SCENARIO_SETTINGS,
    SETTINGS_SPEC,
    TrainSettings,
    parse_pattern,
    validate,
    with_method_defaults,
)

# ---- run specs -----------------------------------------------------------------------------------

ALIASES = {"r": "rank", "K": "prefix_len", "k": "prefix_len", "L": "prefix_layers", "l": "prefix_layers"}
# Shared by every run of a comparison: they define the data, the device or the display.
# What every run of a comparison shares: the scenario (but its seed) and how it is shown.
SHARED = tuple(name for name in SCENARIO_SETTINGS if name != "seed") + ("speed", "snapshot_hz", "display_size")
PER_RUN = tuple(f.name for f in fields(TrainSettings) if f.name not in SHARED and f.name != "method")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,63}$")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_FIELD_TYPES = {f.name: f.type for f in fields(TrainSettings)}
SPEC_SYNTAX = "METHOD[:KEY=VALUE,...] with METHOD one of " + ", ".join(METHODS)


@dataclass
class RunSpec:
    """One run of a comparison: its label and the TrainSettings it changes (`method` included)."""

    label: str
    overrides: dict[str, Any]
    text: str = ""
    explicit_label: bool = False

    @property
    def method(self) -> str:
        return self.overrides["method"]

    def settings(self, base: TrainSettings) -> TrainSettings:
        """The run's settings: `base` with this spec's changes (ValueError naming the run if invalid); a
        run of another method than `base`'s starts from that method's learning rate unless the spec or
        `base` set one by hand (settings.with_method_defaults)."""
        try:
            return base.with_changes(**with_method_defaults(base, self.overrides))
        except ValueError as exc:
            raise ValueError(f"run {self.label!r} ({self.text or self.method}): {exc}") from None


def _allowed_keys() -> str:
    return "r, K, L, label, " + ", ".join(PER_RUN)


def _convert(key: str, name: str, raw: str, text: str):
    where = f"in run spec {text!r}"
    kind = _FIELD_TYPES[name]
    if name == "targets":
        items = tuple(t for t in re.split(r"[+/ ]", raw) if t)
        if not items:
            raise ValueError(f"{key}= is empty {where}: allowed targets joined with '+', e.g. q_proj+v_proj")
        return items
    if name == "layers":
        if raw.lower() in ("all", "none", ""):
            return None
        try:
            return tuple(int(t) for t in re.split(r"[+/ ]", raw) if t)
        except ValueError:
            raise ValueError(
                f"{key}={raw!r} {where} is not 'all' or layer indices joined with '+' (e.g. layers=0+1)"
            ) from None
    if name in PATTERNS:
        try:
            return parse_pattern(name, raw)
        except ValueError as exc:
            raise ValueError(f"{exc} {where} (pairs joined with '+', e.g. {key}=down_proj=4+q_proj=16)") from None
    if kind in ("bool", bool):
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{key}={raw!r} {where} is not a boolean: allowed true or false")
    if kind in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} {where} is not a whole number") from None
    if kind in ("float", float):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} {where} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{key}={raw!r} {where} is not a finite number")
        return value
    return raw


MAX_DEFAULT_LABEL = 64  # as an explicit label: a label names a directory and a legend entry


def bounded_label(label: str) -> str:
    """A default label of at most MAX_DEFAULT_LABEL characters: a long one keeps its start and gets a
    short hash of the whole, so two long specs that differ only at the end still differ."""
    if len(label) <= MAX_DEFAULT_LABEL:
        return label
    digest = hashlib.sha1(label.encode("utf-8")).hexdigest()[:8]
    return label[: MAX_DEFAULT_LABEL - 9].rstrip("-._+=") + "-" + digest


def _label_part(key: str, raw: str) -> str:
    return key + re.sub(r"[^A-Za-z0-9._+-]", "_", raw)


def parse_run_spec(text: str) -> RunSpec:
    """Parse `METHOD[:KEY=VALUE,...]` (see the module doc). ValueError names the bad part and what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"run spec {text!r} is empty: allowed {SPEC_SYNTAX}")
    text = text.strip()
    head, sep, rest = text.partition(":")
    method = head.strip().lower()
    if method not in METHODS:
        raise ValueError(f"method {head.strip()!r} in run spec {text!r} is unknown: allowed {', '.join(METHODS)}")
    overrides: dict[str, Any] = {"method": method}
    label = None
    parts = [method]
    items = [p.strip() for p in rest.split(",")] if sep else []
    if sep and not any(items):
        raise ValueError(f"run spec {text!r} has nothing after ':': allowed KEY=VALUE pairs ({_allowed_keys()})")
    for item in items:
        if not item:
            raise ValueError(f"run spec {text!r} has an empty item (two commas in a row?)")
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key:
            raise ValueError(f"{item!r} in run spec {text!r} is not KEY=VALUE: allowed keys {_allowed_keys()}")
        if key == "label":
            if label is not None:
                raise ValueError(f"label is given twice in run spec {text!r}")
            if not LABEL_RE.match(raw):
                raise ValueError(
                    f"label={raw!r} in run spec {text!r} is not allowed: use 1 to 64 letters, digits "
                    "and . _ + = - (it names the run's recording directory)"
                )
            label = raw
            continue
        if not raw:
            raise ValueError(f"{key}= in run spec {text!r} has no value")
        name = ALIASES.get(key, key)
        if name == "method":
            raise ValueError(f"method is given before ':' in run spec {text!r}, not as a key")
        if name in SHARED:
            raise ValueError(
                f"{key} is shared by every run, not set in one run spec ({text!r}): set it for the "
                f"whole comparison (--{name.replace('_', '-')})"
            )
        if name not in PER_RUN:
            raise ValueError(f"unknown key {key!r} in run spec {text!r}: allowed {_allowed_keys()}")
        if name in overrides:
            raise ValueError(f"{name} is given twice in run spec {text!r}")
        methods = SETTINGS_SPEC[name].methods
        if methods is not None and method not in methods and not (method == "full" and name in ("targets", "layers")):
            raise ValueError(
                f"{key}={raw} does not apply to method {method!r} in run spec {text!r}: "
                f"{name} is for {', '.join(methods)}"
            )
        overrides[name] = _convert(key, name, raw, text)
        parts.append(_label_part(key, raw))
    spec = RunSpec(
        label=label or bounded_label("-".join(parts)), overrides=overrides, text=text, explicit_label=label is not None
    )
    try:  # ranges and choices (the scenario-specific checks come when the runs are built)
        TrainSettings().with_changes(**overrides)
    except ValueError as exc:
        raise ValueError(f"run spec {text!r}: {exc}") from None
    return spec


def unique_labels(specs: list[RunSpec]) -> list[RunSpec]:
    """Specs with unique labels: a repeated default label gets -2, -3...; a repeated explicit one is an error."""
    explicit = [s.label for s in specs if s.explicit_label]
    dup = sorted({x for x in explicit if explicit.count(x) > 1})
    if dup:
        raise ValueError(f"label={dup[0]!r} is given to two runs: labels must be unique")
    taken = set(explicit)
    out = []
    for s in specs:
        label = s.label
        if not s.explicit_label:
            n = 1
            while label in taken:
                n += 1
                label = f"{s.label}-{n}"
        taken.add(label)
        out.append(RunSpec(label=label, overrides=dict(s.overrides), text=s.text, explicit_label=s.explicit_label))
    return out


def checked_specs(base_settings: TrainSettings, specs: list) -> list[RunSpec]:
    """The run specs (strings or RunSpecs) with unique labels, each checked against `base_settings`:
    a bad spec is the caller's ValueError, raised before any thread or process starts."""
    if not specs:
        raise ValueError("no runs to compare: give at least one run spec (e.g. lora:r=8)")
    validate(base_settings)
    specs = unique_labels([parse_run_spec(s) if isinstance(s, str) else s for s in specs])
    for s in specs:
        s.settings(base_settings)
    return specs


# ---- plain data for the view and the table -------------------------------------------------------

TABLE_COLUMNS = (
    "run",
    "method",
    "spec",
    "trainable_params",
    "share",
    "storage_bytes",
    "steps",
    "final_loss",
    "final_eval_loss",
    "steps_per_second",
    "llama7b_trainable_params",
    "llama7b_storage_bytes",
)
LLAMA_PRESET = "llama-7b"
FINAL_WINDOW_SHARE = 0.1  # final_loss: mean training loss over the last 10% of steps ...
FINAL_WINDOW_MAX = 1000  # ... and at most the last 1,000


@dataclass
class RunSummary:
    label: str
    spec: str
    method: str
    colour: int  # index into the view's colour-blind-safe palette
    settings: dict
    step: int
    loss: float | None  # the latest training loss
    eval_loss: float | None  # the latest held-out loss
    steps: np.ndarray  # loss history (thinned, see core/history.py)
    losses: np.ndarray
    eval_steps: np.ndarray
    eval_losses: np.ndarray
    trainable_params: int
    share: float  # trainable / base parameters
    storage_bytes: int  # the trainable weights in fp16
    steps_per_second: float  # over the run's own train_step time
    llama7b_trainable_params: int | None
    llama7b_storage_bytes: int | None
    final_loss: float | None  # mean training loss over the last 10% of steps (at most 1,000)
    final_eval_loss: float | None  # the held-out loss at the last evaluation
    measured_trainable_params: int = 0
    matrices: list[str] = field(default_factory=list)
    fault: Fault | None = None  # a run that diverged stops; the others go on

    def table_row(self) -> dict:
        return {
            "run": self.label,
            "method": self.method,
            "spec": self.spec,
            "trainable_params": self.trainable_params,
            "share": self.share,
            "storage_bytes": self.storage_bytes,
            "steps": self.step,
            "final_loss": self.final_loss,
            "final_eval_loss": self.final_eval_loss,
            "steps_per_second": self.steps_per_second,
            "llama7b_trainable_params": self.llama7b_trainable_params,
            "llama7b_storage_bytes": self.llama7b_storage_bytes,
        }


@dataclass
class CompareAnalysis:
    """The LoRA paper's analyses at one step. Pairs are (label_a, label_b) of LoRA runs, in run order."""

    step: int
    modules: list[str]  # matrices the LoRA runs share
    pairs: list[tuple[str, str]]
    similarity: dict[tuple[str, str], dict[str, np.ndarray]]  # phi (r_a, r_b), entry [i-1, j-1] = phi(i, j)
    control: dict[tuple[str, str], dict[str, np.ndarray]]  # phi(A_a, random Gaussian (r_b, in))
    amplification: dict[str, list[dict]]  # label -> one row per module
    intrinsic: dict[tuple[str, str], dict[str, dict]] = field(default_factory=dict)  # (lora, full) -> module -> figures
    seconds: float = 0.0  # what computing this took

    def phi(self, a: str, b: str, module: str) -> np.ndarray | None:
        """phi for the pair in either order (rows belong to `a`)."""
        if (a, b) in self.similarity:
            return self.similarity[(a, b)].get(module)
        if (b, a) in self.similarity:
            m = self.similarity[(b, a)].get(module)
            return None if m is None else m.T
        return None

    def to_json(self) -> dict:
        def arr(x):
            return None if x is None else np.asarray(x, np.float64).round(6).tolist()

        out = {
            "step": self.step,
            "modules": list(self.modules),
            "similarity": [
                {
                    "a": a,
                    "b": b,
                    "modules": {
                        m: {
                            "phi": arr(phi),
                            "phi_diagonal": arr(np.diagonal(phi)),
                            "control_phi": arr(self.control[(a, b)].get(m)),
                            "control_diagonal": arr(np.diagonal(self.control[(a, b)][m]))
                            if m in self.control[(a, b)]
                            else None,
                        }
                        for m, phi in self.similarity[(a, b)].items()
                    },
                }
                for a, b in self.pairs
            ],
            "amplification": {label: [_json_row(r) for r in rows] for label, rows in self.amplification.items()},
            "intrinsic": [
                {"lora": a, "full": b, "modules": {m: _json_row(d) for m, d in per.items()}}
                for (a, b), per in self.intrinsic.items()
            ],
        }
        return out


def _json_row(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = np.asarray(v, np.float64).round(7).tolist()
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


@dataclass
class CompareSnapshot:
    step: int  # rounds done (every run has done this many steps, unless it faulted)
    segment: int  # increments on every reset or rebuild
    time: float  # seconds of training (all runs together)
    runs: list[RunSummary]
    analysis: CompareAnalysis | None = None
    scenario: str = "lm"
    device: str = ""
    state: str = "paused"  # "running" | "paused" | "fault"
    fault: Fault | None = None  # why the comparison stopped (every run stopped, it could not start, ...)

    def table_rows(self) -> list[dict]:
        return [r.table_row() for r in self.runs]

    def run(self, label: str) -> RunSummary | None:
        return next((r for r in self.runs if r.label == label), None)


def price_on_llama(settings: TrainSettings, preset: str = LLAMA_PRESET) -> dict | None:
    """The run's setting priced on a LLaMA preset (explorer.schema.budget), or None when it does not fit.
    The matrix scenario prices the same rank on the preset's targets (q_proj, v_proj by default)."""
    try:
        return compute_budget(
            PRESETS[preset],
            settings.method,
            rank=settings.rank,
            targets=tuple(settings.targets),
            layers=None if settings.layers is None else list(settings.layers),
            prefix_len=settings.prefix_len,
            prefix_layers=settings.prefix_layers,
            gate_shape=settings.gate_shape,
            use_dora=settings.use_dora,
        ).to_dict()
    except (ValueError, KeyError):
        return None


# ---- comparisons from elsewhere: one live run, a headless comparison's directory -------------------


def default_label(settings: dict) -> str:
    """'lora-r8', 'prefix-K10-L2', 'lora+prefix-r8-K10', 'full' from a settings dict."""
    method = settings.get("method", "lora")
    parts = [method]
    if method in ("lora", "lora+prefix"):
        parts.append(f"r{settings.get('rank')}")
    if method in ("prefix", "lora+prefix"):
        parts.append(f"K{settings.get('prefix_len')}")
        if method == "prefix":
            parts.append(f"L{settings.get('prefix_layers')}")
    return "-".join(parts)


def _final_from_history(steps: np.ndarray, losses: np.ndarray, step: int) -> float | None:
    if losses.size == 0 or step <= 0:
        return None
    window = max(1, min(FINAL_WINDOW_MAX, int(round(FINAL_WINDOW_SHARE * step))))
    sel = losses[steps > step - window - 1] if steps.size == losses.size else losses[-1:]
    return float(np.mean(sel if sel.size else losses[-1:]))


def summary_from_snapshot(snap, label: str | None = None, index: int = 0, spec: str = "") -> RunSummary:
    """A RunSummary of one ordinary training Snapshot (a live run or a recorded one). final_loss is
    taken from the thinned history, so it is close to, not exactly, the runner's figure."""
    settings = dict(snap.settings or {})
    h = snap.history
    steps = np.asarray(h.steps) if h is not None else np.zeros(0, np.int64)
    losses = np.asarray(h.loss) if h is not None else np.zeros(0, np.float32)
    eval_steps = np.asarray(h.eval_steps) if h is not None else np.zeros(0, np.int64)
    eval_losses = np.asarray(h.eval_loss) if h is not None else np.zeros(0, np.float32)
    b = snap.budget or {}
    llama = (b.get("presets") or {}).get(LLAMA_PRESET)
    if llama is None and settings:
        try:
            llama = price_on_llama(TrainSettings.from_dict(settings))
        except (ValueError, TypeError):
            llama = None
    trainable = int(b.get("trainable_params", 0) or 0)
    return RunSummary(
        label=label or default_label(settings),
        spec=spec or default_label(settings).replace("-", " "),
        method=settings.get("method", ""),
        colour=index,
        settings=settings,
        step=int(snap.step),
        loss=snap.loss,
        eval_loss=snap.eval_loss,
        steps=steps,
        losses=losses,
        eval_steps=eval_steps,
        eval_losses=eval_losses,
        trainable_params=trainable,
        share=float(b.get("share", 0.0) or 0.0),
        storage_bytes=int(b.get("storage_bytes_fp16", 2 * trainable) or 0),
        steps_per_second=float(snap.steps_per_second or 0.0),
        llama7b_trainable_params=None if llama is None else int(llama["trainable_params"]),
        llama7b_storage_bytes=None if llama is None else int(llama["storage_bytes_fp16"]),
        final_loss=_final_from_history(steps, losses, int(snap.step)),
        final_eval_loss=snap.eval_loss,
        measured_trainable_params=int(b.get("measured_trainable_params", trainable) or 0),
        matrices=list(getattr(snap, "matrices", {}) or {}),
        fault=snap.fault,
    )


def comparison_from_snapshot(snap, label: str | None = None) -> CompareSnapshot:
    """One ordinary training Snapshot as a one-run comparison (what the compare view shows before
    a comparison is started)."""
    settings = snap.settings or {}
    return CompareSnapshot(
        step=int(snap.step),
        segment=int(snap.segment),
        time=float(snap.time or 0.0),
        runs=[summary_from_snapshot(snap, label)],
        analysis=None,
        scenario=settings.get("scenario", "lm"),
        device=snap.device or "",
        state=snap.state,
        fault=snap.fault,
    )


def analysis_from_json(d: dict, where: str = "analysis.json") -> CompareAnalysis:
    """The CompareAnalysis that `CompareAnalysis.to_json` wrote (analysis.json of the compare command),
    every field checked (ValueError naming `where` and the field otherwise)."""
    from explorer.schema.compare_checks import check_analysis

    return CompareAnalysis(**check_analysis(d, where))


def load_comparison(directory) -> CompareSnapshot:
    """A headless comparison (the compare command's DIR) as a CompareSnapshot: each run's last recorded
    snapshot, the final figures from table.csv and the analyses from analysis.json."""
    from pathlib import Path

    from explorer.schema.compare_checks import check_manifest, read_table
    from explorer.schema.jsonio import read_json_file
    from explorer.schema.recording import RecordingReader

    root = Path(directory)
    manifest_path = root / "compare.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: not a comparison directory (no compare.json)")
    manifest = read_json_file(manifest_path, max_bytes=16 * 1024 * 1024)
    entries = check_manifest(manifest, str(manifest_path))
    table = read_table(root / "table.csv") if (root / "table.csv").is_file() else {}
    runs = []
    step = 0
    base_settings = manifest.get("base_settings", {})
    scenario, device = base_settings.get("scenario", "lm"), ""
    if scenario not in ("lm", "matrix"):
        raise ValueError(f"{manifest_path}: base_settings.scenario is {scenario!r}, expected lm or matrix")
    for i, entry in enumerate(entries):
        reader = RecordingReader(root / entry["dir"])
        if not reader.steps:
            continue
        snap = reader.snapshot(reader.steps[-1])
        s = summary_from_snapshot(snap, entry["label"], i, entry["spec"])
        num = table.get(entry["label"])
        if num:
            s.final_loss, s.final_eval_loss = num.get("final_loss"), num.get("final_eval_loss")
            s.steps_per_second = num.get("steps_per_second") or s.steps_per_second
        runs.append(s)
        step = max(step, s.step)
        device = snap.device
    analysis = None
    if (root / "analysis.json").is_file():
        path = root / "analysis.json"
        analysis = analysis_from_json(read_json_file(path, allow_nonfinite=True), str(path))
    return CompareSnapshot(
        step=step, segment=0, time=0.0, runs=runs, analysis=analysis, scenario=scenario, device=device, state="paused"
    )
