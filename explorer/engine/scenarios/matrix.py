"""The matrix scenario: one frozen W0 and a planted update ΔW*, learned from pairs (x, (W0 + ΔW*) x).

W0 (size_out x size_in) is N(0, 1/size_in), so outputs are O(1). ΔW* = U diag(s) V^T of rank
`target_rank` with orthonormal U, V and singular values evenly spaced from 2 down to 0.5, so a
LoRA of rank r visibly catches the top r of them. `noise` adds N(0, noise²) to the targets.
Preset "seed" is the seed notebook's experiment: the target is y = 2x, i.e. ΔW* = 2I - W0, a
full-rank update (square matrices only). Loss: mean squared error. Held-out: 128 fixed vectors.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from explorer.core.adapters import mark_all_trainable, mark_only_adapters_trainable
from explorer.core.analysis import dense_spectrum
from explorer.core.lora import LoraLinear
from explorer.engine.scenarios import MatrixSource, autocast_ctx, cpu_generator, derive_seed, init_generator

N_HELDOUT = 128


class MatrixModel(nn.Module):
    """y = W x, with W an nn.Linear named "W" (state names "W.weight", "W.lora_A.weight", ...)."""

    def __init__(self, W0: torch.Tensor):
        super().__init__()
        out_f, in_f = W0.shape
        self.W = nn.Linear(in_f, out_f, bias=False, device=W0.device, dtype=W0.dtype)
        with torch.no_grad():
            self.W.weight.copy_(W0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W(x)


class MatrixScenario:
    name = "matrix"

    def __init__(self, settings, device: torch.device, autocast=None):
        self.device, self.autocast, self.seed = device, autocast, settings.seed
        out_f, in_f = settings.size_out, settings.size_in
        self.noise = float(settings.noise)
        g = cpu_generator(settings.seed, "problem")
        W0 = (torch.randn(out_f, in_f, generator=g) / math.sqrt(in_f)).to(device)
        if settings.preset == "seed":
            if out_f != in_f:
                raise ValueError(
                    f"preset='seed' needs a square matrix (target y = 2x): got "
                    f"size_out={out_f}, size_in={in_f}; set both with --size"
                )
            delta = 2.0 * torch.eye(out_f, device=device) - W0
            values, method = dense_spectrum(delta)
            self.target_method = method
        else:
            r = settings.target_rank
            U = torch.linalg.qr(torch.randn(out_f, r, generator=g).to(device))[0]
            V = torch.linalg.qr(torch.randn(in_f, r, generator=g).to(device))[0]
            values = torch.linspace(2.0, 0.5, r, device=device) if r > 1 else torch.full((1,), 2.0, device=device)
            delta = (U * values) @ V.T
            self.target_method = f"planted: rank {r}, singular values 2 ... 0.5"
        self.W0, self.target, self.target_values = W0, delta, values
        self.W_true = W0 + delta
        hg = cpu_generator(settings.seed, "heldout")
        x = torch.randn(N_HELDOUT, in_f, generator=hg).to(device)
        y = x @ self.W_true.T
        if self.noise:
            y = y + self.noise * torch.randn(y.shape, generator=hg).to(device)
        self.heldout = (x, y)
        self.base = MatrixModel(W0).requires_grad_(False)
        # Data on the device: a CUDA generator there, reseeded per step (cheap, random access).
        self._data_gen = torch.Generator(device=device) if device.type == "cuda" else torch.Generator()
        self._gen_device = device if device.type == "cuda" else torch.device("cpu")

    def info(self) -> dict:
        return {
            "kind": "matrix",
            "shape": list(self.W0.shape),
            "target": self.target_method,
            "target_rank": int((self.target_values > 0).sum()),
        }

    def matmul_flops(self, settings) -> float:
        """Floating-point operations of the step's matrix product W x over the batch (see lm.py)."""
        out_f, in_f = self.W0.shape
        return 2.0 * settings.batch_size * out_f * in_f

    def build(self, settings) -> nn.Module:
        model = copy.deepcopy(self.base)
        if settings.method == "lora":
            model.W = LoraLinear(
                model.W,
                settings.rank,
                settings.alpha,
                settings.dropout,
                settings.use_rslora,
                settings.init,
                settings.use_dora,
                generator=init_generator(settings.seed, "lora"),
            )
            mark_only_adapters_trainable(model)
        elif settings.method == "full":
            mark_all_trainable(model)
        else:
            raise ValueError(f"method={settings.method!r} is not available in the matrix scenario: allowed lora, full")
        return model.train()

    def batch(self, step: int, batch_size: int):
        self._data_gen.manual_seed(derive_seed(self.seed, "data", step))
        x = torch.randn(batch_size, self.W0.shape[1], generator=self._data_gen, device=self._gen_device)
        noise = (
            torch.randn(batch_size, self.W0.shape[0], generator=self._data_gen, device=self._gen_device)
            if self.noise
            else None
        )
        x = x.to(self.device)
        y = x @ self.W_true.T
        if noise is not None:
            y = y + self.noise * noise.to(self.device)
        return x, y

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        with autocast_ctx(self.device, self.autocast):
            pred = model(x)
        return F.mse_loss(pred.float(), y)

    @torch.no_grad()
    def eval_loss(self, model: nn.Module) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            return self.loss(model, self.heldout)
        finally:
            model.train(was)

    def matrix_sources(self, model: nn.Module, settings) -> list[MatrixSource]:
        W = model.W
        shape = tuple(self.W0.shape)
        if isinstance(W, LoraLinear):
            return [
                MatrixSource(
                    "W",
                    shape,
                    W.base_layer.weight,
                    W.lora_A.weight,
                    W.lora_B.weight,
                    W.scaling,
                    magnitude=W.lora_magnitude_vector,
                )
            ]
        return [MatrixSource("W", shape, self.W0, weight=W.weight)]

    def prefix_layers(self, model) -> dict:
        return {}

    def budget(self, settings, model: nn.Module) -> dict:
        out_f, in_f = self.W0.shape
        base = out_f * in_f
        trainable = base
        if settings.method == "lora":  # A and B, and DoRA's magnitude vector (one per output row)
            trainable = settings.rank * (out_f + in_f) + (out_f if settings.use_dora else 0)
        total = base + trainable if settings.method == "lora" else base
        measured = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {
            "method": settings.method,
            "trainable_params": trainable,
            "base_params": base,
            "total_params": total,
            "share": trainable / base,
            "storage_bytes_fp16": 2 * trainable,
            "storage_bytes_fp32": 4 * trainable,
            "optimizer_bytes": 12 * trainable,
            "measured_trainable_params": measured,
        }
