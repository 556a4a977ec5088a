"""Opening a long recording: RecordingReader (every metrics line kept as a dict) against
RecordingIndex (step, byte offset and time per record; lines read again when shown), interleaved in
one run: time to read metrics.jsonl and the peak of Python allocations (tracemalloc).

    python bench/bench_replay_index.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from explorer.schema.recording import RecordingReader, RecordingWriter
from explorer.schema.recording_index import RecordingIndex
from explorer.schema.settings import TrainSettings


def make(directory: Path, lines: int) -> None:
    RecordingWriter(directory, {"settings": TrainSettings(scenario="matrix").to_dict()}).close()
    (directory / "snapshots" / "000000.safetensors").write_bytes(b"x")  # the reader only checks it is there
    spec = json.dumps([0.5] * 8)
    with open(directory / "metrics.jsonl", "w") as fh:
        fh.writelines(
            f'{{"step": {k}, "loss": {1.0 / (k + 1)}, "eval_loss": null, "lr": 0.01, "time": {k * 0.01}, '
            f'"segment": 0, "steps_per_second": 100.0, "memory_bytes": 1000, "state": "running", '
            f'"spectra": {{"W": {spec}}}, "snapshot": "snapshots/000000.safetensors"}}\n'
            for k in range(lines)
        )


def measure(fn) -> tuple[float, float]:
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "rec"
        make(d, args.lines)
        size = (d / "metrics.jsonl").stat().st_size / 1e6
        print(f"metrics.jsonl: {args.lines} lines, {size:.1f} MB; load average {os.getloadavg()[0]:.1f}")
        res = {}
        for name, fn in (("reader", lambda: RecordingReader(d)), ("index", lambda: RecordingIndex(d).scan())):
            res[name] = measure(fn)
            print(f"{name:7s} {res[name][0]:7.1f} s (under tracemalloc)  peak {res[name][1]:8.1f} MB")
        print(f"memory ratio reader/index: {res['reader'][1] / res['index'][1]:.0f}x")


if __name__ == "__main__":
    main()
