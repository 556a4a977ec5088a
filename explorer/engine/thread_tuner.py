"""The CPU thread count, settled by timing the steps themselves and settled again as the machine changes.

Why measure: with OpenMP's threads sleeping instead of spinning (explorer/__init__.py) no count
collapses any more, but which one is fastest depends on things a look at the machine cannot tell
apart. Measured on 2 cores (bench/bench_threads.py): at load ~2 one thread beat two (8.4 against
7.2 steps/s), at load ~9 two beat one (3.8 against 2.3; with a core burned 3.9 against 1.2), because
among many runnable threads the scheduler gives each its share, so two threads get more of the CPU.
So the candidates (1 .. what the cores and the model's matrix products allow; core/device.py) are
tried in turn on real steps, interleaved (1, 2, 1, 2) so a change in load hurts each alike, the
fastest kept, and the trial repeated every RETUNE_S of stepping. One candidate: it is simply set.
Plain Python: it is given a `set_threads` to call (torch.set_num_threads, from the training thread).
"""

from __future__ import annotations

TRIAL_S = 0.2  # step time per trial (after a warm-up step the first time a count runs: OpenMP starts its threads)
ROUNDS = 2  # each candidate tried this many times per tuning, interleaved
RETUNE_S = 30.0  # step time between two tunings
SWITCH_GAIN = 1.05  # another count must be this much faster than the current one to replace it


class ThreadTuner:
    """Feed it each step's duration (`step_done`); it calls `set_threads(n)` when the count changes.
    `current` is the count in force; `rates` the steps/s each candidate gave at the last tuning."""

    def __init__(self, candidates, start: int, set_threads):
        self.candidates = sorted({int(n) for n in candidates} | {int(start)})
        self._set = set_threads
        self.current = int(start)
        self._in_force = None
        self._used: set[int] = set()  # counts that have run a step (their OpenMP threads exist)
        self.rates: dict[int, float] = {}
        self.tunings = 0
        self._plan: list[int] = []
        self._since_tuning = 0.0
        self._apply(self.current)
        if len(self.candidates) > 1:
            self._begin()

    @property
    def tuning(self) -> bool:
        return bool(self._plan)

    def _apply(self, n: int) -> None:
        if n != self._in_force:
            self._set(n)
            self._in_force = n

    def _begin(self) -> None:
        # the current count first: no switch, no warm-up lost on the first trial
        order = [self.current] + [n for n in self.candidates if n != self.current]
        self._plan = order * ROUNDS
        self._totals = {n: [0, 0.0] for n in order}
        self._start_trial()

    def _start_trial(self) -> None:
        n = self._plan[0]
        self._warm = n not in self._used
        self._apply(n)
        self._trial_steps, self._trial_s = 0, 0.0

    def step_done(self, seconds: float) -> None:
        self._used.add(self._in_force)
        if not self._plan:
            self._since_tuning += seconds
            if self._since_tuning >= RETUNE_S and len(self.candidates) > 1:
                self._begin()
            return
        if self._warm:
            self._warm = False
            return
        self._trial_steps += 1
        self._trial_s += max(0.0, seconds)
        if self._trial_s < TRIAL_S:
            return
        total = self._totals[self._plan.pop(0)]
        total[0] += self._trial_steps
        total[1] += self._trial_s
        if self._plan:
            self._start_trial()
        else:
            self._decide()

    def _decide(self) -> None:
        self.rates = {n: steps / s for n, (steps, s) in self._totals.items() if s > 0}
        best = max(self.rates, key=self.rates.get)
        if self.rates[best] < SWITCH_GAIN * self.rates.get(self.current, 0.0):
            best = self.current  # not clearly faster: keep what runs (no flapping on noise)
        self.current = best
        self._apply(best)
        self._since_tuning = 0.0
        self.tunings += 1
