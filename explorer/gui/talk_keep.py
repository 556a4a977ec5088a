"""What talk mode keeps so that it can give the window back exactly: the run (a temporary state file
written through the engine's save_state on entering, loaded on leaving) and the curves' own pens
(widened to STAGE_LINE_PX on stage)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QWidget

from explorer.gui.services import WindowServices
from explorer.schema.settings import TrainSettings

STAGE_LINE_PX = 3.0  # the thinnest curve on stage: a 1 px line vanishes on a projector


def save_run(window: WindowServices) -> tuple[str | None, str | None]:
    """The run as it is now, in a temporary state file (the deck's scenes replace it): (folder,
    file), or (None, None) when there is no engine to ask or it could not save (said in the status
    bar: leaving will then restart the run from step 0). Pauses the run first."""
    saver = getattr(window.worker, "save_state", None)
    if saver is None:
        return None, None
    window.pause()
    folder = tempfile.mkdtemp(prefix="peft-explorer-talk-")
    path = str(Path(folder) / "run.safetensors")
    try:
        saver(path)
    except Exception as exc:  # noqa: BLE001 - any failure: talk mode goes on without the saved run
        shutil.rmtree(folder, ignore_errors=True)
        window.status.error(f"Talk mode could not save the run ({exc}): leaving will restart it from step 0.")
        return None, None
    return folder, path


def restore_run(window: WindowServices, folder: str | None, path: str | None) -> bool:
    """Load the run `save_run` kept (then delete its folder); True when it is back exactly as it was.
    The settings in force come back to the panel (the state file holds them)."""
    if path is None:
        return False
    loader = getattr(window.worker, "load_state", None)
    try:
        if loader is None:
            return False
        in_force = loader(path)
    except Exception as exc:  # noqa: BLE001 - reported; the caller restarts the run instead
        window.status.error(f"Talk mode could not restore the run ({exc}): restarted from step 0.")
        return False
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if isinstance(in_force, TrainSettings):
        window.show_settings(in_force)
    return True


def thicken(view: QWidget, kept: dict[int, tuple]) -> None:
    """Every curve of `view` at least STAGE_LINE_PX wide; `kept` (id -> (item, its own pen)) collects
    what `unthicken` puts back."""
    import pyqtgraph as pg

    for gv in view.findChildren(pg.GraphicsView):
        for item in gv.scene().items() if gv.scene() is not None else ():
            if isinstance(item, pg.PlotCurveItem) and isinstance(item.parentItem(), pg.PlotDataItem):
                continue  # its PlotDataItem's pen rules it (and is reapplied on every setData)
            if not isinstance(item, (pg.PlotDataItem, pg.PlotCurveItem)):
                continue
            pen = item.opts.get("pen")
            if not isinstance(pen, QPen) or pen.style() == Qt.NoPen or pen.widthF() >= STAGE_LINE_PX:
                continue
            kept.setdefault(id(item), (item, QPen(pen)))
            wide = QPen(pen)
            wide.setWidthF(STAGE_LINE_PX)
            item.setPen(wide)


def unthicken(kept: dict[int, tuple]) -> None:
    """The pens `thicken` widened, back as they were."""
    for item, pen in kept.values():
        try:
            item.setPen(pen)
        except RuntimeError:  # the item went with its plot
            pass
    kept.clear()
