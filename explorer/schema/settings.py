"""Every training setting in one place, with what the controls and the command line need to know:
its range or choices, whether it applies at once (hot) or rebuilds the adapters (cold), and a help line.

The GUI builds its controls from `SETTINGS_SPEC`, the `run` command its flags, the engine its
validation; so a new setting is added here once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace

from explorer.schema.attention_choice import DEFAULT_SHOWN, MAX_SHOWN
from explorer.schema.heatmap_choice import MAX_HEATMAPS, check_names

METHODS = ("lora", "prefix", "lora+prefix", "full")
LOSS_ON = ("response", "all")
TEXT_SETTINGS = ("model", "data", "eval_data", "prompt")  # paths and text: checked for type and size here
TEXT_MAX_CHARS = 4096
SCENARIOS = ("lm", "matrix")
# Settings that define the scenario itself (problem, base, data), not only the adapters: changing one
# rebuilds the scenario (engine/trainer.py), and a comparison's runs share them (schema/compare.py),
# except the seed, which a comparison may vary per run.
SCENARIO_SETTINGS = (
    "scenario",
    "seed",
    "device",
    "dtype",
    "seq_len",
    "size_in",
    "size_out",
    "target_rank",
    "noise",
    "preset",
    "model",
    "data",
    "eval_data",
    "prompt",
    "loss_on",
)
HOT, COLD = "hot", "cold"


@dataclass(frozen=True)
class Spec:
    kind: str  # HOT: applies at once; COLD: rebuilds adapters from the frozen base
    help: str
    choices: tuple | None = None
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    scenario: str | None = None  # only meaningful for this scenario
    methods: tuple | None = None  # only meaningful for these methods


@dataclass
class TrainSettings:
    scenario: str = "lm"
    method: str = "lora"
    # LoRA
    rank: int = 8
    alpha: float = 16.0
    use_rslora: bool = False
    init: str = "kaiming"
    dropout: float = 0.0
    use_dora: bool = False
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    layers: tuple[int, ...] | None = None
    # per-module rank and alpha, PEFT's semantics: key -> value, the first key that matches the end of a
    # module path (after a dot) wins, read as a regular expression; modules no key matches use rank / alpha
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    # zero-init prefix (LLaMA-Adapter)
    prefix_len: int = 10
    prefix_layers: int = 2
    gate_shape: str = "head"
    gate_fn: str = "tanh"
    prompt_init: str = "normal"
    # optimisation
    # lm defaults measured on 2 shared CPU cores (one worker thread): the samples turn towards review
    # comments and diff headers within about a minute (README, engine section). Each method has its
    # own default (DEFAULT_LR): full fine-tuning at 1e-2 wrecks the base model in a few steps.
    lr: float = 1e-2
    batch_size: int = 16
    seq_len: int = 64
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    # matrix scenario
    size_in: int = 128
    size_out: int = 128
    target_rank: int = 4
    noise: float = 0.0
    preset: str = "none"
    # the language model's base and data (empty: the shipped base model and corpus)
    model: str = ""
    data: str = ""
    eval_data: str = ""
    prompt: str = ""
    loss_on: str = "response"
    # live display
    speed: float = 0.0  # steps per second cap; 0 = as fast as the machine goes
    snapshot_hz: float = 30.0
    display_size: int = 128
    # which prefix layers (model layer numbers) and heads the probe's attention maps are sent for;
    # None: the default subset (explorer.schema.attention_choice)
    attention_layers: tuple[int, ...] | None = None
    attention_heads: tuple[int, ...] | None = None
    # which adapted matrices' pooled heatmaps (ΔW, W0, ...) live snapshots carry; None: the first
    # (explorer.schema.heatmap_choice); norms and spectra of every matrix always go
    heatmap_matrices: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        for name in INDEX_LISTS:
            d[name] = None if getattr(self, name) is None else list(getattr(self, name))
        d["heatmap_matrices"] = None if self.heatmap_matrices is None else list(self.heatmap_matrices)
        d["rank_pattern"] = dict(self.rank_pattern)
        d["alpha_pattern"] = dict(self.alpha_pattern)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainSettings:
        """Settings from a file's dict, every value's type checked (ValueError naming the setting)."""
        if not isinstance(d, dict):
            raise ValueError(f"settings must be a table of name = value, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted((k for k in d if k not in known), key=str)
        if unknown:
            shown = repr(unknown[0]) if len(repr(unknown[0])) <= 60 else repr(unknown[0])[:57] + "..."
            raise ValueError(f"unknown setting {shown}: allowed {', '.join(sorted(known))}")
        d = dict(d)
        types = {f.name: f.type for f in fields(cls)}
        for name, value in d.items():
            if types[name] in ("bool", bool) and not isinstance(value, bool):
                raise ValueError(f"{name}={_short(value)} is not true or false")
            if types[name] in ("str", str) and not isinstance(value, str):
                raise ValueError(f"{name}={_short(value)} is not text")
        if "targets" in d:
            targets = d["targets"]
            if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
                raise ValueError(f"targets={_short(targets)} is not a list of module names")
            d["targets"] = tuple(targets)
        for name in INDEX_LISTS:
            if d.get(name) is not None:
                value = d[name]
                if not isinstance(value, (list, tuple)) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in value
                ):
                    what = "head" if name == "attention_heads" else "layer"
                    raise ValueError(f"{name}={_short(value)} is not a list of {what} indices")
                d[name] = tuple(value)
        if d.get("heatmap_matrices") is not None:
            check_names("heatmap_matrices", d["heatmap_matrices"])
            d["heatmap_matrices"] = tuple(d["heatmap_matrices"])
        for name in PATTERNS:
            if d.get(name) is None:
                d.pop(name, None)
            elif not isinstance(d[name], dict):
                raise ValueError(f"{name}={_short(d[name])} is not an object of module patterns and values")
        s = cls(**d)
        validate(s)
        return s

    def with_changes(self, **changes) -> TrainSettings:
        s = replace(self, **changes)
        validate(s)
        return s

    def uses_lora(self) -> bool:
        return self.method in ("lora", "lora+prefix")

    def uses_prefix(self) -> bool:
        return self.method in ("prefix", "lora+prefix")


SETTINGS_SPEC: dict[str, Spec] = {
    "scenario": Spec(COLD, "What trains: the language model, or one matrix against a planted update", SCENARIOS),
    "method": Spec(COLD, "LoRA, zero-init prefix, both, or full fine-tuning as the baseline", METHODS),
    "rank": Spec(
        COLD,
        "LoRA rank r: ΔW = scaling·B·A has at most r non-zero singular values",
        low=1,
        high=4096,
        methods=("lora", "lora+prefix"),
    ),
    "alpha": Spec(
        COLD,
        "LoRA alpha: scaling = alpha / r (rsLoRA: alpha / sqrt(r))",
        low=1e-6,
        high=1e6,
        methods=("lora", "lora+prefix"),
    ),
    "use_rslora": Spec(COLD, "Rank-stabilised scaling alpha / sqrt(r)", methods=("lora", "lora+prefix")),
    "init": Spec(
        COLD,
        "LoRA init: kaiming A and B = 0 (PEFT default), gaussian A, or PiSSA",
        ("kaiming", "gaussian", "pissa"),
        methods=("lora", "lora+prefix"),
    ),
    "dropout": Spec(COLD, "Dropout on the LoRA branch only", low=0.0, high=0.95, methods=("lora", "lora+prefix")),
    "use_dora": Spec(COLD, "DoRA: learn a magnitude per output row", methods=("lora", "lora+prefix")),
    "targets": Spec(
        COLD,
        "Which projections get LoRA",
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        scenario="lm",
        methods=("lora", "lora+prefix"),
    ),
    "layers": Spec(COLD, "Which layers get LoRA (empty: all)", scenario="lm", methods=("lora", "lora+prefix")),
    "rank_pattern": Spec(
        COLD,
        "Per-module ranks as in PEFT: pattern=rank pairs, e.g. down_proj=4, model.layers.0.self_attn.q_proj=16 "
        "(a key matches the end of a module path; modules no key matches use r)",
        low=1,
        high=4096,
        scenario="lm",
        methods=("lora", "lora+prefix"),
    ),
    "alpha_pattern": Spec(
        COLD,
        "Per-module alphas as in PEFT: pattern=alpha pairs, e.g. v_proj=32 (modules no key matches use alpha)",
        low=1e-6,
        high=1e6,
        scenario="lm",
        methods=("lora", "lora+prefix"),
    ),
    "prefix_len": Spec(
        COLD,
        "Prompt length K: learnable prompt vectors per adapted layer",
        low=1,
        high=256,
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "prefix_layers": Spec(
        COLD,
        "Prefix layers L: the top L layers get a gated prompt",
        low=1,
        high=1024,
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "gate_shape": Spec(
        COLD,
        "One gate per head (paper) or one per layer (HF PEFT)",
        ("head", "layer"),
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "gate_fn": Spec(
        COLD,
        "tanh (official training code) or identity (paper, PEFT)",
        ("tanh", "identity"),
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "prompt_init": Spec(
        COLD,
        "Prompt init: N(0,1) or embeddings of random tokens",
        ("normal", "tokens"),
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "lr": Spec(HOT, "Learning rate (Adam); applies at the next step", low=1e-7, high=10.0),
    "batch_size": Spec(HOT, "Sequences (lm) or vectors (matrix) per step", low=1, high=4096),
    "seq_len": Spec(
        COLD, "Tokens per training sequence (at most the base model's context)", low=8, high=32768, scenario="lm"
    ),
    "seed": Spec(COLD, "Seed for data order and initialisation (separate generators)", low=0, high=2**31 - 1),
    "device": Spec(COLD, "auto picks cuda, then mps, then cpu", ("auto", "cpu", "cuda", "mps")),
    "dtype": Spec(COLD, "fp32, or bf16 on a GPU", ("fp32", "bf16")),
    "size_in": Spec(COLD, "Matrix columns (input size)", low=2, high=8192, scenario="matrix"),
    "size_out": Spec(COLD, "Matrix rows (output size)", low=2, high=8192, scenario="matrix"),
    "target_rank": Spec(COLD, "Rank of the planted update ΔW* (up to full)", low=1, high=8192, scenario="matrix"),
    "noise": Spec(COLD, "Noise added to the targets", low=0.0, high=10.0, scenario="matrix"),
    "preset": Spec(
        COLD,
        "seed: the seed notebook's experiment (target y = 2x, a full-rank update)",
        ("none", "seed"),
        scenario="matrix",
    ),
    "model": Spec(
        COLD,
        "A Hugging Face checkpoint directory (model_type llama, mistral or qwen2; safetensors weights and "
        "tokenizer.json); empty: the shipped base model",
        scenario="lm",
    ),
    "data": Spec(
        COLD,
        'Training data: a .txt file or a folder of them, or .jsonl / .json with "text" or '
        '"instruction", "input", "output" fields; empty: the shipped domain corpus',
        scenario="lm",
    ),
    "eval_data": Spec(
        COLD, "Held-out data in the same format; empty: a fixed share of the data, chosen from the seed", scenario="lm"
    ),
    "prompt": Spec(
        COLD, "Prompt of the samples and the attention probe; empty: the data's first held-out prompt", scenario="lm"
    ),
    "loss_on": Spec(
        COLD, "Instruction data: loss on the response tokens only, or on all tokens", LOSS_ON, scenario="lm"
    ),
    "speed": Spec(HOT, "Cap on steps per second (0: no cap)", low=0.0, high=10000.0),
    "snapshot_hz": Spec(HOT, "Most snapshots per second sent to the views", low=0.1, high=120.0),
    "display_size": Spec(HOT, "Largest heatmap side sent to the views (pooled on the device)", low=8, high=1024),
    "attention_layers": Spec(
        HOT,
        f"Prefix layers whose probe attention is sent to the views, at most {MAX_SHOWN} (empty: the deepest "
        f"{DEFAULT_SHOWN})",
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "attention_heads": Spec(
        HOT,
        f"Heads whose probe attention is sent to the views, at most {MAX_SHOWN} (empty: the first {DEFAULT_SHOWN})",
        scenario="lm",
        methods=("prefix", "lora+prefix"),
    ),
    "heatmap_matrices": Spec(
        HOT,
        f"Adapted matrices whose pooled heatmaps (ΔW, W0, W0+ΔW) live snapshots carry, at most {MAX_HEATMAPS} "
        "(empty: the first; the ΔW view asks for the one it shows); norms and spectra of all always go",
        methods=("lora", "lora+prefix", "full"),
    ),
}
# settings that hold a list of indices (None: all layers, or for attention_*: the default subset)
INDEX_LISTS = ("layers", "attention_layers", "attention_heads")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# The learning rate each method starts from, by scenario (bench/bench_default_lr.py measures them:
# held-out loss after 200 to 400 headless steps on one CPU thread, README). Every weight of the model
# moves under full fine-tuning, so it wants a far lower rate than the adapters, whose updates start
# from zero (lm: 1e-2 ends above the untouched base); the few prompt vectors and gates of prefix
# tuning take a higher one than LoRA (at 3e-2 LoRA is unstable, prefix tuning learns fastest).
DEFAULT_LR: dict[tuple[str, str], float] = {
    ("lm", "lora"): 1e-2,
    ("lm", "prefix"): 3e-2,
    ("lm", "lora+prefix"): 1e-2,
    ("lm", "full"): 3e-4,
    ("matrix", "lora"): 1e-2,
    ("matrix", "full"): 3e-3,
}


def default_lr(scenario: str, method: str) -> float:
    """The learning rate `method` starts from in `scenario` (DEFAULT_LR; 1e-2 for a pair not listed)."""
    return DEFAULT_LR.get((scenario, method), 1e-2)


def with_method_defaults(current: TrainSettings, changes: dict) -> dict:
    """`changes` plus the new method's default learning rate, when the method or scenario changes, the
    changes bring no lr of their own, and the lr in force is the old method's default (a rate the user
    set by hand is a different number, and is kept)."""
    if "lr" in changes or not ({"method", "scenario"} & set(changes)):
        return dict(changes)
    old = default_lr(current.scenario, current.method)
    new = default_lr(changes.get("scenario", current.scenario), changes.get("method", current.method))
    if not math.isclose(current.lr, old, rel_tol=1e-9) or math.isclose(old, new, rel_tol=1e-9):
        return dict(changes)
    return {**changes, "lr": new}


def kind_of(name: str) -> str:
    return SETTINGS_SPEC[name].kind


def validate(s: TrainSettings) -> None:
    """Raise ValueError naming the setting, the value and what is allowed."""
    for f in fields(s):
        spec = SETTINGS_SPEC[f.name]
        value = getattr(s, f.name)
        if f.name == "targets":
            if not value:
                raise ValueError("targets is empty: allowed one or more of " + ", ".join(spec.choices))
            for t in value:
                if t not in spec.choices:
                    raise ValueError(f"targets={t!r} is unknown: allowed {', '.join(spec.choices)}")
            continue
        if f.name in INDEX_LISTS:
            if value is not None and any(
                (not isinstance(i, int)) or isinstance(i, bool) or i < 0 or i >= 1 << 20 for i in value
            ):
                raise ValueError(f"{f.name}={_short(list(value))} is out of range: allowed indices >= 0")
            if f.name != "layers" and value is not None and not 1 <= len(set(value)) <= MAX_SHOWN:
                raise ValueError(
                    f"{f.name}={_short(list(value))}: allowed 1 to {MAX_SHOWN} indices (None: the default subset)"
                )
            continue
        if f.name == "heatmap_matrices":
            check_names(f.name, value)
            continue
        if f.name in TEXT_SETTINGS:
            if not isinstance(value, str) or len(value) > TEXT_MAX_CHARS or "\x00" in value:
                shown = repr(value)[:60]
                raise ValueError(f"{f.name}={shown} is not valid: allowed text of at most {TEXT_MAX_CHARS} characters")
            continue
        if f.name in PATTERNS:
            _check_pattern_setting(f.name, value, spec)
            continue
        if spec.choices is not None:
            if value not in spec.choices:
                raise ValueError(f"{f.name}={value!r} is unknown: allowed {', '.join(map(str, spec.choices))}")
        elif spec.low is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{f.name}={value!r} is not a finite number: allowed {spec.low:g} to {spec.high:g}")
            if f.type in ("int", int) and not isinstance(value, int):
                raise ValueError(f"{f.name}={value!r} must be a whole number: allowed {spec.low:g} to {spec.high:g}")
            if not (spec.low <= value <= spec.high):
                raise ValueError(f"{f.name}={value!r} is out of range: allowed {spec.low:g} to {spec.high:g}")
    if s.eval_data and not s.data:
        raise ValueError(
            f"eval_data={s.eval_data!r} needs data: the shipped corpus has its own held-out split "
            "(set data as well, or leave eval_data empty)"
        )
    if s.scenario == "matrix" and s.method not in ("lora", "full"):
        raise ValueError(f"method={s.method!r} is not available in the matrix scenario: allowed lora, full")
    if s.scenario == "matrix" and s.target_rank > min(s.size_in, s.size_out):
        raise ValueError(
            f"target_rank={s.target_rank} is out of range: allowed 1 to "
            f"{min(s.size_in, s.size_out)} for a {s.size_out}x{s.size_in} matrix"
        )
    if s.scenario == "matrix" and s.uses_lora() and s.rank > min(s.size_in, s.size_out):
        raise ValueError(
            f"rank={s.rank} is out of range: allowed 1 to {min(s.size_in, s.size_out)} "
            f"for a {s.size_out}x{s.size_in} matrix"
        )


def changed_kinds(old: TrainSettings, new: TrainSettings) -> dict[str, str]:
    """{setting: 'hot'|'cold'} for every setting that differs."""
    return {f.name: kind_of(f.name) for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)}


# ---- rank_pattern / alpha_pattern ----------------------------------------------------------------

PATTERNS = ("rank_pattern", "alpha_pattern")
MAX_PATTERN_KEY = 500


def pattern_key_problem(key) -> str | None:
    """Why `key` cannot be a PEFT pattern key, or None: not a non-empty string, too long, not a plain
    regular expression, or one PEFT's backtracking matcher could take exponential time on (checked
    as PEFT composes it, `(.*\\.)?(key)$`, by explorer.schema.safe_regex, as adapter files are)."""
    from explorer.schema.safe_regex import UnsafePattern, compile_safe

    if not isinstance(key, str) or not key:
        return f"key {key!r} is not a non-empty string"
    if len(key) > MAX_PATTERN_KEY:
        return f"key of {len(key)} characters is too long (limit {MAX_PATTERN_KEY})"
    shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
    try:
        pattern = compile_safe(key)
        compile_safe(rf"(.*\.)?({key})$")
    except UnsafePattern as exc:
        return f"key {shown} is refused: {exc}"
    if pattern.backtracking:
        return f"key {shown} has {pattern.backtracking}; refused because matching it (as PEFT does) can take exponential time"
    return None


def _check_pattern_setting(name: str, value, spec: Spec) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{name}={value!r} is not an object of module patterns and values")
    for key, v in value.items():
        problem = pattern_key_problem(key)
        if problem:
            raise ValueError(f"{name}: {problem}")
        whole = name == "rank_pattern"
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or (whole and not isinstance(v, int))
        ):
            raise ValueError(
                f"{name}[{key!r}]={v!r} is not a {'whole ' if whole else 'finite '}number: "
                f"allowed {spec.low:g} to {spec.high:g}"
            )
        if not (spec.low <= v <= spec.high):
            raise ValueError(f"{name}[{key!r}]={v!r} is out of range: allowed {spec.low:g} to {spec.high:g}")


def parse_pattern(name: str, text: str) -> dict:
    """A pattern setting from text: a JSON object, or KEY=VALUE (or KEY:VALUE) pairs separated by ',',
    '+' or spaces ('' or 'none' is empty). Values are whole numbers for rank_pattern, numbers for alpha_pattern;
    ranges are checked by `validate`. A key with ',', '+', '=', ':' or spaces needs the JSON form."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return {}
    whole = name == "rank_pattern"
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{name}={text!r} is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{name}={text!r} is not an object of module patterns and values")
        return value
    out: dict = {}
    text = re.sub(r"\s*([=:])\s*", r"\1", text)  # 'q_proj = 4' and 'q_proj: 4' are one pair
    for item in re.split(r"[,+\s]+", text):
        if not item:
            continue
        key, sep, raw = re.split(r"([=:])", item, maxsplit=1) if re.search(r"[=:]", item) else (item, "", "")
        if not sep or not key or not raw:
            example = "down_proj=4, q_proj=16" if whole else "v_proj=32"
            raise ValueError(f"{name}: {item!r} is not PATTERN=VALUE (e.g. {example})")
        try:
            out[key] = int(raw) if whole else float(raw)
        except ValueError:
            raise ValueError(f"{name}[{key!r}]={raw!r} is not a {'whole ' if whole else ''}number") from None
    return out


def format_pattern(value: dict, sep: str = ", ") -> str:
    """{'down_proj': 4, 'q_proj': 16} -> 'down_proj=4, q_proj=16' (what `parse_pattern` reads back); {} -> ''."""
    return sep.join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
