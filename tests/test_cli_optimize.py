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
    assert "HAKD student" in printed and "report:" in printed
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "Fisher student", "HAKD student"}
    assert (out / "export" / "model.onnx").is_file() and (out / "report" / "report.md").is_file()
