"""Snapshots of a user's PEFT model, made on rank 0 from the (gathered) adapter parameters.

The same plain-data Snapshot the explorer's own engine makes, reduced on the device and copied to the
host in one transfer:
- every LoRA module's spectrum, exact, from its factors (QR of B and A^T, then the SVD of the r x r
  core: explorer.core.analysis.spectrum_from_factors), without forming ΔW;
- a pooled ΔW heatmap (and a pooled W0, computed once) for a bounded set of modules only; the others
  have `delta` and `base` None;
- DoRA: `spectrum` and `delta` are those of the direction update ΔW = scaling · B @ A, which is what
  PEFT's `get_delta_weight` returns, and `spectrum_method` says so; for the heatmap modules the
  snapshot also carries the effective update W_eff - W0, W_eff = m / ||W0 + ΔW||_row · (W0 + ΔW) (what
  a merge writes; full rank in general), pooled, with its spectrum (exact up to 512, else the top 64
  by a randomized SVD) and exact Frobenius norm, as the engine's own DoRA snapshots do;
- the gates of PEFT's AdaptionPrompt layers (one per layer, repeated per head as the gates view
  expects) and the norm of each layer's prompt;
- bounded, thinned histories of loss, eval loss, gates and (for the heatmap modules) spectra.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from explorer.core.analysis import (
    dora_effective_update,
    pool_matrix,
    pooled_delta,
    spectrum_figures,
    spectrum_from_factors,
    to_host,
    update_spectrum,
)
from explorer.core.history import (
    EVAL_HISTORY,
    GATE_HISTORY,
    LOSS_HISTORY,
    SPECTRUM_HISTORY,
    SPECTRUM_HISTORY_VALUES,
    SpectrumHistory,
    ThinningBuffer,
)
from explorer.integrations.adapters import Adapters, LoraEntry
from explorer.schema.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot

EXACT = "exact: QR of the factors + SVD of the r x r core"


def factor_matrices(entry: LoraEntry, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) as matrices whose product B @ A is the update as a map, (out, in)."""
    if entry.kind == "conv":
        return A.reshape(A.shape[0], -1), B.reshape(B.shape[0], -1)
    return A, B


def base_map(entry: LoraEntry, W: torch.Tensor) -> torch.Tensor:
    """The base weight in the same (out, in) layout as the update."""
    if entry.kind == "conv":
        return W.reshape(W.shape[0], -1)
    return W.T if entry.fan_in_fan_out else W  # Conv1D and embeddings keep (in, out)


def spectrum_method(entry: LoraEntry) -> str:
    text = EXACT
    if entry.magnitude is not None:
        text += "; DoRA: of the direction update scaling·B·A (PEFT's get_delta_weight), without the magnitude m"
    if entry.kind == "conv":
        text += "; conv kernel flattened to (out, in·kh·kw)"
    elif entry.kind == "embedding":
        text += "; embedding update as (dim, vocab)"
    elif entry.fan_in_fan_out:
        text += "; fan_in_fan_out: the (out, in) map, the transpose of the Conv1D weight layout"
    return text


