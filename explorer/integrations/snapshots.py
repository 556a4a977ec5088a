"""Snapshots of a user's PEFT model, made on rank 0 from the (gathered) adapter parameters.

The same plain-data Snapshot the explorer's own engine makes, reduced on the device and copied to the
host in one transfer:
- every LoRA module's spectrum, exact, from its factors (QR of B and A^T, then the SVD of the r x r
  core: explorer.core.analysis.spectrum_from_factors), without forming ΔW;
- a pooled ΔW heatmap (and a pooled W0, computed once) for a bounded set of modules only; the others
  have `delta` and `base` None;
- DoRA: the spectrum and heatmap are those of the direction update ΔW = scaling · B @ A, which is what
  PEFT's `get_delta_weight` returns; the learned magnitude m (W' = m ⊙ (W0 + ΔW) / ||W0 + ΔW||_row)
  is not in them, and `spectrum_method` says so;
- the gates of PEFT's AdaptionPrompt layers (one per layer, repeated per head as the gates view
  expects) and the norm of each layer's prompt;
- bounded, thinned histories of loss, eval loss, gates and (for the heatmap modules) spectra.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from explorer.core.analysis import pool_matrix, pooled_delta, spectrum_from_factors
from explorer.engine.history import SpectrumHistory, ThinningBuffer
from explorer.engine.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot
from explorer.engine.trainer import (
    EVAL_HISTORY,
    GATE_HISTORY,
    LOSS_HISTORY,
    SPECTRUM_HISTORY,
    SPECTRUM_HISTORY_VALUES,
    _to_host,
    spectrum_figures,
)
from explorer.integrations.adapters import Adapters, LoraEntry

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
        for e, arr in zip(entries, _to_host(pooled)):
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
    ) -> Snapshot:
        """`lora`: (A, B) per LoRA entry, whole; `prompts`: (gate, prompt) per prompt entry."""
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
            plan.append((e, len(parts), heat))
            parts.append(values)
            if heat:
                parts.append(pooled_delta(A2, B2, scaling, ds, ds))
        prompt_at = len(parts)
        for gate, prompt in prompts:
            g = gate.detach().float().reshape(-1)
            parts += [g.expand(self.heads) if g.numel() == 1 else g, prompt.detach().float().norm().reshape(1)]
        host = _to_host(parts)  # one device -> host copy

        matrices, spectra_now = {}, {}
        for e, i, heat in plan:
            values = host[i]
            fro, eff, stable = spectrum_figures(values)
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
