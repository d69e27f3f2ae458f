"""The block-diagonal problem on a batch of blocks: greedy paths and exact block solves.

With the Fisher ``A^T A`` replaced by its diagonal blocks (each block a run of at most B
weights inside one layer), the objective splits into one small problem per block. In the
block's own coordinates, with ``d = w - w_bar``, ``G = A_B^T A_B`` (B x B) and
``H = G + lam I``::

    f_B(d) = 1/2 d^T H d + alpha_B^T (w_bar_B + d),    d_j = -w_bar_j off the support.

Everything a block needs is ``G`` and its slice of ``w_bar`` (and ``alpha``), so a block's
columns are read once per pass. The functions here work on a batch of ``nb`` blocks
padded to one size B (``valid`` marks real weights), in float64 except the Gram products.

Greedy path (forward selection from the empty support): freeing weight j lowers f_B by
exactly ``g_j^2 / (2 s_j)``, with ``g = H d + alpha`` the gradient at the current optimum
and ``s_j`` the Schur complement of the support in ``H`` (one Cholesky-like column per
weight added, kept in ``V``). :func:`greedy_paths` adds ``step`` weights at a time (the
``step`` largest gains; ``step=1`` is exact greedy) and records each addition's exact
marginal decrease, which is what the global budget is shared on (:func:`allocate`).
"""
from __future__ import annotations

import math

import torch

TINY = 1e-300
#: relative jitters (of a block's largest diagonal entry) tried, in turn, on a block whose
#: float64 matrix built from float32 Gram products does not factor: those products are PSD
#: only up to their rounding (~ n x 6e-8 of the diagonal), which a small lam may not cover
JITTERS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def psd_cholesky(H: torch.Tensor, scale=None) -> torch.Tensor:
    """Lower Cholesky factors of a batch ``H`` (nb, m, m) float64 of matrices that are
    positive definite up to float32 rounding: a block that does not factor is retried
    with the smallest jitter of JITTERS that works, times ``scale`` (nb,): the size of the
    products it was built from (default: its largest diagonal entry; a Schur complement
    passes its Gram's, since its own diagonal may be far below that rounding)."""
    L, info = torch.linalg.cholesky_ex(H)
    bad = info > 0
    if not bool(bad.any()):
        return L
    Hb = H[bad]
    scale = Hb.diagonal(dim1=1, dim2=2).abs().amax(1) if scale is None else scale[bad]
    scale = scale.to(H.dtype).clamp_min(TINY)
    eye = torch.eye(H.shape[-1], dtype=H.dtype)
    for rel in JITTERS:
        Lb, ib = torch.linalg.cholesky_ex(Hb + (rel * scale)[:, None, None] * eye)
        if not bool((ib > 0).any()):
            L = L.clone()
            L[bad] = Lb
            return L
    raise ValueError("a block's Gram matrix could not be factored even with a relative "
                     f"jitter of {JITTERS[-1]:g}: its gradients are not finite or lam is 0")


def path_cap(size: int, share: float, mp_kept: int = 0) -> int:
    """How far a block's path goes: past twice its proportional share of the budget and
    past what magnitude pruning keeps in it (the larger of the two, plus 16), at most the
    block's size. Without the second term a block of large weights could not keep what
    magnitude pruning keeps (at a large lam the solution tends to magnitude pruning's);
    it is not doubled because a path's cost grows with its length squared (ResNet50 at
    random init: 1.4x the greedy work of the share alone, against 3x doubled)."""
    return int(min(size, max(2 * math.ceil(share * size), int(mp_kept)) + 16))


def gram(X: torch.Tensor) -> torch.Tensor:
    """``X X^T`` for a batch ``X`` of shape (nb, B, n) (rows = columns of A), float32."""
    Xf = X if X.dtype == torch.float32 else X.float()
    return torch.bmm(Xf, Xf.transpose(1, 2))


