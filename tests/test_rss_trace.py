"""Per-phase peak RSS (rss_trace), the planner's evaluation batch, and the temperature
probe's forward without autograd."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import chita_ext  # noqa: E402
from chita_ext import fisher, rss_trace  # noqa: E402
from chita_ext import scale_plan as sp  # noqa: E402

MB = 1 << 20


@pytest.fixture
def tracing():
    rss_trace.enable(True)
    yield
    rss_trace.enable(False)


def _touch(nbytes):
    a = np.ones(nbytes // 8)  # written: resident
    return float(a[::4096].sum())


def test_off_by_default_records_nothing():
    assert not rss_trace.enabled()
    with rss_trace.phase("gradients"):
        _touch(8 * MB)
    assert rss_trace.peaks() == {}


def test_each_phase_gets_its_own_peak(tracing):
    _touch(1 * MB)
    with rss_trace.phase("small"):
        _touch(1 * MB)
    with rss_trace.phase("big"):
        _touch(300 * MB)
    with rss_trace.phase("small"):  # after "big": its peak was reset, not inherited
        _touch(1 * MB)
    peaks = rss_trace.peaks()
    assert set(peaks) == {"small", "big", "other"}
    assert peaks["big"] - peaks["small"] > 250 * MB
    assert peaks["other"] < peaks["big"] - 250 * MB


def test_nested_phases_count_towards_the_outer_one(tracing):
    with rss_trace.phase("outer"):
        with rss_trace.phase("inner"):
            _touch(200 * MB)
    peaks = rss_trace.peaks()
    assert "inner" not in peaks and peaks["outer"] > 200 * MB


def test_prune_reports_measured_peaks_when_tracing(tracing):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(600, 20, generator=g), torch.randint(0, 4, (600,), generator=g)
    data = [(X[i:i + 100], y[i:i + 100]) for i in range(0, 600, 100)]
    res = chita_ext.prune(copy.deepcopy(model), torch.nn.CrossEntropyLoss(), data, 0.7,
                          n_samples=200, heldout=100, stages=1, threads=1, progress=False)
    measured = res.scale["measured_peak_gb"]
    assert {"gradients", "solve", "evaluation", "other"} <= set(measured)
    assert all(v > 0 for v in measured.values())
    parts = res.scale["predicted_parts_gb"]
    assert set(parts) >= {"base", "store", "gradients", "solve", "evaluation", "peak"}


def test_evaluation_batch_fits_the_chunk():
    row = lambda m: m * 100 * MB + 10 * MB  # noqa: E731  (bytes of a row of m samples)
    plan = sp.plan_scale(25_000_000, 2_500_000, available=20 << 30, free_disk=60 << 30,
                         base_rss=1 << 30, row_bytes=row, options={"chunk_bytes": 1 << 30})
    assert plan.eval_batch == (1 << 30) // (110 * MB) == 9
    assert plan.eval_mem == 9 * 110 * MB <= plan.chunk_bytes
    small = sp.plan_scale(300_000, 30_000, available=20 << 30, free_disk=60 << 30,
                          base_rss=1 << 30)
    assert small.eval_batch == sp.EVAL_BATCH


def test_logits_are_batched_and_build_no_graph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Dropout(0.5),
                                torch.nn.Linear(7, 3)).train()
    x = torch.randn(23, 5)
    out = fisher.logits(model, x, batch=4)
    assert model.training  # mode restored
    assert out.shape == (23, 3) and out.grad_fn is None and not out.requires_grad
    with torch.no_grad():
        ref = model.eval()(x)
    torch.testing.assert_close(out, ref)
    y = torch.randint(0, 3, (23,))
    assert fisher.pick_temperature(model.train(), None, x, y, 0.2, batch=5) == \
        fisher.temperature_from_logits(ref, y, 0.2)
