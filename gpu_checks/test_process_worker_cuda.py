"""Training in a child process on CUDA: `python -m pytest gpu_checks/test_process_worker_cuda.py` (needs
CUDA; not in the default suite). The child is spawned (CUDA cannot live through a fork); the parent
imports neither torch's CUDA nor its memory: it only receives snapshots."""

import multiprocessing
import os
import signal

from engine_helpers import no_engine_threads

from explorer.engine.process_worker import ProcessTrainingWorker
from explorer.schema.settings import TrainSettings


def test_process_worker_on_cuda_trains_survives_oom_and_a_kill():
    w = ProcessTrainingWorker(
        TrainSettings(scenario="matrix", size_in=4096, size_out=4096, device="cuda", batch_size=256)
    )
    try:
        w.start()
        assert w.wait_for(timeout=180).state == "paused"
        w.play()
        s = w.wait_for(lambda s: s.step >= 200, 120)
        assert s.device.startswith("cuda:") and s.steps_per_second > 0 and s.memory_bytes > 4096 * 4096 * 4
        assert s.matrices["W"].delta.shape == (128, 128)  # reduced on the device, small over the pipe
        w.inject_fault("oom")
        s = w.wait_for(lambda s: s.state == "fault", 60)
        assert "out of memory" in s.fault.message and s.fault.kind == "memory"
        w.reset()
        w.play()
        w.wait_for(lambda s: s.step >= 10 and s.state == "running", 60)
        os.kill(w.pid, signal.SIGKILL)  # a dead CUDA process: reported, replaced
        s = w.wait_for(lambda s: s.state == "fault", 60)
        assert "exit code -9" in s.fault.message and s.fault.kind == "died"
        w.reset()
        s = w.wait_for(lambda s: s.state == "paused", 180)
        assert s.step == 0 and s.device.startswith("cuda:")
    finally:
        w.close()
    assert not multiprocessing.active_children() and no_engine_threads()
    import torch

    assert not torch.cuda.is_initialized()  # CUDA lived in the child only