def greedy_paths(G, w, valid, lam: float, caps, alpha=None, step: int = 1):
    """Forward-selection paths of a batch of blocks, with every addition's exact gain.

    Parameters
    ----------
    G : torch.Tensor, (nb, B, B) float32
        Block Grams ``A_B^T A_B`` (:func:`gram`; zero rows/columns on padding).
    w : torch.Tensor, (nb, B) float64
        ``w_bar`` of each block (0 on padding).
    valid : torch.Tensor, (nb, B) bool
        Real weights (False on padding).
    lam : float
        Ridge weight, > 0.
    caps : torch.Tensor, (nb,) int64
        Path length of each block (at most its number of valid weights).
    alpha : torch.Tensor, (nb, B) float64, optional
        Linear term.
    step : int
        Weights added per update (the ``step`` largest gains; 1 is exact greedy). The
        gains recorded are exact for the order taken either way.

    Returns
    -------
    order : torch.Tensor, (nb, T) int64
        Block-local index of the t-th weight added (-1 past the block's cap), T = max cap.
    gains : torch.Tensor, (nb, T) float64
        Decrease of f_B when that weight is added after the ones before it (-inf past the
        cap).

    Notes
    -----
    ``G`` and the factor rows ``V`` are float32 (the bulk of the memory traffic); the
    gradient ``g`` and the Schur complements ``s`` are float64, and ``s`` is kept >= lam,
    its exact lower bound, so rounding never makes a weight look free to add.
    """
    if not lam > 0:
        raise ValueError(f"lam={lam} must be > 0 for the block approximation")
    nb, B, _ = G.shape
    T = int(caps.max()) if nb else 0
    order = torch.full((nb, T), -1, dtype=torch.int64)
    gains = torch.full((nb, T), -math.inf, dtype=torch.float64)
    if T == 0:
        return order, gains
    g = -torch.bmm(G, w.float().unsqueeze(2)).squeeze(2).double() - lam * w  # H d at d = -w
    if alpha is not None:
        g = g + alpha
    s = G.diagonal(dim1=1, dim2=2).double() + lam  # Schur complements of the support
    gram_scale = s.amax(1)                         # rounding level of the Schur rows
    V = G.new_zeros((nb, T, B))                    # rows: (H[:, S] L^{-T})^T
    free = valid.clone()
    rows = torch.arange(nb).unsqueeze(1)
    t = 0
    while t < T:
        q = min(step, T - t)
        score = torch.where(free, g * g / (2.0 * s), -math.inf)
        best, J = torch.topk(score, q, dim=1)                          # (nb, q)
        live = best > -math.inf
        HJ = torch.gather(G, 1, J.unsqueeze(2).expand(nb, q, B))     # rows J of H (G sym.)
        HJ[rows, torch.arange(q).unsqueeze(0), J] += lam
        if t:
            VJ = torch.gather(V[:, :t], 2, J.unsqueeze(1).expand(nb, t, q))
            HJ -= torch.bmm(VJ.transpose(1, 2), V[:, :t])            # Schur rows (nb, q, B)
        HJ *= live.unsqueeze(2)
        gJ = torch.gather(g, 1, J) * live
        if q == 1:
            piv = torch.gather(s, 1, J).sqrt()                         # sqrt(s_j) >= sqrt(lam)
            Vnew = HJ / piv.unsqueeze(2).float()
            c = gJ / piv
        else:
            SJJ = torch.gather(HJ, 2, J.unsqueeze(1).expand(nb, q, q)).double()
            eye = torch.eye(q, dtype=torch.float64).expand(nb, q, q)
            dead = ~live
            SJJ = torch.where(dead.unsqueeze(1) | dead.unsqueeze(2), eye, SJJ)
            SJJ = 0.5 * (SJJ + SJJ.transpose(1, 2))
            L = psd_cholesky(SJJ + lam * 1e-9 * eye, scale=gram_scale)
            # L^{-1} of the small factor, then one product (a batched triangular solve with
            # B right-hand sides is far slower on the CPU than a bmm)
            Linv = torch.linalg.solve_triangular(L, eye.contiguous(), upper=False)
            Vnew = torch.bmm(Linv.float(), HJ)
            c = torch.bmm(Linv, gJ.unsqueeze(2)).squeeze(2)
        V[:, t:t + q] = Vnew
        Vd = Vnew.double()
        g -= (c.unsqueeze(2) * Vd).sum(1)
        s -= (Vd * Vd).sum(1)
        s.clamp_min_(lam)
        free[rows, J] = False
        order[:, t:t + q] = torch.where(live, J, -1)
        gains[:, t:t + q] = torch.where(live, 0.5 * c * c, -math.inf)
        t += q
    past = torch.arange(T).unsqueeze(0) >= caps.unsqueeze(1)
    order[past] = -1
    gains[past] = -math.inf
    return order, gains


