import numpy as np
import pytest
import torch
import tvm

from hakd.cost.lower import fold_batchnorm, lower
from hakd.cost.measure import build_kernel
from hakd.cost.profile import Profiler
from hakd.cost.schedules import ScheduleConfig, apply_schedule, candidates
from hakd.cost.table import LatencyTable
from hakd.cost.target import parse_target
from hakd.passes.trace import trace
from tests.cost.conftest import randomised
from tests.passes.tv_models import TV_MODELS


def test_conv_bn_relu_and_residual_add_fuse_into_one_kernel(tiny):
    gm, _ = tiny
    low = lower(gm)
    conv2 = [k for k in low.for_module("conv2.0") if k.kind == "conv2d"]
    assert len(conv2) == 1
    assert "add" in conv2[0].name and "relu" in conv2[0].name  # bias, residual add and ReLU in the conv kernel
    assert [k.calls for k in low.for_module("stem.0") if k.kind == "conv2d"] == [1]
    kinds = {k.kind for k in low.kernels.values()}
    assert {"conv2d", "depthwise", "generic"} <= kinds


def test_signatures_are_stable_and_shared_by_equal_kernels(tiny):
    gm, _ = tiny
    a, b = lower(gm), lower(gm, bind_params=True)
    calls = lambda low: sorted((k.signature, k.calls) for k in low.kernels.values())  # noqa: E731
    assert calls(a) == calls(b)  # measuring (weights as inputs) and deploying (weights bound): the same kernel calls
    assert len({k.signature for k in a.kernels.values()}) == len(a.kernels)


