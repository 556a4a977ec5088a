"""A real screenshot of the window in mid-training, for the README.

    python scripts/screenshot.py                       # lm scenario, LoRA + prefix, ~40 s, docs/screenshot.png
    python scripts/screenshot.py --seconds 10 --scenario matrix --method lora --out /tmp/matrix.png
    python scripts/screenshot.py --talk --scene 4 --seconds 25 --size 1920x1080 --out docs/screenshot-talk.png

Runs the app under Xvfb (display :99, started with openbox if it is not running) on the xcb platform,
with its own settings file (your remembered layout and settings are not touched), presses Play,
waits, and saves `window.grab()` (and with --root, the whole X screen via ImageMagick's `import`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_xvfb(display: str, size: str) -> list[subprocess.Popen]:
    """Start Xvfb (and openbox) on `display` unless an X server already answers there."""
    started = []
    num = display.lstrip(":").split(".")[0]
    if Path(f"/tmp/.X11-unix/X{num}").exists():
        return started
    if shutil.which("Xvfb") is None:
        raise SystemExit("screenshot: Xvfb is not installed (apt-get install xvfb)")
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(xvfb)
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{num}").exists():
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"screenshot: Xvfb did not start on {display}")
    if shutil.which("openbox"):
        env = dict(os.environ, DISPLAY=display)
        started.append(subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
    return started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--seconds", type=float, default=40.0, help="training time before the shot (default 40)")
    ap.add_argument("--scenario", default="lm", choices=("lm", "matrix"))
    ap.add_argument("--method", default="lora+prefix", choices=("lora", "prefix", "lora+prefix", "full"))
    ap.add_argument("--theme", default="dark", choices=("dark", "light"))
    ap.add_argument("--size", default="1600x1000", help="window (and screen) size, WxH")
    ap.add_argument("--display", default=":99")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--root", action="store_true", help="also save the whole X screen beside --out")
    ap.add_argument(
        "--talk",
        nargs="?",
        const="default",
        default=None,
        metavar="DECK",
        help="talk mode with this deck (the default deck if none given)",
    )
    ap.add_argument("--scene", type=int, default=1, help="talk mode: the scene to show (1 = the first)")
    args = ap.parse_args(argv)

    helpers = ensure_xvfb(args.display, args.size)
    os.environ["DISPLAY"] = args.display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    sys.path.insert(0, str(ROOT))
    try:
        return shoot(args)
    finally:
        for p in reversed(helpers):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def shoot(args) -> int:
    from PySide6.QtCore import QTimer

    from explorer.gui.app import make_app
    from explorer.gui.main_window import MainWindow
    from explorer.gui.persistence import Persistence
    from explorer.schema.settings import TrainSettings

    w, h = (int(x) for x in args.size.split("x"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    app = make_app(theme=args.theme)
    store = Persistence(path=os.path.join(tempfile.mkdtemp(prefix="peft-shot-"), "settings.ini"))
    settings = TrainSettings(scenario=args.scenario, method=args.method, device=args.device)
    window = MainWindow(settings, store=store, theme=args.theme, restore=False)
    window.resize(w, h)
    window.move(0, 0)
    window.show()
    result = {"rc": 1}

    def begin():
        window.size_docks()
        if args.talk is None:
            window.start_worker(play=True)
            return
        window.start_worker()
        talk = window.enter_talk_mode(None if args.talk == "default" else args.talk)
        if talk is not None and args.scene != 1:
            talk.player.enter(args.scene - 1)

    def snap():
        snapshot = window.last_snapshot
        if window.fault_dialog is not None:
            print(f"screenshot: a fault showed: {window.fault_dialog.text()}", file=sys.stderr)
        image = window.grab()
        if not image.save(str(out)):
            print(f"screenshot: could not write {out}", file=sys.stderr)
        else:
            print(
                f"screenshot: {out} ({image.width()}x{image.height()}), step "
                f"{snapshot.step if snapshot else '-'}, {window.status.rate.text()}, {window.status.device.text()}"
            )
            result["rc"] = 0
        if args.root and shutil.which("import"):
            root = out.with_name(out.stem + "-screen" + out.suffix)
            subprocess.run(["import", "-window", "root", str(root)], check=False)
            print(f"screenshot: {root}")
        window.close()
        app.quit()

    QTimer.singleShot(300, begin)
    QTimer.singleShot(int(args.seconds * 1000) + 300, snap)
    app.exec()
    return result["rc"]


if __name__ == "__main__":
    raise SystemExit(main())
