"""Stage counts from the sparsity, and the plan cut to fit a time budget."""
import pytest

from chita_ext.stage_plan import StagePlanner, auto_stages


def test_auto_stages():
    assert [auto_stages(s) for s in (0.0, 0.1, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.999)] == \
        [1, 1, 5, 8, 11, 16, 16, 16, 16]


def test_no_budget_runs_the_whole_schedule():
    plan = StagePlanner(0.9, 4, "poly", None)
    got = []
    for s in plan:
        got.append(s)
        plan.stage_done(1e6, 1e6)
    assert len(got) == 4 and got[-1] == 0.9 and got == sorted(got)


def test_budget_cuts_the_remaining_stages_and_reaches_the_final_sparsity():
    plan = StagePlanner(0.95, 16, "poly", budget=10.0)
    got, elapsed = [], 0.0
    for s in plan:
        got.append(s)
        elapsed += 2.0  # every stage takes 2 s: 4 fit in 95% of 10 s (5% kept in reserve)
        plan.stage_done(elapsed, 2.0)
    assert len(got) == 4 and got[-1] == 0.95 and plan.replanned
    assert got == sorted(got)


def test_over_budget_still_ends_at_the_final_sparsity():
    plan = StagePlanner(0.9, 8, "linear", budget=1.0)
    got = []
    for s in plan:
        got.append(s)
        plan.stage_done(5.0 * len(got), 5.0)
    assert got[-1] == 0.9 and len(got) == 2
