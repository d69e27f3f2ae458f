"""The memory planner (scale_plan), the disk store (tiled_store / tiled_gradients) and
prune() on the planned path."""
import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import chita_ext  # noqa: E402
from chita_ext import scale_plan as sp  # noqa: E402
from chita_ext.block_solver import WORKER_BYTES  # noqa: E402
from chita_ext.gradients import collect_gradients  # noqa: E402
from chita_ext.tiled_gradients import collect_tiled  # noqa: E402
from chita_ext.tiled_store import TiledStore  # noqa: E402

GB = 1 << 30
BIG = 25_557_032  # ResNet50's conv + linear weights


def plan(p=BIG, k=None, **kw):
    kw.setdefault("available", 20 * GB)
    kw.setdefault("free_disk", 60 * GB)
    kw.setdefault("base_rss", 1 * GB)
    return sp.plan_scale(p, k or p // 10, **kw)


def test_default_samples_small_and_paper_scale():
    assert sp.default_samples(1_000_000) == (1000, 1)
    assert sp.default_samples(1_000_000, 256, 4) == (256, 4)
    assert sp.default_samples(BIG) == (8000, 16)
    assert sp.default_samples(BIG, batch_rows=4) == (2000, 4)
    assert sp.default_samples(BIG, n_samples=3000) == (3000, 6)
    assert sp.default_samples(BIG, n_samples=100) == (100, 1)
    assert sp.default_samples(BIG, 640, 8) == (640, 8)


def test_memory_formula_part_by_part():
    p, k, rows, chunk, tile, panel, threads, base = 10_000_000, 1_000_000, 500, 1 << 30, \
        256 << 20, 256 << 20, 2, 700 << 20
    ev, sample = 300 << 20, 150_000
    m = sp.memory_parts(p, k, rows, 2, "disk", True, 500, chunk, tile, panel, threads, base,
                        eval_mem=ev, sample_bytes=sample)
    assert m["store"] == 0 and m["vectors"] == 8 * p
    assert m["gradients"] == int(1.5 * chunk) + tile + 8 * p
    blocks = -(-p // 500)
    per_block = 500 * rows * 8 + 500 * 500 * 4 + 2 * 500 * 500 * 4  # cap at the block size
    assert m["solve"] == (3 * panel + threads * min(WORKER_BYTES, blocks * per_block)
                          + 5 * (5 * p + 8 * k) + 3 * (4 * p + 8 * k)
                          + blocks * 500 * (8 * 5 + 4) + 24 * p)
    assert m["evaluation"] == ev + 8 * p
    assert m["guard"] == 2048 * sample + ev + 12 * p
    assert m["peak"] == base + max(8 * p + max(m["gradients"], m["solve"], m["evaluation"]),
                                   m["guard"])
    ram = sp.memory_parts(p, k, rows, 4, "ram", False, 500, chunk, tile, panel, threads, base,
                          guard=False)
    assert ram["store"] == rows * p * 4 and ram["guard"] == 0
    assert ram["solve"] == 3 * 8 * rows * rows + 32 * k
    assert ram["peak"] == base + rows * p * 4 + 8 * p + max(ram["gradients"], ram["solve"])
    # a huge guard chunk (large inputs) can be the peak on its own
    img = sp.memory_parts(p, k, rows, 2, "disk", True, 500, chunk, tile, panel, threads, base,
                          sample_bytes=4 << 20)
    assert img["peak"] == base + img["guard"]


def test_choices_follow_the_memory():
    small = plan(p=300_000)  # below the scale regime: main's defaults, nothing planned
    assert (small.dtype, small.store, small.block, small.active) == ("float32", "ram",
                                                                     False, False)
    assert (small.n_samples, small.batch_rows, small.chunk_bytes) == (1000, 1, sp.CHUNK_MIN)
    mid = plan(p=4_200_000, available=24 * GB)  # MobileNetV1: float32 A (7.8 GiB) + chunk
    assert (mid.dtype, mid.store, mid.block, mid.active) == ("float32", "ram", True, True)
    assert mid.rows == 500 and mid.store_bytes == 500 * 4_200_000 * 4
    m = mid.memory()
    assert m["store"] + max(m["gradients"], m["solve"]) <= mid.budget
    half = plan(p=4_200_000)  # budget 12 GiB: float32 + a 3 GiB chunk do not fit, bf16 does
    assert (half.dtype, half.store) == ("bfloat16", "ram")
    assert any("bfloat16 in RAM" in r for r in half.reasons)
    big = plan()  # ResNet50: 25.6 GB of bfloat16 does not fit: disk, blocks
    assert (big.dtype, big.store, big.block) == ("bfloat16", "disk", True)
    assert big.store_bytes == 500 * BIG * 2
    assert big.memory()["peak"] <= 16 * GB
    assert big.describe()["predicted_peak_gb"] == round(big.memory()["peak"] / GB, 2)


def test_overrides_are_honoured():
    p = plan(p=4_200_000, dtype="bfloat16", options={"store": "disk", "block_size": 250,
                                                     "scratch": "/somewhere"})
    assert (p.dtype, p.store, p.block_size) == ("bfloat16", "disk", 250)
    assert p.scratch_file(3).startswith("/somewhere/")
    p = plan(p=4_200_000, options={"block": False, "ram_budget": 30 * GB})
    assert (p.block, p.store, p.dtype) == (False, "ram", "float32")
    p = plan(p=BIG, n_samples=1600, batch_rows=16, options={"ram_budget": 20 * GB})
    assert (p.rows, p.store, p.dtype) == (100, "ram", "float32")  # 9.5 GiB: fits 20 GiB
    p = plan(p=BIG, out="/data/A.bin", n_samples=1600, batch_rows=16)
    assert p.store == "disk" and p.scratch_file(1) == "/data/A.bin"
    p = plan(p=300_000, options={"block": True})  # the block path on a small model
    assert p.block and p.active and p.store == "ram"


@pytest.mark.parametrize("kwargs, match", [
    (dict(options={"bogus": 1}), "unknown option"),
    (dict(options={"store": "tape"}), "'ram' or 'disk'"),
    (dict(options={"block": "yes"}), "True or False"),
    (dict(options={"block_size": 0}), "positive int"),
    (dict(options={"block": True}, method="iht"), "stands in for method='bso'"),
    (dict(dtype="float16"), "float32"),
    (dict(options={"store": "ram"}), "exceed the RAM budget"),
    (dict(free_disk=10 * GB), "free disk"),
    (dict(options={"block": False}), "needs the whole A in RAM"),
    (dict(method="iht"), "needs the whole A in RAM"),
])
def test_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan(**kwargs)


def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(6 * 6 * 6, 5))


def _tiny_data(n=900, seed=0):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)
    return [(X[i:i + 100], y[i:i + 100]) for i in range(0, n, 100)]


