"""peft-explorer: watch parameter-efficient fine-tuning happen, live."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# torch's CPU ops (and MKL inside them) run on OpenMP (libgomp). By default its threads spin at every
# barrier before they sleep; on a machine whose cores are busy with other work a spinning thread takes
# the core its partner needs, and a small model's thousands of short parallel regions collapse: the lm
# run went from 13 to 1.6 steps/s with 2 threads at load ~1.7 on 2 cores, and to 0.8 with a process
# burning a core, while PASSIVE (sleep at once) kept 12 and 6.8 (issue 17, bench/bench_threads.py).
# libgomp reads the variable once, when torch loads it, so this must run before `import torch`; every
# entry point imports this package first, and child processes inherit the variable. A value the user
# set is kept.
_TORCH_LOADED_FIRST = "torch" in _sys.modules
_USER_WAIT_POLICY = _os.environ.get("OMP_WAIT_POLICY")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Whether this process's OpenMP threads sleep at once (explorer.core.cpu_threads counts free cores
# strictly when they may spin): what the variable held when torch read it.
_POLICY_SEEN_BY_TORCH = _USER_WAIT_POLICY if _TORCH_LOADED_FIRST else _os.environ["OMP_WAIT_POLICY"]
OPENMP_PASSIVE = (_POLICY_SEEN_BY_TORCH or "").strip().upper() == "PASSIVE"
