"""Training speed by CPU thread setting, on the machine as it is and with one core burned (issue 17).

    python bench/bench_threads.py [--rounds R] [--steps N] [--spin]

The same headless run (`python -m explorer run --scenario lm --method lora --rank 4 --seed 5
--device cpu`, the command of issue 17, with --steps 60 by default: the default's tuner spends its
first steps trying the counts) at --threads 1, 2 and the default (0), each in a fresh process, under two conditions: the machine as it is, and with a background process burning one
core (a Python busy loop this script starts and stops). Settings and conditions are interleaved round
by round, so a change in the machine's load hurts every column alike. steps/s = steps / the run's
own wall time of its training loop (config.json's wall_seconds: steps, snapshots and recording, not
the start-up). Printed per condition: the median steps/s of each setting, how many threads the
default chose, the 1-minute load average, and best/default (target <= 1.2).

--spin adds "2, spinning": 2 threads with OpenMP's default wait policy (spin, then sleep), as every
run had before explorer/__init__.py set OMP_WAIT_POLICY=PASSIVE; it shows the collapse that fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--scenario", "lm", "--method", "lora", "--rank", "4", "--seed", "5", "--device", "cpu"]
TARGET = 1.2


def load() -> float:
    return os.getloadavg()[0]


def one_run(threads: int, steps: int, out: Path, spin: bool = False, timeout: float = 600) -> dict:
    """(steps/s, threads used) of one run in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_WAIT_POLICY", None)  # what a user gets: explorer sets PASSIVE before torch loads
    argv = [*RUN, "--steps", str(steps), "--threads", str(threads), "--quiet", "--overwrite", "--out", str(out)]
    if spin:  # torch loaded before explorer: OpenMP keeps its default wait policy, as before the fix
        code = f"import runpy, sys, torch; sys.argv = ['explorer'] + {argv!r}; runpy.run_module('explorer', run_name='__main__')"
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "explorer", *argv]
    subprocess.run(cmd, env=env, check=True, timeout=timeout, cwd=ROOT)
    config = json.loads((out / "config.json").read_text())
    return {"rate": config["final_step"] / config["wall_seconds"], "threads": config["threads"]}


class Burner:
    """A process that keeps one core busy until stopped."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--steps", type=int, default=60, help="steps per run (default 60; issue 17 used 20)")
    ap.add_argument("--spin", action="store_true", help="also 2 threads with OpenMP spinning (the old default)")
    args = ap.parse_args()
    settings = [("1", 1, False), ("2", 2, False), ("default", 0, False)]
    if args.spin:
        settings.append(("2, spinning", 2, True))
    conditions = ["as it is", "one core burned"]
    rates = {(c, s[0]): [] for c in conditions for s in settings}
    chosen = {c: [] for c in conditions}
    loads = {c: [] for c in conditions}
    print(f"{len(os.sched_getaffinity(0))} usable cores; load average at start {load():.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        for rnd in range(args.rounds):
            for cond in conditions:
                burner = Burner() if cond == "one core burned" else None
                if burner is not None:
                    burner.__enter__()
                try:
                    for name, threads, spin in settings:
                        loads[cond].append(load())
                        r = one_run(threads, args.steps, Path(tmp) / "run", spin)
                        rates[(cond, name)].append(r["rate"])
                        if name == "default":
                            chosen[cond].append(r["threads"])
                        print(
                            f"round {rnd + 1} {cond:16s} threads {name:12s} {r['rate']:6.2f} steps/s "
                            f"({r['threads']} used; load {loads[cond][-1]:.2f})",
                            flush=True,
                        )
                finally:
                    if burner is not None:
                        burner.__exit__()
    names = [s[0] for s in settings]
    print()
    print("| condition | load avg | " + " | ".join(f"--threads {n}" for n in names) + " | best/default |")
    print("|" + "---|" * (len(names) + 3))
    ok = True
    for cond in conditions:
        med = {n: statistics.median(rates[(cond, n)]) for n in names}
        best = max(v for n, v in med.items() if "spinning" not in n)
        ratio = best / med["default"]
        ok &= ratio <= TARGET
        cells = []
        for n in names:
            cell = f"{med[n]:.2f}"
            if n == "default":
                used = sorted(set(chosen[cond]))
                cell += f" ({'/'.join(map(str, used))} thread{'s' if used != [1] else ''})"
            cells.append(cell)
        print(f"| {cond} | {statistics.mean(loads[cond]):.2f} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    print(
        f"\nsteps/s: median of {args.rounds} interleaved rounds; target best/default <= {TARGET}: "
        f"{'OK' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
