"""Synthetic `Snapshot`s for view tests, galleries and benchmarks: plain numpy, no model, deterministic.

    lora_snapshot(step=40)            LoRA r=4 on layers 0-1 x q_proj/v_proj of a 64x64 model, lm scenario
    prefix_snapshot(step=40)          zero-init prefix on 2 layers x 4 heads, K=4 prompt tokens, T=8 probe tokens
    lora_prefix_snapshot(step=40)     both at once
    matrix_snapshot(step=40)          the matrix scenario: one 'W' against a planted rank-4 target ΔW*
    full_snapshot(step=40)            full fine-tuning baseline: full-rank spectra, no prefixes
    blank_snapshot()                  before the first step: every optional field empty
    scale_snapshot("llama-7b")        a real model's shape (32 layers x 32 heads, MLP 11008; "llama-2-70b":
                                      80 x 64, MLP 28672; "llama-3-8b": 32 x 32, MLP 14336): every
                                      module of every layer, the top prefix layers' probe attention
    as_sent(snapshot)                 only the attention maps the engine sends for its settings'
                                      attention_layers / attention_heads (the others None)
    training_run(factory, steps)      a list of snapshots at increasing steps (one segment)

Every factory takes `step` (0 gives the exact step-0 state: ΔW = 0, gates = 0) and `seed`; the data
grow smoothly with the step, so two steps give visibly different pictures.
"""

from __future__ import annotations

import numpy as np

from explorer.schema.settings import TrainSettings
from explorer.schema.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot

PROBE_TOKENS = ["The", " cat", " sat", " on", " the", " mat", " and", " slept"]
# what the lm scenario's byte tokenizer labels its probe "# review: use is None" with
BYTE_PROBE_TOKENS = [("␣" if c == " " else c) for c in "# review: use is None"]

# Llama presets: (layers, hidden, heads, kv_heads, intermediate, total parameters)
_PRESETS = {
    "llama-7b": (32, 4096, 32, 32, 11008, 6_738_415_616),
    "llama-13b": (40, 5120, 40, 40, 13824, 13_015_864_320),
    "llama-2-70b": (80, 8192, 64, 8, 28672, 68_976_648_192),
}
# shapes the scale tests use beside the budget presets (not priced in the budget table)
_SCALE_SHAPES = {**_PRESETS, "llama-3-8b": (32, 4096, 32, 8, 14336, 8_030_261_248)}
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def scale_module_shape(shape: str, module: str) -> tuple[int, int]:
    """(out, in) of `module` ("q_proj", ..., "down_proj") in scale_snapshot(shape)'s model."""
    _layers, hidden, heads, kv_heads, inter, _total = _SCALE_SHAPES[shape]
    return _shapes(hidden, heads, kv_heads, inter)[module]


def _shapes(hidden: int, heads: int, kv_heads: int, inter: int) -> dict[str, tuple[int, int]]:
    kv = hidden // heads * kv_heads
    return {
        "q_proj": (hidden, hidden),
        "k_proj": (kv, hidden),
        "v_proj": (kv, hidden),
        "o_proj": (hidden, hidden),
        "gate_proj": (inter, hidden),
        "up_proj": (inter, hidden),
        "down_proj": (hidden, inter),
    }


def price(settings: dict, layers: int, hidden: int, heads: int, kv_heads: int, inter: int, total: int) -> dict:
    """The budget dict of a setting on a Llama shape (the keys the budget view reads)."""
    method = settings["method"]
    trainable = 0
    if method in ("lora", "lora+prefix"):
        shapes = _shapes(hidden, heads, kv_heads, inter)
        n_layers = layers if settings.get("layers") is None else len(settings["layers"])
        for t in settings["targets"]:
            out_f, in_f = shapes[t]
            trainable += n_layers * settings["rank"] * (in_f + out_f)
    if method in ("prefix", "lora+prefix"):
        gates = heads if settings.get("gate_shape", "head") == "head" else 1
        trainable += min(settings["prefix_layers"], layers) * (settings["prefix_len"] * hidden + gates)
    if method == "full":
        trainable = total
    return {
        "trainable_params": trainable,
        "total_params": total if method == "full" else total + trainable,
        "base_params": total,
        "share": trainable / total,
        "storage_bytes_fp16": 2 * trainable,
        "storage_bytes_fp32": 4 * trainable,
        "optimizer_bytes": 12 * trainable,
    }