class SnapshotBuilder:
    """Rank 0's side: histories and the snapshot of one recorded step."""

    def __init__(
        self, adapters: Adapters, heatmaps: list[str], heatmap_size: int, settings: dict, budget: dict, device: str
    ):
        self.adapters = adapters
        self.heatmaps = set(heatmaps)
        self.size = int(heatmap_size)
        self.settings = settings
        self.budget = budget
        self.device = device
        self.loss_hist = ThinningBuffer(LOSS_HISTORY)
        self.eval_hist = ThinningBuffer(EVAL_HISTORY)
        heads = max((p.heads for p in adapters.prompts), default=0)
        self.heads = heads
        self.gate_hist = ThinningBuffer(GATE_HISTORY, (len(adapters.prompts), heads)) if adapters.prompts else None
        lengths = {e.name: e.rank for e in adapters.lora if e.name in self.heatmaps}
        self.spectrum_hist = SpectrumHistory(lengths, SPECTRUM_HISTORY, SPECTRUM_HISTORY_VALUES)
        self.base_pooled: dict[str, np.ndarray] = {}
        self.last_step = -1

    def needs_base(self) -> list[LoraEntry]:
        """Heatmap modules whose pooled W0 is not known yet (it is constant: pooled once)."""
        return [
            e
            for e in self.adapters.lora
            if e.name in self.heatmaps and e.base is not None and e.name not in self.base_pooled
        ]

    @torch.no_grad()
    def pool_bases(self, entries: list[LoraEntry], weights: list[torch.Tensor]) -> None:
        pooled = [pool_matrix(base_map(e, W), self.size, self.size) for e, W in zip(entries, weights)]
        for e, arr in zip(entries, to_host(pooled)):
            self.base_pooled[e.name] = arr

    def add_losses(self, steps: list[int], losses: list[float | None]) -> None:
        for s, v in zip(steps, losses):
            if v is not None and np.isfinite(v):
                self.loss_hist.append(s, v)

    def add_eval(self, step: int, value: float) -> None:
        if np.isfinite(value):
            self.eval_hist.append(step, value)

    @torch.no_grad()
    def build(
        self,
        step: int,
        lora: list[tuple[torch.Tensor, torch.Tensor]],
        prompts: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        loss: float | None,
        eval_loss: float | None,
        lr: float,
        elapsed: float,
        steps_per_second: float,
        memory_bytes: int,
        state: str,
        dora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Snapshot:
        """`lora`: (A, B) per LoRA entry, whole; `prompts`: (gate, prompt) per prompt entry; `dora`:
        {name: (W0, m)} of the DoRA heatmap modules, whole, for their effective update W_eff - W0."""
        dora = dora or {}
        ds = self.size
        parts: list[torch.Tensor] = []
        plan = []
        shapes = {}
        for e, (A, B) in zip(self.adapters.lora, lora):
            A2, B2 = factor_matrices(e, A, B)
            shapes[e.name] = (int(B2.shape[0]), int(A2.shape[1]))
            scaling = e.scaling
            values = spectrum_from_factors(A2, B2, scaling).values
            heat = e.name in self.heatmaps
            at = len(parts)
            parts.append(values)
            if heat:
                parts.append(pooled_delta(A2, B2, scaling, ds, ds))
            effective = None
            if e.name in dora:  # the full-rank W_eff - W0 beside the low-rank B·A, as the engine shows it
                W0, m = dora[e.name]
                upd = dora_effective_update(base_map(e, W0), A2, B2, scaling, m.reshape(-1))
                e_values, e_method, e_partial = update_spectrum(upd)
                effective = (e_method, e_partial, len(parts))
                parts += [e_values, pool_matrix(upd, ds, ds), torch.linalg.matrix_norm(upd).reshape(1)]
            plan.append((e, at, heat, effective))
        prompt_at = len(parts)
        for gate, prompt in prompts:
            g = gate.detach().float().reshape(-1)
            parts += [g.expand(self.heads) if g.numel() == 1 else g, prompt.detach().float().norm().reshape(1)]
        host = to_host(parts)  # one device -> host copy

        matrices, spectra_now = {}, {}
        for e, i, heat, effective in plan:
            values = host[i]
            fro, eff, stable = spectrum_figures(values)
            extra = {}
            if effective is not None:
                e_method, e_partial, j = effective
                e_fro, e_eff, e_stable = spectrum_figures(host[j], float(host[j + 2][0]))
                extra = dict(
                    effective_update=host[j + 1],
                    effective_update_spectrum=host[j],
                    effective_update_fro_norm=e_fro,
                    effective_update_effective_rank=e_eff,
                    effective_update_stable_rank=e_stable,
                    effective_update_method=e_method,
                    effective_update_partial=e_partial,
                )
            matrices[e.name] = MatrixSnapshot(
                name=e.name,
                shape=shapes[e.name],
                delta=host[i + 1] if heat else None,
                base=self.base_pooled.get(e.name) if heat else None,
                spectrum=values,
                fro_norm=fro,
                effective_rank=eff,
                stable_rank=stable,
                spectrum_method=spectrum_method(e),
                **extra,
            )
            if heat:
                spectra_now[e.name] = values
        prefixes, gate_rows = [], []
        for k, p in enumerate(self.adapters.prompts):
            gates, norm = host[prompt_at + 2 * k], host[prompt_at + 2 * k + 1]
            prefixes.append(PrefixSnapshot(layer=p.layer, gates=gates, attention=None, prompt_norm=float(norm[0])))
            gate_rows.append(gates)
        if step != self.last_step:
            self.last_step = step
            if gate_rows:
                self.gate_hist.append(step, np.stack(gate_rows))
            if spectra_now:
                self.spectrum_hist.append(step, spectra_now)
        h = History()
        h.steps, h.loss = self.loss_hist.arrays()
        h.eval_steps, h.eval_loss = self.eval_hist.arrays()
        if self.gate_hist is not None:
            h.gate_steps, h.gates = self.gate_hist.arrays()
        h.spectrum_steps, h.spectra = self.spectrum_hist.arrays()
        settings = dict(self.settings)
        settings["lr"] = float(lr)
        return Snapshot(
            step=int(step),
            time=float(elapsed),
            segment=0,
            loss=loss,
            eval_loss=eval_loss,
            lr=float(lr),
            steps_per_second=float(steps_per_second),
            device=self.device,
            memory_bytes=int(memory_bytes),
            settings=settings,
            matrices=matrices,
            prefixes=prefixes,
            history=h,
            budget=self.budget,
            samples=None,
            probe_tokens=[],
            state=state,
            fault=None,
        )


def wall_time() -> float:
    return time.time()
