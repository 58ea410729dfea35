"""hakd.optimize end to end on a tiny model and data, with TVM: every stage, resume, the report's numbers."""

import json

import pytest
import torch

import hakd
from hakd.config import DistillConfig, PruneConfig, TrialConfig
from hakd.cost.table import LatencyTable
from hakd.errors import ConfigError
from hakd.plan import PrunePlan
from tests.conftest import band_split
from tests.passes.test_fisher import Small

PRUNE = PruneConfig(target="channels", amount=9, prune_every=3, batch_size=16, lr=0.01, threads=1)


class Wider(Small):
    """Small with widths across a channel block (20 and 24: the kernels of 32 channels on AVX-512,
    of 24 on AVX2), so that pruning can reach a faster step and a budget under the teacher's can be met."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 20, 3, padding=1), torch.nn.Conv2d(20, 24, 3, padding=1)
        self.bn, self.fc = torch.nn.BatchNorm2d(24), torch.nn.Linear(24, 4)
class Widest(Small):
    """Wide enough (40 and 48 channels) that one keep ratio rounded to a channel block has a few
    students to choose from, and the budget's allocation can differ from it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 40, 3, padding=1), torch.nn.Conv2d(40, 48, 3, padding=1)
        self.bn, self.fc = torch.nn.BatchNorm2d(48), torch.nn.Linear(48, 4)


DISTIL = DistillConfig(epochs=1, batch_size=16, lr=0.01, threads=1)


def test_an_out_folder_of_something_else_or_for_another_target_is_refused_before_any_work(tmp_path):
    data = (band_split(16), band_split(16))
    (tmp_path / "prune").mkdir()
    (tmp_path / "prune" / "base.pt").write_bytes(b"a user's prune folder")
    with pytest.raises(ConfigError, match="holds other files \\(base.pt\\) and no optimize run"):
        hakd.optimize(Small(), data=data, out=tmp_path / "prune", log=lambda s: None)
    (tmp_path / "run" / "student").mkdir(parents=True)
    (tmp_path / "run" / "student" / "decision.json").write_text('{"snap": "up", "target": "llvm -mcpu=cortex-a57"}')
    with pytest.raises(ConfigError, match="chosen for 'llvm -mcpu=cortex-a57', not 'llvm -mcpu="):
        hakd.optimize(Small(), "host", data=data, out=tmp_path / "run", log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == ["decision.json", "student"]  # nothing written
    assert (tmp_path / "prune" / "base.pt").read_bytes() == b"a user's prune folder"


def test_bad_options_are_refused_before_any_work(tmp_path):
    data = (band_split(16), band_split(16))
    with pytest.raises(ConfigError, match="valid values: up, down, nearest"):
        hakd.optimize(Small(), data=data, snap="left", out=tmp_path)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        hakd.optimize(Small(), data=data, budget=1.5, out=tmp_path)
    with pytest.raises(ConfigError, match="DataConfig or a"):
        hakd.optimize(Small(), data="fashion", out=tmp_path)


@pytest.mark.slow
def test_optimize_runs_every_stage_resumes_and_reports(tmp_path):
    torch.manual_seed(0)
    data = (band_split(96), band_split(32, seed=1))
    table = LatencyTable(tmp_path / "t.sqlite")
    result = hakd.optimize(Small(), "host", data, prune=PRUNE, snap="up", distill=DISTIL, table=table,
                           out=tmp_path / "run", log=lambda s: None)
    out = tmp_path / "run"
    for path in ("fisher/plan.json", "fisher/staircases.json", "student/plan.json", "distill/model.pt",
                 "export/hakd-export.json", "export/model.onnx", "report/report.json", "report/report.md",
                 "report/layer_latency.png", "report/accuracy_latency.png"):
        assert (out / path).is_file(), path
    assert PrunePlan.load(out / "student" / "plan.json") == result.plan
    report = json.loads((out / "report" / "report.json").read_text())
    hakd_row = report["models"]["HAKD student"]
    assert hakd_row["params"] == sum(p.numel() for p in result.student.parameters())
    assert hakd_row["accuracy"] == report["distill_history"][-1]["test_acc"]
    assert hakd_row["predicted_s"] == pytest.approx(result.export.predicted_latency_s, rel=0.3)
    assert {r["group"] for r in report["groups"]} == {"conv1", "conv2"}
    assert all(r["final_width"] == result.plan.width(r["group"]) for r in report["groups"])
    steady = report["host_steadiness"]  # a reference kernel was timed before the kernels were
    assert steady["checks"] >= 1 and steady["baseline_s"] > 0 and 0 <= steady["slow_checks"] <= steady["checks"]
    text = (out / "report" / "report.md").read_text()
    assert report["target"] in text and "Widths: the Fisher widths snapped up to their staircases." in text
    assert ("Timed on a busy host" in text) == (steady["slow_checks"] > 0)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "export" / "model.onnx"))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = result.student.eval()(x).numpy()
    assert abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-4
    again = hakd.optimize(Small(), "host", data, prune=PRUNE, snap="up", distill=DISTIL, table=table,
                          out=tmp_path / "run", log=lambda s: None)  # everything resumes from its folder
    assert again.plan == result.plan
    assert all(torch.equal(a, b) for a, b in zip(again.student.state_dict().values(), result.student.state_dict().values()))
    with pytest.raises(ConfigError, match="widths chosen with other options"):  # a run folder is one decision
        hakd.optimize(Small(), "host", data, prune=PRUNE, snap="down", distill=DISTIL, table=table, out=tmp_path / "run",
                      log=lambda s: None)


