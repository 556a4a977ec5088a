"""Sampling with a key/value cache, for the live samples.

`explorer.core.llama.generate` re-runs the whole sequence for every new token (simple, and the
reference). The live view samples every few seconds while training runs, so here each new token
costs one position instead: the layers' own modules (projections with their LoRA wrappers, the
prefix adapter's `attend`, norms, MLP, rotary table) are called in the same order as
`LlamaAttention.forward`, with the keys and values of earlier positions kept. Same maths, same
sampling rule (temperature, top-k, multinomial on the CPU from the given generator); a test holds
its logits to the full forward's.

`no_repeat=n` (as transformers' no_repeat_ngram_size) never writes a run of n tokens that the text
(prompt included) already holds: greedy decoding of a small byte-level model otherwise falls into a
loop ("the server the server the server ...") and stays there. The rule is deterministic, so with
greedy decoding two texts still differ only where the models do.
"""

from __future__ import annotations

import math

import torch

from explorer.core.llama import LlamaForCausalLM, apply_rope, attention_blocked, repeat_kv, sample_next


@torch.inference_mode()
def _forward_cached(model: LlamaForCausalLM, ids: torch.Tensor, cache: list, pos: int) -> torch.Tensor:
    """Logits (B, t, V) for `ids` (B, t) at positions pos..pos+t-1, extending `cache` in place."""
    m = model.model
    x = m.embed_tokens(ids)
    b, t, _ = x.shape
    cos, sin = m.rotary_emb(pos + t, x.dtype)
    cos, sin = cos[pos : pos + t], sin[pos : pos + t]
    for i, layer in enumerate(m.layers):
        attn = layer.self_attn
        h, hkv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
        xn = layer.input_layernorm(x)
        q = apply_rope(attn.q_proj(xn).view(b, t, h, d).transpose(1, 2), cos, sin)
        k = apply_rope(attn.k_proj(xn).view(b, t, hkv, d).transpose(1, 2), cos, sin)
        v = attn.v_proj(xn).view(b, t, hkv, d).transpose(1, 2)
        if len(cache) <= i:
            cache.append((k, v))
        else:
            k = torch.cat([cache[i][0], k], dim=2)
            v = torch.cat([cache[i][1], v], dim=2)
            cache[i] = (k, v)
        k, v = repeat_kv(k, h // hkv), repeat_kv(v, h // hkv)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        total = k.shape[2]
        # causal within the new positions (every cached one is in the past), and a sliding window's reach
        if t > 1 or (attn.window is not None and total > attn.window):
            scores = scores.masked_fill(attention_blocked(t, total, attn.window, x.device), float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = probs @ v
        if attn.prefix is not None:
            gated, prompt_v = attn.prefix.attend(q, attn.k_proj, attn.v_proj, h // hkv)
            out = out + gated @ prompt_v
        x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, h * d))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(m.norm(x))


class NgramBan:
    """For each row of a batch, the tokens that would complete an n-gram the row already holds."""

    def __init__(self, n: int, ids: torch.Tensor):
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"no_repeat={n!r} is out of range: allowed a whole number of at least 2 (or 0: off)")
        self.n = n
        self.rows = [list(map(int, row)) for row in ids.tolist()]
        self.seen: list[dict[tuple, set]] = [{} for _ in self.rows]
        for r, row in enumerate(self.rows):
            for i in range(len(row) - n + 1):
                self.seen[r].setdefault(tuple(row[i : i + n - 1]), set()).add(row[i + n - 1])

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        out = logits
        for r, row in enumerate(self.rows):
            banned = self.seen[r].get(tuple(row[len(row) - self.n + 1 :])) if len(row) >= self.n - 1 else None
            if banned:
                if out is logits:
                    out = logits.clone()
                out[r, sorted(banned)] = float("-inf")
        return out

    def add(self, nxt: torch.Tensor) -> None:
        for r, token in enumerate(nxt[:, 0].tolist()):
            row = self.rows[r]
            row.append(int(token))
            if len(row) >= self.n:
                self.seen[r].setdefault(tuple(row[-self.n : -1]), set()).add(row[-1])


@torch.inference_mode()
def sample(
    model: LlamaForCausalLM,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 40,
    generator: torch.Generator | None = None,
    no_repeat: int = 0,
) -> torch.Tensor:
    """Like `explorer.core.llama.generate` (same arguments, same result up to float round-off), with a
    key/value cache, and `no_repeat` (see the module doc). A text that would outgrow the model's
    context is made as `generate` makes it: each token from the last context-length tokens."""
    window = model.config.max_position_embeddings
    cached = prompt_ids.shape[1] + max_new_tokens <= window
    ban = NgramBan(no_repeat, prompt_ids) if no_repeat else None
    cache: list = []
    ids = prompt_ids
    if cached:
        logits = _forward_cached(model, ids, cache, 0)[:, -1, :].float()
    else:
        logits = model(ids[:, -window:])[:, -1, :].float()
    for step in range(max_new_tokens):
        nxt = sample_next(ban.mask(logits) if ban else logits, temperature, top_k, generator)
        ids = torch.cat([ids, nxt], dim=1)
        if ban:
            ban.add(nxt)
        if step + 1 < max_new_tokens:
            if cached:
                logits = _forward_cached(model, nxt, cache, ids.shape[1] - 1)[:, -1, :].float()
            else:
                logits = model(ids[:, -window:])[:, -1, :].float()
    return ids
