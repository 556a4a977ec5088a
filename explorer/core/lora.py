"""LoRA on any nn.Linear, held to HuggingFace PEFT's `tuners/lora/layer.py`.

y = W0 x + b + scaling * B(A(dropout(x))), scaling = alpha / r (rsLoRA: alpha / sqrt(r)).
The wrapper keeps the original Linear as `base_layer` and the factors as `lora_A` / `lora_B`
(nn.Linear, like PEFT), so parameter names map one-to-one onto a PEFT adapter file.

Dropout (`LoraDropout`) draws its masks from a torch.Generator of its own when one is set
(`set_dropout_generator`): the trainer reseeds it from (seed, step) before every step, so a run with
dropout is as reproducible as one without (docs/reference.md, "Dropout").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explorer.schema.peft_patterns import pattern_key

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_INITS = ("kaiming", "gaussian", "pissa")


@dataclass
class LoraSettings:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    layers: tuple[int, ...] | None = None  # None: every layer
    dropout: float = 0.0
    use_rslora: bool = False
    init: str = "kaiming"
    use_dora: bool = False
    # PEFT's per-module overrides: pattern key -> rank / alpha (see `rank_and_alpha`)
    rank_pattern: dict[str, int] | None = None
    alpha_pattern: dict[str, float] | None = None

    def scaling(self) -> float:
        return lora_scaling(self.rank, self.alpha, self.use_rslora)

    def rank_and_alpha(self, module_name: str) -> tuple[int, float, str, str]:
        """(rank, alpha, where the rank came from, where the alpha came from) for one module path, as
        PEFT resolves them: the first rank_pattern / alpha_pattern key that matches the end of the path
        (`(.*\\.)?key$`), else rank / alpha."""
        rkey = pattern_key(self.rank_pattern or {}, module_name)
        akey = pattern_key(self.alpha_pattern or {}, module_name)
        rank = self.rank_pattern[rkey] if rkey is not None else self.rank
        alpha = self.alpha_pattern[akey] if akey is not None else self.alpha
        return (
            rank,
            alpha,
            "rank" if rkey is None else f"rank_pattern[{rkey!r}]",
            "alpha" if akey is None else f"alpha_pattern[{akey!r}]",
        )


def lora_scaling(rank: int, alpha: float, use_rslora: bool) -> float:
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


class LoraDropout(nn.Module):
    """Inverted dropout on the LoRA branch, as nn.Dropout (zero with probability p, scale the rest
    by 1 / (1 - p)), drawing its masks from `generator` when one is set.

    nn.Dropout can only draw from torch's global generator, which anything else in the process
    (another run, a test, a library) also draws from, so two runs of the same settings and seed would
    see different masks. With a generator of its own the masks depend on that generator alone.
    Without one it falls back to the global generator (F.dropout), exactly like nn.Dropout."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            return F.dropout(x, self.p, True)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, generator={'own' if self.generator is not None else 'global'}"


def set_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> int:
    """Make every LoRA dropout in `model` draw from `generator` (None: torch's global one again).
    Returns how many dropout modules there are (0 when dropout is off)."""
    found = [m for m in model.modules() if isinstance(m, LoraDropout)]
    for m in found:
        m.generator = generator
    return len(found)


def adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """Adapters train in fp32 on a half-precision base (as PEFT's autocast_adapter_dtype)."""
    return torch.float32 if base_dtype in (torch.float16, torch.bfloat16) else base_dtype


