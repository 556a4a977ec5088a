"""The trainer with rank_pattern / alpha_pattern: per-module ranks trained, priced and changed cold."""

from engine_helpers import one_thread, tiny_byte_model, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.core.adapters import count_trainable
from explorer.core.lora import lora_modules
from explorer.engine.trainer import Trainer


def test_the_trainer_trains_per_module_ranks_and_prices_them():
    settings = tiny_lm(
        rank=2,
        targets=("q_proj", "v_proj"),
        rank_pattern={"model.layers.1.self_attn.q_proj": 6, "v_proj": 1},
        alpha_pattern={"v_proj": 4.0},
    )
    trainer = Trainer(settings, base_model=tiny_byte_model())
    for _ in range(3):
        trainer.train_step()
    snap = trainer.snapshot()
    lengths = {name: m.spectrum.size for name, m in snap.matrices.items()}
    assert lengths == {
        "model.layers.0.self_attn.q_proj": 2,
        "model.layers.0.self_attn.v_proj": 1,
        "model.layers.1.self_attn.q_proj": 6,
        "model.layers.1.self_attn.v_proj": 1,
    }
    # the budget's count (by PEFT's rule on the config) is the parameters the model really trains
    assert snap.budget["trainable_params"] == snap.budget["measured_trainable_params"]
    assert snap.budget["trainable_params"] == count_trainable(trainer.model)
    assert snap.settings["rank_pattern"] == {"model.layers.1.self_attn.q_proj": 6, "v_proj": 1}
    kinds = trainer.apply(rank_pattern={"q_proj": 3})
    assert kinds == {"rank_pattern": "cold"}
    assert {m.rank for n, m in lora_modules(trainer.model).items() if n.endswith("q_proj")} == {3}
