"""The lam search: a downhill walk on the half-decade grid instead of a solve per value."""
import copy
import math

import numpy as np
import pytest

from chita_ext.lam_search import grid_index, grid_value, search_grid, search_lam


def test_grid():
    assert grid_value(0) == 1.0 and grid_value(-2) == pytest.approx(0.1)
    for i in range(-12, 8):
        assert grid_index(grid_value(i)) == i


@pytest.mark.parametrize("best", [-9, -4, -2, 0, 3])
@pytest.mark.parametrize("start", [1e-4, 0.1, 10.0])
def test_finds_the_minimum_of_a_unimodal_curve_from_anywhere(best, start):
    calls = []

    def evaluate(rel):
        calls.append(rel)
        return (np.log10(rel) * 2 - best) ** 2 + 1.0, rel

    got = search_lam(evaluate, start=start)
    assert grid_index(got.rel) == best and got.candidate == got.rel
    assert len(calls) == len(set(calls)) == got.evaluations  # every point evaluated once
    # It costs the distance walked plus two neighbours, not the whole grid.
    assert got.evaluations <= abs(grid_index(start) - best) + 3


def test_a_long_walk_keeps_only_the_candidates_it_can_still_choose():
    import gc
    import weakref

    class Candidate:  # stands in for a SolveResult holding a p-vector
        pass

    refs = {}

    def evaluate(rel):
        c = Candidate()
        refs[grid_index(rel)] = weakref.ref(c)
        return (math.log10(rel) - 3.0) ** 2, c  # minimum at rel = 1e3: a long walk up

    choice = search_lam(evaluate, start=1e-2)
    gc.collect()
    best = grid_index(choice.rel)
    assert best == grid_index(1e3) and choice.candidate is refs[best]()
    alive = sorted(i for i, r in refs.items() if r() is not None)
    assert alive == [best]  # neighbours dropped with the search's own cache
    assert len(choice.tried) == len(refs) >= 10  # every loss still reported


def test_edges_widen_and_bounds_hold():
    got = search_lam(lambda rel: (-np.log10(rel), None), start=0.1)  # better and better
    assert got.rel == pytest.approx(1e4)  # walked to the upper bound, no further
    got = search_lam(lambda rel: (float("nan"), None), start=0.1)  # NaN counts as worst
    assert got.rel == pytest.approx(0.1) and got.evaluations == 3


def test_same_choice_as_the_exhaustive_grid_on_real_pruning():
    """Held-out loss of a pruned digits MLP as a function of lam: the walk from the
    default start picks what evaluating every grid value picks."""
    torch = pytest.importorskip("torch")
    from chita_ext.datasets import digits_loaders
    from chita_ext.gradients import SampleStream, collect_gradients
    from chita_ext.models import MLPNet
    from chita_ext.params import select_params
    from chita_ext.ridge_path import RidgePath

    torch.manual_seed(0)
    train, _ = digits_loaders(batch_size=64, seed=0)
    model = MLPNet(64, (32,), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = torch.nn.CrossEntropyLoss()
    for _ in range(5):
        for x, y in train:
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
    model.eval()
    stream = SampleStream(train)
    xh, yh = stream.take(400)
    store = collect_gradients(model, loss, train, 300, stream=stream)
    sel = select_params(model)
    w_bar = sel.flatten()
    path = RidgePath(store.A, w_bar, int(0.15 * sel.p))
    scale = store.fro_norm_sq() / sel.p
    probe = copy.deepcopy(model)
    psel = select_params(probe)

    def evaluate(rel):
        res = path.solve(rel * scale)
        psel.assign(res.w)
        with torch.no_grad():
            return float(loss(probe(xh), yh)), res

    grid = [grid_value(i) for i in range(-10, 5)]
    exhaustive = search_grid(evaluate, grid)
    walked = search_lam(evaluate, start=0.1)
    curve = [l for _, l in exhaustive.tried]
    j = int(np.argmin(curve))
    assert all(np.diff(curve[:j + 1]) <= 0) and all(np.diff(curve[j:]) >= 0), "unimodal here"
    assert walked.rel == pytest.approx(exhaustive.rel)
    assert walked.evaluations < len(grid)