def test_tiled_store_panels_equal_the_matrix(tmp_path):
    rng = np.random.default_rng(0)
    p, n, T = 37, 11, 4  # 3 tiles, the last padded with one zero row
    A = rng.standard_normal((n, p)).astype(np.float32)
    st = TiledStore(tmp_path / "A.bin", p, n, "float32", T)
    for t in range(st.tiles):
        rows = A[t * T:(t + 1) * T]
        st.buffer[:, :len(rows)] = torch.from_numpy(rows.T.copy())
        st.flush_tile()
    assert st.complete and st.n_pad == 12
    assert os.path.getsize(tmp_path / "A.bin") == st.nbytes == 12 * p * 4
    out = None
    for c0, c1 in ((0, 37), (5, 6), (10, 30)):
        out = st.panel(c0, c1, out=out)
        np.testing.assert_array_equal(out[:, :n].numpy(), A[:, c0:c1].T)
        assert not out[:, n:].any()
    np.testing.assert_allclose(st.row_energies().numpy(), (A.astype(np.float64) ** 2).sum(1))
    assert st.fro_norm_sq() == pytest.approx(float((A.astype(np.float64) ** 2).sum()))
    with pytest.raises(ValueError, match="outside"):
        st.panel(30, 40)
    st.close()
    assert not (tmp_path / "A.bin").exists()


@pytest.mark.parametrize("dtype, m", [("float32", 1), ("bfloat16", 3)])
def test_collect_tiled_equals_collect_gradients(tmp_path, dtype, m):
    model, data, loss = _tiny_net(), _tiny_data(), torch.nn.CrossEntropyLoss()
    n = 90
    ref = collect_gradients(model, loss, data, n, dtype=dtype, batch_rows=m, chunk=7)
    st = collect_tiled(model, loss, data, n, tmp_path / "A.bin", dtype=dtype, batch_rows=m,
                       chunk=7, tile_bytes=7 * 2 * ref.p * ref.buffer.element_size())
    assert st.tiles > 1 and st.n == ref.n
    panel = st.panel(0, st.p)[:, :st.n]
    np.testing.assert_array_equal(panel.float().numpy(), ref.buffer.float().numpy())
    np.testing.assert_allclose(st.mean_grad, ref.mean_grad, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(st.row_energies().numpy(), ref.row_energies().numpy(),
                               rtol=1e-5)
    assert st.scale == ref.scale
    st.close()


def test_prune_on_the_planned_disk_and_block_path(tmp_path):
    model, data, loss = _tiny_net(), _tiny_data(), torch.nn.CrossEntropyLoss()
    res = chita_ext.prune(copy.deepcopy(model), loss, data, 0.8, n_samples=300, stages=2,
                          threads=1, progress=False, heldout=200,
                          scale={"store": "disk", "block": True, "block_size": 40,
                                 "scratch": str(tmp_path)})
    assert res.scale["store"] == "disk" and res.scale["block"]
    assert res.sparsity == pytest.approx(0.8, abs=1e-3)
    st = res.stages[-1]
    assert st["block"]["passes"] >= 2 and st["block"]["kept"] == res.k
    assert np.isfinite(st["objective"]) and np.isfinite(st["mp_objective"])
    assert list(tmp_path.iterdir()) == []  # every stage's store file is deleted


def test_small_model_defaults_are_main_defaults():
    model, data, loss = _tiny_net(), _tiny_data(1400), torch.nn.CrossEntropyLoss()
    kw = dict(stages=1, threads=1, progress=False, heldout=200)
    a = chita_ext.prune(copy.deepcopy(model), loss, data, 0.7, **kw)
    b = chita_ext.prune(copy.deepcopy(model), loss, data, 0.7, n_samples=1000, batch_rows=1,
                        dtype="float32", **kw)
    assert a.scale["n_samples"] == 1000 and a.scale["block"] is False
    assert a.objective == b.objective and a.lam == b.lam
    for name in a.masks:
        assert torch.equal(a.masks[name], b.masks[name])
