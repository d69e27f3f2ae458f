"""The block approximation at scale (block_paths, block_solver) against float64 NumPy.

The reference below is the block approximation written out plainly: blocks inside layers,
per block exact greedy forward selection at the centre lam (each gain by two ridge solves),
the same order's gains at the other lams, one global budget shared on the running minima
of the paths' gains, each block's exact ridge solution on its share, and the FULL
objective of the result.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chita_ext import block_paths as bp  # noqa: E402
from chita_ext.block_solver import BlockSolver, RamColumns, cut_blocks  # noqa: E402
from reference import backsolve, objective  # noqa: E402


def _block_f(G, w, S, lam, alpha=None):
    """min over d (d_j = -w_j off S) of 1/2 d^T (G + lam I) d + alpha^T (w + d)."""
    B = len(w)
    H = G + lam * np.eye(B)
    d = -w.copy()
    S = list(S)
    if S:
        F = [j for j in range(B) if j not in S]
        rhs = -(H[np.ix_(S, F)] @ d[F]) - (0 if alpha is None else alpha[S])
        d[S] = np.linalg.solve(H[np.ix_(S, S)], rhs)
    return 0.5 * d @ H @ d + (0 if alpha is None else alpha @ (w + d))


def ref_greedy(G, w, lam, cap, alpha=None):
    order, gains, S = [], [], []
    f = _block_f(G, w, S, lam, alpha)
    for _ in range(cap):
        best = max((j for j in range(len(w)) if j not in S),
                   key=lambda j: f - _block_f(G, w, S + [j], lam, alpha))
        f_new = _block_f(G, w, S + [best], lam, alpha)
        order.append(best)
        gains.append(f - f_new)
        S.append(best)
        f = f_new
    return order, np.array(gains)


def ref_gains(G, w, order, lam, alpha=None):
    out, f = [], _block_f(G, w, [], lam, alpha)
    for t in range(len(order)):
        f_new = _block_f(G, w, order[:t + 1], lam, alpha)
        out.append(f - f_new)
        f = f_new
    return np.array(out)


def ref_allocate(paths, k):
    """Heap over the paths' heads, on the running minimum of each path's gains."""
    levels = [np.minimum.accumulate(g) if len(g) else g for g in paths]
    cand = sorted(((lv, b, t) for b, lvs in enumerate(levels) for t, lv in enumerate(lvs)),
                  reverse=True)[:k]
    kb = np.zeros(len(paths), dtype=int)
    for _, b, _ in cand:
        kb[b] += 1
    return kb


def ref_block_solution(A, w_bar, k, sizes, block_size, lam, alpha=None):
    A = A.astype(np.float64)
    w_bar = w_bar.astype(np.float64)
    starts, lens = cut_blocks(sizes, min(block_size, max(sizes)))
    share = k / A.shape[1]
    mp = np.zeros(len(w_bar), dtype=bool)
    mp[np.argsort(-np.abs(w_bar), kind="stable")[:k]] = True
    orders, paths = [], []
    for s, n in zip(starts, lens):
        idx = np.arange(s, s + n)
        G = A[:, idx].T @ A[:, idx]
        o, g = ref_greedy(G, w_bar[idx], lam, bp.path_cap(int(n), share, int(mp[idx].sum())),
                          None if alpha is None else alpha[idx])
        orders.append(idx[o])
        paths.append(g)
    kb = ref_allocate(paths, k)
    w = np.zeros_like(w_bar)
    for (s, n), o, m in zip(zip(starts, lens), orders, kb):
        idx = np.arange(s, s + n)
        S = list(o[:m])
        sub = backsolve(A[:, idx], [list(idx).index(j) for j in S], w_bar[idx], lam,
                        b=A[:, idx] @ w_bar[idx], alpha=None if alpha is None else alpha[idx])
        w[idx] = sub
    return w, kb


def _problem(n, p, seed, correlated=True):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p))
    if correlated:
        A += rng.standard_normal((n, 2)) @ rng.standard_normal((2, p))
    A *= np.exp(0.5 * rng.standard_normal(p))
    w_bar = rng.standard_normal(p) * np.exp(0.5 * rng.standard_normal(p))
    return A.astype(np.float32), w_bar.astype(np.float32)


@pytest.mark.parametrize("with_alpha", [False, True])
def test_greedy_paths_and_gains_match_numpy(with_alpha):
    rng = np.random.default_rng(1)
    nb, B, n = 3, 9, 14
    X = rng.standard_normal((nb, B, n)).astype(np.float32)
    lens = [9, 7, 5]
    for i, m in enumerate(lens):
        X[i, m:] = 0.0  # padding rows of a shorter block
    w = rng.standard_normal((nb, B)) * (np.arange(B) < np.array(lens)[:, None])
    alpha = 0.3 * rng.standard_normal((nb, B)) * (w != 0) if with_alpha else None
    valid = np.arange(B) < np.array(lens)[:, None]
    caps = torch.tensor([6, 4, 5])
    lam = 0.7
    G = bp.gram(torch.from_numpy(X))
    ta = None if alpha is None else torch.from_numpy(alpha)
    order, gains = bp.greedy_paths(G, torch.from_numpy(w), torch.from_numpy(valid), lam, caps,
                                   alpha=ta)
    for i in range(nb):
        m = lens[i]
        Gi = (X[i, :m].astype(np.float64) @ X[i, :m].T.astype(np.float64))
        ai = None if alpha is None else alpha[i, :m]
        o_ref, g_ref = ref_greedy(Gi, w[i, :m], lam, int(caps[i]), ai)
        assert order[i, :int(caps[i])].tolist() == o_ref
        assert (order[i, int(caps[i]):] == -1).all()
        np.testing.assert_allclose(gains[i, :int(caps[i])].numpy(), g_ref, rtol=2e-4,
                                   atol=1e-6 * g_ref.max())
        # the same order's gains at another lam
        g2 = bp.order_gains(G[i:i + 1], torch.from_numpy(w[i:i + 1]), order[i:i + 1], 3.1,
                            alpha=None if ta is None else ta[i:i + 1])
        g2_ref = ref_gains(Gi, w[i, :m], o_ref, 3.1, ai)
        np.testing.assert_allclose(g2[0, :len(o_ref)].numpy(), g2_ref, rtol=2e-4,
                                   atol=1e-6 * g2_ref.max())
    # a whole window at once (shared gathers), each lam against its own reference
    lams = [0.2, lam, 3.1, 11.0]
    window = bp.window_gains(G, torch.from_numpy(w), order, lams, alpha=ta)
    for i in range(nb):
        m, c = lens[i], int(caps[i])
        Gi = (X[i, :m].astype(np.float64) @ X[i, :m].T.astype(np.float64))
        ai = None if alpha is None else alpha[i, :m]
        for l_, got in zip(lams, window):
            ref = ref_gains(Gi, w[i, :m], order[i, :c].tolist(), l_, ai)
            np.testing.assert_allclose(got[i, :c].numpy(), ref, rtol=2e-4, atol=1e-6 * ref.max())
            assert torch.isinf(got[i, c:]).all()


def test_greedy_paths_in_steps_record_exact_gains_for_their_order():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2, 12, 20)).astype(np.float32)
    w = rng.standard_normal((2, 12))
    G = bp.gram(torch.from_numpy(X))
    order, gains = bp.greedy_paths(G, torch.from_numpy(w), torch.ones(2, 12, dtype=torch.bool),
                                   0.5, torch.tensor([10, 10]), step=3)
    for i in range(2):
        Gi = X[i].astype(np.float64) @ X[i].T.astype(np.float64)
        o = order[i].tolist()
        assert len(set(o)) == 10
        np.testing.assert_allclose(gains[i].numpy(), ref_gains(Gi, w[i], o, 0.5), rtol=2e-4)


def test_allocate_is_the_heap_over_path_heads():
    rng = np.random.default_rng(3)
    gains = rng.exponential(size=(6, 8))
    gains[:, 3] *= 5.0  # a later gain larger than the one before it: taken only after it
    gains[2, 5:] = -np.inf
    for k in (1, 7, 20, 45):
        kb = bp.allocate(torch.from_numpy(gains), k)
        paths = [g[np.isfinite(g)] for g in gains]
        np.testing.assert_array_equal(kb.numpy(), ref_allocate(paths, k))
        assert int(kb.sum()) == k


def test_solve_supports_is_the_exact_ridge_solution():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 7, 11)).astype(np.float32)
    w = rng.standard_normal((2, 7))
    alpha = 0.2 * rng.standard_normal((2, 7))
    S = torch.tensor([[0, 3, 5, -1], [6, 1, -1, -1]])
    Xw = bp.block_product(torch.from_numpy(X), torch.from_numpy(w))
    vals, Ad = bp.solve_supports(torch.from_numpy(X), torch.from_numpy(w), Xw, S, 0.9,
                                 torch.from_numpy(alpha))
    for i in range(2):
        A = X[i].T.astype(np.float64)  # (n, B): a block's columns
        Si = [j for j in S[i].tolist() if j >= 0]
        ref = backsolve(A, Si, w[i], 0.9, alpha=alpha[i])
        np.testing.assert_allclose(vals[i, :len(Si)].numpy(), ref[Si], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(Ad[i].numpy(), A @ (ref - w[i]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_solver_matches_numpy_reference(dtype):
    n, sizes, block = 24, [30, 17, 41], 10
    A, w_bar = _problem(n, sum(sizes), seed=5)
    buf = torch.from_numpy(np.ascontiguousarray(A.T)).to(dtype)  # (p, n): column-major A
    A_used = buf.float().numpy().T.astype(np.float64)
    k, lams = 27, [0.3, 1.0, 4.0]
    solver = BlockSolver(RamColumns(buf), w_bar, k, sizes, block_size=block, threads=2,
                         panel_bytes=n * 2 * 13)  # several panels, blocks never split
    results = solver.solve_window(lams, centre=1.0)
    assert solver.passes == 2  # one score pass and one solve pass for the whole window
    top = np.argsort(-np.abs(w_bar))[:k]
    w_mp = np.zeros_like(w_bar, dtype=np.float64)
    w_mp[top] = w_bar[top]
    for lam, res in zip(lams, results):
        assert np.count_nonzero(res.w) == k and len(res.support) == k
        # the full objective and MP's, computed exactly on the whole A
        assert res.objective == pytest.approx(objective(A_used, res.w, w_bar, lam), rel=1e-4)
        assert res.info["mp_objective"] == pytest.approx(objective(A_used, w_mp, w_bar, lam),
                                                         rel=1e-4)
        if lam == 1.0:  # the centre: the reference greedy on the same A
            w_ref, kb = ref_block_solution(A_used, w_bar, k, sizes, block, lam)
            np.testing.assert_array_equal(np.flatnonzero(res.w), np.flatnonzero(w_ref))
            np.testing.assert_allclose(res.w, w_ref, rtol=2e-3, atol=2e-4)


def test_one_block_is_the_exact_greedy_path_with_the_exact_backsolve():
    n, p, k, lam = 40, 26, 9, 0.8
    A, w_bar = _problem(n, p, seed=6)
    buf = torch.from_numpy(np.ascontiguousarray(A.T))
    res = BlockSolver(RamColumns(buf), w_bar, k, [p], block_size=p).solve_window([lam])[0]
    A64 = A.astype(np.float64)
    order, _ = ref_greedy(A64.T @ A64, w_bar.astype(np.float64), lam, k)
    np.testing.assert_array_equal(res.support, np.sort(order))
    w_exact = backsolve(A64, np.sort(order), w_bar.astype(np.float64), lam)
    np.testing.assert_allclose(res.w, w_exact, rtol=1e-4, atol=1e-5)
    f = objective(A64, w_exact, w_bar, lam)
    assert res.objective == pytest.approx(f, rel=1e-5)
    assert res.info["block_objective"] == pytest.approx(f, rel=1e-5)  # no cross terms left
    assert res.objective < res.info["mp_objective"]


def test_block_solver_rejects_bad_input():
    A, w_bar = _problem(8, 20, seed=7)
    cols = RamColumns(torch.from_numpy(np.ascontiguousarray(A.T)))
    with pytest.raises(ValueError, match="sum to"):
        BlockSolver(cols, w_bar, 5, [10, 5])
    with pytest.raises(ValueError, match="k=0"):
        BlockSolver(cols, w_bar, 0, [20])
    with pytest.raises(ValueError, match="positive"):
        BlockSolver(cols, w_bar, 5, [20]).solve_window([0.0])


def test_col_scale_solves_denormal_sized_gradients_as_their_rescaled_problem():
    # random-weight deep nets give gradients of ~1e-19: their float32 squares are denormal
    n, sizes, k, lam = 20, [25, 15], 12, 0.6
    A, w_bar = _problem(n, sum(sizes), seed=8)
    alpha = 0.1 * np.random.default_rng(9).standard_normal(sum(sizes))
    ref = BlockSolver(RamColumns(torch.from_numpy(np.ascontiguousarray(A.T))), w_bar, k, sizes,
                      block_size=10, alpha=alpha).solve_window([lam])[0]
    t = 1e-22  # entries ~1e-22: squares ~1e-44, near float32's smallest denormal
    tiny = (A.astype(np.float64) * t).astype(np.float32)
    scale = float((tiny.astype(np.float64) ** 2).sum()) / tiny.shape[1]
    res = BlockSolver(RamColumns(torch.from_numpy(np.ascontiguousarray(tiny.T))), w_bar, k,
                      sizes, block_size=10, alpha=alpha * t * t, col_scale=scale) \
        .solve_window([lam * t * t])[0]
    np.testing.assert_array_equal(res.support, ref.support)
    np.testing.assert_allclose(res.w, ref.w, rtol=1e-4, atol=1e-6)
    # unscaled, the float32 Grams lose ~0.3% here
    assert res.objective == pytest.approx(ref.objective * t * t, rel=1e-5)
    assert res.info["mp_objective"] == pytest.approx(ref.info["mp_objective"] * t * t, rel=1e-5)
    assert res.info["lam"] == lam * t * t
    assert res.objective == pytest.approx(objective(tiny, res.w, w_bar, lam * t * t,
                                                    alpha=alpha * t * t), rel=1e-3)
    with pytest.raises(ValueError, match="col_scale"):
        BlockSolver(RamColumns(torch.from_numpy(np.ascontiguousarray(A.T))), w_bar, k, sizes,
                    col_scale=0.0)


@pytest.mark.parametrize("seed", [7, 11])
def test_rank_deficient_blocks_with_a_tiny_lam_still_factor(seed):
    # 16 rows, paths of 32 weights, column scales over many decades and lam 1e-10 of the
    # mean diagonal: the float32 Gram is PSD only up to rounding, which lam does not cover
    # (these seeds made the old code raise "not positive-definite")
    g = torch.Generator().manual_seed(seed)
    B, n, T = 40, 16, 32
    X = (torch.randn(1, B, n, generator=g) * torch.exp(3 * torch.randn(1, B, 1, generator=g)))
    G = bp.gram(X)
    lam = float(G.diagonal(dim1=1, dim2=2).mean()) * 1e-10
    w = torch.randn(1, B, generator=g, dtype=torch.float64)
    order = torch.arange(T).unsqueeze(0)
    gains = bp.order_gains(G, w, order, lam)
    assert torch.isfinite(gains).all() and (gains >= 0).all()
    G64 = X.double() @ X.double().transpose(1, 2)
    grad = -(G64 @ w.unsqueeze(2)).squeeze(2) - lam * w
    H = G64[:, :T, :T] + lam * torch.eye(T, dtype=torch.float64)
    c = torch.linalg.solve_triangular(torch.linalg.cholesky(H), grad[:, :T].unsqueeze(2),
                                      upper=False)
    assert float(gains.sum()) == pytest.approx(float((0.5 * c * c).sum()), rel=1e-2)
    values, _ = bp.solve_supports(X, w, bp.block_product(X, w), order, lam)
    assert torch.isfinite(values).all()
    valid = torch.ones(1, B, dtype=torch.bool)
    order2, gains2 = bp.greedy_paths(G, w, valid, lam, torch.full((1,), T), step=4)
    assert torch.isfinite(gains2[order2 >= 0]).all()


def test_a_block_of_large_weights_can_keep_what_magnitude_pruning_keeps():
    # layer 0: 40 weights 100x larger than layer 1's 360; k = 10% of p = 40: magnitude
    # pruning keeps all of layer 0, a cap of twice the proportional share plus 16 (24 of
    # 40) would not let the block solution do the same, at a lam where it should
    rng = np.random.default_rng(9)
    n, sizes, k = 12, [40, 360], 40
    A = rng.standard_normal((n, sum(sizes))).astype(np.float32)
    w_bar = rng.standard_normal(sum(sizes)).astype(np.float32)
    w_bar[:40] *= 100.0
    assert bp.path_cap(40, k / 400) == 24 and bp.path_cap(40, k / 400, 30) == 40
    buf = torch.from_numpy(np.ascontiguousarray(A.T))
    lam = 1e4 * float((A.astype(np.float64) ** 2).sum()) / A.shape[1]  # ridge dominates
    res = BlockSolver(RamColumns(buf), w_bar, k, sizes, block_size=40).solve_window([lam])[0]
    mp = np.sort(np.argsort(-np.abs(w_bar))[:k])
    assert (mp < 40).sum() >= 30  # magnitude pruning keeps most of layer 0
    np.testing.assert_array_equal(res.support, mp)  # and so does the block solution now
    assert res.objective <= res.info["mp_objective"] * (1 + 1e-6)
