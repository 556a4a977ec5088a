"""The examples run as the README shows them (a few steps here) and leave a finished recording."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.schema.recording import RecordingReader

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["trainer_callback.py", "accelerate_loop.py"])
def test_an_example_records_a_finished_run(tmp_path, script):
    out = tmp_path / "rec"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), str(out), "--steps", "4"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"python -m explorer --replay {out}" in proc.stdout
    reader = RecordingReader(out)
    assert reader.finished and reader.steps[0] == 0 and reader.steps[-1] == 4
    assert (out / "adapter" / "adapter_config.json").is_file()
