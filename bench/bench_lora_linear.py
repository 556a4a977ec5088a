"""Forward + backward of our LoraLinear against PEFT's lora.Linear on the same shapes, side by side.

    python bench/bench_lora_linear.py

Both wrap the same nn.Linear with the same A and B; timings alternate between the two so that a
noisy machine hits both alike. Prints a markdown table; the target is a ratio (ours / PEFT) <= 1.05.
The ratio uses the fastest of the repeats (other load only ever adds time); medians are shown too.
"""

from __future__ import annotations

import statistics
import time

import torch

from explorer.core.lora import LoraLinear

SHAPES = [  # (tokens, in, out, r)
    (1024, 1024, 1024, 8),
    (1024, 1024, 1024, 64),
    (512, 4096, 4096, 16),
    (2048, 512, 2048, 16),
]


def _peft_layer(base: torch.nn.Linear, r: int):
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLinear

    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0)
    return PeftLinear(base, "default", config=config, r=r, lora_alpha=2 * r, lora_dropout=0.0)


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(repeats: int = 25) -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    print(
        "| tokens x in -> out, r | ours fwd+bwd, min / median (ms) | PEFT fwd+bwd, min / median (ms) | ours / PEFT (min) |"
    )
    print("|---|---|---|---|")
    for tokens, d_in, d_out, r in SHAPES:
        base = torch.nn.Linear(d_in, d_out)
        base.requires_grad_(False)
        peft = _peft_layer(base, r)
        ours = LoraLinear(base, r, 2 * r)
        with torch.no_grad():
            ours.lora_A.weight.copy_(peft.lora_A["default"].weight)
            ours.lora_B.weight.normal_()
            peft.lora_B["default"].weight.copy_(ours.lora_B.weight)
        x = torch.randn(tokens, d_in)
        assert torch.allclose(ours(x), peft(x), atol=1e-4)

        def step(layer, x=x):
            def run():
                layer.zero_grad(set_to_none=True)
                layer(x).square().mean().backward()

            return run

        ours_step, peft_step = step(ours), step(peft)
        for fn in (ours_step, peft_step):  # warm-up
            fn()
        t_ours, t_peft = [], []
        for _ in range(repeats):  # interleaved
            t_ours += _time(ours_step, 1)
            t_peft += _time(peft_step, 1)
        mo, mp = statistics.median(t_ours) * 1e3, statistics.median(t_peft) * 1e3
        lo, lp = min(t_ours) * 1e3, min(t_peft) * 1e3
        print(f"| {tokens} x {d_in} -> {d_out}, r={r} | {lo:.1f} / {mo:.1f} | {lp:.1f} / {mp:.1f} | {lo / lp:.3f} |")


if __name__ == "__main__":
    main()
