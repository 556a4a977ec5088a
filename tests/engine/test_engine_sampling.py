"""The cached sampler of the live samples agrees with the model's full forward and with core.generate."""

import pytest
import torch
from engine_helpers import one_thread, tiny_byte_model, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.core.llama import generate
from explorer.engine.sampling import _forward_cached, sample
from explorer.engine.trainer import Trainer


def _adapted_model():
    t = Trainer(
        tiny_lm(method="lora+prefix", targets=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj"), prefix_layers=2),
        base_model=tiny_byte_model(),
    )
    for _ in range(3):
        t.train_step()
    return t.model.eval()


def test_cached_forward_equals_the_full_forward_in_pieces():
    model = _adapted_model()
    ids = torch.randint(0, 256, (2, 21), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        cache = []
        pieces = [_forward_cached(model, ids[:, :7], cache, 0)]
        for pos in range(7, 21):  # then one position at a time
            pieces.append(_forward_cached(model, ids[:, pos : pos + 1], cache, pos))
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sample_matches_generate():
    model = _adapted_model()
    prompt = torch.tensor([list(b"# review:")])
    for temperature in (0.0, 0.8):
        a = generate(model, prompt, 24, temperature, 40, torch.Generator().manual_seed(1))
        b = sample(model, prompt, 24, temperature, 40, torch.Generator().manual_seed(1))
        assert torch.equal(a, b)
    long = sample(model, prompt, 60, 0.0)  # beyond the context: falls back to generate
    assert torch.equal(long, generate(model, prompt, 60, 0.0))


def test_no_repeat_never_writes_an_ngram_twice_in_both_paths():
    model = _adapted_model()
    prompt = torch.tensor([list(b"# review: ab ab")])
    n = 4
    free = sample(model, prompt, 40, 0.0)
    for length in (40, 60):  # within the context (cached) and beyond it (sliding window)
        ids = sample(model, prompt, length, 0.0, no_repeat=n)[0].tolist()
        grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        new = grams[prompt.shape[1] - n + 1 :]  # the prompt may repeat itself; nothing written after it does
        assert all(grams.count(g) == 1 for g in new)
    assert torch.equal(
        sample(model, prompt, 40, 0.0, no_repeat=n)[0, :40], sample(model, prompt, 60, 0.0, no_repeat=n)[0, :40]
    )
    assert not torch.equal(free, sample(model, prompt, 40, 0.0, no_repeat=n))  # greedy alone repeats here


def test_no_repeat_refuses_a_bad_size():
    with pytest.raises(ValueError, match="no_repeat"):
        sample(_adapted_model(), torch.tensor([[1, 2, 3]]), 4, 0.0, no_repeat=1)


def test_the_live_samples_are_greedy_and_never_loop():
    """So that the two texts differ only where the models do: no random numbers in the rule."""
    from explorer.engine.scenarios import lm

    model = _adapted_model()
    prompt = torch.tensor([list(lm.SAMPLE_PROMPT.encode())])
    a = lm.generate_sample(model, prompt, 40, torch.Generator().manual_seed(1))
    b = lm.generate_sample(model, prompt, 40, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(a, sample(model, prompt, 40, 0.0, no_repeat=lm.SAMPLE_NO_REPEAT))
    ids = a[0].tolist()
    n = lm.SAMPLE_NO_REPEAT
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    assert len(set(grams)) == len(grams)
