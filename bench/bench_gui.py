"""Does the window follow training, and stay responsive while it does? Both scenarios in one run:

1. the views' refresh: each view's redraws per second beside the training steps per second ("follows":
   redraws / min(steps, 30) per second; 1.0 = every step up to 30 Hz; a view not shown says 0), and
2. event-loop lag: how late a repeating 10 ms QTimer (PreciseTimer) fires, p50 / p99 / max, with the
   machine's own noise (the same timer in an empty event loop) beside it,
while training RUNS (optionally also PAUSED, with the worker asked for a snapshot 30 times a second).
Also the cost of each view's update on the GUI thread, and the time from launch to first frame.

Each (scenario, code) pair runs in a subprocess of its own, one window each. `--before REV` runs the
same measurement on the explorer of git revision REV too, interleaved with this checkout's (before,
after, before, after, ...), and prints the ratios: the machine's load changes less between two
neighbouring windows than between two runs.

    python bench/bench_gui.py                       # lm (LoRA + prefix) and matrix (LoRA), 10 s each
    python bench/bench_gui.py --before main --rounds 2
    python bench/bench_gui.py --scenarios lm --workers thread,process --paused
    python bench/bench_gui.py --profile /tmp/prof   # cProfile of the GUI thread while training
    Xvfb :97 -screen 0 1920x1080x24 & DISPLAY=:97 python bench/bench_gui.py --platform xcb

Targets (issue 16): every visible cheap view follows every step up to 30 Hz; p99 lag under 16 ms in
both scenarios on 2 cores; first frame under 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK_MS = 10
FOLLOW_HZ = 30.0  # views should follow every step up to this rate
LAG_TARGET_MS = 16.0
METHODS = {"lm": "lora+prefix", "matrix": "lora"}
# views whose data is measured on a slower cadence of their own (samples, token differences, the
# probe's attention, the budget which changes only with the settings): not expected to follow each step
SLOW_VIEWS = ("attention", "samples", "tokens", "budget", "compare", "rank")


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def first_frame_times(runs: int, platform: str, code: str) -> list[float]:
    """Seconds from starting `python -m explorer` to its first painted frame (it prints, then exits)."""
    out = []
    env = dict(os.environ, QT_QPA_PLATFORM=platform, PYTHONPATH=code)
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [sys.executable, "-m", "explorer", "--first-frame-exit", "--settings-path", os.path.join(tmp, "s.ini")],
                cwd=code,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            line = p.stdout.readline()
            t1 = time.perf_counter()
            p.wait(60)
            if line.startswith("first frame"):
                out.append(t1 - t0)
    return out


def measure(app, window, seconds: float, request_hz: float = 0.0) -> dict:
    """Run the event loop for `seconds`; the lag of a 10 ms timer, snapshots drawn, view redraws."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    lags: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lags.append(max(0.0, (now - last[0]) * 1000.0 - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    asker = QTimer()
    if request_hz > 0:
        asker.setInterval(int(1000 / request_hz))
        asker.timeout.connect(lambda: window.worker.request_snapshot())
    draws0 = {v: getattr(view, "draw_count", 0) for v, view in window.views.items()}
    delivered0 = window.delivered
    posted0 = getattr(window.worker, "snapshots_posted", 0)
    snap0 = window.last_snapshot
    step0 = snap0.step if snap0 is not None else 0
    t0 = time.perf_counter()
    cpu0 = time.thread_time()  # this thread is the GUI thread: what drawing costs, whatever the load
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    last[0] = time.perf_counter()
    timer.start()
    if request_hz > 0:
        asker.start()
    loop.exec()
    timer.stop()
    asker.stop()
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - cpu0
    snap = window.last_snapshot
    return {
        "lag_p50": pct(lags, 50),
        "lag_p99": pct(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        "ticks": len(lags),
        "snapshots_per_s": (window.delivered - delivered0) / elapsed,
        "gui_cpu_ms_per_s": cpu * 1000.0 / elapsed,
        "gui_cpu_ms_per_snapshot": cpu * 1000.0 / max(1, window.delivered - delivered0),
        "posted_per_s": (getattr(window.worker, "snapshots_posted", 0) - posted0) / elapsed,
        "view_draws_per_s": {
            v: (getattr(view, "draw_count", 0) - draws0[v]) / elapsed for v, view in window.views.items()
        },
        "steps_per_s": ((snap.step if snap is not None else 0) - step0) / elapsed,
    }


def measure_bare(seconds: float) -> dict:
    """The same 10 ms timer in an event loop with nothing else to do: the machine's own noise."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    lags: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lags.append(max(0.0, (now - last[0]) * 1000.0 - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    last[0] = time.perf_counter()
    timer.start()
    loop.exec()
    timer.stop()
    return {
        "lag_p50": pct(lags, 50),
        "lag_p99": pct(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        "snapshots_per_s": 0.0,
        "posted_per_s": 0.0,
        "steps_per_s": 0.0,
    }


def time_views(window) -> dict[str, list[float]]:
    """Wrap each view's update_snapshot to time it (ms per call) on the GUI thread."""
    costs: dict[str, list[float]] = {v: [] for v in window.views}
    for view_id, view in window.views.items():
        original = view.update_snapshot

        def timed(snap, _orig=original, _list=costs[view_id]):
            t = time.perf_counter()
            _orig(snap)
            _list.append((time.perf_counter() - t) * 1000.0)

        view.update_snapshot = timed
    return costs


WORKERS = {
    "thread": "explorer.engine.worker:TrainingWorker",
    "process": "explorer.engine.process_worker:ProcessTrainingWorker",
}


def bench_window(app, args, worker: str) -> dict | None:
    """One window with the given worker: (paused,) then training; its figures (None if it failed)."""
    from PySide6.QtCore import QEventLoop, QTimer

    from explorer.gui.main_window import MainWindow
    from explorer.gui.persistence import Persistence
    from explorer.schema.settings import TrainSettings

    store = Persistence(path=os.path.join(tempfile.mkdtemp(prefix="peft-bench-"), "s.ini"))
    settings = TrainSettings(scenario=args.scenario, method=args.method, device=args.device)
    window = MainWindow(settings, store=store, restore=False, worker_factory=WORKERS[worker])
    w, h = (int(x) for x in args.size.split("x"))
    window.resize(w, h)
    window.show()
    app.processEvents()
    window.size_docks()
    ready = QEventLoop()
    window.worker_attached.connect(lambda _w: ready.quit())
    window.start_worker()
    QTimer.singleShot(180_000, ready.quit)
    ready.exec()
    if window.worker is None:
        print(f"bench_gui: the {worker} worker did not start", file=sys.stderr)
        window.close()
        return None
    # wait for the first snapshot (the trainer is built in the worker thread or process)
    first = QEventLoop()
    window.snapshot_delivered.connect(lambda _s: first.quit())
    QTimer.singleShot(180_000, first.quit)
    first.exec()
    snap = window.last_snapshot
    if snap is None or snap.state == "fault":
        print(
            f"bench_gui: no usable first snapshot from the {worker} worker: {snap.fault if snap else 'none'}",
            file=sys.stderr,
        )
        window.close()
        return None
    visible = window.visible_view_ids()
    costs = time_views(window)

    out = {"visible": visible, "views": list(window.views)}
    if args.paused:
        out["paused"] = measure(app, window, args.seconds, request_hz=30.0)
        out["paused_costs"] = {v: list(c) for v, c in costs.items()}
    window.play()
    measure(app, window, min(2.0, args.seconds))  # warm-up: first steps, first samples
    for c in costs.values():
        c.clear()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()  # this thread only: the GUI thread
        profiler.enable()
    out["running"] = measure(app, window, args.seconds)
    if profiler is not None:
        profiler.disable()
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        out["profile"] = str(Path(args.profile) / f"gui-{args.scenario}-{worker}-{args.label}.prof")
        profiler.dump_stats(out["profile"])
    out["running_costs"] = {v: list(c) for v, c in costs.items()}
    out["device"] = window.status.device.text()
    window.close()
    return out


def run_child(args) -> int:
    """One scenario, one code tree, the workers asked for: print one JSON line of figures."""
    sys.path.insert(0, args.code)
    os.environ["QT_QPA_PLATFORM"] = args.platform
    from explorer.gui.app import make_app

    load0 = os.getloadavg()[0]
    app = make_app()
    noise = measure_bare(min(3.0, args.seconds))
    results = {}
    for worker in args.workers.split(","):
        r = bench_window(app, args, worker)
        if r is None:
            return 1
        results[worker] = r
    launches = first_frame_times(args.launches, args.platform, args.code)
    print(
        "RESULT "
        + json.dumps({"noise": noise, "workers": results, "launches": launches, "load": [load0, os.getloadavg()[0]]})
    )
    return 0


def export_revision(rev: str) -> str:
    """explorer/ and resources/ of git revision `rev`, in a temporary directory (its path)."""
    out = tempfile.mkdtemp(prefix="peft-bench-before-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "explorer", "resources"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


def follows(view_rate: float, steps: float) -> float:
    """Redraws per step the view could follow (steps up to FOLLOW_HZ a second): 1.0 = every one."""
    want = min(steps, FOLLOW_HZ)
    return view_rate / want if want > 0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="lm,matrix", help="comma-separated, in this order (default lm,matrix)")
    ap.add_argument("--method", default=None, help="for every scenario (default: lm lora+prefix, matrix lora)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    ap.add_argument(
        "--platform",
        default=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        help="Qt platform: offscreen (default) or xcb (under Xvfb)",
    )
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--workers", default="process", help="thread and/or process, one window each (default process)")
    ap.add_argument("--paused", action="store_true", help="also measure paused, 30 snapshot requests a second")
    ap.add_argument("--before", default=None, metavar="REV", help="also measure git revision REV, interleaved")
    ap.add_argument("--rounds", type=int, default=1, help="how many times each (scenario, code) runs (default 1)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="write a cProfile of the GUI thread here")
    ap.add_argument("--launches", type=int, default=3, help="launch-to-first-frame runs (default 3)")
    # for the subprocesses
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--code", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument("--scenario", default="lm", help=argparse.SUPPRESS)
    ap.add_argument("--label", default="after", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workers = [x.strip() for x in args.workers.split(",") if x.strip()]
    unknown = [x for x in workers if x not in WORKERS]
    if unknown or not workers:
        ap.error(f"--workers: unknown {', '.join(unknown) or '(none)'}: allowed {', '.join(WORKERS)}")
    scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if not scenarios or any(x not in METHODS for x in scenarios):
        ap.error(f"--scenarios: allowed {', '.join(METHODS)}")
    if args.child:
        return run_child(args)

    sides = [("after", str(ROOT))]
    if args.before:
        sides.insert(0, (f"before ({args.before})", export_revision(args.before)))
    runs: list[tuple[str, str, int, dict]] = []
    for rnd in range(args.rounds):
        for scenario in scenarios:
            for label, code in sides:
                cmd = [
                    sys.executable, __file__, "--child", "--code", code, "--scenario", scenario,
                    "--method", args.method or METHODS[scenario], "--device", args.device,
                    "--seconds", str(args.seconds), "--platform", args.platform, "--size", args.size,
                    "--workers", ",".join(workers), "--label", label.split()[0],
                    "--launches", str(args.launches if rnd == 0 and scenario == scenarios[0] else 0),
                ]  # fmt: skip
                cmd += ["--paused"] if args.paused else []
                cmd += ["--profile", args.profile] if args.profile else []
                p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
                if p.returncode != 0 or line is None:
                    print(f"bench_gui: {scenario} ({label}) failed:\n{p.stderr[-3000:]}", file=sys.stderr)
                    return 1
                runs.append((scenario, label, rnd, json.loads(line[len("RESULT ") :])))
                print(f"# done: {scenario} {label} round {rnd + 1}", file=sys.stderr)
    report(args, runs, workers, sides)
    return 0


def report(args, runs, workers, sides) -> None:
    print(
        f"# bench_gui: Qt platform {args.platform}, {os.cpu_count()} CPUs, window {args.size}, {args.seconds:g} s "
        f"per phase, {args.rounds} round(s); lm = {args.method or METHODS['lm']}, "
        f"matrix = {args.method or METHODS['matrix']}; load average (1 min) at the start and end of each window"
    )
    print()
    print(
        "| scenario | code | worker | phase | lag p50 (ms) | lag p99 (ms) | lag max (ms) | noise p99 (ms) "
        "| snapshots drawn / s | training steps / s | GUI thread CPU ms / s | per snapshot | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scenario, label, _rnd, res in runs:
        load = f"{res['load'][0]:.1f}-{res['load'][1]:.1f}"
        for worker, r in res["workers"].items():
            phases = (["paused"] if "paused" in r else []) + ["running"]
            for phase in phases:
                m = r[phase]
                print(
                    f"| {scenario} | {label} | {worker} | {'training' if phase == 'running' else 'paused (30 req/s)'} "
                    f"| {m['lag_p50']:.1f} | {m['lag_p99']:.1f} | {m['lag_max']:.1f} | {res['noise']['lag_p99']:.1f} "
                    f"| {m['snapshots_per_s']:.1f} | {m['steps_per_s']:.1f} | {m['gui_cpu_ms_per_s']:.0f} "
                    f"| {m['gui_cpu_ms_per_snapshot']:.1f} | {load} |"
                )
    print()
    print("Each view while training: redraws / s, follows = redraws / min(steps, 30) per s, update ms p50 / p99")
    print("(views marked * have a slower cadence of their own and are not expected to follow each step)")
    print()
    print("| scenario | code | worker | view | redraws / s | steps / s | follows | update ms p50 / p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario, label, _rnd, res in runs:
        for worker, r in res["workers"].items():
            m = r["running"]
            for v in r["visible"]:
                rate = m["view_draws_per_s"][v]
                c = r["running_costs"][v]
                mark = "*" if v in SLOW_VIEWS else ""
                print(
                    f"| {scenario} | {label} | {worker} | {v}{mark} | {rate:.1f} | {m['steps_per_s']:.1f} "
                    f"| {follows(rate, m['steps_per_s']):.2f} | {pct(c, 50):.1f} / {pct(c, 99):.1f} |"
                )
    if len(sides) == 2:
        print()
        print("after / before (medians over rounds): p99 lag, cheap views' redraws / s (the least-following view)")
        print()
        print(
            "| scenario | worker | p99 before (ms) | p99 after (ms) | ratio | follows before | follows after "
            "| GUI CPU ms / snapshot before | after | ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for scenario in dict.fromkeys(r[0] for r in runs):
            for worker in workers:
                row = {}
                for label, _ in sides:
                    rs = [res["workers"][worker] for s_, lab, _, res in runs if s_ == scenario and lab == label]
                    p99 = statistics.median(r["running"]["lag_p99"] for r in rs)
                    worst = statistics.median(
                        min(
                            (follows(r["running"]["view_draws_per_s"][v], r["running"]["steps_per_s"])
                             for v in r["visible"] if v not in SLOW_VIEWS),
                            default=float("nan"),
                        )
                        for r in rs
                    )  # fmt: skip
                    per = statistics.median(r["running"]["gui_cpu_ms_per_snapshot"] for r in rs)
                    row[label] = (p99, worst, per)
                (b99, bf, bc), (a99, af, ac) = row[sides[0][0]], row[sides[1][0]]
                print(
                    f"| {scenario} | {worker} | {b99:.1f} | {a99:.1f} | {a99 / b99:.2f} | {bf:.2f} | {af:.2f} "
                    f"| {bc:.1f} | {ac:.1f} | {ac / bc:.2f} |"
                )
    print()
    for scenario, label, _rnd, res in runs:
        if res["launches"]:
            ls = res["launches"]
            print(
                f"launch to first frame ({label}, python -m explorer, {len(ls)} runs): median "
                f"{statistics.median(ls):.2f} s, max {max(ls):.2f} s"
            )
        for worker, r in res["workers"].items():
            m = r["running"]
            cheap = [v for v in r["visible"] if v not in SLOW_VIEWS]
            worst = min((follows(m["view_draws_per_s"][v], m["steps_per_s"]) for v in cheap), default=float("nan"))
            print(
                f"{scenario} {label} {worker}: p99 lag {m['lag_p99']:.1f} ms "
                f"({'met' if m['lag_p99'] < LAG_TARGET_MS else 'NOT met'}: < {LAG_TARGET_MS:g} ms); cheap views follow "
                f"{worst:.2f} of the steps ({'met' if worst >= 0.9 else 'NOT met'}: >= 0.9)"
                + (f"; profile {r['profile']}" if r.get("profile") else "")
            )


if __name__ == "__main__":
    raise SystemExit(main())