def allocate(gains: torch.Tensor, k: int) -> torch.Tensor:
    """Share one global budget k over blocks: the k largest marginal decreases of all paths.

    Each path is taken in its order (a later, larger gain only after the smaller one before
    it, as a heap over the paths' heads would), which is a top-k over the running minimum of
    each path's gains.

    Parameters
    ----------
    gains : torch.Tensor, (nblocks, T) float64
        Per block, the gain of each addition in path order (-inf past its cap).
    k : int

    Returns
    -------
    torch.Tensor, (nblocks,) int64
        Weights kept in each block (a prefix of its path); sums to k when the paths hold
        at least k finite gains.
    """
    if gains.numel() == 0:
        return torch.zeros(gains.shape[0], dtype=torch.int64)
    level = torch.cummin(gains, dim=1).values
    flat = level.reshape(-1)
    k = min(int(k), int(torch.isfinite(flat).sum()))
    kb = torch.zeros(gains.shape[0], dtype=torch.int64)
    if k == 0:
        return kb
    top = torch.topk(flat, k, sorted=False).indices
    return kb.index_add_(0, top // gains.shape[1], torch.ones_like(top))


def order_gains(G, w, order, lam: float, alpha=None):
    """Exact gains along given paths at another lam: :func:`window_gains` of one lam."""
    return window_gains(G, w, order, [lam], alpha)[0]


def window_gains(G, w, order, lams, alpha=None):
    """Exact gains along given paths at each lam of ``lams`` (one Cholesky per block and
    lam, no search).

    The marginal decreases of adding a path's weights in its order are ``c_t^2 / 2`` with
    ``c = L^{-1} g_S``, ``L L^T = H_SS`` in path order: a lam window shares one path order
    (found at its centre lam) and gets each lam's own gains for the global allocation.
    ``G w`` and the path's rows of ``G`` are gathered once for the whole window.

    Parameters
    ----------
    G, w, alpha
        As for :func:`greedy_paths`.
    order : torch.Tensor, (nb, T) int64
        Paths (block-local indices, -1 past each block's cap).
    lams : sequence of float

    Returns
    -------
    list of torch.Tensor, (nb, T) float64
        Per lam, the gains along each path (-inf past its cap).
    """
    nb, B, _ = G.shape
    T = order.shape[1]
    if T == 0:
        return [torch.empty((nb, 0), dtype=torch.float64) for _ in lams]
    on = order >= 0
    idx = order.clamp_min(0)
    Gw = torch.bmm(G, w.float().unsqueeze(2)).squeeze(2).double()
    wS = torch.gather(w, 1, idx)
    base = -torch.gather(Gw, 1, idx)
    if alpha is not None:
        base = base + torch.gather(alpha, 1, idx)
    rowsS = torch.gather(G, 1, idx.unsqueeze(2).expand(nb, T, B))
    GSS = torch.gather(rowsS, 2, idx.unsqueeze(1).expand(nb, T, T)).double()
    del rowsS
    eye = torch.eye(T, dtype=torch.float64).expand(nb, T, T)
    both = on.unsqueeze(1) & on.unsqueeze(2)
    out = []
    for lam in lams:
        gS = (base - lam * wS) * on
        L = psd_cholesky(torch.where(both, GSS + lam * eye, eye))
        c = torch.linalg.solve_triangular(L, gS.unsqueeze(2), upper=False).squeeze(2)
        out.append(torch.where(on, 0.5 * c * c, -math.inf))
    return out


def solve_supports(X, w, Xw, S, lam: float, alpha=None):
    """Exact block solutions on given supports, and each block's residual ``A_B d_B``.

    On a support S the kept weights are ``H_SS^{-1} (H_{S,:} w_bar - alpha_S)`` with
    ``H_{S,:} w_bar = A_S^T (A_B w_bar_B) + lam w_bar_S``; the others are 0.

    Parameters
    ----------
    X : torch.Tensor, (nb, B, n)
        The blocks' columns (zero rows on padding), float32 or bfloat16.
    w : torch.Tensor, (nb, B) float64
    Xw : torch.Tensor, (nb, n) float64
        ``A_B w_bar_B`` of each block.
    S : torch.Tensor, (nb, m) int64
        Block-local support indices, -1 for none.
    lam : float
    alpha : torch.Tensor, (nb, B) float64, optional

    Returns
    -------
    values : torch.Tensor, (nb, m) float64
        The new weights at S (0 where S is -1).
    Ad : torch.Tensor, (nb, n) float64
        ``A_B (w_B - w_bar_B)`` of each block: summed over blocks, the residual of the full
        problem.
    """
    nb, B, n = X.shape
    m = S.shape[1]
    if m == 0:
        return torch.zeros((nb, 0), dtype=torch.float64), -Xw
    Xf = X if X.dtype == torch.float32 else X.float()
    on = S >= 0
    idx = S.clamp_min(0)
    XS = torch.gather(Xf, 1, idx.unsqueeze(2).expand(nb, m, n)) * on.unsqueeze(2)
    H = torch.bmm(XS, XS.transpose(1, 2)).double()
    eye = torch.eye(m, dtype=torch.float64).expand(nb, m, m)
    H = torch.where(on.unsqueeze(1) & on.unsqueeze(2), H + lam * eye, eye)
    rhs = torch.bmm(XS, Xw.float().unsqueeze(2)).squeeze(2).double() + lam * torch.gather(w, 1, idx)
    if alpha is not None:
        rhs = rhs - torch.gather(alpha, 1, idx)
    rhs = rhs * on
    L = psd_cholesky(H)
    values = torch.cholesky_solve(rhs.unsqueeze(2), L).squeeze(2) * on
    Ad = torch.bmm(values.float().unsqueeze(1), XS).squeeze(1).double() - Xw
    return values, Ad


def block_product(X, w):
    """``A_B w_B`` of each block, (nb, n) float64 (float32 products)."""
    Xf = X if X.dtype == torch.float32 else X.float()
    return torch.bmm(w.float().unsqueeze(1), Xf).squeeze(1).double()
