"""A recording's metrics.jsonl indexed by byte offset, read incrementally with bounded memory.

    index = RecordingIndex(directory)    # config.json only (OSError / ValueError when not a recording)
    index.scan(final=True)               # reads what was appended since the last scan; the new records
    index.steps[i], index.record(i)      # the recorded steps (sorted) and the checked metrics line of one
    index.snapshot(i)                    # its Snapshot (explorer.schema.recording.RecordingReader.load_record)
    index.loss_history()                 # the train loss over the whole run, thinned to <= LOSS_POINTS
    index.samples_near(step)             # the samples recorded nearest to `step`

RecordingReader keeps every metrics line as a dict: a 400 MB metrics.jsonl (899k lines) took 2.5 GB.
The index keeps per record only its step, the byte offset of its line and its time stamp (24 bytes),
and reads a line again when it is shown. It is built for being called repeatedly on a file that
grows (a run followed live): only whole lines are read (a line without its newline yet waits for the
next scan, unless `final`), so a writer mid-line is never mistaken for a torn line. Plain data: no Qt;
the GUI runs `scan` on a helper thread.

Every line goes through RecordingReader.parse_line: a bad one is skipped and counted (`skipped_lines`,
`problems`) and never reaches the views; a record whose snapshot file is missing likewise.
"""

from __future__ import annotations

import bisect
import math
import os
from array import array
from collections.abc import Callable
from pathlib import Path

from explorer.schema import recording_checks as checks
from explorer.schema.jsonio import JsonFileError, parse_json
from explorer.schema.recording import MAX_METRICS_LINE, RecordingReader
from explorer.schema.snapshot import Snapshot

LOSS_POINTS = 4096  # the whole-run loss kept for the views: thinned by halves beyond this
CHECK_EVERY = 256  # lines between two looks at `stop`


