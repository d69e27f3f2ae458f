"""The final comparison of the pruned network with one-shot magnitude pruning (MP).

At 50-70% sparsity the two networks disagree on about 1% of the samples, so a few thousand
samples cannot tell them apart (2048 picked the wrong one in our measurements on the
paper's MLPNet); at 90% and above they differ on many. The comparison therefore runs on
fresh samples in chunks and stops as soon as the difference is clear: a sequential sign
test on the samples exactly one of the two classifies correctly, |a - b| > Z sqrt(a + b).
Without class-index targets (regression, soft labels) the lower mean loss wins.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .stage import loss_and_correct

GUARD_SAMPLES = 16384  # at most this many fresh samples...
GUARD_MIN_SAMPLES = 2048  # ...and at least this many (or the held-out count)
GUARD_CHUNK = 2048
Z = 3.0  # the sign test's threshold: a clear difference stops the comparison early


@dataclass
class Tally:
    """Running totals of the comparison (``ours_only``: samples only ours gets right)."""

    samples: int = 0
    ours_only: int = 0
    mp_only: int = 0
    ours_loss: float = 0.0  # sums over the samples
    mp_loss: float = 0.0
    classifier: bool = True

    def clear(self) -> bool:
        """Is the accuracy difference clear enough to stop?"""
        d = self.ours_only + self.mp_only
        return self.classifier and d > 0 and abs(self.ours_only - self.mp_only) > Z * math.sqrt(d)

    def mp_wins(self) -> bool:
        """Accuracy first (classifiers), then the mean loss."""
        if self.classifier and self.ours_only != self.mp_only:
            return self.mp_only > self.ours_only
        return self.mp_loss < self.ours_loss

    def report(self) -> dict:
        """JSON-ready totals."""
        return {"samples": self.samples, "ours_only_correct": self.ours_only,
                "mp_only_correct": self.mp_only,
                "ours_loss": self.ours_loss / max(1, self.samples),
                "mp_loss": self.mp_loss / max(1, self.samples)}


def guard_count(guard_seconds: float, n_stages: int, heldout: int, time_budget,
                elapsed: float, data_len=None) -> int:
    """The most samples the comparison may use: GUARD_SAMPLES, or fewer (not below
    GUARD_MIN_SAMPLES) when two forward passes over them would exceed what is left of the
    budget (at least its 5% reserve), and no more than the data holds. The cost per sample
    is estimated from the stages' magnitude checks, one forward pass over ``heldout``
    samples each (``guard_seconds`` in all)."""
    n = GUARD_SAMPLES
    if time_budget is not None and guard_seconds > 0.0:
        per_sample = guard_seconds / max(1, n_stages * heldout)
        allowed = max(0.05 * time_budget, time_budget - elapsed)
        n = min(n, int(allowed / (2.0 * per_sample)))
    if data_len is not None:
        n = min(n, data_len)
    return max(heldout, GUARD_MIN_SAMPLES, n)


def compare_with_magnitude(model, loss_fn, stream, n_max: int, use_ours, use_mp,
                           batch: int = 256) -> tuple[str, Tally, float]:
    """``("chita" | "mp", tally, seconds)``; the model is left holding the winner.

    ``use_ours()`` / ``use_mp()`` load the two networks' weights (and BatchNorm state)
    into ``model``; samples come from ``stream.take``.
    """
    t0 = time.perf_counter()
    tally = Tally()
    while tally.samples < n_max:
        x, y = stream.take(min(GUARD_CHUNK, n_max - tally.samples))
        use_ours()
        l_ours, c_ours = loss_and_correct(model, loss_fn, x, y, batch)
        use_mp()
        l_mp, c_mp = loss_and_correct(model, loss_fn, x, y, batch)
        tally.samples += len(x)
        tally.ours_loss += l_ours
        tally.mp_loss += l_mp
        if c_ours is None or c_mp is None:
            tally.classifier = False
        else:
            tally.ours_only += int((c_ours & ~c_mp).sum())
            tally.mp_only += int((c_mp & ~c_ours).sum())
        if tally.samples >= GUARD_MIN_SAMPLES and (tally.clear() or not tally.classifier):
            break
    winner = "mp" if tally.mp_wins() else "chita"
    if winner == "chita":
        use_ours()
    return winner, tally, time.perf_counter() - t0
