"""The memory estimate before loading, and the one-line refusal with what would fit."""

import pytest
import torch

from explorer.core.memory import RunShape, available_memory, check_run_fits, estimate_training_memory
from explorer.schema.budget import PRESETS, count_model_params

LLAMA_7B = PRESETS["llama-7b"]
GB = 10**9


def test_parts_of_the_estimate():
    lora = RunShape(method="lora", rank=8, targets=("q_proj", "v_proj"), batch_size=4, seq_len=512)
    est = estimate_training_memory(LLAMA_7B, lora, torch.bfloat16, torch.bfloat16, "cuda")
    assert est.parts["weights"] == 2 * count_model_params(LLAMA_7B)
    assert est.parts["adapters"] == 4 * 4_194_304  # PEFT's count for this setting, in fp32
    assert est.parts["optimizer moments"] == 2 * est.parts["adapters"]
    # activations grow with batch x sequence; the logits are 32000 wide in fp32
    longer = estimate_training_memory(
        LLAMA_7B, RunShape(batch_size=8, seq_len=512), torch.bfloat16, torch.bfloat16, "cuda"
    )
    assert longer.parts["activations"] == 2 * est.parts["activations"]
    assert est.parts["logits"] == 4 * 512 * 32000 * (2 + 8)
    full = estimate_training_memory(LLAMA_7B, RunShape(method="full", batch_size=4, seq_len=512), torch.bfloat16,
                                    torch.bfloat16, "cuda")  # fmt: skip
    assert full.total > 3 * est.total and "trained copy" in full.parts
    # a prefix on the top 2 layers keeps activations of those layers only
    prefix = estimate_training_memory(LLAMA_7B, RunShape(method="prefix", prefix_layers=2, batch_size=4, seq_len=512),
                                      torch.bfloat16, torch.bfloat16, "cuda")  # fmt: skip
    assert prefix.parts["activations"] < est.parts["activations"] / 10
    # without flash attention (the CPU) the attention probabilities are kept too
    cpu = estimate_training_memory(LLAMA_7B, lora, torch.bfloat16, torch.bfloat16, "cpu")
    assert cpu.parts["activations"] > est.parts["activations"]


def test_refusal_names_the_estimate_what_is_available_and_what_would_fit():
    run = RunShape(method="lora", targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                   batch_size=64, seq_len=2048)  # fmt: skip
    with pytest.raises(ValueError) as err:
        check_run_fits(LLAMA_7B, run, torch.float32, torch.float32, torch.device("cuda"), "training X", 30 * GB)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("training X needs about")
    assert "30.0 GB is available" in msg and "weights 27.0 GB" in msg
    assert msg.endswith("it would fit with dtype bf16, batch_size 1")
    with pytest.raises(ValueError, match="it would fit with batch_size 1, seq_len 256$"):
        check_run_fits(LLAMA_7B, run, torch.bfloat16, torch.bfloat16, torch.device("cuda"), "x", 18 * GB)


def test_when_nothing_would_fit_it_says_why():
    with pytest.raises(ValueError, match="not even with dtype bf16 would it fit: the weights alone need 13.5 GB"):
        check_run_fits(LLAMA_7B, RunShape(batch_size=1, seq_len=8), torch.float32, torch.float32,
                       torch.device("cuda"), "x", 8 * GB)  # fmt: skip


def test_a_run_that_fits_passes_and_the_machine_reports_its_memory():
    est = check_run_fits(PRESETS["llama-7b"].__class__(), RunShape(), torch.float32, torch.float32, torch.device("cpu"))
    assert est.total > 0
    free, what = available_memory(torch.device("cpu"))
    assert free is None or (free > 0 and "available" in what)
