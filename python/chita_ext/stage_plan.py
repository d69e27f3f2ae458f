"""How many CHITA++ stages to run, and re-planning them against a time budget."""
from __future__ import annotations

import math

from .schedules import sparsity_schedule

MAX_AUTO_STAGES = 16  # the reference runs 16 stages at 90-98% sparsity
RESERVE = 0.05  # share of a time budget kept for the work after the last stage


def auto_stages(sparsity: float) -> int:
    """Stages for ``stages="auto"``: 16 per decade of density removed, at most 16.

    ``round(16 * log10(1 / (1 - s)))``: 5 stages at 50%, 8 at 70%, 11 at 80%, 16 from
    90% on; one stage at low sparsity. More stages keep each step of the schedule small,
    where the local quadratic model of the loss holds.
    """
    if sparsity <= 0.0:
        return 1
    return int(min(MAX_AUTO_STAGES, max(1, round(16 * math.log10(1.0 / (1.0 - sparsity))))))


class StagePlanner:
    """Yields each stage's target sparsity, shortening the plan to fit ``budget`` seconds.

    After every stage the planner is told how long it took; if the stages left would not
    fit in the time left at that pace, the rest of the schedule is re-planned from the
    current sparsity with as many stages as fit (at least one: the final sparsity is
    always reached).

    Parameters
    ----------
    final : float
        Sparsity of the last stage.
    stages : int
        Planned number of stages.
    schedule : str
        As for :func:`chita_ext.sparsity_schedule`.
    budget : float or None
        Seconds for all stages; None plans no cuts.
    """

    def __init__(self, final: float, stages: int, schedule: str, budget=None):
        self.final, self.schedule, self.budget = float(final), schedule, budget
        self.remaining = sparsity_schedule(self.final, int(stages), schedule)
        self.current = 0.0
        self.replanned = False
        self._longest = 0.0

    def __iter__(self):
        return self

    def __next__(self) -> float:
        if not self.remaining:
            raise StopIteration
        self.current = self.remaining.pop(0)
        return self.current

    def stage_done(self, elapsed: float, stage_seconds: float) -> None:
        """Re-plan the stages left after one that took ``stage_seconds`` (``elapsed`` in all)."""
        # The longest stage so far is the estimate: stage times vary with k and with what
        # else the machine runs, and an over-run is worse than a stage fewer. A share of
        # the budget is kept for what follows the stages (the final comparison).
        self._longest = max(self._longest, stage_seconds)
        if self.budget is None or not self.remaining or stage_seconds <= 0:
            return
        fit = int((self.budget * (1 - RESERVE) - elapsed) // self._longest)
        if fit < len(self.remaining):
            self.remaining = sparsity_schedule(self.final, max(1, fit), self.schedule,
                                               start=min(self.current, self.final))
            self.replanned = True
