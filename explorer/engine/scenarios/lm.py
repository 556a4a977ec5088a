"""The language-model scenario: a base model adapted to a corpus.

By default the shipped base model (trained on Python stdlib source) adapts to the shipped domain
corpus (code-review comments followed by unified diffs, in the spirit of LLaMA-Reviewer); the
settings `model` (a Hugging Face checkpoint directory), `data` / `eval_data` / `loss_on` (a user's
data set) and `prompt` change what trains on what (lm_sources.py).

Batches come from the data generator seeded from (seed, step) alone, so every method sees the same
batches. Samples continue a fixed prompt (`prompt`, else a review comment on the shipped corpus, else
the first held-out row's prompt) by a fixed, deterministic rule (greedy, no repeated 16-token run;
see SAMPLE_*), so two samples differ only because the models do; the base model's sample is
generated once. The probe (`prompt`, else "# review: use is None", else that same held-out prompt) is
what the attention maps show.

The token view's text is fixed too (shipped corpus only): the first sample of the domain held-out
split that fits TOKEN_TEXT_BYTES (a review comment and its diff). `token_delta` scores each of its
tokens under the adapted and the base model: log p_adapted(token) - log p_base(token), on the device;
the base's log-probabilities are computed once. Under a zero-init adapter every difference is exactly 0.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from explorer.core.adapters import count_trainable, inject_adapters, mark_all_trainable, mark_only_adapters_trainable
from explorer.core.llama import lm_loss
from explorer.core.lora import find_targets, lora_modules
from explorer.core.prefix import prefix_adapters
from explorer.engine.sampling import sample
from explorer.engine.scenarios import MatrixSource, autocast_ctx, cpu_generator, derive_seed, init_generator
from explorer.engine.scenarios.lm_sources import CORPUS, ShippedCorpus, UserData, check_build_fits, load_base

# A whole review comment, so the samples show what follows one: the base model goes on writing Python
# (its comment, then code), the adapted model writes the change as a diff (+ / - lines). From a bare
# "# review:" both spend their few lines on the comment's English, which a 0.8M-parameter model
# cannot write, and the adoption of the format is not seen within a minute (scripts/measure_base.py).
SAMPLE_PROMPT = "# review: missing docstring; add a one-line summary\n"
SAMPLE_TOKENS = 160  # a few lines: long enough to read what the model writes
# Greedy, so a difference between the two texts is the models' doing, not the sampler's; never
# repeating a 16-token run, because greedy decoding of a 0.8M-parameter byte model otherwise loops
# ("the server the server ..."). scripts/measure_base.py measures the rule (README, lm scenario).
SAMPLE_TEMPERATURE = 0.0
SAMPLE_TOP_K = None
SAMPLE_NO_REPEAT = 16
PROBE_TEXT = "# review: use is None"
TOKEN_TEXT_SEPARATOR = "\n\n# review:"  # samples of the domain corpus are separated by a blank line
TOKEN_TEXT_BYTES = 256  # the token view's text: at most this long (and at most the model's context)
PROBE_MAX_TOKENS = 64  # the attention maps show at most this many probe tokens (the prompt's end)
IGNORE = -100
EVAL_CHUNK_ROWS = 16  # held-out rows per forward pass


def shared_copy(base: nn.Module, settings) -> nn.Module:
    """A copy of `base` to adapt. Full fine-tuning trains every weight and gets its own; otherwise
    the frozen weights are shared with the base (a 7B model is not copied per segment), except
    the ones PiSSA rewrites into residuals."""
    if settings.method == "full":
        return copy.deepcopy(base)
    model = copy.deepcopy(base, {id(p): p for p in base.parameters()})
    if settings.uses_lora() and settings.init == "pissa":
        for name in find_targets(model, settings.targets, settings.layers):
            linear = model.get_submodule(name)
            linear.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
    return model


def token_text(heldout: str, limit: int) -> str:
    """The token view's fixed text: the first held-out sample (review comment + diff) of at most
    `limit` bytes, or else the first one cut at the last line end that fits."""
    pieces = heldout.split(TOKEN_TEXT_SEPARATOR)
    samples = [pieces[0]] + ["# review:" + p for p in pieces[1:]]
    for text in samples:
        if 2 <= len(text.encode("utf-8")) <= limit:
            return text
    head = heldout.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
    return head[: head.rfind("\n") + 1] if "\n" in head[1:] else head


class LmScenario:
    name = "lm"

    def __init__(self, settings, device: torch.device, autocast=None, base_model: nn.Module | None = None):
        self.device, self.autocast, self.seed = device, autocast, settings.seed
        if base_model is not None:
            base_model = copy.deepcopy(base_model).to(device).requires_grad_(False)
        self.source = load_base(settings, device, autocast, base_model)
        self.base = self.source.model.eval()
        self.tokenizer = self.source.tokenizer
        self.config = self.base.config
        limit = self.config.max_position_embeddings
        if settings.seq_len > limit:
            raise ValueError(
                f"seq_len={settings.seq_len} is out of range: allowed 8 to {limit} (the base model's context)"
            )
        self.seq_len = settings.seq_len
        if getattr(settings, "data", ""):
            self.data = UserData(settings, self.tokenizer, self.seq_len, device)
            default_prompt = default_probe = self.data.dataset.prompt_ids
        else:
            self.data = ShippedCorpus(self.tokenizer, self.seq_len, device)
            default_prompt, default_probe = self._encode(SAMPLE_PROMPT), self._encode(PROBE_TEXT)
        prompt = getattr(settings, "prompt", "")
        prompt_ids = self._encode(prompt, start=True) if prompt else default_prompt
        probe_ids = self._encode(prompt, start=True) if prompt else default_probe
        if not prompt_ids:
            raise ValueError("prompt is empty after tokenizing: allowed any text of at least one token")
        self.prompt_text = self.tokenizer.decode(prompt_ids)
        self.probe_text = self.tokenizer.decode(probe_ids[-PROBE_MAX_TOKENS:])
        self.prompt_ids = torch.tensor([prompt_ids[-self.seq_len :]], device=device)
        self.probe_ids = torch.tensor([probe_ids[-PROBE_MAX_TOKENS:]], device=device)
        self.probe_tokens = self.tokenizer.token_labels(probe_ids[-PROBE_MAX_TOKENS:])
        self._base_sample: str | None = None
        self.token_ids: torch.Tensor | None = None  # the token view's text (shipped corpus only)
        self.token_pieces: list[str] = []
        self._base_token_logp: torch.Tensor | None = None
        if isinstance(self.data, ShippedCorpus):
            from explorer.schema.resources import load_corpus

            text = token_text(load_corpus(CORPUS, "heldout"), min(limit, TOKEN_TEXT_BYTES))
            ids = self.tokenizer.encode(text)[:limit]
            if len(ids) >= 2:
                self.token_ids = torch.tensor([ids], device=device)
                self.token_pieces = [self.tokenizer.decode([i]) for i in ids]  # one string per token

    def _encode(self, text: str, start: bool = False) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return ([bos] if start and bos is not None else []) + self.tokenizer.encode(text)

    # --- what the run command writes into config.json -------------------------------------------
    def info(self) -> dict:
        info = {
            "kind": "lm",
            "corpus": CORPUS,
            "params": sum(p.numel() for p in self.base.parameters()),
            "config": self.config.to_hf_dict(),
            "probe": self.probe_text,
            "sample_prompt": self.prompt_text,
            **self.source.info,
            **self.data.describe(),
        }
        if "data" in info:
            del info["corpus"]
        return info

    def matmul_flops(self, settings) -> float:
        """Floating-point operations of a typical matrix product in one step (the MLP's, over every
        token of the batch): what decides how many CPU threads pay (core/cpu_threads.py)."""
        hidden = int(getattr(self.config, "hidden_size", 0) or 0)
        wide = max(hidden, int(getattr(self.config, "intermediate_size", 0) or 0))
        return 2.0 * settings.batch_size * self.seq_len * hidden * wide

    # --- adapters -------------------------------------------------------------------------------
    def build(self, settings) -> nn.Module:
        check_build_fits(self.source, settings, self.device, self.autocast)
        model = shared_copy(self.base, settings)
        inject_adapters(model, settings, init_generator(settings.seed, "lora"), init_generator(settings.seed, "prefix"))
        if settings.method == "full":
            mark_all_trainable(model)
        else:
            mark_only_adapters_trainable(model)
        return model.train()

    # --- data and loss ----------------------------------------------------------------------------
    def batch(self, step: int, batch_size: int):
        """(B, T + 1) tokens on the shipped corpus; (inputs, targets) with IGNORE outside the loss on a user's data."""
        return self.data.batch(self.seed, step, batch_size)

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        if isinstance(batch, tuple):
            inputs, targets = batch
            with autocast_ctx(self.device, self.autocast):
                logits = model(inputs)
            return F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE
            )
        with autocast_ctx(self.device, self.autocast):
            logits = model(batch[:, :-1])
        return lm_loss(logits, batch[:, 1:])

    @torch.no_grad()
    def eval_loss(self, model: nn.Module) -> torch.Tensor:
        """The mean loss over every target token of the held-out set (in chunks of the batch size)."""
        was = model.training
        model.eval()
        try:
            if isinstance(self.data, ShippedCorpus):
                return self.loss(model, self.data.heldout)
            total = count = 0
            for inputs, targets in self.data.heldout_batches(EVAL_CHUNK_ROWS):
                n = (targets != IGNORE).sum()
                total = total + self.loss(model, (inputs, targets)) * n
                count = count + n
            return total / count
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
            with autocast_ctx(self.device, self.autocast):
                ids = generate_sample(model, self.prompt_ids, SAMPLE_TOKENS, cpu_generator(self.seed, "sample"))
        finally:
            model.train(was)
        return self.tokenizer.decode(ids[0, self.prompt_ids.shape[1] :].tolist())

    @torch.no_grad()
    def _token_logp(self, model: nn.Module) -> torch.Tensor:
        """log p(token t | tokens before it) for t = 1..T-1 of the token text, (T-1,) float32."""
        was = model.training
        model.eval()
        try:
            with autocast_ctx(self.device, self.autocast):
                logits = model(self.token_ids[:, :-1])
        finally:
            model.train(was)
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        return logp.gather(1, self.token_ids[0, 1:, None])[:, 0]

    def token_delta(self, model: nn.Module) -> torch.Tensor | None:
        """log p_adapted - log p_base per token of the token text (the first token is context only),
        (T-1,) on the device; None when this run has no token text (a user's data set)."""
        if self.token_ids is None:
            return None
        if self._base_token_logp is None:
            self._base_token_logp = self._token_logp(self.base)
        return self._token_logp(model) - self._base_token_logp

    def samples(self, model: nn.Module, step: int) -> dict:
        if self._base_sample is None:
            self._base_sample = self._sample(self.base)
        return {
            "prompt": self.prompt_text,
            "adapted": self._sample(model),
            "base": self._base_sample,
            "step": int(step),
        }

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
            rank_pattern=dict(settings.rank_pattern) or None,
        )
        b = compute_budget(self.config, settings.method, **choice).to_dict()
        b["measured_trainable_params"] = count_trainable(model)
        b["presets"] = price_presets(settings.method, **choice)
        return b


def generate_sample(model: nn.Module, prompt_ids: torch.Tensor, tokens: int, generator=None) -> torch.Tensor:
    """The live samples' rule (and scripts/measure_base.py's `app` sampler): SAMPLE_TEMPERATURE,
    SAMPLE_TOP_K and SAMPLE_NO_REPEAT; a temperature above 0 draws from `generator` (a fixed seed: the
    base and the adapted model draw the same numbers, so their texts differ only where the models do)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return sample(
        model,
        prompt_ids,
        tokens,
        temperature=SAMPLE_TEMPERATURE,
        top_k=SAMPLE_TOP_K,
        generator=generator,
        no_repeat=SAMPLE_NO_REPEAT,
    )


def data_seed(seed: int, step: int) -> int:
    """The seed of batch `step` (exposed for tests)."""
    return derive_seed(seed, "data", step)
