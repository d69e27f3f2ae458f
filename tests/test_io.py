"""save_pruned / load_pruned, atomic output directories, sweep tables and plots."""
import json
import os
import re
import stat

import pytest

torch = pytest.importorskip("torch")

from chita_ext.io import (atomic_dir, check_output_dir, load_checkpoint, load_pruned,  # noqa: E402
                          save_pruned)
from chita_ext.models import MLPNet, SmallCNN  # noqa: E402
from chita_ext.params import apply_masks, k_from_sparsity, magnitude_masks, select_params  # noqa: E402
from chita_ext.sweeps import format_table, plot_sweep  # noqa: E402


def _pruned(seed=0):
    torch.manual_seed(seed)
    model = SmallCNN(8, channels=(3, 4))
    sel = select_params(model)
    sel.assign(magnitude_masks(sel, k_from_sparsity(0.8, sel.p)))
    return model, sel.masks()


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_roundtrip_restores_exact_pruned_model(tmp_path, fmt):
    pytest.importorskip("safetensors")
    model, masks = _pruned()
    model.features[1].running_mean.fill_(0.25)  # buffers travel too
    report = {"sparsity": 0.8, "densities": {n: float(m.float().mean()) for n, m in masks.items()},
              "objective": float("nan")}
    out = save_pruned(tmp_path / "run", model, masks, report, format=fmt)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", f"model.{'pt' if fmt == 'torch' else 'safetensors'}",
         f"masks.{'pt' if fmt == 'torch' else 'safetensors'}"])
    fresh = SmallCNN(8, channels=(3, 4))
    loaded, lmasks, rep = load_pruned(out, fresh)
    for (n, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), n
    assert set(lmasks) == set(masks) and all(torch.equal(lmasks[n], masks[n]) for n in masks)
    for n, p in loaded.named_parameters():
        if n in lmasks:
            assert (p[~lmasks[n]] == 0).all()
    assert rep["sparsity"] == 0.8 and rep["objective"] is None and rep["format_version"] == 1
    json.loads((out / "report.json").read_text())  # strict JSON (no NaN)


def test_save_refuses_weights_outside_mask(tmp_path):
    model, masks = _pruned()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    with pytest.raises(ValueError, match="apply_masks"):
        save_pruned(tmp_path / "bad", model, masks)
    assert not (tmp_path / "bad").exists()
    apply_masks(model, masks)
    save_pruned(tmp_path / "good", model, masks)


def test_mismatched_model_is_a_clear_error(tmp_path):
    model, masks = _pruned()
    save_pruned(tmp_path / "run", model, masks)
    with pytest.raises(ValueError, match="factory"):
        load_pruned(tmp_path / "run", MLPNet(64, (8,), 10))
    torch.save({"x": 1}, tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="report.json"):
        load_pruned(tmp_path, SmallCNN(8))
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "report.json").write_text("{}")
    with atomic_dir(target) as tmp:  # replaces, never merges
        (tmp / "b").write_text("2")
    assert [p.name for p in target.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_directory_that_is_not_ours_is_never_replaced(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "empty").mkdir()
    for target, match in [(tmp_path / "a_file", "is an existing file"),
                          (tmp_path / "a_file" / "run", "a_file is a file"),
                          (tmp_path / "mine", "holds no earlier output")]:
        with pytest.raises(ValueError, match=match):
            with atomic_dir(target) as tmp:
                (tmp / "report.json").write_text("{}")
    assert (tmp_path / "a_file").read_text() == "x"
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty", "mine"]
    check_output_dir(tmp_path / "empty")  # empty, new and earlier outputs are fine
    check_output_dir(tmp_path / "new" / "deeper")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_normal_modes_from_the_umask(tmp_path, umask):
    pytest.importorskip("safetensors")
    model, masks = _pruned()
    old = os.umask(umask)
    try:
        out = save_pruned(tmp_path / "run", model, masks, {"x": 1},
                          extra_files={"summary.md": "s"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for f in out.iterdir():  # safetensors itself writes 0o600
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name


def test_bad_checkpoints_name_what_they_are_and_the_fix(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file
    fix = r"torch\.save\(model\.state_dict\(\), path\)"
    torch.save(MLPNet(64, (8,), 10), tmp_path / "whole.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02garbage" * 5)
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    torch.save({"epoch": 3, "model": MLPNet(64, (8,), 10).state_dict()}, tmp_path / "wrapped.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    cases = [("whole.pt", r"pickled chita_ext\.models\.MLPNet object"),
             ("garbage.pt", "torch.save file"), ("text.pt", "torch.save file"),
             ("bad.safetensors", "not a valid safetensors file"),
             ("wrapped.pt", r"entries 'epoch', 'model' are not tensors"),
             ("tensor.pt", "holds a Tensor, not a state_dict")]
    for name, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            load_checkpoint(tmp_path / name)
        assert re.search(fix, str(info.value)) and "\n" not in str(info.value), name
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)
    sd = MLPNet(64, (8,), 10).state_dict()
    save_file(sd, str(tmp_path / "named_wrongly.pt"))  # safetensors content, .pt name
    assert load_checkpoint(tmp_path / "named_wrongly.pt").keys() == sd.keys()


def test_sweep_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"sparsity": s, "method": m, "accuracy": a, "loss": 1.0, "seconds": 2.0}
            for s, m, a in [(0.5, "MP", 0.9), (0.5, "CHITA", 0.95), (0.9, "MP", 0.5),
                            (0.9, "CHITA", 0.85)]]
    result = {"dense": {"accuracy": 0.97, "loss": 0.1}, "rows": rows}
    table = format_table(result).splitlines()
    assert table[0].startswith("| sparsity | dense | MP acc % | CHITA acc %")
    assert table[3].startswith("| 0.90 | 97.00 | 50.00 | 85.00 | 2.0")
    png = plot_sweep(result, tmp_path / "p.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "p.png").read_bytes() == png
