"""Which learning rate each method wants: held-out loss after a few hundred headless steps.

    python bench/bench_default_lr.py [--steps N] [--scenario lm|matrix] [--methods full,lora] [--lrs 1e-2,1e-3]

Each (method, lr) is one `python -m explorer run` (one CPU thread, the same seed), its recording read
back: the held-out loss at step 0 (the untouched base), at a quarter, half and the end of the run, and
the lowest one seen. A rate whose end is above the base made the model worse than not training at
all: not a default. The per-method defaults in explorer/schema/settings.py (DEFAULT_LR) come from this.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def held_out(out: Path) -> dict[int, float]:
    """{step: held-out loss} of a recording's metrics."""
    points = {}
    with open(out / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if isinstance(m.get("eval_loss"), (int, float)):
                points[int(m["step"])] = float(m["eval_loss"])
    return points


def run(scenario: str, method: str, lr: float, steps: int, tmp: Path) -> tuple[dict[int, float], float]:
    out = tmp / f"{scenario}-{method.replace('+', '_')}-{lr:g}"
    cmd = [sys.executable, "-m", "explorer", "run", "--scenario", scenario, "--method", method, "--lr", f"{lr:g}"]
    cmd += ["--steps", str(steps), "--out", str(out), "--threads", "1", "--quiet", "--record-every", "10"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    return held_out(out), time.perf_counter() - t0


def at(points: dict[int, float], step: int) -> float:
    """The held-out loss measured last at or before `step`."""
    before = [s for s in points if s <= step]
    return points[max(before)] if before else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--scenario", default="lm", choices=("lm", "matrix"))
    p.add_argument("--methods", default="full,lora,prefix,lora+prefix")
    p.add_argument("--lrs", default="3e-2,1e-2,3e-3,1e-3,3e-4")
    a = p.parse_args()
    lrs = [float(x) for x in a.lrs.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f}; {a.scenario}, {a.steps} steps, one thread, seed 0")
    print(f"{'method':<12} {'lr':>7} {'base':>8} {'1/4':>8} {'1/2':>8} {'end':>8} {'best':>8}  {'vs base':>8} {'s':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in a.methods.split(","):
            for lr in lrs:
                pts, secs = run(a.scenario, method, lr, a.steps, Path(tmp))
                base, end = at(pts, 0), at(pts, a.steps)
                row = [base, at(pts, a.steps // 4), at(pts, a.steps // 2), end, min(pts.values())]
                print(
                    f"{method:<12} {lr:>7g} "
                    + " ".join(f"{v:>8.4g}" for v in row)
                    + f"  {end / base:>8.3f} {secs:>5.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
