"""Every kernel against a float64 NumPy reference, for both dtypes and layouts."""
from __future__ import annotations

import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from chita_ext import kernels

from conftest import make_instance, on_device
from reference import to64, topk_abs


def variants(A):
    """(label, matrix, tolerance) for float32 / bfloat16 x column- / row-major."""
    bf = A.astype(ml_dtypes.bfloat16)
    return [
        ("f32-col", np.asfortranarray(A), 1e-5),
        ("f32-row", np.ascontiguousarray(A), 1e-5),
        ("bf16-col", np.asfortranarray(bf), 1e-5),
        ("bf16-row", np.ascontiguousarray(bf), 1e-5),
    ]


@pytest.fixture(params=[("gaussian", 37), ("heavy", 64)], ids=["gaussian-n37", "heavy-n64"])
def instance(request):
    kind, n = request.param  # odd n: every SIMD tail; even n: the bfloat16 word-pair path
    A, _ = make_instance(kind, n, 1500, seed=11)
    return A


def _close(got, want, rtol):
    got = np.asarray(got.cpu() if hasattr(got, "cpu") else got, np.float64)
    scale = np.max(np.abs(want)) + 1e-30
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale * 10)


def test_atr_and_subset(instance, device):
    rng = np.random.default_rng(1)
    r = rng.standard_normal(instance.shape[0]).astype(np.float32)
    idx = np.sort(rng.choice(instance.shape[1], 100, replace=False))
    for label, A, tol in variants(instance):
        if device == "cuda" and label.endswith("row"):
            continue
        A_dev = on_device(A, device)
        want = to64(A).T @ r
        _close(kernels.atr(A_dev, r), want, tol)
        _close(kernels.atr_subset(A_dev, r, idx), want[idx], tol)


def test_portable_loops_without_avx2():
    """CHITA_NO_AVX2=1 forces the portable loops; they must pass the same checks."""
    env = dict(os.environ, CHITA_NO_AVX2="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
           "-k", "atr_and_subset or ax_sparse_and_dense or gram"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=os.path.dirname(__file__))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def test_ax_sparse_and_dense(instance, device):
    rng = np.random.default_rng(2)
    idx = np.sort(rng.choice(instance.shape[1], 300, replace=False))
    x = rng.standard_normal(300).astype(np.float32)
    xd = rng.standard_normal(instance.shape[1]).astype(np.float32)
    for label, A, tol in variants(instance):
        if device == "cuda" and label.endswith("row"):
            continue
        A_dev = on_device(A, device)
        _close(kernels.ax_sparse(A_dev, idx, x), to64(A)[:, idx] @ x, tol)
        _close(kernels.ax_dense(A_dev, xd), to64(A) @ xd, tol)


@pytest.mark.parametrize("k", [5, 37, 200])  # k < n, k = n, k > n
def test_gram(instance, device, k):
    idx = np.sort(np.random.default_rng(k).choice(instance.shape[1], k, replace=False))
    for label, A, _ in variants(instance):
        if device == "cuda" and label.endswith("row"):
            continue
        AS = to64(A)[:, idx]
        A_dev = on_device(A, device)
        np.testing.assert_allclose(kernels.gram_rows(A_dev, idx), AS @ AS.T, rtol=1e-10,
                                   atol=1e-9 * np.abs(AS @ AS.T).max())
        np.testing.assert_allclose(kernels.gram_cols(A_dev, idx), AS.T @ AS, rtol=1e-10,
                                   atol=1e-9 * np.abs(AS.T @ AS).max())


def _within_bound(got, want, magnitude, what):
    """|got - want| <= 1e-13 * (|A_S| |A_S|^T) entrywise: float64 accumulation (a float32 sum
    would be off by ~1e-7 of it)."""
    err, lim = np.abs(got - want), 1e-13 * magnitude + 1e-300
    assert np.all(err <= lim), f"{what}: worst error / bound {np.max(err / lim):.3g}"


# Around every edge of the blocking: 1, the 12 x 4 register tiles, the 96-row macro tiles,
# the 256-deep reduction blocks.
@pytest.mark.parametrize("n,k", [(1, 1), (1, 700), (5, 1), (13, 257), (97, 40), (130, 300)])
def test_gram_shapes_against_float64(n, k, device):
    rng = np.random.default_rng(1000 * n + k)
    p = max(n, k) + 50
    A = (rng.standard_normal((n, p)) * np.exp(rng.standard_normal(p))).astype(np.float32)
    idx = np.sort(rng.choice(p, k, replace=False))
    kc = min(k, 200)
    for label, M, _ in variants(A):
        if device == "cuda" and label.endswith("row"):
            continue
        AS = to64(M)[:, idx]
        mag = np.abs(AS)
        K = kernels.gram_rows(on_device(M, device), idx)
        _within_bound(K, AS @ AS.T, mag @ mag.T, f"gram_rows {label}")
        np.testing.assert_array_equal(K, K.T)
        G = kernels.gram_cols(on_device(M, device), idx[:kc])
        _within_bound(G, AS[:, :kc].T @ AS[:, :kc], mag[:, :kc].T @ mag[:, :kc],
                      f"gram_cols {label}")
        np.testing.assert_array_equal(G, G.T)


