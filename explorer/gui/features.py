"""The window's features, each a part the window owns: made on first use (their modules load then,
so the first frame never waits on them), told when the window closes, and given the window only as
a `WindowServices` (explorer/gui/services.py).

    window.features.talk               explorer.gui.talk.TalkFeature          F5, --talk
    window.features.replay             explorer.gui.replay.ReplayFeature      File > Open recording…
    window.features.run_recording      explorer.gui.run_recording.RunRecordingFeature
    window.features.screen_recording   explorer.gui.screen_recording.ScreenRecordingFeature
    window.features.inspector          explorer.gui.inspector.InspectorFeature
    window.features.adapter_export     explorer.gui.adapter_export.AdapterExportFeature
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from explorer.gui.adapter_export import AdapterExportFeature
    from explorer.gui.inspector import InspectorFeature
    from explorer.gui.replay import ReplayFeature
    from explorer.gui.run_recording import RunRecordingFeature
    from explorer.gui.screen_recording import ScreenRecordingFeature
    from explorer.gui.services import WindowServices
    from explorer.gui.talk import TalkFeature

# The order in which they hear that the window closes: talk mode gives the window back and a replay
# the live settings before a run recording saves the worker's state.
CLOSING_ORDER = ("talk", "replay", "run_recording", "screen_recording", "inspector", "adapter_export")


class Feature(Protocol):
    def window_closing(self) -> None:
        """The window is about to save its settings and stop its worker: put back what is borrowed,
        stop what writes."""
        ...


class Features:
    def __init__(self, window: WindowServices):
        self._window = window
        self._made: dict[str, Feature] = {}

    def _get(self, name: str, cls):
        if name not in self._made:
            self._made[name] = cls(self._window)
        return self._made[name]

    def made(self, name: str) -> Feature | None:
        """The feature if it was made, else None (asking never loads its module)."""
        return self._made.get(name)

    def window_closing(self) -> None:
        for name in CLOSING_ORDER:
            if name in self._made:
                self._made[name].window_closing()

    @property
    def talk(self) -> TalkFeature:
        from explorer.gui.talk import TalkFeature

        return self._get("talk", TalkFeature)

    @property
    def replay(self) -> ReplayFeature:
        from explorer.gui.replay import ReplayFeature

        return self._get("replay", ReplayFeature)

    @property
    def run_recording(self) -> RunRecordingFeature:
        from explorer.gui.run_recording import RunRecordingFeature

        return self._get("run_recording", RunRecordingFeature)

    @property
    def screen_recording(self) -> ScreenRecordingFeature:
        from explorer.gui.screen_recording import ScreenRecordingFeature

        return self._get("screen_recording", ScreenRecordingFeature)

    @property
    def inspector(self) -> InspectorFeature:
        from explorer.gui.inspector import InspectorFeature

        return self._get("inspector", InspectorFeature)

    @property
    def adapter_export(self) -> AdapterExportFeature:
        from explorer.gui.adapter_export import AdapterExportFeature

        return self._get("adapter_export", AdapterExportFeature)
