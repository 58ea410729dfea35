"""The training device: names checked, "auto" on this machine, mixed precision on the CPU, and
the accelerator path where one exists (skipped with the reason elsewhere)."""

import pytest
import torch

from hakd.config import DistillConfig, PruneConfig, TrainConfig
from hakd.device import training_device
from hakd.errors import ConfigError
from hakd.train import fit
from tests.conftest import band_split
from tests.passes.test_fisher import Small, traced

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (a CPU build of torch "
                                                                 "or no GPU): the accelerator path runs where one is")


def test_device_names_are_checked_and_auto_picks_what_is_here():
    auto = training_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    assert training_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "gpu", "", "CPU"):
        with pytest.raises(ConfigError, match='"auto", "cpu", "cuda", "cuda:N" or "mps"'):
            training_device(bad)
    for cfg in (TrainConfig, PruneConfig, DistillConfig):
        with pytest.raises(ConfigError, match=f"{cfg.__name__}.device"):
            cfg(device="gpu")
        with pytest.raises(ConfigError, match=f"{cfg.__name__}.precision .*fp32, bf16, fp16"):
            cfg(precision="fp8")
    with pytest.raises(ConfigError, match="fp16 training .* needs a CUDA device"):
        training_device("cpu", "fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal is for machines without it")
def test_an_accelerator_that_is_not_here_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="sees no CUDA device.*train on 'cpu'"):
        training_device("cuda:1")
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        fit(Small(), band_split(16), band_split(8), TrainConfig(epochs=1, device="cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_resumes_on_any_device_but_not_in_another_precision():
    base = TrainConfig(epochs=3)
    assert base.identity() == TrainConfig(epochs=3, device="cuda").identity() == TrainConfig(epochs=3, device="cpu").identity()
    assert "device" not in base.identity() and "precision" not in base.identity()  # runs from before them still resume
    assert TrainConfig(epochs=3, precision="bf16").identity()["precision"] == "bf16"


def _interrupt_in_epoch_end(monkeypatch, epoch: int):
    """Stop a run (as Ctrl-C would) while it ends ``epoch``: its checkpoint is the previous epoch's."""
    import hakd.train

    real = hakd.train.write_metrics

    def write_metrics(out, history):
        if len(history) == epoch:
            raise KeyboardInterrupt
        real(out, history)

    monkeypatch.setattr(hakd.train, "write_metrics", write_metrics)


def test_bf16_autocast_trains_on_the_cpu_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    train, test = band_split(96), band_split(32, seed=1)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, threads=1, device="cpu", precision="bf16")
    torch.manual_seed(0)
    whole = Small()
    history = fit(whole, train, test, config, tmp_path / "whole")
    assert all(p.dtype == torch.float32 for p in whole.parameters())  # autocast: the weights stay fp32
    torch.manual_seed(0)
    fp32 = Small()
    fit(fp32, train, test, TrainConfig(**{**config.to_dict(), "precision": "fp32"}), tmp_path / "fp32")
    assert not all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), fp32.state_dict().values()))
    torch.manual_seed(0)
    with monkeypatch.context() as m:
        _interrupt_in_epoch_end(m, 2)
        with pytest.raises(KeyboardInterrupt):
            fit(Small(), train, test, config, tmp_path / "r")
    with pytest.raises(Exception, match="belongs to another run"):  # the precision is part of the run
        fit(Small(), train, test, TrainConfig(**{**config.to_dict(), "precision": "fp32"}), tmp_path / "r", resume=True)
    resumed = Small()
    again = fit(resumed, train, test, config, tmp_path / "r", resume=True)
    assert len(again) == 3 and [h["test_acc"] for h in again] == [h["test_acc"] for h in history]
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))


@CUDA
def test_training_started_on_cuda_resumes_on_the_cpu_to_float_tolerance(tmp_path, monkeypatch):
    train, test = band_split(96), band_split(32, seed=1)
    gpu = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cuda")
    torch.manual_seed(0)
    whole = Small()
    fit(whole, train, test, gpu, tmp_path / "whole")
    assert next(whole.parameters()).device.type == "cpu"  # back on the CPU for measuring and compiling
    torch.manual_seed(0)
    with monkeypatch.context() as m:
        _interrupt_in_epoch_end(m, 2)
        with pytest.raises(KeyboardInterrupt):
            fit(Small(), train, test, gpu, tmp_path / "r")
    resumed = Small()
    fit(resumed, train, test, TrainConfig(**{**gpu.to_dict(), "device": "cpu"}), tmp_path / "r", resume=True)
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-3)


@CUDA
def test_fisher_and_distillation_run_on_cuda_and_return_cpu_models(tmp_path):
    from hakd.distill import distill
    from hakd.passes.fisher import fisher_prune
    from hakd.passes.rebuild import rebuild

    teacher, groups = traced()
    train, test = band_split(64), band_split(32, seed=1)
    result = fisher_prune(teacher, groups, train, PruneConfig(target="channels", amount=9, prune_every=2, batch_size=16,
                                                              device="cuda"), tmp_path / "fisher")
    assert next(result.model.parameters()).device.type == "cpu"
    student = rebuild(result.model, groups, result.plan)
    for precision in ("fp16", "bf16"):
        distill(teacher, student, train, test, DistillConfig(epochs=1, batch_size=16, lr=0.01, device="cuda",
                                                             precision=precision), tmp_path / precision)
        assert {p.device.type for p in student.parameters()} == {p.device.type for p in teacher.parameters()} == {"cpu"}


def test_fisher_and_distillation_train_in_bf16_on_the_cpu(tmp_path):
    from hakd.distill import distill
    from hakd.passes.fisher import fisher_prune
    from hakd.passes.rebuild import rebuild

    teacher, groups = traced()
    train, test = band_split(64), band_split(32, seed=1)
    result = fisher_prune(teacher, groups, train, PruneConfig(target="channels", amount=9, prune_every=2, batch_size=16,
                                                              threads=1, device="cpu", precision="bf16"), tmp_path / "f")
    assert sum(result.plan.width(g.name) for g in groups.prunable()) == 9
    assert all(v.dtype == float and (v >= 0).all() for v in result.importance.values())  # saliency summed in float
    student = rebuild(result.model, groups, result.plan)
    history = distill(teacher, student, train, test, DistillConfig(epochs=1, batch_size=16, lr=0.01, threads=1,
                                                                   device="cpu", precision="bf16"), tmp_path / "d")
    assert len(history) == 1 and history[0]["train_loss"] == history[0]["train_loss"]  # finite, not NaN
