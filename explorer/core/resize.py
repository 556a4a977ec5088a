"""Resize a PEFT LoRA adapter exactly: each module's best rank-k approximation of ΔW, from the factors.

For ΔW = s · B @ A (A: (r, in), B: (out, r)) take B = Qb Rb and Aᵀ = Qa Ra (reduced QR); then
ΔW = Qb (s · Rb Raᵀ) Qaᵀ, and the small r x r core's SVD Uc S Vcᵀ gives ΔW's SVD
(Qb Uc) S (Qa Vc)ᵀ. By Eckart–Young its top k terms are the best rank-k approximation ΔW_k in both
the Frobenius and the spectral norm. Cost O((in + out) r²) per module; ΔW itself is never formed.

The new factors split the kept values symmetrically and absorb PEFT's scaling s' of the new rank
(alpha / k, or alpha / sqrt(k) with rsLoRA; each module keeps its alpha):

    B_k = Qb Uc_k diag(sqrt(S_k / |s'|)) · sign(s'),   A_k = diag(sqrt(S_k / |s'|)) Vc_kᵀ Qaᵀ,

so s' · B_k @ A_k = ΔW_k exactly. The config says which rank and alpha each module has with `r` and
`lora_alpha` (the most common values) and `rank_pattern` / `alpha_pattern` keyed by full module
paths (PEFT matches a key against a module path with `(.*\\.)?key$`; a full path names one module).
Every other tensor (DoRA magnitudes, lora_B biases, modules_to_save) is copied unchanged.

DoRA: the magnitude vector m is kept as it is. PEFT applies W = m ⊙ (W0 + ΔW_k) / ‖W0 + ΔW_k‖_row,
so the resized adapter's rows have exactly the norms m they had, and ΔW_k is the best rank-k
approximation of ΔW; only the rows' directions move (by the truncation of ΔW). With a base model
the command measures what that does to the logits.

Refused, each with one line: AdaptionPrompt adapters (no rank to cut), and inits with which PEFT
rewrites the base weights on load at the adapter's rank (PiSSA, OLoRA, CorDA, EVA, LoftQ): a
resized rank would rewrite them differently.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from explorer.core.lora import lora_scaling
from explorer.core.peft_files import (
    CONFIG_NAME,
    PEFT_PREFIX,
    WEIGHTS_NAME,
    LoraFactors,
    PeftAdapter,
    check_pattern_key,
    load_safetensors,
    read_adapter,
    write_adapter_files,
)
from explorer.schema.format import format_count
from explorer.schema.peft_patterns import pattern_key
from explorer.schema.rank_advice import (
    check_energy,
    compact_pattern,
    energy_kept,
    energy_rank,
    lora_parameters,
)

# Inits with which PEFT changes the base weights when it loads the adapter, at the adapter's rank.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "eva", "loftq")
FIXED_TEXT = (
    "# review: the loop copies the list on every pass; keep one buffer and append to it.\n"
    "def resize(adapter, energy=0.95):\n"
    '    """Keep the leading singular directions of every update."""\n'
)


@dataclass
class ModulePlan:
    """One module of a resize: its rank before and after, the energy kept and the parameters."""

    name: str
    shape: tuple[int, int]  # (out, in) of ΔW
    rank_before: int
    rank_after: int
    alpha: float
    scaling_before: float
    scaling_after: float
    energy_kept: float  # Σ_{i<=k} σ_i² / Σ σ_i² (1.0 for ΔW = 0)
    params_before: int  # factor values, r·(out + in)
    params_after: int
    values: np.ndarray = field(repr=False)  # ΔW's singular values (float64, descending)
    note: str = ""  # why the rank is not what was asked (capped at what ΔW can have)


@dataclass
class ResizePlan:
    source: Path
    how: str  # "energy 0.95", "rank 8", or "rank_pattern {...}"
    use_rslora: bool
    use_dora: bool
    modules: list[ModulePlan]

    @property
    def params_before(self) -> int:
        return sum(m.params_before for m in self.modules)

    @property
    def params_after(self) -> int:
        return sum(m.params_after for m in self.modules)

    @property
    def energy_kept(self) -> float:
        """Of the whole adapter: Σ over modules of the kept σ², over Σ of all σ²."""
        total = sum(float(np.sum(m.values**2)) for m in self.modules)
        kept = sum(m.energy_kept * float(np.sum(m.values**2)) for m in self.modules)
        return kept / total if total > 0 else 1.0

    def config_patterns(self) -> tuple[int, dict[str, int], float, dict[str, float]]:
        """(r, rank_pattern, lora_alpha, alpha_pattern) that give every module its planned rank and alpha."""
        r, rank_pattern = compact_pattern({m.name: m.rank_after for m in self.modules})
        alpha, alpha_pattern = compact_pattern({m.name: m.alpha for m in self.modules})
        return r, rank_pattern, alpha, alpha_pattern


@dataclass
class ResizeResult:
    plan: ResizePlan
    out: Path
    logit_difference: float | None = None  # max |logits(original) - logits(resized)| on FIXED_TEXT
    adapter_effect: float | None = None  # max |logits(original) - logits(base)|, for scale
    text_tokens: int = 0
    tokenized: str = ""  # how FIXED_TEXT became token ids


# --- the maths ------------------------------------------------------------------------------


@torch.no_grad()
def factor_svd(A: torch.Tensor, B: torch.Tensor, scaling: float, vectors: bool = True):
    """(U, S, V) with s · B @ A = U diag(S) Vᵀ, from the factors in float64 (V is (in, m), m = min(r, out, in));
    with vectors=False, (None, S, None)."""
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]:
        raise ValueError(
            f"factor shapes A={tuple(A.shape)} (r, in) and B={tuple(B.shape)} (out, r) do not fit together"
        )
    A64, B64 = A.detach().to(torch.float64), B.detach().to(torch.float64)
    Qb, Rb = torch.linalg.qr(B64)
    Qa, Ra = torch.linalg.qr(A64.T)
    core = float(scaling) * (Rb @ Ra.T)
    if not vectors:
        return None, torch.linalg.svdvals(core), None
    Uc, S, Vhc = torch.linalg.svd(core, full_matrices=False)
    return Qb @ Uc, S, Qa @ Vhc.T


@torch.no_grad()
def best_rank_k_factors(
    A: torch.Tensor, B: torch.Tensor, scaling: float, k: int, new_scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_k (k, in), B_k (out, k)) with new_scaling · B_k @ A_k the best rank-k approximation of
    scaling · B @ A, the kept singular values split evenly between the two; in A's dtype and device."""
    if k < 1:
        raise ValueError(f"rank k={k} must be at least 1")
    U, S, V = factor_svd(A, B, scaling)
    m = S.shape[0]
    root = torch.zeros(k, dtype=torch.float64, device=S.device)
    if new_scaling != 0:
        root[: min(k, m)] = (S[:k] / abs(new_scaling)).sqrt()
    # a k above what ΔW can have (min(r, out, in)) pads with zero directions, which change nothing
    Uk = torch.zeros(U.shape[0], k, dtype=torch.float64, device=U.device)
    Vk = torch.zeros(V.shape[0], k, dtype=torch.float64, device=V.device)
    Uk[:, : min(k, m)] = U[:, :k]
    Vk[:, : min(k, m)] = V[:, :k]
    sign = -1.0 if new_scaling < 0 else 1.0
    B_k = sign * Uk * root
    A_k = root[:, None] * Vk.T
    return A_k.to(A.dtype).contiguous(), B_k.to(B.dtype).contiguous()


