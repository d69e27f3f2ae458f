"""The value every solver returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SolveResult:
    """Outcome of :func:`chita_ext.solve`.

    Attributes
    ----------
    w : numpy.ndarray
        float32, length p, at most k non-zeros (exactly the entries in ``support``).
    support : numpy.ndarray
        int64, sorted ascending, the indices allowed to be non-zero (size <= k).
    objective : float
        f(w) = 1/2||b - A w||^2 + lam/2||w - w_bar||^2 + alpha^T w, accumulated in float64.
    history : numpy.ndarray
        float64, the objective at the start and after every iteration.
    iterations : int
        Iterations run (0 for ``mp`` and ``bso``).
    seconds : float
        Wall time of the solve inside the extension.
    method : str
        The method that produced ``w``.
    converged : bool
        True when the stopping rule (relative decrease below ``tol``) was met.
    info : dict
        Method-specific counters (e.g. how IHT chose its steps).
    """

    w: np.ndarray
    support: np.ndarray
    objective: float
    history: np.ndarray
    iterations: int
    seconds: float
    method: str
    converged: bool
    info: dict = field(default_factory=dict)

    @property
    def nnz(self) -> int:
        """Number of non-zero weights in ``w``."""
        return int(np.count_nonzero(self.w))
