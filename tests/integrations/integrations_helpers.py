"""Tiny PEFT models and data for the integrations tests (built from configs, nothing downloaded)."""

from __future__ import annotations

import torch

VOCAB = 64


def tiny_llama(seed: int = 0, layers: int = 2, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=32, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def lora_llama(seed: int = 0, layers: int = 2, **lora):
    from peft import LoraConfig, get_peft_model

    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], **lora}
    return get_peft_model(tiny_llama(seed, layers), LoraConfig(**lora))


def token_data(n: int = 256, length: int = 16, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (length,), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def batches(n_steps: int, batch: int, length: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        yield torch.randint(1, VOCAB, (batch, length), generator=g)


def train_steps(model, n_steps: int, rec=None, lr: float = 1e-2, batch: int = 4, seed: int = 1):
    """A plain loop: AdamW on the trainable parameters; `rec` gets every step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step, x in enumerate(batches(n_steps, batch, seed=seed), 1):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        if rec is not None:
            rec.pre_optimizer_step()
        opt.step()
        opt.zero_grad()
        if rec is not None:
            rec.step(step, loss=loss, lr=lr)
    return opt