@pytest.mark.slow
def test_optimize_within_a_budget_records_the_fit_and_reports_it(tmp_path):
    torch.manual_seed(0)
    data = (band_split(96), band_split(32, seed=1))
    table, out = LatencyTable(tmp_path / "t.sqlite"), tmp_path / "run"

    def run():
        return hakd.optimize(Widest(), "host", data, prune=PRUNE, budget=0.7, distill=DISTIL, table=table, out=out,
                             log=lambda s: None)

    result = run()
    report = json.loads((out / "report" / "report.json").read_text())
    decision, fit = report["decision"], report["decision"]["fit"]
    assert report["budget_s"] == pytest.approx(0.7 * report["teacher_predicted_s"])
    assert fit["rounds"] and fit["predicted_s"] <= report["budget_s"]  # the rebuilt student's prediction, within it
    assert fit["predicted_s"] in [r["predicted_s"] for r in fit["rounds"]]
    assert fit == json.loads((out / "student" / "budget_fit.json").read_text())
    # by default three ways are tried, the simple answer (one keep ratio) among them, on a quarter of 96 images held out
    assert decision["ways"] == ["importance", "params,min_keep=0.5", "uniform"] and decision["trial"]["held_out"] == 24
    uniform = next(t for t in fit["trials"] if t["way"] == "uniform")
    assert uniform["predicted_s"] <= report["budget_s"]
    kept = next(t for t in fit["trials"] if t["way"] == fit["way"])
    assert kept["held_out_accuracy"] >= uniform["held_out_accuracy"]
    text = (out / "report" / "report.md").read_text()
    assert "the trials cost" in text and "ONNX Runtime" in text
    if fit["way"] == "uniform" or uniform.get("same_as") == fit["way"]:  # the kept student is the uniform one
        assert report["simple_answer"] == {"kept": True} and "the simple answer itself" in text
    else:  # the uniform student, distilled the same way, is a row of the report, with HAKD's lead over it
        row, simple = report["models"]["uniform student"], report["simple_answer"]
        uniform_plan = PrunePlan.load(out / "uniform" / "plan.json")
        assert uniform_plan == PrunePlan.load(out / "trials" / "uniform" / "plan.json")
        assert (out / "uniform" / "distill" / "model.pt").is_file()  # distilled with the student's recipe
        assert row["held_out_accuracy"] == uniform["held_out_accuracy"] and row["onnxruntime_s"] > 0
        assert simple["test_images"] == 32 and simple["held_out_lead"] == pytest.approx(
            kept["held_out_accuracy"] - uniform["held_out_accuracy"])
        assert "HAKD's student leads it by" in text or "HAKD's student trails it by" in text
        assert simple["measured_ratio"] == pytest.approx(
            report["models"]["HAKD student"]["measured_s"] / row["measured_s"])
    text = (out / "report" / "report.md").read_text()
    assert "Widths: a latency budget of" in text and f"the one kept: {fit['predicted_s'] * 1e6:.1f} us" in text
    again = run()  # the widths and the fit that chose them are read back, not chosen again
    assert again.plan == result.plan
    assert json.loads((out / "report" / "report.json").read_text())["decision"] == report["decision"]