# --- planning -------------------------------------------------------------------------------


def _check_resizable(adapter: PeftAdapter) -> None:
    if adapter.peft_type != "LORA":
        raise ValueError(
            f"{adapter.path}: is a PEFT {adapter.peft_type} adapter; resize cuts LoRA ranks, and "
            "adaption prompts have no rank to cut"
        )
    if not adapter.lora:
        raise ValueError(f"{adapter.path}: holds no LoRA modules to resize")
    init = adapter.config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        raise ValueError(
            f"{adapter.path / CONFIG_NAME}: refused: init_lora_weights={init!r} makes PEFT rewrite the base "
            "weights on load at the adapter's rank, so a resized rank would change the base too; convert "
            "the adapter to a plain LoRA adapter first (PEFT's path_initial_model_for_weight_conversion)"
        )


def _module_values(f: LoraFactors) -> np.ndarray:
    _, S, _ = factor_svd(f.A, f.B, f.scaling, vectors=False)
    return S.cpu().numpy()


def parse_rank_pattern(pattern, where: str = "--rank-pattern") -> dict[str, int]:
    """A rank pattern given by a user: a JSON object (or its text) of PEFT pattern keys -> ranks >= 1."""
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(pattern, dict) or not pattern:
        raise ValueError(
            f'{where}: expected a non-empty JSON object of module patterns and ranks, e.g. {{"q_proj": 4}}'
        )
    out = {}
    for key, value in pattern.items():
        check_pattern_key(Path(where), "rank_pattern", key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: rank {value!r} for {key!r} is out of range: allowed whole numbers >= 1")
        out[key] = value
    return out


def plan_resize(
    adapter: PeftAdapter, *, energy: float | None = None, rank: int | None = None, rank_pattern=None
) -> ResizePlan:
    """Which rank each module gets (exactly one of `energy`, `rank`, `rank_pattern`), and what it keeps.

    energy e in (0, 1]: the smallest k keeping e of each module's Σσ² (at least 1);
    rank K >= 1: K for every module; rank_pattern: PEFT pattern keys -> ranks (the first key that
    matches a module path wins, as in PEFT; every key must match a module; modules no key matches
    keep their rank). A rank is capped at what ΔW can have, min(r, out, in), and the plan says so."""
    given = [x is not None for x in (energy, rank, rank_pattern)]
    if sum(given) != 1:
        raise ValueError("give exactly one of energy, rank or rank_pattern")
    _check_resizable(adapter)
    if energy is not None:
        energy = check_energy(energy)
        how = f"energy {energy:g}"
    elif rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} is out of range: allowed whole numbers >= 1")
        how = f"rank {rank}"
    else:
        rank_pattern = parse_rank_pattern(rank_pattern)
        names = [f.name for f in adapter.lora]
        for key in rank_pattern:
            if not any(pattern_key([key], n) for n in names):
                raise ValueError(
                    f"--rank-pattern: key {key!r} names no module of {adapter.path} "
                    f"(modules look like {names[0]!r}; keys match the end of a module path)"
                )
        how = "rank_pattern " + json.dumps(rank_pattern)
    use_rslora = bool(adapter.config["use_rslora"])
    modules = []
    for f in adapter.lora:
        values = _module_values(f)
        cap = min(f.rank, *f.shape)
        note = ""
        if energy is not None:
            k = max(1, energy_rank(values, energy))
        elif rank is not None:
            k = rank
        else:
            key = pattern_key(rank_pattern, f.name)
            k = f.rank if key is None else rank_pattern[key]
        if k > cap:
            note = f"asked {k}; ΔW has rank at most {cap}"
            k = cap
        modules.append(
            ModulePlan(
                name=f.name,
                shape=f.shape,
                rank_before=f.rank,
                rank_after=k,
                alpha=f.alpha,
                scaling_before=f.scaling,
                scaling_after=lora_scaling(k, f.alpha, use_rslora),
                energy_kept=energy_kept(values, k),
                params_before=lora_parameters(f.shape, f.rank),
                params_after=lora_parameters(f.shape, k),
                values=values,
                note=note,
            )
        )
    return ResizePlan(
        source=adapter.path, how=how, use_rslora=use_rslora, use_dora=bool(adapter.config["use_dora"]), modules=modules
    )


