"""`hakd optimize` with a model from MODULE:FACTORY and from a saved file, and its errors."""

import json

import pytest
import torch

from hakd.cli import main
from tests.cli_models import tiny
from tests.conftest import needs_fashion_mnist

QUICK = ["--data", "fashion-mnist", "--limit-train", "256", "--limit-test", "64", "--prune-every", "2", "--amount", "0.7",
         "--epochs", "1", "--lr", "0.01", "--torch-threads", "1"]


def test_model_sources_are_checked(tmp_path, capsys):
    assert main(["optimize", "--model", "no_such_package_xyz.models:resnet18", "--out", str(tmp_path / "a")]) == 2
    assert "pip install no_such_package_xyz" in capsys.readouterr().err
    assert main(["optimize", "--model", "tests.cli_models", "--out", str(tmp_path / "a")]) == 2
    assert "PACKAGE.MODULE:FACTORY" in capsys.readouterr().err
    (tmp_path / "weights.pt").write_bytes(b"not torch")
    assert main(["optimize", "--model-file", str(tmp_path / "weights.pt"), "--out", str(tmp_path / "a")]) == 2
    assert "not a torch file" in capsys.readouterr().err
    torch.save(tiny().state_dict(), tmp_path / "state.pt")
    assert main(["optimize", "--model-file", str(tmp_path / "state.pt"), "--out", str(tmp_path / "a")]) == 2
    assert "not an nn.Module" in capsys.readouterr().err
    assert main(["optimize", "--out", str(tmp_path / "a")]) == 2
    assert "give the model one way" in capsys.readouterr().err


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("source", ["factory", "file"])
def test_optimize_a_model_from_a_factory_or_a_file(tmp_path, source, capsys):
    if source == "factory":
        model_args = ["--model", "tests.cli_models:tiny", "--num-classes", "10"]
    else:
        torch.manual_seed(0)
        torch.save(tiny(), tmp_path / "model.pt")
        model_args = ["--model-file", str(tmp_path / "model.pt")]
    out = tmp_path / "run"
    assert main(["optimize", *model_args, *QUICK, "--snap", "up", "--table", str(tmp_path / "t.sqlite"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HAKD student" in printed and "report:" in printed and "Widths: the Fisher widths snapped up" in printed
    report = json.loads((out / "report" / "report.json").read_text())
    simple = report["simple_answer"]  # in snap mode too: the uniform student at the student's predicted latency
    if simple.get("kept") or simple.get("unreachable"):  # the same student, or none that fast
        assert set(report["models"]) == {"teacher", "Fisher student", "HAKD student"}
    else:
        assert set(report["models"]) == {"teacher", "Fisher student", "HAKD student", "uniform student"}
        assert report["models"]["uniform student"]["predicted_s"] <= 1.05 * report["models"]["HAKD student"]["predicted_s"]
        assert "The simple answer" in printed
    assert (out / "export" / "model.onnx").is_file() and (out / "report" / "report.md").is_file()


@pytest.mark.slow
def test_diagnose_names_a_layer_just_past_a_step(tmp_path, capsys):
    from hakd.models import resnet20
    from hakd.passes.groups import find_groups
    from hakd.passes.rebuild import rebuild
    from hakd.passes.trace import trace
    from hakd.plan import PrunePlan

    torch.manual_seed(0)
    gm = trace(resnet20(in_channels=1).eval(), torch.zeros(1, 1, 28, 28))
    groups = find_groups(gm)
    pruned = rebuild(gm, groups, PrunePlan.from_widths({"layers.3.conv1": 17}, groups.widths()))  # one past 16
    torch.save(pruned, tmp_path / "pruned.pt")
    assert main(["diagnose", "--model-file", str(tmp_path / "pruned.pt"), "--groups", "layers.3.conv1", "--headroom", "8",
                 "--table", str(tmp_path / "t.sqlite"), "--plot-dir", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("layers.3.conv1"))
    assert "just past a step; 1 fewer save" in line
    assert "every group snapped down" in out and (tmp_path / "plots" / "layers_3_conv1.png").is_file()


class _Wide(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 48, 3, padding=1)
        self.fc = torch.nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


def test_diagnose_says_what_the_simple_answer_would_keep_at_the_models_latency(tmp_path, capsys):
    from hakd.passes.groups import find_groups
    from hakd.passes.rebuild import rebuild
    from hakd.passes.trace import trace
    from hakd.plan import PrunePlan

    torch.manual_seed(0)
    gm = trace(_Wide().eval(), torch.zeros(1, 1, 12, 12))
    groups = find_groups(gm)
    torch.save(rebuild(gm, groups, PrunePlan.from_widths({"conv1": 13, "conv2": 29}, groups.widths())), tmp_path / "p.pt")
    torch.save(_Wide(), tmp_path / "unpruned.pt")
    argv = ["diagnose", "--model-file", str(tmp_path / "p.pt"), "--input-shape", "1,12,12", "--headroom", "4",
            "--table", str(tmp_path / "t.sqlite")]
    assert main(argv + ["--unpruned", str(tmp_path / "unpruned.pt")]) == 0
    out = capsys.readouterr().out
    model_us = float(next(x for x in out.splitlines() if " thread(s): predicted " in x).split("predicted ")[1].split(" us")[0])
    line = next(x for x in out.splitlines() if x.startswith("the simple answer at this latency"))
    assert "one keep ratio of the unpruned model" in line and "parameters" in line
    assert float(line.split("predicted ")[1].split(" us")[0]) <= model_us * 1.001  # within the model's latency
    torch.save(tiny(), tmp_path / "other.pt")  # not the model it was pruned from: refused before anything is measured
    assert main(argv + ["--unpruned", str(tmp_path / "other.pt")]) == 2
    assert "give the model it was pruned from" in capsys.readouterr().err
