import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hakd import models
from hakd.cli import main
from hakd.config import TrainConfig
from hakd.errors import CheckpointError, TrainingError
from hakd.train import CHECKPOINT, METRICS, fit, load_trained
from tests.conftest import REPO, band_split, needs_fashion_mnist


def tiny_splits(n=64, seed=0):
    split = band_split(n, seed)
    return split, split


def test_fit_learns_and_writes_metrics(tmp_path):
    train, test = tiny_splits()
    torch.manual_seed(0)
    net = models.create("resnet20", in_channels=1, num_classes=4)
    history = fit(net, train, test, TrainConfig(epochs=4, batch_size=16, lr=0.05, threads=1), tmp_path, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    rows = list(csv.DictReader(open(tmp_path / METRICS)))
    assert len(rows) == 4 and float(rows[-1]["test_acc"]) == pytest.approx(history[-1]["test_acc"], rel=1e-5)


def test_existing_checkpoint_needs_resume(tmp_path):
    train, test = tiny_splits()
    net = models.create("resnet20", in_channels=1, num_classes=4)
    fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path, progress=False)


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    train, test = tiny_splits()
    net = models.create("resnet20", in_channels=1, num_classes=4)
    fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another run"):
        fit(net, train, test, TrainConfig(epochs=2, batch_size=16), tmp_path, resume=True, progress=False)


def test_corrupt_checkpoint_is_reported_as_such(tmp_path):
    train, test = tiny_splits()
    net = models.create("resnet20", in_channels=1, num_classes=4)
    fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path, progress=False)
    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        fit(net, train, test, TrainConfig(epochs=2, batch_size=32), tmp_path, resume=True, progress=False)


def test_nan_loss_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    train, test = tiny_splits()
    net = models.create("resnet20", in_channels=1, num_classes=4)
    fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path, progress=False)
    with torch.no_grad():
        net.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan.*--resume"):
        fit(net, train, test, TrainConfig(epochs=1, batch_size=32), tmp_path / "b", progress=False)
    assert (tmp_path / CHECKPOINT).is_file()


def test_cli_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["train", "resnet21", "--out", str(tmp_path)]) == 2
    assert "valid names: densenet100" in capsys.readouterr().err
    assert main(["train", "resnet20", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"junk")
    assert main(["train", "resnet20", "--resume", "--limit-train", "8", "--out", str(tmp_path / "run")]) == 2
    assert "damaged" in capsys.readouterr().err


def _train_cmd(out, epochs):
    return [sys.executable, "-m", "hakd.cli", "train", "resnet20", "--epochs", str(epochs), "--limit-train", "768",
            "--limit-test", "128", "--batch-size", "64", "--threads", "1", "--out", str(out), "--resume"]


@pytest.mark.slow
@needs_fashion_mnist
def test_sigkill_mid_epoch_then_resume_loses_at_most_one_epoch(tmp_path):
    """Kill training in its second epoch; --resume continues from epoch 1 and ends where an unbroken run ends."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_train_cmd(tmp_path / "killed", 3), cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    metrics = tmp_path / "killed" / METRICS
    deadline = time.time() + 120
    while not metrics.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert metrics.exists(), "the first epoch never finished"
    time.sleep(0.5)  # well inside the second epoch (~3 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(metrics.read_text().splitlines()) - 1
    assert finished >= 1
    resumed = subprocess.run(_train_cmd(tmp_path / "killed", 3), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {tmp_path / 'killed'} after epoch {finished}/3" in resumed.stdout
    whole = subprocess.run(_train_cmd(tmp_path / "whole", 3), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, b = load_trained(tmp_path / "killed"), load_trained(tmp_path / "whole")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after resume"
    assert [r.split(",")[5] for r in metrics.read_text().splitlines()] == \
        [r.split(",")[5] for r in (tmp_path / "whole" / METRICS).read_text().splitlines()]