class LoraLinear(nn.Module):
    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
        init: str = "kaiming",
        use_dora: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        out_f, in_f = base_layer.weight.shape
        _check_rank(rank, out_f, in_f, "rank")
        _check_common(alpha, dropout, init)
        self.base_layer = base_layer
        self.rank, self.alpha, self.use_rslora, self.init = rank, float(alpha), use_rslora, init
        self.scaling = lora_scaling(rank, alpha, use_rslora)
        factory = dict(device=base_layer.weight.device, dtype=adapter_dtype(base_layer.weight.dtype))
        self.lora_A = nn.Linear(in_f, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, out_f, bias=False, **factory)
        self.lora_dropout = LoraDropout(dropout) if dropout > 0 else nn.Identity()
        # Kept outside the state dict: W0 before PiSSA rewrote it, and W0 before a merge, so that
        # removing or unmerging restores the original bit for bit.
        self.register_buffer("original_weight", None, persistent=False)
        self.register_buffer("premerge_weight", None, persistent=False)
        self.merged = False
        self._init_factors(generator)
        self.lora_magnitude_vector = None
        if use_dora:
            with torch.no_grad():
                norm = self._row_norm(self.base_layer.weight, self.delta_weight())
            self.lora_magnitude_vector = nn.Parameter(norm.clone())

    @torch.no_grad()
    def _init_factors(self, generator):
        a, b = self.lora_A.weight, self.lora_B.weight
        if self.init == "kaiming":
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
            b.zero_()
        elif self.init == "gaussian":
            a.normal_(0.0, 1.0 / self.rank, generator=generator)
            b.zero_()
        else:  # PiSSA: the top-r singular directions move into the adapter, the rest stays frozen
            w = self.base_layer.weight
            u, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
            sr = torch.sqrt(s[: self.rank] / self.scaling)
            a.copy_((torch.diag(sr) @ vh[: self.rank]).to(a.dtype))
            b.copy_((u[:, : self.rank] @ torch.diag(sr)).to(b.dtype))
            self.original_weight = w.detach().clone()
            w.sub_(self.scaling * (b @ a))

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A, shape (out, in): the LoRA update (for DoRA, before the magnitude)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    @staticmethod
    def _row_norm(w0, delta):
        return torch.linalg.norm(w0 + delta, dim=1)

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer applies: W0 + ΔW, or m * (W0 + ΔW) / ||W0 + ΔW||_row for DoRA."""
        w0 = self.premerge_weight if self.merged else self.base_layer.weight
        w = w0 + self.delta_weight()
        if self.lora_magnitude_vector is not None:
            w = (self.lora_magnitude_vector / torch.linalg.norm(w, dim=1))[:, None] * w
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        # On a half-precision base the fp32 factors see an fp32 input and the update returns in the
        # base's dtype (PEFT's way); on an fp32 base, or under autocast, both casts change nothing.
        xd = self.lora_dropout(x).to(self.lora_A.weight.dtype)
        lora = self.lora_B(self.lora_A(xd))
        if self.lora_magnitude_vector is None:
            return result + (lora * self.scaling).to(result.dtype)
        # DoRA as PEFT computes it: the weight norm is detached so no gradient flows through it.
        weight = self.base_layer.weight
        norm = self._row_norm(weight, self.delta_weight()).detach()
        mag = (self.lora_magnitude_vector / norm).view(1, -1)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base = result if self.base_layer.bias is None else result - self.base_layer.bias
        else:
            base = F.linear(xd.to(weight.dtype), weight)
        return result + (mag - 1) * base + mag * lora * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into W0. Refused (like PEFT's safe_merge) if the result is not finite."""
        if self.merged:
            return
        merged = self.effective_weight()
        if not torch.isfinite(merged).all():
            raise ValueError("merge refused: the merged weight would contain NaN or infinity")
        self.premerge_weight = self.base_layer.weight.detach().clone()
        self.base_layer.weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_layer.weight.copy_(self.premerge_weight)
        self.premerge_weight = None
        self.merged = False

    @torch.no_grad()
    def restore_base(self) -> nn.Linear:
        """Undo merge and PiSSA and hand back the original Linear, exactly as it was."""
        self.unmerge()
        if self.original_weight is not None:
            self.base_layer.weight.copy_(self.original_weight)
            self.original_weight = None
        return self.base_layer

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha}, scaling={self.scaling:.4g}, init={self.init}, "
            f"dora={self.lora_magnitude_vector is not None}"
        )


