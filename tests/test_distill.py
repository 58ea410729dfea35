"""Distillation: losses by hand, stage matching, resume, bad input, and many processes under torchrun."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from hakd.config import DistillConfig
from hakd.distill import at_loss, attention, distill, kd_loss, match_stages, stage_nodes
from hakd.errors import CheckpointError, ConfigError, TrainingError
from hakd.models import resnet20
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace
from hakd.plan import PrunePlan
from hakd.train import CHECKPOINT, METRICS
from tests.conftest import REPO, band_split, needs_fashion_mnist


def test_kd_loss_by_hand():
    s, t, T = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]), 4.0
    p = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    q = torch.exp(s / T) / torch.exp(s / T).sum(1, keepdim=True)
    hand = (p * (p.log() - q.log())).sum(1).mean() * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(hand.item(), rel=1e-6)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_transfer_by_hand():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 2, 2), torch.randn(2, 5, 2, 2)  # channel counts may differ
    a_s = (s ** 2).mean(1).reshape(2, 4)
    a_t = (t ** 2).mean(1).reshape(2, 4)
    a_s, a_t = a_s / a_s.norm(dim=1, keepdim=True), a_t / a_t.norm(dim=1, keepdim=True)
    assert torch.allclose(attention(s), a_s)
    assert at_loss(s, t).item() == pytest.approx(((a_s - a_t) ** 2).mean().item(), rel=1e-6)


def resnet_pair(widths=None):
    torch.manual_seed(0)
    teacher = trace(resnet20(in_channels=1, num_classes=4).eval(), torch.zeros(1, 1, 8, 8))
    groups = find_groups(teacher)
    plan = PrunePlan.from_widths(widths or {"layers.0.conv1": 8, "layers.6.conv1": 20}, groups.widths())
    return teacher, rebuild(teacher, groups, plan)


def test_stages_are_matched_by_spatial_size_from_the_graphs():
    teacher, student = resnet_pair()
    assert list(stage_nodes(teacher)) == [(8, 8), (4, 4), (2, 2)]
    assert match_stages(teacher, student) == [(8, 8), (4, 4), (2, 2)]


CONFIG = DistillConfig(epochs=2, batch_size=16, lr=0.05, threads=1)


def test_distils_writes_its_run_and_refuses_an_occupied_folder(tmp_path):
    teacher, student = resnet_pair()
    history = distill(teacher, student, band_split(64), band_split(32, seed=1), CONFIG, tmp_path, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"checkpoint.pt", "metrics.csv", "config.json", "model.pt"} <= {p.name for p in tmp_path.iterdir()}
    with pytest.raises(CheckpointError, match="already holds"):
        distill(*resnet_pair(), band_split(64), band_split(32), CONFIG, tmp_path, progress=False)
    other = DistillConfig(**{**CONFIG.to_dict(), "alpha": 0.5})
    with pytest.raises(CheckpointError, match="differs in alpha"):
        distill(*resnet_pair(), band_split(64), band_split(32), other, tmp_path, resume=True, progress=False)


def test_resume_refuses_other_training_data_but_resumes_runs_saved_before_the_fingerprint(tmp_path):
    distill(*resnet_pair(), band_split(64), band_split(32, seed=1), CONFIG, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"differs in .*train_data\.images was 64, now 48"):
        distill(*resnet_pair(), band_split(48), band_split(32, seed=1), CONFIG, tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"differs in train_data\.digest"):  # same size, other images
        distill(*resnet_pair(), band_split(64, seed=2), band_split(32, seed=1), CONFIG, tmp_path, resume=True, progress=False)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    del state["run"]["train_data"]  # as a run saved before the data was part of its identity
    torch.save(state, tmp_path / CHECKPOINT)
    history = distill(*resnet_pair(), band_split(64), band_split(32, seed=1), CONFIG, tmp_path, resume=True, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]


def test_reset_and_inherit_start_differently(tmp_path):
    teacher, inherited = resnet_pair()
    before = {k: v.clone() for k, v in inherited.state_dict().items()}
    one = DistillConfig(**{**CONFIG.to_dict(), "epochs": 1, "lr": 1e-9, "init": "reset"})
    _, reset = resnet_pair()
    distill(teacher, reset, band_split(16), band_split(16), one, tmp_path / "r", progress=False)
    assert not torch.allclose(reset.state_dict()["conv1.weight"], before["conv1.weight"])


def test_bad_input_is_clear(tmp_path):
    teacher, student = resnet_pair()
    other = trace(resnet20(in_channels=1, num_classes=7).eval(), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="gives 4 classes.*gives 7"):
        distill(teacher, other, band_split(16), band_split(16), CONFIG, tmp_path / "a", progress=False)
    flat = trace(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)).eval(), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="no stage of the student matches"):
        match_stages(teacher, flat)
    with torch.no_grad():
        student.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan.*--resume"):
        distill(teacher, student, band_split(16), band_split(16), CONFIG, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()  # the state it started from is kept


def _cmd(teacher, student, out):
    return [sys.executable, "-m", "hakd", "distill", "--teacher", str(teacher), "--student", str(student), "--out", str(out),
            "--epochs", "3", "--limit-train", "1024", "--limit-test", "128", "--batch-size", "64", "--threads", "1",
            "--resume"]


@pytest.mark.slow
@needs_fashion_mnist
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    from hakd.cli import main

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert main(["train", "resnet20", "--epochs", "1", "--limit-train", "512", "--limit-test", "64", "--threads", "1",
                 "--out", str(tmp_path / "teacher")]) == 0
    assert main(["prune", "--run", str(tmp_path / "teacher"), "--method", "l1", "--amount", "0.5",
                 "--out", str(tmp_path / "student")]) == 0
    proc = subprocess.Popen(_cmd(tmp_path / "teacher", tmp_path / "student", tmp_path / "killed"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    metrics = tmp_path / "killed" / METRICS
    deadline = time.time() + 120
    while not metrics.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert metrics.exists(), "the first epoch never finished"
    time.sleep(0.5)  # inside the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for out in ("killed", "whole"):
        done = subprocess.run(_cmd(tmp_path / "teacher", tmp_path / "student", tmp_path / out), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    a = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)["model"].state_dict()
    b = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    """A TCP port nothing listens on now (a fixed one may be taken on a shared machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers_lines(output: str) -> str:
    """What the worker processes printed, without torchrun's own traceback and summary."""
    launcher = ("torch/distributed", "Traceback", "  File ", "    ", "=====", "-----", "raise ", "sys.exit", "torch.distributed")
    return "\n".join(line for line in output.splitlines() if line.strip() and not line.startswith(launcher))[-3000:]


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_and_only_rank_0_writes(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    for n, out in ((1, "one"), (2, "two")):
        run = subprocess.run([torchrun, "--nproc-per-node", str(n), "--master-addr", "127.0.0.1", "--master-port",
                              str(_free_port()), str(REPO / "tests" / "distill_worker.py"), str(tmp_path / out)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, _workers_lines(run.stdout + run.stderr)
    one, two = torch.load(tmp_path / "one" / "weights.pt"), torch.load(tmp_path / "two" / "weights.pt")
    for k in one:
        torch.testing.assert_close(one[k], two[k], atol=1e-5, rtol=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no rank wrote anywhere else
