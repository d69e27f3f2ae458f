"""Sparsity schedules for CHITA++ (multi-stage) and gradual pruning."""
from __future__ import annotations

import numpy as np

SCHEDULES = ("poly", "linear", "exp", "const")


def sparsity_schedule(final: float, stages: int, kind: str = "poly", start: float = 0.0):
    """Target sparsity of each stage t = 1..T; the last one is always ``final``.

    Parameters
    ----------
    final : float
        Sparsity s_T reached at the last stage, in [0, 1).
    stages : int
        Number of stages T >= 1.
    kind : {"poly", "linear", "exp", "const"}
        ``poly``: s_t = s_T + (s_0 - s_T)(1 - t/T)^3 (cubic, the default);
        ``linear``: s_0 + (s_T - s_0) t/T; ``exp``: the density 1 - s falls geometrically
        from 1 - s_0 to 1 - s_T; ``const``: s_T at every stage.
    start : float
        s_0, the sparsity before the first stage.

    Returns
    -------
    list of float
        Non-decreasing when ``start <= final``.
    """
    if not 0.0 <= final < 1.0:
        raise ValueError(f"sparsity={final!r} must be in [0, 1)")
    if not 0.0 <= start <= final:
        raise ValueError(f"start={start!r} must be in [0, final={final}]")
    if int(stages) != stages or stages < 1:
        raise ValueError(f"stages={stages!r} must be an int >= 1")
    t = np.arange(1, stages + 1) / stages
    if kind == "poly":
        s = final + (start - final) * (1.0 - t) ** 3
    elif kind == "linear":
        s = start + (final - start) * t
    elif kind == "exp":
        s = 1.0 - (1.0 - start) * ((1.0 - final) / (1.0 - start)) ** t
    elif kind == "const":
        s = np.full(stages, final)
    else:
        raise ValueError(f"schedule={kind!r}; choose one of {SCHEDULES}")
    s[-1] = final
    return [float(v) for v in s]
