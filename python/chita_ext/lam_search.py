"""Choosing lam on held-out loss: a search along the lam path, not a solve per grid value.

lam is relative: ``lam = rel * ||A||_F^2 / p`` (the mean diagonal of the Fisher estimate).
The held-out loss of the pruned network is, on the networks we measured, a unimodal
function of log(rel), so a local search on a log-spaced grid finds the grid's best value
with a few evaluations: start at the previous stage's choice, step towards lower loss,
stop when the loss rises again. The grid has no fixed edges: a choice at the edge of what
was tried is never final, the search steps past it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# One grid point per half decade: rel = 10 ** (i / 2).
STEPS_PER_DECADE = 2
START_REL = 0.1
REL_BOUNDS = (1e-6, 1e4)  # never search beyond these


def grid_value(i: int) -> float:
    """The i-th point of the relative lam grid, ``10 ** (i / STEPS_PER_DECADE)``."""
    return 10.0 ** (i / STEPS_PER_DECADE)


def grid_index(rel: float) -> int:
    """The grid point nearest to ``rel`` (in log scale)."""
    return int(round(math.log10(rel) * STEPS_PER_DECADE))


@dataclass
class LamChoice:
    """Outcome of a lam search: the chosen relative lam, its loss and candidate, and every
    (rel, loss) evaluated, in the order they were tried."""

    rel: float
    loss: float
    candidate: object
    tried: list = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return len(self.tried)


def search_lam(evaluate, start: float = START_REL) -> LamChoice:
    """Local search over the log grid for the relative lam with the lowest held-out loss.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(rel) -> (loss, candidate)``; called once per grid point tried.
    start : float
        Where to start (snapped to the grid), e.g. the previous stage's choice.

    Returns
    -------
    LamChoice
        The grid point whose loss is lower than both of its neighbours' (a local minimum;
        on a unimodal loss curve, the grid's minimum), or the bound reached.
    """
    lo, hi = (grid_index(b) for b in REL_BOUNDS)
    cache = {}

    def at(i):
        if i not in cache:
            loss, cand = evaluate(grid_value(i))
            cache[i] = (loss if math.isfinite(loss) else math.inf, cand)
        return cache[i][0]

    def forget_behind(i):
        # the walk never returns past its last point: drop those candidates (on a large
        # model each holds a p-vector), keep their losses for the report
        for j in cache:
            if abs(j - i) > 1:
                cache[j] = (cache[j][0], None)

    i = min(max(grid_index(start), lo), hi)
    left = at(i - 1) if i > lo else math.inf
    right = at(i + 1) if i < hi else math.inf
    if min(left, right) < at(i):  # walk downhill until the loss rises again
        step = -1 if left < right else 1
        i += step
        while lo <= i + step <= hi and at(i + step) < at(i):
            i += step
            forget_behind(i)
    tried = [(grid_value(j), cache[j][0]) for j in cache]
    return LamChoice(rel=grid_value(i), loss=cache[i][0], candidate=cache[i][1], tried=tried)


def search_grid(evaluate, grid) -> LamChoice:
    """Every value of a user-given relative grid, lowest held-out loss kept."""
    best, tried = None, []
    for rel in grid:
        loss, cand = evaluate(float(rel))
        tried.append((float(rel), loss))
        if best is None or loss < best[0]:
            best = (loss, float(rel), cand)
    return LamChoice(rel=best[1], loss=best[0], candidate=best[2], tried=tried)
