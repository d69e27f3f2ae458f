"""Single-process pieces of chita_ext.distributed: splits, the Lipschitz start pattern,
the rank-1 Cholesky update, the jittered factorisation, the no-group error, and the
helpers of prune() under torch.distributed (batch dealing, state digests, rank paths)."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

import chita_ext.distributed as D
from chita_ext.distributed.greedy_path import chol_rank1
from chita_ext.distributed.layout import ShardLayout, balanced_ranges
from chita_ext.distributed.linalg import cholesky_with_jitter
from chita_ext.distributed.lipschitz import start_pattern


@pytest.mark.parametrize("total,parts", [(203, 2), (203, 3), (7, 7), (5, 8), (0, 3)])
def test_balanced_ranges_cover_in_order(total, parts):
    ranges = balanced_ranges(total, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [D.column_range(total, r, parts) for r in range(parts)] == ranges


def test_layout_owners():
    layout = ShardLayout.from_sizes([50, 100, 53], rank=1)
    assert (layout.p, layout.begin, layout.end, layout.size) == (203, 50, 150, 100)
    assert layout.owners(0, 50) == [0]
    assert layout.owners(45, 110) == [0, 1]
    assert layout.owners(10, 203) == [0, 1, 2]
    assert layout.owners(150, 151) == [2]


def _xorshift_pattern(p):
    s, out = 2463534242, []
    for _ in range(p):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        out.append(1.0 if s & 1 else -1.0)
    return np.array(out, np.float32)


@pytest.mark.parametrize("offset,length", [(0, 3000), (0, 1), (1, 7), (123, 2500), (2999, 1)])
def test_start_pattern_matches_the_sequential_generator(offset, length):
    """Each rank's slice of the C++ power-iteration start vector, by GF(2) jump-ahead."""
    want = _xorshift_pattern(3000)[offset:offset + length]
    np.testing.assert_array_equal(start_pattern(offset, length), want)


def test_chol_rank1_update_matches_refactoring():
    rng = np.random.default_rng(0)
    n = 9
    B = rng.standard_normal((n, 12))
    P = B @ B.T + 0.5 * np.eye(n)
    L = np.asfortranarray(np.linalg.cholesky(P))
    x = rng.standard_normal(n)
    assert chol_rank1(L, x.copy(), 1.0)
    np.testing.assert_allclose(L @ L.T, P + np.outer(x, x), rtol=1e-12, atol=1e-12)
    big = 10 * L[:, 0] * np.sqrt(n)  # a downdate that breaks definiteness is refused
    assert not chol_rank1(L.copy(order="F"), big, -1.0)


def test_cholesky_with_jitter_factors_semidefinite():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((6, 3))
    P = torch.from_numpy(B @ B.T)  # rank 3 of 6: needs jitter
    L = cholesky_with_jitter(P)
    err = (L @ L.T - P).abs().max().item()
    assert 0 < err < 1e-6 * P.diagonal().mean().item()


def test_needs_an_initialised_group():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        D.solve(np.ones((2, 3), np.float32, order="F"), np.ones(3, np.float32), 1, lam=1.0)


# ---- prune() under torch.distributed: the single-process pieces ----------------------------
def test_rank_batches_deal_the_stream_round_robin_and_cycle():
    from chita_ext.distributed.finetune import RankBatches

    data = [(torch.full((2,), i), torch.tensor([i])) for i in range(5)]
    take = lambda it, n: [int(next(it)[1]) for _ in range(n)]  # noqa: E731
    assert take(iter(RankBatches(data, 0, 2)), 5) == [0, 2, 4, 1, 3]  # 5 batches, 2 ranks
    assert take(iter(RankBatches(data, 1, 2)), 5) == [1, 3, 0, 2, 4]
    assert take(iter(RankBatches(data[:1], 2, 3)), 2) == [0, 0]  # fewer batches than ranks
    with pytest.raises(ValueError, match="no batches"):
        next(iter(RankBatches([], 0, 2)))


def test_state_digest_sees_every_bit_of_parameters_and_buffers():
    from chita_ext.distributed.sync import state_digest

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    base = state_digest(model)
    assert state_digest(model) == base and 0 <= base < 2**63
    with torch.no_grad():
        w = model[0].weight
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(1.0))  # one ulp
    assert state_digest(model) != base
    after_weight = state_digest(model)
    model[1].num_batches_tracked += 1  # a buffer
    assert state_digest(model) != after_weight


def test_rank_paths_and_writes_without_a_group():
    from chita_ext.distributed.launch import join_torchrun, on_rank0
    from chita_ext.distributed.prune_stage import _rank_path, distributed_stage

    assert str(_rank_path("/tmp/A.npy", 2)) == "/tmp/A.rank2.npy"
    assert str(_rank_path("/tmp/grads", 0)) == "/tmp/grads.rank0.npy"
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    assert distributed_stage("bso", ()) is None  # no group: single-process prune
    assert on_rank0(lambda: "wrote", result="skipped") == "wrote"
    assert on_rank0(lambda: "wrote", result="skipped", rank_hint=1) == "skipped"
    if "WORLD_SIZE" not in os.environ:
        assert join_torchrun() is False and not torch.distributed.is_initialized()