class ConcatBN(torch.nn.Module):
    """DenseNet's pattern: a BatchNorm after a concat, with no conv before it to fold into."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(11)
        self.out = torch.nn.Conv2d(11, 4, 1)

    def forward(self, x):
        return self.out(torch.relu(self.bn(torch.cat([x, self.conv(x)], 1))))


def test_a_batchnorm_after_a_concat_is_the_same_kernel_measured_and_deployed():
    torch.manual_seed(0)
    model = randomised(ConcatBN())
    torch.nn.init.uniform_(model.bn.weight, 0.5, 1.5)
    torch.nn.init.uniform_(model.bn.bias, -0.5, 0.5)
    gm = trace(model, torch.zeros(1, 3, 8, 8))
    a, b = lower(gm), lower(gm, bind_params=True)
    calls = lambda low: sorted((k.signature, k.calls) for k in low.kernels.values())  # noqa: E731
    assert calls(a) == calls(b)  # before: BN's 1-D weights were reshaped inside the kernel only when they were inputs
    bn = [k for k in a.kernels.values() if "concatenate" in k.name]
    assert len(bn) == 1 and bn[0].call_modules == (("bn",),)  # the kernel still reads (and names) the BatchNorm
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(gm)(x), model(x), rtol=1e-5, atol=1e-5)


def _run(func, args, target):
    lib, _ = build_kernel(func, target)
    out = [tvm.runtime.tensor(a, tvm.cpu()) for a in args]
    lib.mod["main"](*out)
    return out[-1].numpy()


@pytest.mark.parametrize("model", ["tiny", "grouped", "timm"])
def test_every_schedule_computes_what_the_default_build_computes(tiny, model):
    """timm's EfficientNet-Lite: epilogues of another shape than the conv (the next conv's
    "same" pad fused after a ReLU6, an SE gate broadcast over the map)."""
    from tests.passes.timm_models import TIMM_MODELS

    if model == "tiny":
        gm = tiny[0]
    else:
        net = TV_MODELS["resnext_tiny"]() if model == "grouped" else TIMM_MODELS["timm_efficientnet_lite_tiny"]()
        gm = trace(net.eval(), torch.zeros(1, 3, 16, 16))
    target = parse_target("host")
    rng = np.random.default_rng(0)
    low = lower(gm)
    seen = set()
    for k in low.kernels.values():
        seen.add(k.kind)
        args = [rng.standard_normal(s).astype("float32") for s in k.shapes]
        expected = _run(k.func, args, target)
        for cfg in candidates(k.func):
            got = _run(apply_schedule(k.func, cfg), args, target)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {cfg.key()}")
    assert "conv2d" in seen


class Convs(torch.nn.Module):
    """Dense convs of the shapes the blocked template must get right: a 7x7 map (7-pixel
    tiles), 24 channels (8-channel tiles), 32 channels on 4x4 (two-row tiles, 32-channel
    tiles), strided, dilated, 1x1, and 20 channels (no blocked tile: a scalar tail)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 24, 3, padding=1)
        self.b = torch.nn.Conv2d(24, 32, 3, stride=2, padding=1)
        self.c = torch.nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.d = torch.nn.Conv2d(32, 20, 1)
        self.e = torch.nn.Conv2d(24, 24, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        z = self.b(y)
        return self.d(torch.relu(self.c(z)) + z), self.e(y[:, :, :7, :7])


def test_the_blocked_template_computes_what_the_default_build_computes():
    torch.manual_seed(0)
    model = Convs().eval()
    x = torch.randn(1, 3, 8, 8)
    gm = trace(model, x)
    low = lower(gm)
    target = parse_target("host")
    rng = np.random.default_rng(0)
    blocked = set()
    for k in low.kernels.values():
        args = [rng.standard_normal(s).astype("float32") for s in k.shapes]
        expected = _run(k.func, args, target)
        for cfg in candidates(k.func):
            blocked.add(cfg.key()) if cfg.template == "blocked" else None
            got = _run(apply_schedule(k.func, cfg), args, target)
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {cfg.key()}")
    assert {"blocked/oc8/v8/r1", "blocked/oc32/v4/r2", "blocked/oc16/v4/r4", "blocked/oc8/v7/r1"} <= blocked
    assert not any(c.template == "blocked" for k in low.kernels.values() if k.shapes[-1][1] == 20 for c in candidates(k.func))


def test_candidates_and_keys():
    cfg = ScheduleConfig("conv2d", oc_tile=16, vector=8)
    assert ScheduleConfig.from_key(cfg.key()) == cfg
    blocked = ScheduleConfig("blocked", oc_tile=32, vector=4, rows=2)
    assert ScheduleConfig.from_key(blocked.key()) == blocked
    assert ScheduleConfig.from_key("default") == ScheduleConfig("default")
    tuned = ScheduleConfig("meta_schedule", digest="0a1b2c3d4e5f")
    assert tuned.key() == "meta_schedule/0a1b2c3d4e5f" and ScheduleConfig.from_key(tuned.key()) == tuned


def test_candidates_skip_the_loop_nest_where_it_never_wins(tiny):
    narrow = trace(torch.nn.Sequential(torch.nn.Conv2d(16, 3, 1), torch.nn.ReLU()).eval(), torch.zeros(1, 16, 8, 8))
    keys = {}
    for low in (lower(tiny[0]), lower(narrow)):
        for k in low.kernels.values():
            out_channels = k.shapes[-1][1]
            keys.setdefault((k.kind, out_channels >= 8), set()).update(c.key() for c in candidates(k.func))
    wide = keys[("conv2d", True)]
    assert "default" not in wide and {"conv2d/oc16/v16", "blocked/oc16/v16/r1", "blocked/oc16/v8/r1"} <= wide
    assert keys[("conv2d", False)] == {"conv2d/oc8/v8", "default"}  # 3 channels: no channel vector to fill
    assert "default" in keys[("depthwise", True)]


def test_tuning_on_a_board_is_refused_clearly():
    from hakd.config import ConfigError

    with pytest.raises(ConfigError, match="tunes on this host only"):
        Profiler("host", device="rpc://127.0.0.1:9/none", table=LatencyTable(":memory:"), tune_trials=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["timm_efficientnet_lite_tiny", "tv_efficientnet_sd_tiny", "spatial_flatten",
                                  "functional_convs"])
def test_modules_tvm_does_not_import_are_inlined_and_export_matches_pytorch(tmp_path, name):
    """Conv subclasses (same padding), stochastic depth, nn.Upsample (spatial_flatten), F.conv2d on parameters."""
    from hakd.export import export, load
    from tests.passes.timm_models import TIMM_MODELS

    torch.manual_seed(0)
    model = randomised({**TIMM_MODELS, **TV_MODELS}[name]())
    x = torch.randn(1, 3, 32, 32)
    result = export(trace(model, x), tmp_path / "e", Profiler("host", table=LatencyTable(tmp_path / "t.sqlite")))
    with torch.no_grad():
        expected = model(x).numpy()
    assert result.max_abs_error < 1e-5
    np.testing.assert_allclose(load(tmp_path / "e")(x.numpy()), expected, atol=1e-5, rtol=1e-4)
