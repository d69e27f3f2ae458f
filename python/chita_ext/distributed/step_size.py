"""CHITA's IHT step rules on reduced (global) quantities: cpp/src/solvers/step_size.h."""
from __future__ import annotations

import math

import numpy as np


def f32(x: float) -> float:
    """x rounded to float32 (the C++ solvers cast step sizes and lam to float)."""
    return float(np.float32(x))


def tau_optimal(g_s_sq: float, a_g_s_sq: float, lam: float) -> float:
    denom = a_g_s_sq + lam * g_s_sq
    return g_s_sq / denom if (g_s_sq > 0 and denom > 0) else 0.0


def decrease_at_optimal(g_s_sq: float, a_g_s_sq: float, lam: float) -> float:
    denom = a_g_s_sq + lam * g_s_sq
    return g_s_sq * g_s_sq / (2.0 * denom) if (g_s_sq > 0 and denom > 0) else 0.0


def relative_decrease(f_old: float, f_new: float) -> float:
    scale = max(1e-30, abs(f_old))
    return (f_old - f_new) / scale


INF = math.inf
