"""Use every view and feature of the window, offscreen, in THIS process, as a person would: train,
show each view, run a comparison, open an adapter in the inspector, export the run as a PEFT adapter,
replay a recording, step through talk mode. Then print which torch modules this process imported
(none: the GUI process never imports torch; the engine's child processes do the work).

    python tests/gui_tour.py WORK_DIR ADAPTER_DIR RECORDING_DIR DECK

tests/test_layering.py runs it in a fresh interpreter. A script, not a test module: spawned children
re-import the main module, so the tour runs only under the __main__ guard.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

TIMEOUT_S = 240.0


def main(argv: list[str]) -> int:
    work, adapter, recording, deck = (Path(a) for a in argv[:4])
    from PySide6.QtWidgets import QApplication

    app = QApplication([])

    def wait(what: str, cond, timeout: float = TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            app.processEvents()
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"gui tour: no {what} within {timeout:g} s")
            time.sleep(0.01)

    from explorer.gui.main_window import MainWindow
    from explorer.gui.persistence import Persistence
    from explorer.schema.settings import TrainSettings

    # the shipped language model, LoRA on q and v: what exports as a PEFT adapter
    settings = TrainSettings(scenario="lm", method="lora", rank=2, seq_len=16, batch_size=2, device="cpu")
    win = MainWindow(settings, store=Persistence(path=str(work / "settings.ini")), restore=False)
    win.resize(1400, 900)
    win.show()
    win.start_worker()
    wait("first snapshot", lambda: win.last_snapshot is not None)
    print("worker:", type(win.worker).__name__, flush=True)

    # every view, drawn
    for view_id, dock in win.view_docks.items():
        dock.show()
        dock.raise_()
        wait(f"{view_id} shown", lambda v=view_id: v in win.visible_view_ids())
    win.step_once()
    wait("a step", lambda: win.last_snapshot.step >= 1)
    win.play()
    wait("training", lambda: win.last_snapshot.step >= 4 and win.last_snapshot.state == "running")
    win.pause()
    print("views:", ",".join(sorted(win.visible_view_ids())), "errors:", win.view_errors or "none", flush=True)

    # a comparison from the compare view
    compare = win.views["compare"]
    win.view_docks["compare"].show()
    win.view_docks["compare"].raise_()
    compare.set_specs_text("lora:r=1  lora:r=2")
    compare.compare_button.click()
    host = win.compare_host
    wait("comparison", lambda: host.last is not None and host.last.step >= 2 and len(host.last.runs) == 2)
    print("compare:", type(host.worker).__name__, [r.label for r in host.last.runs], flush=True)
    host.pause()

    # an adapter in the inspector: its grid, its table, a module drawn
    inspector = win.features.inspector.open(str(adapter))
    report = wait("inspection", lambda: inspector.report)
    assert inspector.select_module(report.modules[0].name), inspector.status.text()
    print("inspected:", len(report.modules), "modules", flush=True)
    inspector.close()

    # the run exported as a PEFT adapter
    win.play()
    wait("training again", lambda: win.last_snapshot.state == "running")
    job = win.features.adapter_export.export(str(work / "export"), True)
    wait("export", lambda: job.result is not None or job.error is not None)
    assert job.error is None, job.error
    print("exported:", (work / "export" / "adapter" / "adapter_config.json").is_file(), flush=True)
    win.pause()

    # a recording replayed, then back to live
    ctl = win.features.replay.open(recording)
    assert ctl is not None, win.status.currentMessage()
    wait("the recording read", lambda: ctl.entered and ctl.count == 7)  # read by a background job
    ctl.show_index(ctl.count - 1)
    ctl.play()
    wait("replay drawn", lambda: win.last_snapshot.state == "replay")
    win.features.replay.back_to_live()
    print("replayed:", ctl.count, "records", flush=True)

    # talk mode: every scene of a deck, then the window back
    talk = win.enter_talk_mode(str(deck))
    assert talk is not None, win.status.currentMessage()
    for _ in range(len(talk.player.deck.scenes)):
        wait("scene drawn", lambda: win.last_snapshot is not None)
        talk.player.next()
    talk.leave()
    print("talk: done", flush=True)

    win.close()
    app.processEvents()
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("torch modules:", len(loaded), ",".join(loaded[:5]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
