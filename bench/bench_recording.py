"""What painting recording frames at 2x costs the GUI thread, against the 1x grab it replaced.

    QT_QPA_PLATFORM=offscreen python bench/bench_recording.py [--rounds R] [--size WxH]

Per target (the loss, spectrum and ΔW views, and four views in one widget as large as a window), in
rounds that alternate the two sides (so a busy machine hurts both alike): the view is given a new
snapshot, then grabbed as the recorder grabs it, at 1x (QWidget.grab) and at 2x
(recording.grab_image). Printed: the median grab in ms per side, their ratio, and the distinct frames
per second the recorder can take at that cost (it gives grabbing at most MAX_DUTY of the GUI thread);
and the GIF encoder's time per frame (helper thread) at 1x and 2x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from PySide6 import QtWidgets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", default="700x500", help="each view's size, WxH")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    import snapshot_factory as sf

    from explorer.gui.recording import MAX_DUTY, encode, grab_image
    from explorer.gui.views import VIEW_CLASSES

    targets = {}
    for view_id in ("loss", "spectrum", "delta"):
        view = VIEW_CLASSES[view_id]()
        view.resize(w, h)
        view.show()
        targets[view_id] = (view, [view])
    grid = QtWidgets.QWidget()
    layout = QtWidgets.QGridLayout(grid)
    four = [VIEW_CLASSES[v]() for v in ("loss", "spectrum", "delta", "gates")]
    for i, view in enumerate(four):
        layout.addWidget(view, i // 2, i % 2)
    grid.resize(2 * w, 2 * h)
    grid.show()
    targets["window-sized (4 views)"] = (grid, four)
    for _ in range(5):
        app.processEvents()

    print(f"grab per frame, median of {args.rounds} (each after a new snapshot); view size {w}x{h}")
    print(f"{'target':<24} {'1x ms':>7} {'2x ms':>7} {'2x/1x':>6} {'1x fps':>7} {'2x fps':>7}")
    step = [10]
    for name, (widget, views) in targets.items():
        times = {1: [], 2: []}
        frames = {}
        for _ in range(args.rounds):
            for ratio in (1, 2):
                step[0] += 10
                for view in views:
                    view.update_snapshot(sf.lora_snapshot(step[0]))
                t = time.perf_counter()
                frames[ratio] = widget.grab().toImage() if ratio == 1 else grab_image(widget, 2.0)
                times[ratio].append(time.perf_counter() - t)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(
            f"{name:<24} {one * 1e3:7.1f} {two * 1e3:7.1f} {two / one:6.2f} {MAX_DUTY / one:7.1f} {MAX_DUTY / two:7.1f}"
        )
        if name.startswith("window"):
            with tempfile.TemporaryDirectory() as folder:
                for ratio in (1, 2):
                    t = time.perf_counter()
                    encode([frames[ratio]] * 3, [1, 1, 1], Path(folder) / f"{ratio}x.gif", 15)
                    per_frame = (time.perf_counter() - t) / 3 * 1e3
                    print(f"  GIF encoder (helper thread) at {ratio}x: {per_frame:.0f} ms a frame")


if __name__ == "__main__":
    main()
