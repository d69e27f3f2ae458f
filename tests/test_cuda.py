"""The CUDA backend against the CPU backend and float64 NumPy references.

Every kernel and every method runs on each device of the ``device`` fixture (``cpu``, and
``cuda`` when ``chita_ext.cuda_device_count() > 0``; otherwise the cuda cases are skipped
with the reason). The build checks at the bottom run everywhere: with or without nvcc at
build time, with or without a GPU.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import chita_ext
from chita_ext import _core, kernels

from conftest import make_instance
from reference import backsolve, to64
from reference import objective as ref_objective
from reference import topk_abs as ref_topk

BUILT_WITH_CUDA = bool(chita_ext.build_info()["cuda"])
HAS_GPU = chita_ext.cuda_device_count() > 0
NO_GPU = (
    "no CUDA device visible (chita_ext.cuda_device_count() == 0"
    + ("" if BUILT_WITH_CUDA else "; this build has no CUDA backend")
    + "): run on a GPU machine, e.g. bench/gpu/run_gpu_bench.sh"
)
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason=NO_GPU)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=requires_gpu)])
def device(request):
    """'cpu' always; 'cuda' skipped, with the reason, where no GPU is visible."""
    return request.param


# ---- moving test data -----------------------------------------------------------------------
def torch_of(a: np.ndarray):
    """A torch CPU tensor sharing a's layout (float32 or ml_dtypes.bfloat16)."""
    import torch

    col = a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous
    base = np.ascontiguousarray(a.T if col else a)
    if base.dtype == ml_dtypes.bfloat16:
        t = torch.from_numpy(base.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(base)
    return t.T if col else t


def put(a, device):
    """numpy array -> the input for `device` (numpy on the CPU, a CUDA tensor on cuda)."""
    if device == "cpu":
        return a
    import torch

    col = a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous
    t = torch_of(a)
    return (t.T.contiguous().to("cuda").T) if col else t.contiguous().to("cuda")


def host(x) -> np.ndarray:
    """Any kernel output as a float64 (or int64) numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        return x.numpy().astype(np.int64 if not x.is_floating_point() else np.float64)
    x = np.asarray(x)
    return x if x.dtype == np.int64 else x.astype(np.float64)


def misaligned(A: np.ndarray, device):
    """A column-major copy of A whose first element is 4 bytes past a 16-byte boundary
    (exercises the scalar head/tail around the 16-byte loads)."""
    n, p = A.shape
    if device == "cpu":
        buf = np.empty(n * p + 16, dtype=A.dtype)
        off = next(o for o in range(16) if (buf.ctypes.data + o * A.itemsize) % 16 == A.itemsize)
        out = buf[off : off + n * p].reshape(p, n).T
        out[...] = A
        return out
    import torch

    src = torch_of(np.asfortranarray(A)).T.contiguous().reshape(-1)  # columns back to back
    buf = torch.empty(n * p + 8, dtype=src.dtype, device="cuda")
    buf[1 : 1 + n * p] = src.to("cuda")
    return buf[1 : 1 + n * p].view(p, n).T


def variants(A32: np.ndarray):
    """(label, column-major matrix) for float32 and bfloat16 storage."""
    return [("f32", np.asfortranarray(A32)),
            ("bf16", np.asfortranarray(A32.astype(ml_dtypes.bfloat16)))]


# Shapes: n odd (every column misaligned: scalar head/tail), n a multiple of 16 (pure
# 16-byte path, 8- and 16-lane groups), n large (32-lane groups, several row tiles).
SHAPES = [(37, 1500), (64, 3000), (1200, 700)]


@pytest.fixture(params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def matrix(request):
    n, p = request.param
    A, _ = make_instance("heavy", n, p, seed=n + p)
    return A


def assert_bound(got, want, bound, rel, what):
    """|got - want| <= rel * bound elementwise (bound: a sum of |terms|)."""
    got, want, bound = host(got), np.asarray(want, np.float64), np.asarray(bound, np.float64)
    err = np.abs(got - want)
    lim = rel * bound + 1e-30
    assert np.all(err <= lim), f"{what}: worst error/bound {np.max(err / lim):.3g} x {rel}"


# ---- products with A ---------------------------------------------------------------------------
def test_atr_and_subset(matrix, device):
    rng = np.random.default_rng(1)
    n, p = matrix.shape
    r = rng.standard_normal(n).astype(np.float32)
    idx = np.sort(rng.choice(p, p // 3, replace=False))
    for label, A in variants(matrix):
        A64 = to64(A)
        want, bound = A64.T @ r, np.abs(A64).T @ np.abs(r)
        cpu = kernels.atr(A, r)
        for Ad in (put(A, device), misaligned(A, device)):
            got = kernels.atr(Ad, r)
            assert_bound(got, want, bound, 1e-5, f"atr {label}")
            assert_bound(got, host(cpu), bound, 2e-5, f"atr {label} vs cpu")
            assert_bound(kernels.atr_subset(Ad, r, idx), want[idx], bound[idx], 1e-5,
                         f"atr_subset {label}")


def test_ax_sparse_and_dense(matrix, device):
    rng = np.random.default_rng(2)
    n, p = matrix.shape
    idx = np.sort(rng.choice(p, p // 4, replace=False))
    x = rng.standard_normal(len(idx)).astype(np.float32)
    xd = rng.standard_normal(p).astype(np.float32)
    for label, A in variants(matrix):
        A64 = to64(A)
        for Ad in (put(A, device), misaligned(A, device)):
            # float64 accumulation of exact float products: tight bounds
            assert_bound(kernels.ax_sparse(Ad, idx, x), A64[:, idx] @ x,
                         np.abs(A64[:, idx]) @ np.abs(x), 1e-12, f"ax_sparse {label}")
            assert_bound(kernels.ax_dense(Ad, xd), A64 @ xd, np.abs(A64) @ np.abs(xd), 1e-12,
                         f"ax_dense {label}")
        assert_bound(kernels.ax_dense(put(A, device), xd), host(kernels.ax_dense(A, xd)),
                     np.abs(A64) @ np.abs(xd), 1e-12, f"ax_dense {label} vs cpu")


@pytest.mark.parametrize("k", [1, 5, 150, 600])
def test_gram_rows_and_cols(device, k):
    A32, _ = make_instance("correlated", 70, 700, seed=k)
    idx = np.sort(np.random.default_rng(k).choice(700, k, replace=False))
    for label, A in variants(A32):
        AS = to64(A)[:, idx]
        Ad = put(A, device)
        got = kernels.gram_rows(Ad, idx)
        assert isinstance(got, np.ndarray) and got.shape == (70, 70)
        assert_bound(got, AS @ AS.T, np.abs(AS) @ np.abs(AS).T, 1e-13, f"gram_rows {label}")
        np.testing.assert_array_equal(got, got.T)  # mirrored, not recomputed
        got = kernels.gram_cols(Ad, idx)
        assert got.shape == (k, k)
        assert_bound(got, AS.T @ AS, np.abs(AS).T @ np.abs(AS), 1e-13, f"gram_cols {label}")
        np.testing.assert_array_equal(got, got.T)


# ---- selection -------------------------------------------------------------------------------------
def _topk_inputs():
    rng = np.random.default_rng(3)
    big = rng.standard_normal(1_000_003).astype(np.float32)
    ties = rng.integers(-3, 4, 20_000).astype(np.float32)
    zeros = np.zeros(5000, np.float32)
    zeros[::7] = -0.0
    tiny = np.where(rng.random(3000) < 0.5, -1e-40, 1e-40).astype(np.float32)  # denormals
    return [("normal", big), ("ties", ties), ("zeros", zeros), ("denormal", tiny),
            ("one", np.array([-2.0], np.float32))]


@pytest.mark.parametrize("label,x", _topk_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_topk_abs_exact(device, label, x):
    m = len(x)
    for k in sorted(k for k in {1, 2, m // 3, m // 2 + 1, m - 1, m} if 1 <= k <= m):
        got = host(kernels.topk_abs(put(x, device), k))
        np.testing.assert_array_equal(got, ref_topk(x, k), err_msg=f"{label} k={k}")


# ---- vector reductions and step-size pieces ---------------------------------------------------------
@pytest.mark.parametrize("m", [1, 1000, 300_001])
def test_reductions(device, m):
    rng = np.random.default_rng(m)
    x = rng.standard_normal(m).astype(np.float32)
    y = rng.standard_normal(m).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    xd, yd = put(x, device), put(y, device)
    tol = 1e-15 * m + 1e-15
    assert abs(kernels.dot(xd, yd) - x64 @ y64) <= tol * np.sum(np.abs(x64 * y64))
    assert abs(kernels.sq_dist(xd, yd) - np.sum((x64 - y64) ** 2)) <= tol * np.sum(
        (x64 - y64) ** 2)
    mask = (rng.random(m) < 0.7).astype(np.uint8)
    want = np.max(np.abs(x64[mask == 0])) if np.any(mask == 0) else 0.0
    assert kernels.max_abs_unmasked(xd, put(mask, device)) == want
    assert kernels.max_abs_unmasked(xd, put(np.ones(m, np.uint8), device)) == 0.0
    M = 0.5
    w64 = x64
    den = M + np.sign(w64) * y64
    terms = np.where((w64 != 0) & (den > 0), np.abs(w64) / np.where(den > 0, den, 1), np.inf)
    got = kernels.support_change_step(xd, yd, M)
    assert got == pytest.approx(float(np.min(terms)), rel=1e-15)


@requires_gpu
def test_gpu_results_are_deterministic():
    A32, _ = make_instance("gaussian", 300, 20_000, seed=5)
    rng = np.random.default_rng(5)
    r = rng.standard_normal(300).astype(np.float32)
    x = rng.standard_normal(20_000).astype(np.float32)
    idx = np.sort(rng.choice(20_000, 2000, replace=False))
    Ad, rd, xd = put(A32, "cuda"), put(r, "cuda"), put(x, "cuda")
    calls = [lambda: host(kernels.atr(Ad, rd)), lambda: host(kernels.ax_dense(Ad, xd)),
             lambda: host(kernels.ax_sparse(Ad, idx, x[idx])),
             lambda: kernels.gram_rows(Ad, idx), lambda: kernels.dot(xd, xd),
             lambda: host(kernels.topk_abs(xd, 777))]
    for call in calls:
        first = call()
        for _ in range(3):
            np.testing.assert_array_equal(call(), first)


# ---- the solvers: written once, so CUDA must agree with the CPU ------------------------------------
@pytest.mark.parametrize("method", chita_ext.METHODS)
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_solve_matches_cpu(device, method, dtype):
    A32, w_bar = make_instance("correlated", 48, 900, seed=7)
    A = dict(variants(A32))[dtype]
    k, lam = 200, 1e-2 * float(np.sum(to64(A) ** 2)) / 900
    cpu = chita_ext.solve(A, w_bar, k, lam=lam, method=method, max_iter=50)
    res = cpu if device == "cpu" else chita_ext.solve(put(A, device), w_bar, k, lam=lam,
                                                      method=method, max_iter=50)
    assert np.count_nonzero(res.w) <= k
    assert np.all(np.diff(res.support) > 0)
    # the reported objective is f(w) in float64
    assert res.objective == pytest.approx(ref_objective(A, res.w, w_bar, lam), rel=1e-5)
    if method in ("mp", "bso"):  # no iteration: same support, same values up to rounding
        np.testing.assert_array_equal(res.support, cpu.support)
        np.testing.assert_allclose(res.w, cpu.w, rtol=1e-3, atol=1e-4 * np.max(np.abs(cpu.w)))
    if method == "bso":
        want = backsolve(A, res.support, w_bar.astype(np.float64), lam)
        assert res.objective <= ref_objective(A, want, w_bar, lam) * (1 + 1e-5) + 1e-9
    # Iterative and combinatorial methods may branch differently on rounding (a step-size
    # test, a swap gain near 0): compare outcomes, not paths.
    rel = 1e-5 if method in ("mp", "bso") else 1e-2
    assert res.objective <= cpu.objective * (1 + rel) + 1e-12
    assert cpu.objective <= res.objective * (1 + rel) + 1e-12


# ---- device placement --------------------------------------------------------------------------------
@requires_gpu
def test_vectors_move_once_and_mixing_that_copies_A_raises():
    import torch

    A32, w_bar = make_instance("gaussian", 20, 300, seed=9)
    res_host_vec = chita_ext.solve(put(A32, "cuda"), w_bar, 30, lam=0.1, method="bso")
    res_dev_vec = chita_ext.solve(put(A32, "cuda"), torch.from_numpy(w_bar).cuda(), 30,
                                  lam=0.1, method="bso")
    np.testing.assert_array_equal(res_host_vec.w, res_dev_vec.w)
    with pytest.raises(ValueError, match="A is on the CPU"):  # would need A on the GPU
        chita_ext.solve(A32, torch.from_numpy(w_bar).cuda(), 30, lam=0.1)
    row_major = torch.from_numpy(np.ascontiguousarray(A32)).cuda()
    with pytest.raises(ValueError, match="column-major"):
        chita_ext.solve(row_major, w_bar, 30, lam=0.1)


@requires_gpu
def test_bad_device_index_raises():
    with pytest.raises(ValueError, match="must be in"):
        _core.Backend("cuda", chita_ext.cuda_device_count(), 0, 0)


# ---- build checks: run everywhere ------------------------------------------------------------------------
def test_build_info_reports_cuda():
    info = chita_ext.build_info()
    assert isinstance(info["cuda"], bool)
    assert info["cuda_device_count"] == chita_ext.cuda_device_count()
    if info["cuda"]:
        archs = info["cuda_architectures"].split(";")
        # explicit SASS for A100 and H100/H200 plus PTX for newer GPUs; never "native"
        assert {"sm_80", "sm_90", "compute_90"} <= set(archs), archs
        assert not any("native" in a for a in archs)
    else:
        assert info["cuda_architectures"] == ""
        assert chita_ext.cuda_device_count() == 0


def test_cuda_device_count_never_raises():
    count = chita_ext.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    if not BUILT_WITH_CUDA:
        assert count == 0


@pytest.mark.skipif(BUILT_WITH_CUDA, reason="this build has the CUDA backend")
def test_cpu_only_build_raises_documented_error():
    # the single dispatch point, as solve() reaches it for a CUDA tensor
    with pytest.raises(RuntimeError, match=r"built without CUDA; reinstall with .*CHITA_CUDA=ON"):
        _core.Backend("cuda", 0, 0, 0)


@pytest.mark.skipif(not BUILT_WITH_CUDA or HAS_GPU,
                    reason="needs a CUDA build on a machine without a GPU")
def test_cuda_build_without_gpu_raises_clear_error():
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        _core.Backend("cuda", 0, 0, 0)
