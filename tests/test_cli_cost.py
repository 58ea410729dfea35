import pytest

from hakd.cli import main


def test_groups_lists_prunable_and_kept(capsys):
    assert main(["groups", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "14 channel groups, 12 prunable" in out and "kept: reaches the model output" in out


def test_table_commands(tmp_path, capsys):
    from hakd.cost.measure import Measurement
    from hakd.cost.table import LatencyTable

    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    LatencyTable(b).record("llvm", "sig", "default", 1, Measurement(1e-5, 0.0))
    assert main(["table", "merge", str(b), "--table", str(a)]) == 0
    assert main(["table", "list", "--table", str(a)]) == 0
    assert main(["table", "export", str(tmp_path / "rows.csv"), "--table", str(a)]) == 0
    out = capsys.readouterr().out
    assert "1 rows added" in out and "llvm (threads=1, warm): 1 kernels" in out and "wrote 1 rows" in out


def test_bad_target_and_group_are_clear(capsys):
    assert main(["profile", "resnet20", "--target", "cuda"]) == 2
    assert "Accepted forms" in capsys.readouterr().err
    assert main(["staircase", "resnet20", "--group", "nope"]) == 2
    assert "prunable groups: conv1" in capsys.readouterr().err
    assert main(["profile", "resnet20", "--target", "llvm -mcpu=cortex-a57"]) == 2
    assert "device='rpc://" in capsys.readouterr().err


@pytest.mark.slow
def test_profile_staircase_export(tmp_path, capsys):
    table = str(tmp_path / "t.sqlite")
    assert main(["profile", "resnet20", "--table", table]) == 0
    assert "predicted latency" in capsys.readouterr().out
    assert main(["staircase", "resnet20", "--group", "layers.0.conv1", "--table", table, "--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "<- optimal" in out and (tmp_path / "s.png").stat().st_size > 1000
    assert main(["export", "resnet20", "--table", table, "--out", str(tmp_path / "exp")]) == 0
    assert "max |hakd - PyTorch|" in capsys.readouterr().out
