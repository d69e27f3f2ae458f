"""Progress: one line per phase off a terminal; nothing with progress=False."""
import pytest

from chita_ext.progress import phase


def test_one_line_when_not_a_terminal(capsys):
    bar = phase(10, "gradients", unit="row")
    for _ in range(10):
        bar.update(1)
    bar.set_postfix_str("done")
    bar.close()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gradients: 10 row in ") and "(done)" in err[0]


def test_disabled_prints_nothing(capsys):
    bar = phase(3, "x", enabled=False)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_prune_quiet_and_verbose(capsys):
    torch = pytest.importorskip("torch")
    import chita_ext
    from chita_ext.models import MLPNet
    torch.manual_seed(0)
    data = [(torch.randn(64, 8), torch.randint(0, 3, (64,))) for _ in range(4)]
    model = MLPNet(8, (6,), 3)
    chita_ext.prune(model, torch.nn.CrossEntropyLoss(), data, 0.5, n_samples=64,
                    heldout=32, stages=2, progress=False)
    assert capsys.readouterr().err == ""
    chita_ext.prune(MLPNet(8, (6,), 3), torch.nn.CrossEntropyLoss(), data, 0.5, n_samples=64,
                    heldout=32, stages=2)
    text = capsys.readouterr().err
    assert "\r" not in text  # no bar redraws in a log: one line per phase
    err = text.splitlines()
    assert any(l.startswith("CHITA++ stages: 2 stage") for l in err)
    assert sum(l.startswith("stage ") for l in err) == 2 and all("Traceback" not in l for l in err)
    assert sum(l.startswith("gradients: 64 row in ") for l in err) == 2


def test_finetune_progress_is_one_line_off_a_terminal(capsys):
    torch = pytest.importorskip("torch")
    from chita_ext.finetuning import finetune
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    finetune(model, torch.nn.CrossEntropyLoss(), data, {}, 3, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and err.startswith("fine-tune: 3 step in ") and err.count("\n") == 1
    finetune(model, torch.nn.CrossEntropyLoss(), data, {}, 3, progress=False)
    assert capsys.readouterr().err == ""
