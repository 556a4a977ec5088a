"""The language-model scenario: the shipped base model (trained on Python stdlib source) adapted to
the shipped domain corpus (code-review comments followed by unified diffs, in the spirit of
LLaMA-Reviewer).

Batches are windows of `seq_len + 1` bytes at random offsets of the domain train split (offsets
from the data generator, seeded from (seed, step)). The held-out set is 16 fixed windows evenly
spaced over the domain held-out split. Samples continue a fixed prompt ("# review:") with a fixed
sampling generator, so two samples differ only because the model did; the base model's sample is
generated once. The probe ("# review: use is None") is what the attention maps show.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from explorer.core.adapters import count_trainable, mark_all_trainable, mark_only_adapters_trainable
from explorer.core.llama import lm_loss
from explorer.core.lora import LoraSettings, find_targets, inject_lora, lora_modules
from explorer.core.prefix import PrefixSettings, inject_prefix, prefix_adapters
from explorer.core.tokenizer import decode, encode, token_labels
from explorer.engine.sampling import sample
from explorer.engine.scenarios import MatrixSource, autocast_ctx, cpu_generator, derive_seed, init_generator

SAMPLE_PROMPT = "# review:"
SAMPLE_TOKENS = 96
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_K = 40
PROBE_TEXT = "# review: use is None"
N_HELDOUT = 16
CORPUS = "domain"

_BASE_CACHE: dict = {}


def _load_base(device: torch.device):
    """The shipped base model on `device`, loaded once per process and device (never modified)."""
    key = str(device)
    if key not in _BASE_CACHE:
        from explorer.core.resources import load_base_model

        _BASE_CACHE[key] = load_base_model(device).requires_grad_(False)
    return _BASE_CACHE[key]


def _tokens(text: str, device) -> torch.Tensor:
    data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
    return data.to(device=device, dtype=torch.long)


class LmScenario:
    name = "lm"

    def __init__(self, settings, device: torch.device, autocast=None, base_model: nn.Module | None = None):
        from explorer.schema.resources import load_corpus

        self.device, self.autocast, self.seed = device, autocast, settings.seed
        if base_model is None:
            base = _load_base(device)
        else:
            base = copy.deepcopy(base_model).to(device).requires_grad_(False)
        self.base = base.eval()
        self.config = base.config
        limit = self.config.max_position_embeddings
        if settings.seq_len > limit:
            raise ValueError(
                f"seq_len={settings.seq_len} is out of range: allowed 8 to {limit} (the base model's context)"
            )
        self.seq_len = settings.seq_len
        self.train_tokens = _tokens(load_corpus(CORPUS, "train"), device)
        held = _tokens(load_corpus(CORPUS, "heldout"), device)
        span = self.seq_len + 1
        if held.numel() < span or self.train_tokens.numel() <= span:
            raise ValueError(f"seq_len={settings.seq_len} is longer than the {CORPUS} corpus allows")
        starts = torch.linspace(0, held.numel() - span, N_HELDOUT).long().to(device)
        self.heldout = held[starts[:, None] + torch.arange(span, device=device)]
        self._offsets = torch.arange(span)
        self.probe_ids = torch.tensor([encode(PROBE_TEXT)], device=device)
        self.probe_tokens = token_labels(encode(PROBE_TEXT))
        self.prompt_ids = torch.tensor([encode(SAMPLE_PROMPT)], device=device)
        self._base_sample: str | None = None

    # --- what the run command writes into config.json -------------------------------------------
    def info(self) -> dict:
        info = {
            "kind": "lm",
            "corpus": CORPUS,
            "params": sum(p.numel() for p in self.base.parameters()),
            "config": self.config.to_hf_dict(),
            "probe": PROBE_TEXT,
            "sample_prompt": SAMPLE_PROMPT,
        }
        try:
            from explorer.schema.resources import base_model_dir, base_training_info

            info["path"] = str(base_model_dir())
            info["training"] = base_training_info()
        except Exception:  # a base model passed in by a test has no directory
            pass
        return info

    # --- adapters -------------------------------------------------------------------------------
    def build(self, settings) -> nn.Module:
        model = copy.deepcopy(self.base)
        if settings.uses_lora():
            inject_lora(
                model,
                LoraSettings(
                    rank=settings.rank,
                    alpha=settings.alpha,
                    targets=tuple(settings.targets),
                    layers=settings.layers,
                    dropout=settings.dropout,
                    use_rslora=settings.use_rslora,
                    init=settings.init,
                    use_dora=settings.use_dora,
                ),
                generator=init_generator(settings.seed, "lora"),
            )
        if settings.uses_prefix():
            inject_prefix(
                model,
                PrefixSettings(
                    length=settings.prefix_len,
                    layers=settings.prefix_layers,
                    gate_shape=settings.gate_shape,
                    gate_fn=settings.gate_fn,
                    init=settings.prompt_init,
                ),
                generator=init_generator(settings.seed, "prefix"),
            )
        if settings.method == "full":
            mark_all_trainable(model)
        else:
            mark_only_adapters_trainable(model)
        return model.train()

    # --- data and loss ----------------------------------------------------------------------------
    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        g = cpu_generator(self.seed, "data", step)
        starts = torch.randint(0, self.train_tokens.numel() - self.seq_len - 1, (batch_size,), generator=g)
        return self.train_tokens[(starts[:, None] + self._offsets).to(self.device)]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        with autocast_ctx(self.device, self.autocast):
            logits = model(batch[:, :-1])
        return lm_loss(logits, batch[:, 1:])

    @torch.no_grad()
    def eval_loss(self, model: nn.Module) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            return self.loss(model, self.heldout)
        finally:
            model.train(was)

    # --- what the views show ----------------------------------------------------------------------
    def matrix_sources(self, model: nn.Module, settings) -> list[MatrixSource]:
        if settings.method == "full":
            # Full fine-tuning changes every weight; the views show the target projections' ΔW = W - W0.
            out = []
            for name in find_targets(self.base, settings.targets, settings.layers):
                w0 = self.base.get_submodule(name).weight
                out.append(MatrixSource(name, tuple(w0.shape), w0, weight=model.get_submodule(name).weight))
            return out
        return [
            MatrixSource(
                name,
                tuple(m.base_layer.weight.shape),
                m.base_layer.weight,
                m.lora_A.weight,
                m.lora_B.weight,
                m.scaling,
                magnitude=m.lora_magnitude_vector,
            )
            for name, m in lora_modules(model).items()
        ]

    def prefix_layers(self, model: nn.Module) -> dict:
        return prefix_adapters(model)

    @torch.no_grad()
    def probe(self, model: nn.Module) -> dict[int, torch.Tensor]:
        """The probe's attention per prefix layer, (heads, T, K + T) [gated prompt | tokens], from the
        same forward code that trains."""
        layers = prefix_adapters(model)
        if not layers:
            return {}
        was = model.training
        model.eval()
        try:
            probs: list[torch.Tensor] = []
            with autocast_ctx(self.device, self.autocast):
                model(self.probe_ids, probs_out=probs)
        finally:
            model.train(was)
        return {i: probs[i][0] for i in layers}

    @torch.no_grad()
    def _sample(self, model: nn.Module) -> str:
        was = model.training
        model.eval()
        try:
            g = cpu_generator(self.seed, "sample")
            with autocast_ctx(self.device, self.autocast):
                ids = sample(
                    model,
                    self.prompt_ids,
                    SAMPLE_TOKENS,
                    temperature=SAMPLE_TEMPERATURE,
                    top_k=SAMPLE_TOP_K,
                    generator=g,
                )
        finally:
            model.train(was)
        return decode(ids[0, self.prompt_ids.shape[1] :].tolist())

    def samples(self, model: nn.Module, step: int) -> dict:
        if self._base_sample is None:
            self._base_sample = self._sample(self.base)
        return {"prompt": SAMPLE_PROMPT, "adapted": self._sample(model), "base": self._base_sample, "step": int(step)}

    def budget(self, settings, model: nn.Module) -> dict:
        """What the setting trains (the counts of PEFT's get_nb_trainable_parameters, DoRA's magnitude
        vectors included), the count measured on the model, and the same setting priced on the LLaMA
        presets (what the budget view's table shows)."""
        from explorer.schema.budget import compute_budget, price_presets

        choice = dict(
            rank=settings.rank,
            targets=tuple(settings.targets),
            layers=None if settings.layers is None else list(settings.layers),
            prefix_len=settings.prefix_len,
            prefix_layers=settings.prefix_layers,
            gate_shape=settings.gate_shape,
            use_dora=settings.use_dora,
        )
        b = compute_budget(self.config, settings.method, **choice).to_dict()
        b["measured_trainable_params"] = count_trainable(model)
        b["presets"] = price_presets(settings.method, **choice)
        return b


def data_seed(seed: int, step: int) -> int:
    """The seed of batch `step` (exposed for tests)."""
    return derive_seed(seed, "data", step)
