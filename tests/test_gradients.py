"""Per-sample gradients and the column-major GradientStore."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from chita_ext.gradients import (GradientStore, SampleStream, collect_gradients,  # noqa: E402
                                 per_sample_gradients)
from chita_ext.models import MLPNet, SmallCNN  # noqa: E402
from chita_ext.params import select_params  # noqa: E402


def _model(kind):
    torch.manual_seed(0)
    model = MLPNet(64, (16, 8)) if kind == "mlp" else SmallCNN(8, channels=(4, 6))
    model = model.double()
    model.train()
    model(torch.randn(32, 64, dtype=torch.float64) * 2 + 0.5)  # non-trivial BN statistics
    return model.eval()


def _data(n=20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, [(x[:7], y[:7]), (x[7:13], y[7:13]), (x[13:], y[13:])]


def _loop_reference(model, x, y, sel):
    """One backward() per sample: the ground truth."""
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in sel.params]))
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
def test_per_sample_matches_backward_loop_float64(kind):
    model = _model(kind)
    x, y, data = _data()
    sel = select_params(model)
    ref = _loop_reference(model, x, y, sel)
    chunks = list(per_sample_gradients(model, torch.nn.CrossEntropyLoss(), data, 20, chunk=6))
    got = torch.cat([torch.cat([g[n].reshape(g[n].shape[0], -1) for n in sel.names], 1)
                     for _, g in chunks])
    assert [i0 for i0, _ in chunks] == [0, 6, 12, 18]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
def test_store_is_column_major_and_scaled(kind):
    model = _model(kind)
    x, y, data = _data()
    sel = select_params(model)
    ref = _loop_reference(model, x, y, sel).numpy()
    store = collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 20, chunk=7)
    A = store.A
    assert A.shape == (20, sel.p) and A.dtype == np.float32
    assert A.flags["F_CONTIGUOUS"] and store.buffer.is_contiguous()
    np.testing.assert_allclose(A, ref / np.sqrt(20), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(store.mean_grad, ref.mean(0), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(store.fro_norm_sq(), (ref ** 2).sum() / 20, rtol=1e-5)
    assert not model.training  # mode restored (was eval)


def test_minibatch_rows_bfloat16_memmap(tmp_path):
    model = _model("mlp")
    x, y, data = _data()
    sel = select_params(model)
    ref = _loop_reference(model, x, y, sel).numpy()
    path = tmp_path / "A.npy"
    store = collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 20, batch_rows=4,
                              dtype="bfloat16", out=path)
    assert path.is_file() and path.stat().st_size >= 2 * 5 * sel.p
    A = store.A
    assert A.dtype == torch.bfloat16 and tuple(A.shape) == (5, sel.p) and A.stride() == (1, 5)
    want = ref.reshape(5, 4, -1).mean(1) * np.sqrt(4 / 5)  # Fisher estimate m A^T A / m
    np.testing.assert_allclose(A.float().numpy(), want, rtol=1e-2, atol=1e-2 * np.abs(want).max())
    on_disk = np.load(path, mmap_mode="r")
    assert on_disk.shape == (sel.p, 5) and on_disk.dtype == np.uint16


def test_chunk_size_does_not_change_result():
    model = _model("cnn_bn")
    _, _, data = _data()
    a = collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 18, chunk=1).A
    b = collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 18, chunk=18).A
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_bad_inputs_fail_fast():
    model = _model("mlp")
    _, _, data = _data()
    with pytest.raises(ValueError, match="not a scalar"):
        collect_gradients(model, torch.nn.CrossEntropyLoss(reduction="none"), data, 10)
    with pytest.raises(ValueError, match="n_samples <= 20"):
        collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 21)
    with pytest.raises(ValueError, match="float32"):
        GradientStore(4, 2, dtype="float64")
    with pytest.raises(ValueError, match="batch_rows"):
        collect_gradients(model, torch.nn.CrossEntropyLoss(), data, 10, batch_rows=0)


def test_sample_stream_wraps_and_reports_exhaustion():
    data = [(torch.arange(5.0), torch.arange(5)), (torch.arange(5.0, 8.0), torch.arange(5, 8))]
    s = SampleStream(data)
    x, _ = s.take(6)
    assert x.tolist() == [0, 1, 2, 3, 4, 5]
    x, _ = s.take(4)
    assert x.tolist() == [6, 7, 0, 1]
    with pytest.raises(ValueError, match="ran out"):
        SampleStream(data, cycle=False).take(9)
