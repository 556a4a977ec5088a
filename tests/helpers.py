"""Tiny random Llama models shared by the reference-comparison tests."""

import torch

from explorer.core.llama import LlamaConfig, LlamaForCausalLM


def tiny_hf_llama(kv_heads=4, layers=3, seed=0, vocab=97):
    """A transformers LlamaForCausalLM with random weights, and ours with the same weights."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama

    hf_config = HFConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    hf = HFLlama(hf_config).eval()
    ours = LlamaForCausalLM(LlamaConfig.from_hf_dict(hf_config.to_dict())).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    return hf, ours


def tiny_llama(kv_heads=2, layers=3, seed=0, vocab=97):
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()
