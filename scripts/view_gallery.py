"""Open every live view on synthetic snapshots in one window and save a PNG of it.

    Xvfb :99 -screen 0 2560x1440x24 &
    DISPLAY=:99 python scripts/view_gallery.py gallery.png                 # LoRA + prefix on the lm scenario
    DISPLAY=:99 python scripts/view_gallery.py matrix.png --scenario matrix  # ΔW against a planted target
    python scripts/view_gallery.py talk.png --talk --light                   # talk mode, light theme (offscreen)

Without a DISPLAY it draws offscreen. The views are fed a whole synthetic run (steps 0..N), as the
engine would feed them, so smoothed colour levels and histories look as they do mid-training.
Options: --scenario lm|matrix|full|blank, --step N, --size WxH, --talk, --light, --hold (keep the
window open under a display, e.g. for `import -window root`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

import snapshot_factory as sf  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from explorer.gui.views import VIEW_CLASSES  # noqa: E402


def dark_palette() -> QtGui.QPalette:
    p = QtGui.QPalette()
    window, base, text = QtGui.QColor(37, 40, 45), QtGui.QColor(24, 26, 30), QtGui.QColor(222, 225, 230)
    role = QtGui.QPalette.ColorRole
    for r, c in (
        (role.Window, window),
        (role.WindowText, text),
        (role.Base, base),
        (role.AlternateBase, window),
        (role.Text, text),
        (role.Button, QtGui.QColor(50, 54, 60)),
        (role.ButtonText, text),
        (role.ToolTipBase, base),
        (role.ToolTipText, text),
        (role.Highlight, QtGui.QColor(42, 130, 218)),
        (role.HighlightedText, QtGui.QColor(255, 255, 255)),
        (role.PlaceholderText, QtGui.QColor(130, 135, 140)),
        (role.Mid, QtGui.QColor(70, 74, 80)),
        (role.Light, QtGui.QColor(70, 74, 80)),
    ):
        p.setColor(r, c)
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, role.ButtonText, QtGui.QColor(110, 114, 120))
    p.setColor(QtGui.QPalette.ColorGroup.Disabled, role.WindowText, QtGui.QColor(110, 114, 120))
    return p


def run(scenario: str, last: int):
    steps = list(range(0, last + 1, max(1, last // 15)))
    if steps[-1] != last:
        steps.append(last)
    if scenario == "lm":
        return [
            sf.lora_prefix_snapshot(s, rank=8, layers=(4, 5, 6, 7), heads=4, prompt_len=10, tokens=sf.BYTE_PROBE_TOKENS)
            for s in steps
        ]
    if scenario == "matrix":
        return [sf.matrix_snapshot(s, rank=2, target_rank=4, shape=(4096, 4096)) for s in steps]
    if scenario == "full":
        return [sf.full_snapshot(s) for s in steps]
    return [sf.blank_snapshot()]


class Panel(QtWidgets.QFrame):
    """A framed view with a title bar, as a dock widget would show it."""

    def __init__(self, view, title: str):
        super().__init__()
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(0)
        label = QtWidgets.QLabel(f"  {title}")
        label.setStyleSheet("font-weight: bold; padding: 3px; background: palette(button);")
        lay.addWidget(label)
        lay.addWidget(view, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="PNG file to write")
    ap.add_argument("--scenario", choices=("lm", "matrix", "full", "blank"), default="lm")
    ap.add_argument("--step", type=int, default=240)
    ap.add_argument("--size", default="1920x1200")
    ap.add_argument("--talk", action="store_true", help="talk mode: fonts x1.5, high contrast, colour-blind-safe maps")
    ap.add_argument("--light", action="store_true", help="light theme")
    ap.add_argument("--hold", action="store_true", help="keep the window open (under a display)")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    if not args.light:
        app.setPalette(dark_palette())

    window = QtWidgets.QWidget()
    window.setWindowTitle(f"peft-explorer views · {args.scenario}")
    grid = QtWidgets.QGridLayout(window)
    grid.setContentsMargins(4, 4, 4, 4)
    grid.setSpacing(4)
    live = ("delta", "spectrum", "attention", "gates", "loss", "budget", "samples")
    views = {vid: VIEW_CLASSES[vid]() for vid in live}
    detail = VIEW_CLASSES["attention"]()  # a second attention view, enlarged on one head
    target = VIEW_CLASSES["delta"]()  # the matrix scenario's planted target, pooled from 4096 x 4096
    order = [
        (views["delta"], ""),
        (views["spectrum"], ""),
        (views["attention"], ""),
        (views["gates"], ""),
        (views["loss"], ""),
        (detail, " · enlarged"),
        (views["budget"], ""),
        (views["samples"], ""),
        (target, " · matrix scenario, target ΔW*"),
    ]
    for i, (view, suffix) in enumerate(order):
        grid.addWidget(Panel(view, view.title + suffix), i // 3, i % 3)
    for c in range(3):
        grid.setColumnStretch(c, 1)
    for r in range(3):
        grid.setRowStretch(r, 1)
    all_views = list(views.values()) + [detail, target]
    for view in all_views:
        view.set_theme(dark=not args.light)
        if args.talk:
            view.set_talk_mode(1.5, True)
    window.resize(width, height)
    window.show()
    app.processEvents()

    snaps = run(args.scenario, args.step)
    for snap in snaps:
        for view in all_views:
            if view is not target:
                view.update_snapshot(snap)
        app.processEvents()
    target.set_mode("target")
    for snap in run("matrix", args.step):
        target.update_snapshot(snap)
    app.processEvents()
    if args.scenario in ("lm", "full") and len(snaps[-1].matrices) > 1:
        views["delta"].set_matrix(list(snaps[-1].matrices)[-1])
    if args.scenario == "matrix":
        views["delta"].set_mode("target")
    if detail.grid_shape()[0]:
        detail.enlarge(detail.grid_shape()[0] - 1, 1)
    app.processEvents()
    image = window.grab()
    if not image.save(args.out):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({image.width()}x{image.height()})")
    if args.hold:
        QtCore.QTimer.singleShot(600_000, app.quit)
        return app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
