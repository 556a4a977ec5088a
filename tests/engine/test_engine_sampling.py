"""The cached sampler of the live samples agrees with the model's full forward and with core.generate."""

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