def resized_factors(adapter: PeftAdapter, plan: ResizePlan) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module path -> (A_k, B_k), one module at a time, in the adapter's dtype."""
    out = {}
    for f, m in zip(adapter.lora, plan.modules, strict=True):
        out[f.name] = best_rank_k_factors(f.A, f.B, f.scaling, m.rank_after, m.scaling_after)
    return out


# --- writing --------------------------------------------------------------------------------


def check_out_dir(out: str | Path) -> Path:
    """The output directory must not exist, or be an empty directory."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory; choose another output directory")
        if any(out.iterdir()):
            raise ValueError(f"{out}: exists and is not empty; choose another output directory")
    return out


def _factor_keys(f: LoraFactors, tensors: dict) -> tuple[str, str]:
    parts = ("lora_embedding_A", "lora_embedding_B") if f.embedding else ("lora_A.weight", "lora_B.weight")
    keys = []
    for part in parts:
        for key in (f"{PEFT_PREFIX}{f.name}.{part}", f"{f.name}.{part}"):
            if key in tensors:
                keys.append(key)
                break
        else:
            raise ValueError(f"{f.name}: no {part} tensor found in the adapter file")
    return keys[0], keys[1]


def resized_config(adapter: PeftAdapter, plan: ResizePlan) -> dict:
    """The original adapter_config.json with r, lora_alpha, rank_pattern and alpha_pattern replaced."""
    config = json.loads((adapter.path / CONFIG_NAME).read_text(encoding="utf-8"))
    r, rank_pattern, alpha, alpha_pattern = plan.config_patterns()
    original_alpha = config.get("lora_alpha", 8)
    config["r"] = int(r)
    config["lora_alpha"] = original_alpha if float(original_alpha) == alpha else alpha
    config["rank_pattern"] = {k: int(v) for k, v in rank_pattern.items()}
    config["alpha_pattern"] = dict(alpha_pattern)
    return config


def write_resized(adapter: PeftAdapter, plan: ResizePlan, factors, out: str | Path) -> Path:
    """Write the resized adapter to `out` (absent or empty): into a temporary directory beside it, read
    back and checked, then moved into place, so `out` appears complete or not at all."""
    out = check_out_dir(out)
    tensors, _, _ = load_safetensors(adapter.path / WEIGHTS_NAME)
    for f in adapter.lora:
        ka, kb = _factor_keys(f, tensors)
        tensors[ka], tensors[kb] = factors[f.name]
    config = resized_config(adapter, plan)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.resize-", dir=parent))
    try:
        write_adapter_files(tmp, config, tensors)
        _check_written(read_adapter(tmp), plan)
        check_out_dir(out)
        if out.is_dir():
            out.rmdir()
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_written(written: PeftAdapter, plan: ResizePlan) -> None:
    """The config as PEFT reads it gives every module the planned rank and scaling."""
    for m in plan.modules:
        f = written.module(m.name)
        if f.rank != m.rank_after or not math.isclose(f.scaling, m.scaling_after, rel_tol=1e-12):
            raise ValueError(
                f"{m.name}: the written config gives rank {f.rank}, scaling {f.scaling:g}; "
                f"planned rank {m.rank_after}, scaling {m.scaling_after:g}"
            )


# --- against a base model -------------------------------------------------------------------


def _text_ids(base_dir: Path, vocab: int, limit: int) -> tuple[torch.Tensor, str]:
    """FIXED_TEXT as token ids: the base's tokenizer.json when it has one (explorer.core.hf_tokenizer),
    else bytes (the shipped base is byte-level); bytes above a small vocabulary wrap around (said so)."""
    if (base_dir / "tokenizer.json").is_file():
        from explorer.core.hf_tokenizer import load_tokenizer

        ids = load_tokenizer(base_dir, vocab).encode(FIXED_TEXT)
        how = "tokenizer.json"
    else:
        ids = list(FIXED_TEXT.encode("utf-8"))
        how = "bytes"
        if max(ids) >= vocab:
            ids = [i % vocab for i in ids]
            how = f"bytes modulo the vocabulary of {vocab}"
    if not ids or max(ids) >= vocab:
        raise ValueError(f"{base_dir / 'tokenizer.json'}: its token ids do not fit the model's vocabulary of {vocab}")
    return torch.tensor([ids[:limit]]), how


def _attach(model, adapter: PeftAdapter, factors) -> None:
    """Wrap each adapted Linear of our Llama in a LoraLinear holding these factors (and DoRA magnitude)."""
    from explorer.core.lora import LoraLinear, _set_submodule

    for f in adapter.lora:
        if f.embedding or f.bias is not None:
            what = "an Embedding LoRA" if f.embedding else "a lora_B bias"
            raise ValueError(f"{adapter.path}: module {f.name} has {what}, which the explorer's model does not run")
        try:
            linear = model.get_submodule(f.name)
        except AttributeError:
            raise ValueError(f"the base model has no module {f.name} (is it the adapter's base?)") from None
        if not isinstance(linear, torch.nn.Linear) or tuple(linear.weight.shape) != f.shape:
            raise ValueError(f"the base model's {f.name} is not a Linear of shape {list(f.shape)}")
        # each module keeps its alpha; the rank comes from the factors (the resize's k, or r)
        A, B = factors.get(f.name, (f.A, f.B))
        layer = LoraLinear(
            linear,
            int(A.shape[0]),
            f.alpha,
            use_rslora=bool(adapter.config["use_rslora"]),
            use_dora=f.magnitude is not None,
        )
        with torch.no_grad():
            layer.lora_A.weight.copy_(A.float())
            layer.lora_B.weight.copy_(B.float())
            if f.magnitude is not None:
                layer.lora_magnitude_vector.copy_(f.magnitude.float())
        _set_submodule(model, f.name, layer)


@torch.no_grad()
def logit_difference(
    base_dir: str | Path, adapter: PeftAdapter, plan: ResizePlan, factors
) -> tuple[float, float, int, str]:
    """(max |logits original - resized|, max |logits original - base|, tokens, how the text was
    tokenized) on FIXED_TEXT, with the explorer's Llama loaded from `base_dir`."""
    from explorer.core.checkpoint import load_checkpoint
    from explorer.core.lora import remove_lora

    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise FileNotFoundError(f"{base_dir}: no such base model directory")
    model = load_checkpoint(base_dir).eval()
    ids, how = _text_ids(base_dir, model.config.vocab_size, model.config.max_position_embeddings)
    base_logits = model(ids)
    _attach(model, adapter, {})
    original = model(ids)
    remove_lora(model)
    _attach(model, adapter, factors)
    resized = model(ids)
    diff = float((original - resized).abs().max())
    effect = float((original - base_logits).abs().max())
    return diff, effect, int(ids.shape[1]), how