def budget_for(settings: dict, small=(2, 64, 4, 4, 160, 120_000)) -> dict:
    b = price(settings, *small)
    b["presets"] = {name: price(settings, *shape) for name, shape in _PRESETS.items()}
    return b


def _history(step: int, rng: np.random.Generator, points: int = 60) -> History:
    if step <= 0:
        return History()
    steps = np.unique(np.linspace(0, step, min(points, step + 1)).round().astype(np.int64))
    loss = (2.2 * np.exp(-steps / 60.0) + 1.4 + 0.25 * rng.standard_normal(steps.size)).astype(np.float32)
    eval_steps = steps[::5]
    eval_loss = (2.2 * np.exp(-eval_steps / 60.0) + 1.55 + 0.03 * rng.standard_normal(eval_steps.size)).astype(
        np.float32
    )
    return History(steps=steps, loss=loss, eval_steps=eval_steps, eval_loss=eval_loss)


def _low_rank(out_f: int, in_f: int, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    b = rng.standard_normal((out_f, rank)) / np.sqrt(out_f)
    a = rng.standard_normal((rank, in_f)) / np.sqrt(in_f)
    b *= np.geomspace(1.0, 0.15, rank)  # a decaying spectrum, as trained LoRA updates have
    return b, a


def _matrix(
    name: str,
    delta: np.ndarray,
    base: np.ndarray,
    shape: tuple[int, int],
    rank: int | None,
    target: np.ndarray | None = None,
) -> MatrixSnapshot:
    s = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    if rank is not None:
        s = s[:rank]
    s = s.astype(np.float32)
    total = float(s.sum())
    if total > 0:
        p = s / total
        p = p[p > 0]
        eff = float(np.exp(-(p * np.log(p)).sum()))
        stable = float((s.astype(np.float64) ** 2).sum() / float(s[0]) ** 2)
    else:
        eff = stable = 0.0
    tspec = None if target is None else np.linalg.svd(target, compute_uv=False).astype(np.float32)
    return MatrixSnapshot(
        name=name,
        shape=shape,
        delta=delta.astype(np.float32),
        base=base.astype(np.float32),
        spectrum=s,
        fro_norm=float(np.sqrt((s.astype(np.float64) ** 2).sum())),
        effective_rank=eff,
        stable_rank=stable,
        target=None if target is None else target.astype(np.float32),
        target_spectrum=tspec,
        spectrum_method="qr" if rank is not None else "svdvals",
    )


def _growth(step: int) -> float:
    return 1.0 - np.exp(-step / 80.0)


def _spectra_history(history: History, final: dict[str, np.ndarray], step: int) -> None:
    if history.steps.size == 0:
        return
    history.spectrum_steps = history.steps.copy()
    g = np.array([_growth(int(t)) for t in history.steps], np.float32)[:, None] / max(_growth(step), 1e-9)
    history.spectra = {name: (g * s[None, :]).astype(np.float32) for name, s in final.items()}


TOKEN_TEXT = (
    "# review: `setup` needs a docstring\n--- a/pdb.py\n+++ b/pdb.py\n@@ -282,3 +282,4 @@\n"
    '     def setup(self, f, tb):\n+        """Setup."""\n         self.forget()\n'
)


def _token_delta(step: int) -> dict:
    """The token view's data: exactly 0 at step 0 (zero-init), then review-ish tokens gain, others lose."""
    tokens = list(TOKEN_TEXT[1:])
    i = np.arange(len(tokens))
    pattern = np.where(np.array([t in "#-+@r" for t in tokens]), 1.5, -0.4) + 0.3 * np.sin(i * 0.7)
    delta = (pattern * _growth(step) / max(_growth(300), 1e-9)).astype(np.float32)
    return {"context": TOKEN_TEXT[0], "tokens": tokens, "delta": delta, "step": step}


def _base_snapshot(settings: TrainSettings, step: int, segment: int, history: History, **kw) -> Snapshot:
    loss = float(history.loss[-1]) if history.loss.size else None
    eval_loss = float(history.eval_loss[-1]) if history.eval_loss.size else None
    d = settings.to_dict()
    return Snapshot(
        step=step,
        time=step / 25.0,
        segment=segment,
        loss=loss,
        eval_loss=eval_loss,
        lr=settings.lr,
        steps_per_second=25.0 if step else 0.0,
        device="cpu",
        memory_bytes=512 * 2**20,
        settings=d,
        history=history,
        budget=budget_for(d),
        state="running" if step else "paused",
        **{"token_delta": _token_delta(step) if settings.scenario == "lm" else None, **kw},
    )


def _samples(step: int, prompt: str = "Once upon a time") -> dict | None:
    if step <= 0:
        return None
    words = ["there", "was", "a", "little", "model", "that", "learned", "to", "speak", "in", "low", "rank"]
    n = min(len(words), 2 + step // 10)
    return {
        "prompt": prompt,
        "adapted": prompt + " " + " ".join(words[:n]) + ".",
        "base": prompt + " the the of and a in",
        "step": step,
    }


def lora_snapshot(
    step: int = 40,
    *,
    rank: int = 4,
    layers=(0, 1),
    targets=("q_proj", "v_proj"),
    size: int = 64,
    seed: int = 0,
    segment: int = 0,
    alpha: float = 8.0,
) -> Snapshot:
    """LoRA on a tiny 64-wide model: ΔW = (alpha/r)·B·A, exactly zero at step 0."""
    rng = np.random.default_rng(seed)
    # the small model has layers 0 and 1: adapting both is "all layers" (so presets price every layer)
    chosen = None if tuple(layers) == (0, 1) else tuple(layers)
    settings = TrainSettings(method="lora", rank=rank, alpha=alpha, targets=tuple(targets), layers=chosen)
    matrices, final = {}, {}
    g = _growth(step)
    for layer in layers:
        for t in targets:
            name = f"model.layers.{layer}.self_attn.{t}"
            b, a = _low_rank(size, size, rank, rng)
            base = rng.standard_normal((size, size)) / np.sqrt(size)
            delta = (alpha / rank) * g * (b @ a)
            m = _matrix(name, delta, base, (size, size), rank)
            matrices[name] = m
            final[name] = m.spectrum
    history = _history(step, rng)
    _spectra_history(history, final, step)
    return _base_snapshot(
        settings, step, segment, history, matrices=matrices, samples=_samples(step), probe_tokens=list(PROBE_TOKENS)
    )


def _prefixes(
    step: int, layers, heads: int, k: int, t: int, rng: np.random.Generator, gate_fn: str, gate_shape: str
) -> tuple[list[PrefixSnapshot], np.ndarray, np.ndarray]:
    n_layers = len(layers)
    rates = rng.uniform(0.2, 1.0, (n_layers, heads)) * rng.choice([-1.0, 1.0], (n_layers, heads), p=[0.2, 0.8])
    if gate_shape == "layer":
        rates = np.repeat(rates[:, :1], heads, axis=1)
    points = (
        np.unique(np.linspace(0, step, min(40, step + 1)).round().astype(np.int64))
        if step > 0
        else np.zeros(0, np.int64)
    )
    fn = np.tanh if gate_fn == "tanh" else (lambda x: x)
    gate_hist = (
        np.stack([fn(rates * 1.5 * _growth(int(s))) for s in points]).astype(np.float32)
        if points.size
        else np.zeros((0, n_layers, heads), np.float32)
    )
    gates_now = fn(rates * 1.5 * _growth(step)).astype(np.float32)
    prefixes = []
    causal = np.tril(np.ones((t, t), bool))
    for i, layer in enumerate(layers):
        att = np.zeros((heads, t, k + t), np.float32)
        for h in range(heads):
            sp = rng.standard_normal((t, k)) * 2.0
            sp = np.exp(sp - sp.max(1, keepdims=True))
            att[h, :, :k] = gates_now[i, h] * sp / sp.sum(1, keepdims=True)
            st = rng.standard_normal((t, t)) * 1.5 + np.eye(t) * (1.0 + h)
            st = np.where(causal, st, -np.inf)
            st = np.exp(st - st.max(1, keepdims=True))
            att[h, :, k:] = st / st.sum(1, keepdims=True)
        prefixes.append(
            PrefixSnapshot(
                layer=layer,
                gates=gates_now[i].copy(),
                attention=att,
                prompt_norm=float(np.sqrt(k * 64) * (1 + 0.1 * _growth(step))),
            )
        )
    return prefixes, points, gate_hist


def prefix_snapshot(
    step: int = 40,
    *,
    layers=(6, 7),
    heads: int = 4,
    prompt_len: int = 4,
    tokens=None,
    gate_fn: str = "tanh",
    gate_shape: str = "head",
    seed: int = 0,
    segment: int = 0,
    method: str = "prefix",
) -> Snapshot:
    """Zero-init prefix tuning: gates exactly 0 at step 0 and growing; probe attention [gated prompt | tokens]."""
    rng = np.random.default_rng(seed + 100)
    tokens = list(PROBE_TOKENS if tokens is None else tokens)
    settings = TrainSettings(
        method=method, prefix_len=prompt_len, prefix_layers=len(layers), gate_fn=gate_fn, gate_shape=gate_shape
    )
    prefixes, points, gate_hist = _prefixes(step, layers, heads, prompt_len, len(tokens), rng, gate_fn, gate_shape)
    history = _history(step, rng)
    history.gate_steps = points
    history.gates = gate_hist
    return _base_snapshot(
        settings, step, segment, history, prefixes=prefixes, samples=_samples(step), probe_tokens=tokens
    )


def lora_prefix_snapshot(step: int = 40, *, seed: int = 0, segment: int = 0, rank: int = 4, **prefix_kw) -> Snapshot:
    """LoRA and zero-init prefix together; `prefix_kw` go to prefix_snapshot (layers, heads, prompt_len, tokens)."""
    lora = lora_snapshot(step, seed=seed, segment=segment, rank=rank)
    pre = prefix_snapshot(step, seed=seed, segment=segment, method="lora+prefix", **prefix_kw)
    pre.matrices = lora.matrices
    pre.history.spectrum_steps = lora.history.spectrum_steps
    pre.history.spectra = lora.history.spectra
    settings = dict(pre.settings)
    settings.update(
        rank=lora.settings["rank"],
        alpha=lora.settings["alpha"],
        targets=lora.settings["targets"],
        layers=lora.settings["layers"],
    )
    pre.settings = settings
    pre.budget = budget_for(settings)
    return pre


def _pool(x: np.ndarray, size: int) -> np.ndarray:
    out_f, in_f = x.shape
    fo, fi = max(1, out_f // size), max(1, in_f // size)
    return x[: out_f // fo * fo, : in_f // fi * fi].reshape(out_f // fo, fo, in_f // fi, fi).mean(axis=(1, 3))


def matrix_snapshot(
    step: int = 40,
    *,
    rank: int = 4,
    target_rank: int = 4,
    size: int = 128,
    shape=None,
    seed: int = 0,
    segment: int = 0,
    display_size: int = 128,
) -> Snapshot:
    """The matrix scenario: LoRA's ΔW on 'W' approaching a planted rank-`target_rank` ΔW*.

    With `shape=(4096, 4096)` the arrays are those a 4096x4096 matrix sends after pooling to
    `display_size` (the spectrum stays that of the full matrix)."""
    rng = np.random.default_rng(seed + 7)
    shape = (size, size) if shape is None else tuple(shape)
    n = min(size, display_size)
    settings = TrainSettings(
        scenario="matrix",
        method="lora",
        rank=rank,
        size_in=shape[1],
        size_out=shape[0],
        target_rank=min(target_rank, min(shape)),
        display_size=display_size,
    )
    tb, ta = _low_rank(n, n, target_rank, rng)
    target = 3.0 * tb @ ta
    u, s, vh = np.linalg.svd(target)
    k = min(rank, target_rank)
    fit = (u[:, :k] * s[:k]) @ vh[:k]
    noise_b, noise_a = _low_rank(n, n, rank, rng)
    delta = _growth(step) * fit + 0.05 * _growth(step) * np.exp(-step / 100.0) * (noise_b @ noise_a)
    base = rng.standard_normal((n, n)) / np.sqrt(n)
    m = _matrix("W", delta, base, shape, rank, target)
    history = _history(step, rng)
    _spectra_history(history, {"W": m.spectrum}, step)
    d = settings.to_dict()
    snap = _base_snapshot(settings, step, segment, history, matrices={"W": m})
    snap.budget = {
        "trainable_params": rank * sum(shape),
        "total_params": shape[0] * shape[1] + rank * sum(shape),
        "share": rank * sum(shape) / (shape[0] * shape[1]),
        "storage_bytes_fp16": 2 * rank * sum(shape),
        "storage_bytes_fp32": 4 * rank * sum(shape),
        "optimizer_bytes": 12 * rank * sum(shape),
    }
    snap.settings = d
    return snap


def full_snapshot(step: int = 40, *, size: int = 32, seed: int = 0, segment: int = 0) -> Snapshot:
    """Full fine-tuning baseline: every matrix trains, spectra are full rank, no prefixes, no gates."""
    rng = np.random.default_rng(seed + 3)
    settings = TrainSettings(method="full")
    matrices, final = {}, {}
    for layer in (0, 1):
        for t in ("q_proj", "v_proj"):
            name = f"model.layers.{layer}.self_attn.{t}"
            delta = _growth(step) * 0.05 * rng.standard_normal((size, size)) * np.geomspace(1, 0.05, size)[None, :]
            base = rng.standard_normal((size, size)) / np.sqrt(size)
            m = _matrix(name, delta, base, (size, size), None)
            matrices[name] = m
            final[name] = m.spectrum
    history = _history(step, rng)
    _spectra_history(history, final, step)
    return _base_snapshot(
        settings, step, segment, history, matrices=matrices, samples=_samples(step), probe_tokens=list(PROBE_TOKENS)
    )


def blank_snapshot(method: str = "lora") -> Snapshot:
    """Before the first step, with nothing measured yet: no matrices, prefixes, history, budget or samples."""
    settings = TrainSettings(method=method)
    return Snapshot(
        step=0,
        time=0.0,
        segment=0,
        loss=None,
        eval_loss=None,
        lr=settings.lr,
        steps_per_second=0.0,
        device="cpu",
        memory_bytes=0,
        settings=settings.to_dict(),
    )


def _scale_attention(rng, heads: int, k: int, t: int, gates: np.ndarray) -> np.ndarray:
    """(heads, T, K + T) rows that sum to 1 over the tokens and to |gate| over the prompt, cheaply."""
    att = rng.random((heads, t, k + t), dtype=np.float32) + 0.05
    att[:, :, k:] *= np.tril(np.ones((t, t), np.float32))
    att[:, :, :k] *= (gates[:, None, None] / att[:, :, :k].sum(-1, keepdims=True)).astype(np.float32)
    att[:, :, k:] /= att[:, :, k:].sum(-1, keepdims=True)
    return att


def scale_snapshot(
    shape: str = "llama-7b",
    step: int = 40,
    *,
    method: str = "lora+prefix",
    rank: int = 8,
    targets=ALL_TARGETS,
    prefix_layers: int = 30,
    prompt_len: int = 10,
    probe_len: int = 64,
    display_size: int = 32,
    seed: int = 0,
) -> Snapshot:
    """A snapshot of a run on a real model's shape, as the engine would send it (ΔW pooled to
    `display_size`, r singular values per module, the probe's attention of every prefix layer and head),
    built without the model: only the arrays a view reads, at their real sizes."""
    layers, hidden, heads, kv_heads, inter, total = _SCALE_SHAPES[shape]
    rng = np.random.default_rng(seed)
    settings = TrainSettings(
        method=method,
        rank=rank,
        targets=tuple(targets),
        prefix_len=prompt_len,
        prefix_layers=prefix_layers,
        display_size=display_size,
        model=f"/models/{shape}",
    )
    d = settings.to_dict()
    matrices = {}
    if method in ("lora", "lora+prefix"):
        shapes = _shapes(hidden, heads, kv_heads, inter)
        for layer in range(layers):
            for t in targets:
                out_f, in_f = shapes[t]
                part = "mlp" if t in ("gate_proj", "up_proj", "down_proj") else "self_attn"
                name = f"model.layers.{layer}.{part}.{t}"
                pooled = (min(display_size, out_f), min(display_size, in_f))
                b, a = _low_rank(*pooled, rank, rng)
                spectrum = np.sort(rng.uniform(0.01, 1.0, rank).astype(np.float32))[::-1] * _growth(step)
                matrices[name] = MatrixSnapshot(
                    name=name,
                    shape=(out_f, in_f),
                    delta=(_growth(step) * b @ a).astype(np.float32),
                    base=(rng.standard_normal(pooled) / np.sqrt(in_f)).astype(np.float32),
                    spectrum=spectrum.copy(),
                    fro_norm=float(np.sqrt((spectrum.astype(np.float64) ** 2).sum())),
                    effective_rank=float(rank) / 2,
                    stable_rank=1.5,
                    spectrum_method="exact: QR of the factors + SVD of the r x r core",
                )
    prefixes = []
    gate_hist = np.zeros((0, 0, 0), np.float32)
    if method in ("prefix", "lora+prefix"):
        top = list(range(layers - min(prefix_layers, layers), layers))
        gates = np.tanh(rng.uniform(-0.3, 1.0, (len(top), heads)) * _growth(step)).astype(np.float32)
        for i, layer in enumerate(top):
            prefixes.append(
                PrefixSnapshot(
                    layer=layer,
                    gates=gates[i],
                    attention=_scale_attention(rng, heads, prompt_len, probe_len, np.abs(gates[i])),
                    prompt_norm=float(np.sqrt(prompt_len * hidden) * 0.02),
                )
            )
        gate_hist = (np.linspace(0, 1, 20, dtype=np.float32)[:, None, None] * gates[None]).astype(np.float32)
    history = _history(step, rng)
    if prefixes:
        history.gate_steps = np.linspace(0, step, 20).round().astype(np.int64)
        history.gates = gate_hist
    snap = _base_snapshot(settings, step, 0, history, matrices=matrices, prefixes=prefixes, samples=_samples(step))
    snap.probe_tokens = [f"tok{i}" for i in range(probe_len)]
    snap.budget = price(d, layers, hidden, heads, kv_heads, inter, total)
    snap.budget["presets"] = {name: price(d, *s) for name, s in _PRESETS.items()}
    snap.device = "cuda:0"
    return snap


def as_sent(
    snap: Snapshot, attention_layers=None, attention_heads=None, *, heatmap_matrices=None, held: bool = True
) -> Snapshot:
    """A copy of `snap` as the engine sends it live when these are the settings' attention_layers /
    attention_heads (None: the default subset) and heatmap_matrices (None: the first matrix), those
    settings in it: the attention maps of the chosen cells, the pooled heatmaps of the chosen
    matrices only, and their W0 / target when `held` (the first snapshot of a segment or a choice;
    False: a later one, which leaves them out)."""
    import copy
    import dataclasses

    from explorer.schema.attention_choice import attention_cells
    from explorer.schema.heatmap_choice import heatmap_names

    out = copy.copy(snap)
    out.settings = {
        **snap.settings,
        "attention_layers": attention_layers,
        "attention_heads": attention_heads,
        "heatmap_matrices": None if heatmap_matrices is None else list(heatmap_matrices),
    }
    chosen = set(heatmap_names(heatmap_matrices, list(snap.matrices)))
    out.matrices = {
        name: (
            dataclasses.replace(m, base=m.base if held else None, target=m.target if held else None)
            if name in chosen
            else dataclasses.replace(m, delta=None, base=None, target=None, effective_update=None)
        )
        for name, m in snap.matrices.items()
    }
    if not snap.prefixes:
        return out
    n_heads = max(np.size(p.gates) for p in snap.prefixes)
    layers, heads = attention_cells(attention_layers, attention_heads, [p.layer for p in snap.prefixes], n_heads)
    out.prefixes = [
        PrefixSnapshot(
            layer=p.layer,
            gates=p.gates,
            attention=p.attention[list(heads)] if p.layer in layers else None,
            prompt_norm=p.prompt_norm,
            heads=np.array(heads, np.int64) if p.layer in layers else None,
        )
        for p in snap.prefixes
    ]
    return out


def training_run(factory=lora_snapshot, steps=(0, 10, 20, 40, 80), **kw) -> list[Snapshot]:
    """Snapshots of one segment at increasing steps."""
    return [factory(step=s, **kw) for s in steps]
