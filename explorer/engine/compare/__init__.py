"""Compare settings live: several runs on the same data and seed, stepped round-robin in one thread,
and the LoRA paper's analyses between them (the seed paper's RQ4 on the small model).

    specs = [parse_run_spec(t) for t in ("lora:r=4", "lora:r=16", "prefix:K=10", "full")]
    runner = CompareRunner(TrainSettings(scenario="lm"), specs)
    for _ in range(300):
        runner.step_round()              # one train_step of every run, in turn
    runner.evaluate()                    # held-out loss of every run at the same step
    snap = runner.snapshot(analysis=True)   # plain data (CompareSnapshot) for the compare view
    rows = snap.table_rows()             # the Table IX-style rows (TABLE_COLUMNS)

    worker = CompareWorker(TrainSettings(scenario="lm"), specs)   # the same in a background thread
    worker.start(); worker.play(); ...; snap = worker.latest(); worker.close()

The parts: `analyses.py` (the LoRA paper's analyses on trainers, torch), `runner.py` (CompareRunner:
the runs, stepped round-robin in the calling thread), `worker.py` (CompareWorker: a runner in the
worker loop's thread; `explorer.engine.process_worker.ProcessCompareWorker` runs one in a child
process). Run specs, the plain data the view draws (`CompareSnapshot`, `RunSummary`,
`CompareAnalysis`) and reading a comparison back from disk live in `explorer/schema/compare.py`.
"""

from explorer.engine.compare.analyses import (
    amplification_table,
    full_update,
    intrinsic_rank,
    lora_module_names,
    random_control,
    seed_similarity,
    subspace_similarity_between,
)
from explorer.engine.compare.runner import CompareRunner
from explorer.engine.compare.worker import CompareWorker

__all__ = [
    "CompareRunner",
    "CompareWorker",
    "amplification_table",
    "full_update",
    "intrinsic_rank",
    "lora_module_names",
    "random_control",
    "seed_similarity",
    "subspace_similarity_between",
]
