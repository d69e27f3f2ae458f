"""Checks that compare_solvers.py calls the reference CHITA solver on the same problem we
solve: on small random instances, the objective the reference reports for its own answer
must equal our float64 objective of that answer (lambda2 = lam / 2), and its support,
re-scored by our backsolve, is compared with the exhaustive best subset (tiny p) and with
our default.

    python bench/check_reference_chita.py --chita-src PATH/TO/mazumder-lab/CHITA
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import chita_ext  # noqa: E402
import reference as ref  # noqa: E402  (tests/reference.py: float64 objective, best subset)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chita-src", required=True)
    ap.add_argument("--instances", type=int, default=20)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.chita_src))  # the user's checkout; nothing copied
    from CHITA_opt.L0_card_const import Active_IHTCDLS_PP

    worst_mismatch, ref_optimal, ours_optimal, ours_le_ref = 0.0, 0, 0, 0
    for seed in range(args.instances):
        rng = np.random.default_rng(seed)
        n, p, k = 10, 14, 4
        A = (rng.standard_normal((n, p)) * np.exp(rng.standard_normal(p))).astype(np.float32)
        w_bar = rng.standard_normal(p).astype(np.float32)
        lam = 0.05 * float(np.sum(A.astype(np.float64) ** 2)) / p
        X, wb = A.astype(np.float64), w_bar.astype(np.float64)
        zeros = np.zeros(p)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every iteration
            w, f_ref, *_ = Active_IHTCDLS_PP(
                X @ wb, X, wb.copy(), k, alpha=zeros, lambda1=0, lambda2=lam / 2, M=np.inf,
                beta_tilde1=zeros, beta_tilde2=wb, L=None, iht_max_itr=100, ftol=1e-7,
                act_max_itr=100, buget=None, kimp=1.5, act_itr=1, cd_itr=0, ctol=1e-4,
                sea1_max_itr=5, sea2_max_itr=10)
        ours_f_of_ref = ref.objective(A, w, wb, lam)
        worst_mismatch = max(worst_mismatch, abs(ours_f_of_ref - f_ref) / abs(f_ref))
        S_ref = np.flatnonzero(w)
        f_ref_bso = ref.objective(A, ref.backsolve(A, S_ref, wb, lam), wb, lam)
        f_best = min(ref.objective(A, ref.backsolve(A, list(S), wb, lam), wb, lam)
                     for S in itertools.combinations(range(p), k))
        ours = chita_ext.solve(A, w_bar, k, lam=lam)
        ref_optimal += f_ref_bso <= f_best * (1 + 1e-6)
        ours_optimal += ours.objective <= f_best * (1 + 1e-6)
        ours_le_ref += ours.objective <= f_ref_bso * (1 + 1e-6)
        print(f"seed {seed}: reference f {f_ref:.6e} (ours on its w {ours_f_of_ref:.6e}), "
              f"its support re-scored {f_ref_bso:.6e}, ours {ours.objective:.6e}, best {f_best:.6e}")
    m = args.instances
    print(f"\nobjective mapping (lambda2 = lam/2): worst relative mismatch {worst_mismatch:.2e}")
    print(f"best subset found: reference {ref_optimal}/{m}, ours (auto) {ours_optimal}/{m}; "
          f"ours <= reference's re-scored support on {ours_le_ref}/{m}")
    if worst_mismatch > 1e-5:
        sys.exit("the reference's objective disagrees with ours: the call is not the same problem")


if __name__ == "__main__":
    main()