class RecordingIndex:
    """The records of one recording, by step, without holding their lines (see the module docstring)."""

    def __init__(self, directory: str | Path, loss_points: int = LOSS_POINTS):
        self.reader = RecordingReader(directory, scan=False)  # config.json, checked
        self.dir = self.reader.dir
        self.path = self.dir / "metrics.jsonl"
        self.settings = self.reader.settings
        self.steps = array("q")  # sorted; a later record of the same step (a fault) replaces the earlier
        self._offsets = array("q")
        self._times = array("d")  # nan where a record has no time stamp
        self._sample_steps = array("q")
        self._sample_offsets = array("q")
        self._loss_cap = max(16, int(loss_points))
        self._loss_stride = 1
        self._loss_seen = 0
        self._loss_steps: list[int] = []
        self._loss_values: list[float] = []
        self._last_loss: tuple[int, float] | None = None
        self.offset = 0  # bytes of metrics.jsonl read so far (whole lines)
        self._lines = 0

    # ---- what the reader knows --------------------------------------------------------------------
    @property
    def skipped_lines(self) -> int:
        return self.reader.skipped_lines

    @property
    def problems(self) -> list[str]:
        return self.reader.problems

    @property
    def events(self) -> list[dict]:
        return self.reader.events

    @property
    def finished(self) -> bool:
        return "final_step" in self.reader.config or any(e["event"] == "finished" for e in self.events)

    @property
    def failed(self) -> dict | None:
        return next((e for e in self.events if e["event"] == "failed"), None)

    def __len__(self) -> int:
        return len(self.steps)

    # ---- reading ----------------------------------------------------------------------------------
    def scan(self, final: bool = True, stop: Callable[[], bool] | None = None) -> int:
        """Index the lines appended since the last scan; the number of new records. `final`: the
        writer is done, so a last line without its newline is read as it is (torn: skipped). `stop`:
        asked now and then; True ends the scan early (the next one goes on from there)."""
        if not self.path.is_file():  # never open a FIFO or a device: it could block forever
            return 0
        before = len(self.steps)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < self.offset:
                raise ValueError(f"{self.path}: got shorter while being read (the recording was replaced)")
            fh.seek(self.offset)
            pos = self.offset
            while True:
                raw = fh.readline(MAX_METRICS_LINE + 1)
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_METRICS_LINE:
                        pos = self._skip_overlong(fh, pos + len(raw))
                        continue
                    if not final:
                        break  # the writer is mid-line: the rest comes with the next scan
                self._lines += 1
                line = self.reader.parse_line(raw, f"{self.path} line {self._lines}")
                if line is not None:
                    if (self.dir / line["snapshot"]).is_file():
                        self._add(line, pos)
                    else:
                        self.reader.skip(f"step {line['step']}: {line['snapshot']} is missing")
                pos += len(raw)
                self.offset = pos
                if stop is not None and self._lines % CHECK_EVERY == 0 and stop():
                    break
        return len(self.steps) - before

    def _skip_overlong(self, fh, pos: int) -> int:
        while True:
            raw = fh.readline(MAX_METRICS_LINE)
            pos += len(raw)
            if not raw or raw.endswith(b"\n"):
                break
        self._lines += 1
        self.reader.skip(f"{self.path.name} line {self._lines}: longer than {MAX_METRICS_LINE} bytes")
        self.offset = pos
        return pos

    def _add(self, line: dict, offset: int) -> None:
        step = line["step"]
        t = line.get("time")
        t = float(t) if isinstance(t, (int, float)) else math.nan
        n = len(self.steps)
        if n == 0 or step > self.steps[-1]:
            self.steps.append(step)
            self._offsets.append(offset)
            self._times.append(t)
        else:
            i = bisect.bisect_left(self.steps, step)
            if i < n and self.steps[i] == step:
                self._offsets[i] = offset
                self._times[i] = t
            else:
                self.steps.insert(i, step)
                self._offsets.insert(i, offset)
                self._times.insert(i, t)
        if isinstance(line.get("samples"), dict):
            self._sample_steps.append(step)
            self._sample_offsets.append(offset)
        loss = line.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            self._add_loss(step, float(loss))

    def _add_loss(self, step: int, loss: float) -> None:
        self._last_loss = (step, loss)
        if self._loss_seen % self._loss_stride == 0:
            self._loss_steps.append(step)
            self._loss_values.append(loss)
            if len(self._loss_steps) > self._loss_cap:  # every other point goes; so will future ones
                self._loss_steps = self._loss_steps[::2]
                self._loss_values = self._loss_values[::2]
                self._loss_stride *= 2
                self._loss_seen = 0
        self._loss_seen += 1

    def loss_history(self) -> tuple[list[int], list[float]]:
        """The train loss over the whole run (at most about LOSS_POINTS points, the newest included)."""
        steps, values = list(self._loss_steps), list(self._loss_values)
        if self._last_loss is not None and (not steps or steps[-1] != self._last_loss[0]):
            steps.append(self._last_loss[0])
            values.append(self._last_loss[1])
        return steps, values

    def time_span(self) -> tuple[float, float] | None:
        """(first, last) time stamps of the records in step order, when both are recorded."""
        if len(self._times) < 2 or math.isnan(self._times[0]) or math.isnan(self._times[-1]):
            return None
        return self._times[0], self._times[-1]

    def _line_at(self, offset: int) -> dict:
        where = f"{self.path} at byte {offset}"
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            raw = fh.readline(MAX_METRICS_LINE + 1)
        try:
            parsed = parse_json(raw, where)
            if isinstance(parsed, dict) and "event" in parsed:
                raise JsonFileError(f"{where}: an event line where a record was indexed")
            return checks.check_metrics_line(parsed, where)
        except JsonFileError as exc:  # the file changed under us: say so, never draw it
            raise ValueError(f"{exc} (the file changed since it was indexed)") from None

    def index_of(self, step: int) -> int:
        """The index of the last record at or before training step `step` (0 before the first)."""
        return max(0, bisect.bisect_right(self.steps, int(step)) - 1)

    def record(self, i: int) -> dict:
        """The checked metrics line of record `i`."""
        return self._line_at(self._offsets[i])

    def snapshot(self, i: int) -> Snapshot:
        """The Snapshot of record `i` (ValueError naming the file when it is damaged or hostile)."""
        return self.reader.load_record(self.record(i))

    def samples_near(self, step: int) -> dict | None:
        """The samples recorded nearest to `step` (the earlier on a tie; recordings keep samples only
        when fresh, so most records have none of their own)."""
        i = bisect.bisect_right(self._sample_steps, int(step))
        near = [j for j in (i - 1, i) if 0 <= j < len(self._sample_steps)]
        if not near:
            return None
        j = min(near, key=lambda k: (abs(self._sample_steps[k] - step), self._sample_steps[k]))
        samples = self._line_at(self._sample_offsets[j]).get("samples")
        return dict(samples) if isinstance(samples, dict) else None
