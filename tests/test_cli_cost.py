import pytest

from hakd.cli import main


def test_groups_lists_prunable_and_kept(capsys):
    assert main(["groups", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "14 channel groups, 12 prunable" in out and "kept: reaches the model output" in out


def test_groups_says_which_groups_come_in_slices_and_which_moves_become_gathers(tmp_path, capsys):
    from hakd.checkpoint import save_checkpoint
    from tests.passes.tv_models import TV_MODELS

    for name in ("resnext_tiny", "shufflenet_v2_tiny"):
        save_checkpoint({"model": TV_MODELS[name](), "input_shape": [1, 3, 32, 32]}, tmp_path / f"{name}.pt")
    assert main(["groups", "--model-file", str(tmp_path / "resnext_tiny.pt")]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "in 4 slices" in lines["reduce.0"] and "in 4 slices" in lines["grouped.0"] and "slices" not in lines["stem.0"]
    assert main(["groups", "--model-file", str(tmp_path / "shufflenet_v2_tiny.pt")]) == 0
    assert "4 channel moves (shuffles, splits) are replayed as gathers" in capsys.readouterr().out


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


@pytest.mark.slow
def test_prune_staircases_snap_and_budget(tmp_path, capsys):
    import json

    from hakd.plan import PrunePlan
    from hakd.staircases import Staircases

    table, fisher = str(tmp_path / "t.sqlite"), tmp_path / "uniform"
    assert main(["prune", "resnet20", "--method", "uniform", "--amount", "0.4", "--out", str(fisher)]) == 0
    assert {"plan.json", "base.pt", "model.pt", "importance.json"} <= {p.name for p in fisher.iterdir()}
    groups = "layers.0.conv1,layers.3.conv1"
    assert main(["staircases", str(fisher), "--groups", groups, "--table", table]) == 0
    assert "optimal" in capsys.readouterr().out
    plan = PrunePlan.load(fisher / "plan.json")
    stairs = Staircases.load(fisher / "staircases.json", plan)
    assert set(stairs.groups) == set(groups.split(","))
    assert main(["snap", str(fisher), "--mode", "up", "--table", table, "--out", str(tmp_path / "up")]) == 0
    up = PrunePlan.load(tmp_path / "up" / "plan.json")
    for g, st in stairs.groups.items():
        assert up.width(g) >= plan.width(g) and (up.width(g) in st.optimal or up.width(g) == plan.width(g))
    assert main(["snap", str(fisher), "--mode", "up", "--table", table, "--out", str(tmp_path / "up")]) == 2
    assert "not empty" in capsys.readouterr().err  # nothing a user made is overwritten
    # 0.95: on AVX-512 a 16-channel group runs 16-channel kernels at any width (one channel block), so ResNet-20's
    # blocks reach only ~0.9 of its latency; more on AVX2's 8-channel blocks
    assert main(["snap", str(fisher), "--budget", "0.95", "--table", table, "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "snap.json").read_text())
    assert summary["after_s"] <= summary["budget_s"] == pytest.approx(0.95 * summary["unpruned_s"])
    assert main(["snap", str(fisher), "--budget", "0.001", "--table", table, "--out", str(tmp_path / "c")]) == 2
    assert "minimum reachable" in capsys.readouterr().err
    assert main(["snap", str(fisher), "--budget", "1.5", "--out", str(tmp_path / "d")]) == 2
    assert "in (0, 1]" in capsys.readouterr().err
