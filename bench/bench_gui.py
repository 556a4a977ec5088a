"""Does the window stay responsive while training runs? One run, every view visible:

1. event-loop lag: how late a repeating 10 ms QTimer (PreciseTimer) fires, p50 / p99 / max, and
2. the views' refresh rate (snapshots drawn per second, and each view's own redraws; a view not
   shown, e.g. a tab behind another, is not drawn and says 0),
with training PAUSED (the worker is asked for a snapshot 30 times a second, so the views draw as
much as they would live, with no training beside them) and then with training RUNNING. Also the cost
of each view's update on the GUI thread, and 3. the time from launch to first frame (subprocesses of
`python -m explorer`, which paint the window and exit).

Both training workers in one run, one window after the other: `thread` (training on a thread of the
GUI process, `--in-process`) and `process` (training in a child process, the app's default).

    python bench/bench_gui.py                      # lm scenario, LoRA + prefix, 10 s per phase
    python bench/bench_gui.py --scenario matrix --method lora --seconds 5
    python bench/bench_gui.py --workers process     # one worker only
    xvfb-run -s "-screen 0 1600x1000x24" python bench/bench_gui.py --platform xcb

Target (issue 4): p99 lag under 30 ms on 2 cores with every view visible; first frame under 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK_MS = 10


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def first_frame_times(runs: int, platform: str) -> list[float]:
    """Seconds from starting `python -m explorer` to its first painted frame (it prints, then exits)."""
    out = []
    env = dict(os.environ, QT_QPA_PLATFORM=platform)
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [sys.executable, "-m", "explorer", "--first-frame-exit", "--settings-path", os.path.join(tmp, "s.ini")],
                cwd=ROOT,
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
    snap = window.last_snapshot
    return {
        "lag_p50": pct(lags, 50),
        "lag_p99": pct(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        "ticks": len(lags),
        "snapshots_per_s": (window.delivered - delivered0) / elapsed,
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
    """One window with the given worker: paused, then training; its figures (None if it failed)."""
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

    paused = measure(app, window, args.seconds, request_hz=30.0)
    paused_costs = {v: list(c) for v, c in costs.items()}
    for c in costs.values():
        c.clear()
    window.play()
    measure(app, window, min(2.0, args.seconds))  # warm-up: first steps, first samples
    for c in costs.values():
        c.clear()
    running = measure(app, window, args.seconds)
    running_costs = {v: list(c) for v, c in costs.items()}
    device = window.status.device.text()
    views = list(window.views)
    window.close()
    return {
        "paused": paused,
        "running": running,
        "paused_costs": paused_costs,
        "running_costs": running_costs,
        "device": device,
        "visible": visible,
        "views": views,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="lm", choices=("lm", "matrix"))
    ap.add_argument("--method", default="lora+prefix", choices=("lora", "prefix", "lora+prefix", "full"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    ap.add_argument(
        "--platform",
        default=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        help="Qt platform: offscreen (default) or xcb (under Xvfb)",
    )
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument(
        "--workers",
        default="thread,process",
        help="which training workers, one window each, in this order (default thread,process)",
    )
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="override the app's GIL switch interval (seconds), for experiments",
    )
    ap.add_argument("--launches", type=int, default=3, help="launch-to-first-frame runs (default 3)")
    args = ap.parse_args(argv)
    workers = [x.strip() for x in args.workers.split(",") if x.strip()]
    unknown = [x for x in workers if x not in WORKERS]
    if unknown or not workers:
        ap.error(f"--workers: unknown {', '.join(unknown) or '(none)'}: allowed {', '.join(WORKERS)}")
    os.environ["QT_QPA_PLATFORM"] = args.platform
    sys.path.insert(0, str(ROOT))

    from explorer.gui.app import make_app

    app = make_app()
    baseline = measure_bare(min(5.0, args.seconds))
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    results = {}
    for worker in workers:
        r = bench_window(app, args, worker)
        if r is None:
            return 1
        results[worker] = r

    launches = first_frame_times(args.launches, args.platform)

    any_r = next(iter(results.values()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# bench_gui: {args.scenario} scenario, {args.method}, {any_r['device']}, Qt platform {args.platform}, "
        f"{os.cpu_count()} CPUs (load average {load:.1f} at the end), window {args.size}, "
        f"{args.seconds:g} s per phase, GIL switch interval {sys.getswitchinterval() * 1000:g} ms"
    )
    print(f"views visible: {len(any_r['visible'])}/{len(any_r['views'])} ({', '.join(any_r['visible'])})")
    print(
        "workers: thread = training on a thread of the GUI process (--in-process); "
        "process = training in a child process (the default)"
    )
    print()
    print(
        "| worker | phase | lag p50 (ms) | lag p99 (ms) | lag max (ms) | snapshots drawn / s "
        "| snapshots posted / s | training steps / s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = [("-", "empty event loop, no window (the machine's noise)", baseline)]
    for worker, r in results.items():
        rows += [(worker, "paused (30 snapshot requests / s)", r["paused"]), (worker, "training", r["running"])]
    for worker, name, r in rows:
        print(
            f"| {worker} | {name} | {r['lag_p50']:.1f} | {r['lag_p99']:.1f} | {r['lag_max']:.1f} | "
            f"{r['snapshots_per_s']:.1f} | {r['posted_per_s']:.1f} | {r['steps_per_s']:.1f} |"
        )
    print()
    head = " | ".join(f"redraws / s training ({w}) | update ms p50 / p99 training ({w})" for w in results)
    print(f"| view | {head} |")
    print("|---|" + "---|---|" * len(results))
    for v in any_r["views"]:
        cells = " | ".join(
            f"{r['running']['view_draws_per_s'][v]:.1f} | "
            f"{pct(r['running_costs'][v], 50):.1f} / {pct(r['running_costs'][v], 99):.1f}"
            for r in results.values()
        )
        print(f"| {v} | {cells} |")
    print()
    if launches:
        print(
            f"launch to first frame (python -m explorer, {len(launches)} runs): median "
            f"{statistics.median(launches):.2f} s, max {max(launches):.2f} s"
        )
    for worker, r in results.items():
        ok = r["running"]["lag_p99"] < 30.0
        print(
            f"target p99 lag < 30 ms while training ({worker} worker): {'met' if ok else 'NOT met'} "
            f"({r['running']['lag_p99']:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
