"""Kernels are timed in the cache state they meet inside their model; runtime call cost is measured."""

import pytest
import torch
from torch import nn

from hakd.config import ConfigError
from hakd.cost.dispatch import SIGNATURE
from hakd.cost.lower import lower
from hakd.cost.measure import LocalRunner, MeasureConfig, build_kernel
from hakd.cost.profile import Profiler
from hakd.cost.steady import REFERENCE
from hakd.cost.table import LatencyTable
from hakd.passes.trace import trace
from tests.cost.conftest import QUICK


def test_footprint_counts_weights_and_outputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).eval()
    low = lower(trace(model, torch.zeros(1, 3, 8, 8)))
    (k,) = low.kernels.values()
    assert k.shapes == ((1, 3, 8, 8), (1, 3, 3, 3, 16), (1, 8, 1, 1), (1, 8, 8, 8))  # weights packed by 16 output channels
    assert k.weight_args == (1, 2) and k.activation_args == (0,) and k.hot_args == (0, 3)  # input and output kept hot
    assert k.call_modules == (("0",),)  # the packed weights still name their conv
    assert low.footprint_bytes == 4 * (16 * 3 * 3 * 3 + 8 + 8 * 8 * 8) and low.calls == 1


def test_every_context_times_the_kernel_and_a_bad_one_is_a_failed_value(tiny):
    gm, _ = tiny
    k = max(lower(gm).kernels.values(), key=lambda k: k.shapes[1][0] * k.shapes[1][1])
    runner = LocalRunner(QUICK)
    lib, _ = build_kernel(k.func, Profiler("host", table=LatencyTable(":memory:"), measure=QUICK).target)
    for context in ("warm", "cold", "reuse-2MiB", "reuse-2MiB+repeat"):
        m = runner.time(lib, k.shapes, context=context, hot=k.activation_args)
        assert m.ok and m.latency_s > 0, (context, m.error)
    bad = runner.time(lib, k.shapes, context="lukewarm")
    assert not bad.ok and "unknown cache context 'lukewarm'" in bad.error


def test_profiles_use_the_models_context_and_measure_the_call_cost_once(tiny, tmp_path):
    gm, _ = tiny
    table = LatencyTable(tmp_path / "t.sqlite")
    prof = Profiler("host", table=table, measure=QUICK)
    timing = prof.model(gm)
    assert timing.context == "reuse-1MiB"  # TinyRes touches well under 1 MiB per inference
    assert 0 < timing.call_overhead_s < 2e-5
    calls = sum(k.calls for k in timing.kernels)
    assert timing.latency_s == pytest.approx(sum(k.latency_s * k.calls for k in timing.kernels) + calls * timing.call_overhead_s)
    kernels = [r for r in table.rows() if r["signature"] != SIGNATURE and not r["signature"].startswith(REFERENCE)]
    assert {r["context"] for r in kernels} == {"reuse-1MiB"}
    again = Profiler("host", table=table, measure=QUICK)
    assert again.model(gm).latency_s == timing.latency_s and again.compiles == 0
    warm = Profiler("host", table=table, measure=MeasureConfig(number=2, repeat=2, min_repeat_ms=1, cache="warm"))
    assert warm.model(gm).context == "warm" and warm.compiles > 0  # another context: other rows


def test_a_kernel_called_again_has_its_later_calls_timed_in_the_repeat_context(tmp_path):
    """Two convs of one shape share a kernel: its second call finds its code warm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()).eval()
    gm = trace(model, torch.zeros(1, 16, 16, 16))
    table = LatencyTable(tmp_path / "t.sqlite")
    prof = Profiler("host", table=table, measure=QUICK)
    timing = prof.model(gm)
    (conv,) = [k for k in timing.kernels if k.calls == 2]
    assert conv.call_modules == (("0",), ("2",)) and 0 < conv.repeat_s <= conv.latency_s
    assert [k.repeat_s for k in timing.kernels if k.calls == 1] == [None] * (len(timing.kernels) - 1)
    overhead = timing.call_overhead_s
    assert timing.latency_of_modules({"0"}) == pytest.approx(conv.latency_s + overhead)  # the first call
    assert timing.latency_of_modules({"2"}) == pytest.approx(conv.repeat_s + overhead)  # the later one
    assert timing.latency_s == pytest.approx(sum(k.latency_s + (k.calls - 1) * (k.repeat_s or 0) for k in timing.kernels)
                                             + sum(k.calls for k in timing.kernels) * overhead)
    repeats = [r for r in table.rows() if r["context"] == timing.context + "+repeat"]
    assert [(r["signature"], r["schedule"]) for r in repeats] == [(conv.signature, conv.schedule)]  # the winner only
    compiles = prof.compiles
    assert Profiler("host", table=table, measure=QUICK).model(gm).latency_s == timing.latency_s  # from the table
    assert prof.compiles == compiles
    warm = Profiler("host", table=table, measure=MeasureConfig(number=2, repeat=2, min_repeat_ms=1, cache="warm"))
    assert all(k.repeat_s is None for k in warm.model(gm).kernels)  # warm: every call is timed alike


def test_unknown_cache_mode_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="model.*warm.*cold"):
        MeasureConfig(cache="hot")


def test_a_residual_kernel_keeps_both_activations_hot(tiny):
    gm, _ = tiny
    low = lower(gm, bind_params=True)  # weights are constants, as deployed
    residual = next(k for k in low.kernels.values() if k.kind == "conv2d" and len(k.activation_args) == 2)
    assert len(residual.weight_args) == 2  # the conv's weight and bias; input and residual are activations


@pytest.mark.parametrize("name", ["resnet20", "densenet40"])
def test_every_conv_is_in_a_kernel_and_no_activation_is_taken_for_a_weight(name):
    from hakd import models

    gm = trace(models.create(name).eval(), torch.zeros(1, 3, 32, 32))
    low = lower(gm)
    convs = {n for n, m in gm.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs <= {m for k in low.kernels.values() for m in k.modules}
    for k in low.kernels.values():
        assert 0 in k.activation_args, k.name  # every kernel computes on its predecessor's output
        assert k.kind != "conv2d" or 1 in k.weight_args, k.name