def _check_rank(rank, out_f, in_f, name):
    if not isinstance(rank, int) or rank < 1 or rank > min(out_f, in_f):
        raise ValueError(
            f"{name}={rank!r} is out of range: allowed 1 to {min(out_f, in_f)} for a {out_f}x{in_f} matrix"
        )


def _check_common(alpha, dropout, init, name="alpha"):
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"{name}={alpha!r} is out of range: allowed a finite number > 0")
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"dropout={dropout!r} is out of range: allowed 0 <= dropout < 1")
    if init not in LORA_INITS:
        raise ValueError(f"init={init!r} is unknown: allowed {', '.join(LORA_INITS)}")


_LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_index(module_name: str) -> int | None:
    m = _LAYER_INDEX.search(module_name)
    return int(m.group(1)) if m else None


def find_targets(model: nn.Module, targets, layers=None) -> list[str]:
    """Names of the nn.Linear modules LoRA would wrap: last name in `targets`, layer in `layers`.
    Validates everything first, so that injection can never stop half-way."""
    targets = tuple(targets)
    if not targets:
        raise ValueError("targets=() is empty: allowed one or more of " + ", ".join(LORA_TARGETS))
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown:
        raise ValueError(f"targets={unknown[0]!r} is unknown: allowed {', '.join(LORA_TARGETS)}")
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if layers is not None:
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers=() is empty: allowed None (every layer) or layer indices")
        for i in layers:
            if n_layers is not None and not (0 <= i < n_layers):
                raise ValueError(f"layers={i} is out of range: allowed 0 to {n_layers - 1}")
    names = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            raise ValueError(f"{name} already carries a LoRA adapter: remove it first")
        targeted = isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
        if targeted and (layers is None or layer_index(name) in layers):
            names.append(name)
    if not names:
        raise ValueError(f"targets={','.join(targets)} match no linear layer in this model")
    return names


def inject_lora(model: nn.Module, settings: LoraSettings, generator: torch.Generator | None = None) -> list[str]:
    """Wrap the chosen Linears in LoraLinear. All-or-nothing: on any error the model is unchanged."""
    names = find_targets(model, settings.targets, settings.layers)
    _check_common(settings.alpha, settings.dropout, settings.init)
    chosen = {}
    for name in names:
        rank, alpha, rank_from, alpha_from = settings.rank_and_alpha(name)
        out_f, in_f = model.get_submodule(name).weight.shape
        _check_rank(rank, out_f, in_f, rank_from)
        _check_common(alpha, settings.dropout, settings.init, alpha_from)
        chosen[name] = (rank, alpha)
    for setting in ("rank_pattern", "alpha_pattern"):
        # PEFT ignores a key that matches nothing; here it is almost surely a typo, so it is refused
        for key in getattr(settings, setting) or {}:
            if not any(pattern_key([key], name) for name in names):
                raise ValueError(
                    f"{setting}: key {key!r} matches no LoRA module (they look like {names[0]!r}; "
                    "a key matches the end of a module path)"
                )
    done: list[tuple[str, LoraLinear]] = []
    try:
        for name in names:
            base = model.get_submodule(name)
            wrapper = LoraLinear(
                base,
                *chosen[name],
                settings.dropout,
                settings.use_rslora,
                settings.init,
                settings.use_dora,
                generator,
            )
            _set_submodule(model, name, wrapper)
            done.append((name, wrapper))
    except BaseException:
        for name, wrapper in reversed(done):
            _set_submodule(model, name, wrapper.restore_base())
        raise
    return names


def lora_modules(model: nn.Module) -> dict[str, LoraLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def remove_lora(model: nn.Module) -> None:
    """Put the original Linears back, with their original weights, bit for bit."""
    for name, module in lora_modules(model).items():
        _set_submodule(model, name, module.restore_base())


def merge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.unmerge()


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