@pytest.mark.slow
def test_optimize_tries_each_way_of_spending_the_budget_and_keeps_the_most_accurate(tmp_path):
    torch.manual_seed(0)
    data = (band_split(96), band_split(32, seed=1))
    table, out = LatencyTable(tmp_path / "t.sqlite"), tmp_path / "run"
    trial = TrialConfig(images=64, held_out=32)

    def run(min_keep=(0.0, 1.0)):  # no group pruned at all (1.0) is over the budget
        return hakd.optimize(Wider(), "host", data, prune=PRUNE, budget=0.9, value=("importance", "params"),
                             min_keep=min_keep, trial=trial, distill=DISTIL, table=table, out=out, log=lambda s: None)

    result = run()
    report = json.loads((out / "report" / "report.json").read_text())
    decision, fit = report["decision"], report["decision"]["fit"]
    assert decision["ways"] == ["importance", "importance,min_keep=1", "params", "params,min_keep=1"]
    assert [t["way"] for t in fit["trials"]] == ["importance", "params"]
    assert list(fit["unreachable"]) == ["importance,min_keep=1", "params,min_keep=1"]
    assert all("cannot be met" in e for e in fit["unreachable"].values())
    assert all(t["predicted_s"] <= report["budget_s"] for t in fit["trials"])  # every way fits the budget
    best = max(fit["trials"], key=lambda t: (t["held_out_accuracy"], -t["held_out_loss"]))
    assert fit["way"] == best["way"] and decision["value"] == best["way"] and decision["min_keep"] == 0.0
    folder = out / "trials" / best["way"].replace(",", "_").replace("=", "")
    assert result.plan == PrunePlan.load(folder / "plan.json")  # the student is the chosen way's
    assert fit["predicted_s"] == json.loads((folder / "budget_fit.json").read_text())["predicted_s"]
    assert f"kept: {best['way']} (not within the budget, so not tried: importance,min_keep=1, params,min_keep=1)" in \
        (out / "report" / "report.md").read_text()
    (out / "student" / "decision.json").unlink()  # as if stopped after the trials: they are read back, not redone
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("checkpoint.pt")}
    assert run().plan == result.plan
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("checkpoint.pt")} == mtimes
    (out / "student" / "decision.json").unlink()
    with pytest.raises(ConfigError, match="widths chosen with other options"):  # trials of other ways are not mixed in
        run(min_keep=(0.0, 0.9))


class GroupedShuffle(torch.nn.Module):
    """A grouped conv (2 groups) and a channel shuffle of a concatenation: pruned per slice, replayed as a gather."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv3 = torch.nn.Conv2d(16, 6, 1)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        y = torch.cat([a, torch.relu(self.grouped(a))], 1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(torch.relu(self.conv3(y)).mean((2, 3)))


@pytest.mark.slow
def test_optimize_prunes_grouped_convs_per_slice_and_shuffles_as_gathers(tmp_path):
    torch.manual_seed(0)
    data = (band_split(96), band_split(32, seed=1))
    prune = PruneConfig(target="channels", amount=12, prune_every=3, batch_size=16, lr=0.01, threads=1)
    result = hakd.optimize(GroupedShuffle(), "host", data, prune=prune, snap="up", distill=DISTIL,
                           table=LatencyTable(tmp_path / "t.sqlite"), out=tmp_path / "run", log=lambda s: None)
    assert result.plan.slices == {"conv1": 2, "grouped": 2}
    assert all(result.plan.width(g) % 2 == 0 for g in ("conv1", "grouped"))
    assert any(n.target is torch.index_select for n in result.student.graph.nodes)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "run" / "export" / "model.onnx"))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = result.student.eval()(x).numpy()
    assert abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-4