# --- the whole thing ------------------------------------------------------------------------


def resize_adapter(
    source: str | Path | PeftAdapter,
    out: str | Path,
    *,
    energy: float | None = None,
    rank: int | None = None,
    rank_pattern=None,
    base: str | Path | None = None,
) -> ResizeResult:
    """Plan, compute and write a resized adapter (see the module docstring). Everything is checked
    and computed (with `base`, the logit difference too) before anything is written."""
    check_out_dir(out)
    adapter = source if isinstance(source, PeftAdapter) else read_adapter(source)
    plan = plan_resize(adapter, energy=energy, rank=rank, rank_pattern=rank_pattern)
    factors = resized_factors(adapter, plan)
    result = ResizeResult(plan=plan, out=Path(out))
    if base is not None:
        diff, effect, n, how = logit_difference(base, adapter, plan, factors)
        result.logit_difference, result.adapter_effect, result.text_tokens, result.tokenized = diff, effect, n, how
    write_resized(adapter, plan, factors, out)
    return result


def format_plan(plan: ResizePlan) -> str:
    """The table the command prints: module, rank before -> after, energy kept, parameters; totals."""
    width = max(len("module"), *(len(m.name) for m in plan.modules))
    head = f"{'module':<{width}}  {'rank':>11}  {'energy kept':>11}  {'parameters':>23}"
    lines = [f"resize {plan.source} by {plan.how}", head, "-" * len(head)]
    for m in plan.modules:
        ranks = f"{m.rank_before} → {m.rank_after}"
        params = f"{format_count(m.params_before)} → {format_count(m.params_after)}"
        line = f"{m.name:<{width}}  {ranks:>11}  {100 * m.energy_kept:>10.2f}%  {params:>23}"
        lines.append(line + (f"  ({m.note})" if m.note else ""))
    lines.append("-" * len(head))
    before, after = plan.params_before, plan.params_after
    change = f"{100 * (after - before) / before:+.1f} %" if before else ""
    total = f"{format_count(before)} → {format_count(after)}"
    lines.append(
        f"{'total (' + str(len(plan.modules)) + ' modules)':<{width}}  {'':>11}  {100 * plan.energy_kept:>10.2f}%  {total:>23}  {change}"
    )
    if plan.use_dora:
        lines.append(
            "DoRA: magnitude vectors kept as they are; PEFT renormalises W0 + ΔW_k per row, so every row keeps "
            "its norm m and only its direction moves with the truncation of ΔW"
        )
    return "\n".join(lines)
