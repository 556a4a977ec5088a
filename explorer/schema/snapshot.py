"""What the views draw: plain data (numpy arrays and numbers), reduced on the device, copied once.

The same objects come from the live worker, are written to recordings and are read back from them,
so every view can draw a live run and a replay alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explorer.schema.faults import Fault
from explorer.schema.heatmap_choice import carry_held


@dataclass
class MatrixSnapshot:
    """One adapted matrix (a LoRA module, or the fully fine-tuned weight in the `full` baseline)."""

    name: str  # "model.layers.3.self_attn.q_proj", or "W" in the matrix scenario
    shape: tuple[int, int]  # (out, in) of the full matrix
    # ΔW pooled to at most display_size per side, float32; None for a matrix whose heatmaps were not
    # sent (live: only those of the setting heatmap_matrices, explorer.schema.heatmap_choice) or not
    # recorded (a recording of the app holds those it showed; one of a user's own run a bounded set)
    delta: np.ndarray | None
    # W0 pooled the same way (mean pooling is linear: W0+ΔW = base + delta); live, None after the first
    # snapshot that sent it in a segment (the window keeps it: heatmap_choice.HeldHeatmaps)
    base: np.ndarray | None
    spectrum: np.ndarray  # singular values of ΔW, descending (r values for LoRA)
    fro_norm: float
    effective_rank: float
    stable_rank: float
    target: np.ndarray | None = None  # the planted update ΔW* (matrix scenario), pooled; sent once as base
    target_spectrum: np.ndarray | None = None  # its singular values
    spectrum_method: str = "exact"  # how the spectrum was computed (QR of factors, svdvals, ...)
    # True when `spectrum` holds only the leading values (a randomized SVD of a large full fine-tuning
    # update): fro_norm and stable_rank are still exact (from ||ΔW||_F and σ₁), effective_rank is that
    # of the values given.
    spectrum_partial: bool = False
    # DoRA only (None otherwise): the effective update W_eff - W0, W_eff = m / ||W0 + ΔW||_row · (W0 + ΔW)
    # (what a merge writes), full rank in general; `delta` and `spectrum` stay the low-rank ΔW = s·B·A.
    effective_update: np.ndarray | None = None  # pooled like delta (W0 + effective_update = merged W)
    effective_update_spectrum: np.ndarray | None = None  # its singular values, descending
    effective_update_fro_norm: float | None = None  # exact
    effective_update_effective_rank: float | None = None
    effective_update_stable_rank: float | None = None
    effective_update_method: str | None = None
    effective_update_partial: bool = False  # as spectrum_partial


@dataclass
class PrefixSnapshot:
    layer: int
    gates: np.ndarray  # gate(g) per head (per-head gates) or repeated per head (per-layer)
    # probe attention (heads sent, T, K + T): [gated prompt | tokens]; None for a layer whose maps
    # were not asked for (settings attention_layers, explorer.schema.attention_choice)
    attention: np.ndarray | None
    prompt_norm: float = 0.0
    heads: np.ndarray | None = None  # the head of each map in `attention` (int64); None: every head, in order
    # the training step `attention` was measured at: a live run measures it on a slower cadence than
    # the snapshots, which carry the last maps between two measurements (None: at the snapshot's step)
    attention_step: int | None = None


@dataclass
class History:
    """Bounded, thinned histories (see core/history.py) copied into each snapshot."""

    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_loss: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    gate_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))  # (points, layers, heads)
    spectrum_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    spectra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (points, r)


@dataclass
class Snapshot:
    step: int
    time: float  # seconds since the segment started
    segment: int  # increments on every cold change or reset
    loss: float | None  # last training loss (None before the first step)
    eval_loss: float | None  # held-out loss, when last measured
    lr: float
    steps_per_second: float
    device: str
    memory_bytes: int  # device memory in use (CUDA), or process RSS on the CPU
    settings: dict  # TrainSettings.to_dict() of the running segment
    matrices: dict[str, MatrixSnapshot] = field(default_factory=dict)
    prefixes: list[PrefixSnapshot] = field(default_factory=list)
    history: History = field(default_factory=History)
    budget: dict = field(default_factory=dict)  # trainable, total, share, storage bytes, optimizer bytes
    samples: dict | None = None  # {"prompt": str, "adapted": str, "base": str, "step": int}
    # The token view (lm): a fixed held-out text, `context` (its first token, not predicted) then
    # `tokens`, with delta[i] = log p_adapted(tokens[i]) - log p_base(tokens[i]) in nats (float32),
    # computed at training step `step`: {"context": str, "tokens": [str], "delta": array, "step": int}
    token_delta: dict | None = None
    probe_tokens: list[str] = field(default_factory=list)  # axis labels for the attention maps
    state: str = "paused"  # "running" | "paused" | "fault"
    fault: Fault | None = None  # why training stopped (state "fault")
    slow_reason: str | None = None  # why steps run far slower than a moment ago, when known (engine/slowdown.py)

    def absorb(self, older) -> Snapshot:
        """This snapshot, given the pooled W0 / target it leaves out that `older` (which it replaces in
        a one-slot mailbox before anyone took it) carries: they are sent once a segment."""
        if not isinstance(older, Snapshot):
            return self
        return carry_held(self, older)


def fault_snapshot(settings: dict, fault: Fault | None) -> Snapshot:
    """A snapshot that only says why nothing trains (the engine could not start, or its process
    died before it sent anything): step 0, no data, the settings asked for."""
    return Snapshot(
        step=0,
        time=0.0,
        segment=0,
        loss=None,
        eval_loss=None,
        lr=float(settings.get("lr", 0.0)),
        steps_per_second=0.0,
        device="",
        memory_bytes=0,
        settings=dict(settings),
        state="fault",
        fault=fault,
    )
