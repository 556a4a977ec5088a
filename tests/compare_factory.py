"""Synthetic `CompareSnapshot`s for view tests and galleries: plain numpy, no model, deterministic.

    compare_snapshot(step=40)                      lora r=4, lora r=8, prefix K=10, full on a 2-layer q/v model
    compare_snapshot(step=40, runs=("lora:r=8",))  any runs (METHOD:r=..); analyses for the LoRA ones

Loss curves fall with the step (each run to its own floor), φ matrices are those of random subspaces
with a shared top direction, amplification and spectra are plausible numbers. Step 0 gives empty
analyses-free comparisons, as a real one at step 0 would look before training.
"""

from __future__ import annotations

import numpy as np

from explorer.schema.compare import CompareAnalysis, CompareSnapshot, RunSummary

MODULES = tuple(f"model.layers.{i}.self_attn.{t}" for i in (0, 1) for t in ("q_proj", "v_proj"))
DEFAULT_RUNS = ("lora:r=4", "lora:r=8", "prefix:K=10", "full")


def _parse(spec: str) -> tuple[str, int]:
    method, _, rest = spec.partition(":")
    rank = 8
    for item in rest.split(","):
        if item.startswith("r="):
            rank = int(item[2:])
    return method, rank


def _phi(r1: int, r2: int, rng: np.random.Generator, shared: int = 1, n: int = 64) -> np.ndarray:
    """phi of two random subspaces that share their top `shared` directions."""
    base = np.linalg.qr(rng.standard_normal((n, max(r1, r2) + shared)))[0]
    u1 = (
        np.concatenate([base[:, :shared], np.linalg.qr(rng.standard_normal((n, r1 - shared)))[0]], 1)[:, :r1]
        if r1 > shared
        else base[:, :r1]
    )
    u2 = (
        np.concatenate([base[:, :shared], np.linalg.qr(rng.standard_normal((n, r2 - shared)))[0]], 1)[:, :r2]
        if r2 > shared
        else base[:, :r2]
    )
    m2 = (u1.T @ u2) ** 2
    block = m2.cumsum(0).cumsum(1)
    i = np.arange(1, r1 + 1)[:, None]
    j = np.arange(1, r2 + 1)[None, :]
    return np.clip(block / np.minimum(i, j), 0, 1).astype(np.float32)


def compare_snapshot(
    step: int = 40, runs=DEFAULT_RUNS, seed: int = 0, segment: int = 0, analysis: bool = True
) -> CompareSnapshot:
    rng = np.random.default_rng(seed)
    summaries = []
    for i, spec in enumerate(runs):
        method, rank = _parse(spec)
        label = spec.replace(":", "-").replace("=", "").replace(",", "-")
        floor = {"full": 1.2, "prefix": 1.8}.get(method, 1.6 - 0.01 * rank)
        if step > 0:
            steps = np.arange(0, step + 1, max(1, step // 60), dtype=np.int64)
            losses = (floor + 1.5 * np.exp(-steps / 30.0) + 0.05 * rng.standard_normal(steps.size)).astype(np.float32)
            eval_steps = steps[::5]
            eval_losses = (floor + 0.1 + 1.5 * np.exp(-eval_steps / 30.0)).astype(np.float32)
        else:
            steps = np.zeros(1, np.int64)
            losses = np.full(1, floor + 1.5, np.float32)
            eval_steps, eval_losses = np.zeros(1, np.int64), np.full(1, floor + 1.6, np.float32)
        trainable = {"full": 791_680, "prefix": 2 * (10 * 128 + 4)}.get(method, 4 * rank * 256)
        summaries.append(
            RunSummary(
                label=label,
                spec=spec,
                method=method,
                colour=i,
                settings={"method": method, "rank": rank},
                step=step,
                loss=float(losses[-1]),
                eval_loss=float(eval_losses[-1]),
                steps=steps,
                losses=losses,
                eval_steps=eval_steps,
                eval_losses=eval_losses,
                trainable_params=trainable,
                share=trainable / 791_680,
                storage_bytes=2 * trainable,
                steps_per_second=20.0 + i,
                llama7b_trainable_params=trainable * 1000,
                llama7b_storage_bytes=2000 * trainable,
                final_loss=float(losses[-5:].mean()),
                final_eval_loss=float(eval_losses[-1]),
                matrices=list(MODULES),
            )
        )
    result = None
    lora = [(s.label, _parse(s.spec)[1]) for s in summaries if s.method in ("lora", "lora+prefix")]
    if analysis and step > 0:
        pairs, sim, ctrl = [], {}, {}
        for a in range(len(lora)):
            for b in range(a + 1, len(lora)):
                (la, ra), (lb, rb) = lora[a], lora[b]
                pairs.append((la, lb))
                sim[(la, lb)] = {m: _phi(ra, rb, rng, shared=min(ra, rb, 2)) for m in MODULES}
                ctrl[(la, lb)] = {m: _phi(ra, rb, rng, shared=0) for m in MODULES}
        amp = {
            la: [
                {
                    "module": m,
                    "rank": ra,
                    "delta_fro": 1.0 + 0.1 * k,
                    "w0_fro": 8.0,
                    "proj_delta": 0.05 * (k + 1),
                    "proj_w0_top": 3.0,
                    "proj_random": 0.3,
                    "factor": (1.0 + 0.1 * k) / (0.05 * (k + 1)) * (1 + ra / 8),
                }
                for k, m in enumerate(MODULES)
            ]
            for la, ra in lora
        }
        intrinsic = {}
        full = [s.label for s in summaries if s.method == "full"]
        if full:
            fvals = np.geomspace(2.0, 1e-3, 64).astype(np.float32)
            for la, ra in lora:
                intrinsic[(la, full[0])] = {
                    m: {
                        "module": m,
                        "rank": ra,
                        "lora_values": np.geomspace(2.5, 0.2, ra).astype(np.float32),
                        "lora_method": "exact: QR of the factors + SVD of the r x r core",
                        "full_values": fvals,
                        "full_method": "exact svd, all 64 values",
                        "lora_effective_rank": ra * 0.7,
                        "lora_stable_rank": 1.5,
                        "full_effective_rank": 20.0,
                        "full_stable_rank": 3.0,
                        "full_energy_top_r": 0.5 + 0.02 * ra,
                        "lora_fro": 3.0,
                        "full_fro": 4.0,
                        "overlap_left": 0.4,
                        "overlap_right": 0.3,
                    }
                    for m in MODULES
                }
        result = CompareAnalysis(
            step=step,
            modules=list(MODULES) if lora else [],
            pairs=pairs,
            similarity=sim,
            control=ctrl,
            amplification=amp,
            intrinsic=intrinsic,
        )
    return CompareSnapshot(
        step=step,
        segment=segment,
        time=step / 20.0,
        runs=summaries,
        analysis=result,
        scenario="lm",
        device="cpu",
        state="running" if step else "paused",
    )