def test_gram_threads_give_identical_bits():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((150, 3000)).astype(np.float32)
    idx = np.sort(rng.choice(3000, 2000, replace=False))
    for label, M, _ in variants(A):
        K1 = kernels.gram_rows(M, idx, threads=1)
        G1 = kernels.gram_cols(M, idx[:400], threads=1)
        for threads in (2, 3):
            np.testing.assert_array_equal(kernels.gram_rows(M, idx, threads=threads), K1,
                                          err_msg=f"{label} threads={threads}")
            np.testing.assert_array_equal(kernels.gram_cols(M, idx[:400], threads=threads), G1,
                                          err_msg=f"{label} threads={threads}")


_GRAM_SCRIPT = """
import sys
import ml_dtypes, numpy as np
from chita_ext import kernels
rng = np.random.default_rng(9)
A = (rng.standard_normal((61, 900)) * np.exp(rng.standard_normal(900))).astype(np.float32)
idx = np.sort(rng.choice(900, 700, replace=False))
out = []
for M in (np.asfortranarray(A), np.ascontiguousarray(A.astype(ml_dtypes.bfloat16))):
    out += [kernels.gram_rows(M, idx), kernels.gram_cols(M, idx[:100])]
np.savez(sys.argv[1], *out)
"""


def test_gram_portable_path_gives_the_avx2_bits(tmp_path):
    """Products of float32 values are exact in float64, and both tiles sum in one order: the
    portable path (CHITA_NO_AVX2=1) must reproduce the default path bit for bit."""
    script = tmp_path / "gram.py"
    script.write_text(_GRAM_SCRIPT)
    results = {}
    for label, extra in (("default", {}), ("portable", {"CHITA_NO_AVX2": "1"})):
        env = {k: v for k, v in os.environ.items() if k != "CHITA_NO_AVX2"}
        env.update(extra)
        out = tmp_path / f"{label}.npz"
        done = subprocess.run([sys.executable, str(script), str(out)], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(out) as f:
            results[label] = [f[name] for name in f.files]
    for a, b in zip(results["default"], results["portable"]):
        np.testing.assert_array_equal(a, b)


def test_threads_do_not_change_results(instance):
    # 20,000 columns: enough work (> 2 x 256 KB) for the kernels to use two threads.
    wide = np.tile(instance, (1, 14))[:, :20_000]
    rng = np.random.default_rng(3)
    r = rng.standard_normal(wide.shape[0]).astype(np.float32)
    x = rng.standard_normal(wide.shape[1]).astype(np.float32)
    for _, A, _ in variants(wide):
        np.testing.assert_array_equal(kernels.atr(A, r, threads=1), kernels.atr(A, r, threads=2))
        np.testing.assert_array_equal(kernels.ax_dense(A, x, threads=1),
                                      kernels.ax_dense(A, x, threads=2))


@pytest.mark.parametrize("m,k", [(1, 1), (10, 10), (1000, 1), (100_000, 777), (300_000, 150_000)])
def test_topk_random(m, k, device):
    x = np.random.default_rng(m + k).standard_normal(m).astype(np.float32)
    got = kernels.topk_abs(on_vec(x, device), k)
    np.testing.assert_array_equal(_host(got), topk_abs(x, k))


def test_topk_ties_zeros_and_signs(device):
    rng = np.random.default_rng(4)
    x = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5], np.float32), 50_000)
    for k in (1, 7, 20_000, 49_999):
        got = _host(kernels.topk_abs(on_vec(x, device), k))
        np.testing.assert_array_equal(got, topk_abs(x, k))
    # Same magnitudes differing only in the low bits land in one radix bucket.
    y = (1.0 + np.arange(70_000, dtype=np.float32) * np.float32(1e-7))[::-1].copy()
    np.testing.assert_array_equal(_host(kernels.topk_abs(on_vec(y, device), 12_345)),
                                  np.arange(12_345))


def test_topk_threads_agree():
    x = np.random.default_rng(5).standard_normal(500_001).astype(np.float32)
    np.testing.assert_array_equal(kernels.topk_abs(x, 4321, threads=1),
                                  kernels.topk_abs(x, 4321, threads=2))


def test_vector_reductions(device):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((2, 100_003)).astype(np.float32)
    assert kernels.dot(on_vec(x, device), y) == pytest.approx(np.dot(x.astype(np.float64), y),
                                                             rel=1e-12)
    assert kernels.sq_dist(on_vec(x, device), y) == pytest.approx(
        np.sum((x.astype(np.float64) - y) ** 2), rel=1e-12)
    mask = rng.random(x.size) < 0.5
    assert kernels.max_abs_unmasked(on_vec(x, device), mask) == np.abs(x[~mask]).max()
    assert kernels.max_abs_unmasked(on_vec(x, device), np.ones(x.size, bool)) == 0.0


def test_support_change_step(device):
    rng = np.random.default_rng(7)
    w, g = rng.standard_normal((2, 1000)).astype(np.float32)
    w[::50] = 0.0
    M = 0.7
    want = np.inf
    for wj, gj in zip(w.astype(np.float64), g.astype(np.float64)):
        den = M + np.sign(wj) * gj
        if wj != 0 and den > 0:
            want = min(want, abs(wj) / den)
    assert kernels.support_change_step(on_vec(w, device), g, M) == pytest.approx(want, rel=1e-12)


def on_vec(x, device):
    if device == "cpu":
        return x
    import torch

    return torch.from_numpy(x).to("cuda")


def _host(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else x
