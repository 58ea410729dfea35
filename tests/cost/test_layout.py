"""The channel-blocked layout (hakd/cost/layout.py): every rule against PyTorch, the layout
changes it makes, padded widths, and every blocked template against TVM's own loop nest."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax

from hakd.cost.lower import lower
from hakd.cost.schedules import apply_schedule, candidates
from hakd.cost.target import parse_target
from hakd.passes.trace import trace
from tests.cost.conftest import randomised
from tests.cost.test_lower_and_schedules import Convs, _run


class Everything(nn.Module):
    """Widths that are not multiples of any block (5, 13, 21), depthwise convs of stride 1 and 2,
    a residual add, both poolings, an SE gate, a BatchNorm after a concat (a per-channel scale
    and shift), concats at aligned and odd offsets, a channel shuffle, a division by a
    per-channel tensor, a 1x1 conv on a 1x1 map, and a flatten into the classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 13, 3, padding=1), nn.BatchNorm2d(13), nn.ReLU6())
        self.dw1 = nn.Conv2d(13, 13, 3, padding=1, groups=13)
        self.dw2 = nn.Conv2d(13, 13, 3, stride=2, padding=1, groups=13)
        self.pool, self.pw = nn.MaxPool2d(3, 1, 1), nn.Conv2d(13, 21, 1)
        self.se_reduce, self.se_expand = nn.Conv2d(21, 5, 1), nn.Conv2d(5, 21, 1)
        self.a, self.b = nn.Conv2d(21, 16, 1), nn.Conv2d(21, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(37)
        self.odd = nn.Conv2d(37, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.register_buffer("shuffle", torch.tensor([0, 4, 1, 5, 2, 6, 3, 7]))
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        y = self.stem(x)
        y = torch.relu(self.dw1(y)) + y
        y = nn.functional.relu6(self.dw2(y))
        y = self.pw(self.pool(y))
        y = y * torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        aligned = torch.cat([self.a(y), self.b(y)], 1)  # 16 + 16: whole blocks of 4, 8 and 16
        z = torch.relu(self.bn(torch.cat([aligned, y[:, :5]], 1)))  # an odd offset
        z = torch.div(self.odd(z), self.scale.exp())
        z = torch.index_select(z, 1, self.shuffle)  # a channel shuffle, as a pruned ShuffleNet replays it
        return self.fc(torch.flatten(nn.functional.avg_pool2d(z, 2), 1))


def _build(gm, block, shape):
    low = lower(gm, shape, bind_params=True, block=block)
    return low, relax.VirtualMachine(relax.build(low.mod, target="llvm"), tvm.cpu())


@pytest.mark.parametrize("block", [4, 8, 16])
def test_a_blocked_model_computes_what_pytorch_computes(block):
    torch.manual_seed(0)
    model = randomised(Everything()).eval()
    x = torch.randn(1, 3, 8, 8)
    low, vm = _build(trace(model, x), block, x.shape)
    got = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)
    convs = [k for k in low.kernels.values() if k.kind in ("conv2d", "depthwise")]
    blocked = [k for k in convs if len(k.shapes[-1]) == 5]
    assert blocked and all(k.shapes[-1][-1] == block for k in blocked)  # wide convs write blocks of the target's
    assert all(k.shapes[-1][1] < block for k in convs if k not in blocked)  # narrow ones NCHW


def test_layout_changes_only_at_the_edges_of_a_resnet():
    from hakd.models import resnet20

    gm = trace(resnet20(in_channels=1), torch.zeros(1, 1, 28, 28))
    low = lower(gm, block=16)
    names = [k.name for k in low.kernels.values()]
    assert not any("block_channels" in n and "unblock" not in n for n in names)  # the stem conv reads the plain input
    assert sum("unblock_channels" in n for n in names) == 1  # and the classifier's input is unblocked once
    assert lower(gm).kernels.keys() != low.kernels.keys()


class Dense(nn.Module):
    """DenseNet's pattern: each layer's 12 new channels concatenated after its input (24, 36, 48, 60 channels:
    most offsets not a multiple of a block), BatchNorm and ReLU on the concatenation."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, padding=1)
        self.layers = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 12, 3, padding=1))
                                    for c in (24, 36, 48))
        self.head = nn.Sequential(nn.BatchNorm2d(60), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(60, 10))

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.head(x)


@pytest.mark.parametrize("block", [8, 16])
def test_concatenations_at_odd_offsets_stay_blocked(block):
    torch.manual_seed(0)
    model = randomised(Dense()).eval()
    x = torch.randn(1, 3, 8, 8)
    low, vm = _build(trace(model, x), block, x.shape)
    with torch.no_grad():
        np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x.numpy())).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
    names = [k.name for k in low.kernels.values()]
    assert sum("unblock_channels" in n for n in names) == 1  # only before the classifier
    assert sum("concat_channels" in n for n in names) == (2 if block == 16 else 1)  # the others start on a block


def conv_kernels(width, block=16):
    gm = trace(nn.Sequential(nn.Conv2d(16, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 16, 3, padding=1)).eval(),
               torch.zeros(1, 16, 8, 8))
    return sorted(k.signature for k in lower(gm, block=block).kernels.values() if k.kind == "conv2d")


def test_a_width_between_multiples_of_the_block_runs_the_next_multiples_kernels():
    """Padded inside its last block: 17 to 32 channels are one kernel, so its staircase steps at 32."""
    assert conv_kernels(17) == conv_kernels(25) == conv_kernels(32) != conv_kernels(33)


def test_narrow_activations_stay_plain():
    """Fewer channels than a block: NCHW kernels, which fill the vector with pixels (no block of 16 for 8 channels)."""
    gm = trace(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 32, 3, padding=1)).eval(), torch.zeros(1, 3, 8, 8))
    kernels = list(lower(gm, block=16).kernels.values())
    assert sorted(len(k.shapes[-1]) for k in kernels if k.kind == "conv2d") == [4, 4, 5]  # 3->8, 8->8 plain; 8->32 writes blocks
    assert not any("block_channels" in k.name.replace("unblock", "") for k in kernels)  # the wide conv reads the narrow input as it is
    assert conv_kernels(9) != conv_kernels(13)  # below a block, NCHW kernels: steps of their own (tiles of 8)


@pytest.mark.parametrize("block", [8, 16])
def test_every_blocked_template_computes_what_the_default_build_computes(block):
    torch.manual_seed(0)
    target = parse_target("host")
    rng = np.random.default_rng(0)
    templates = set()
    for model, x in ((Convs().eval(), torch.zeros(1, 3, 8, 8)), (randomised(Everything()).eval(), torch.zeros(1, 3, 8, 8))):
        for k in lower(trace(model, x), block=block).kernels.values():
            if any(d != "float32" for d in k.dtypes):  # the shuffle's take reads indices
                continue
            args = [rng.standard_normal(s).astype("float32") for s in k.shapes]
            expected = _run(k.func, args, target)
            for cfg in candidates(k.func):
                templates.add(cfg.template)
                got = _run(apply_schedule(k.func, cfg), args, target)
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {cfg.key()}")
    assert {"nchwc", "wino", "generic"} | ({"dwc", "flat"} if block == 8 else set()) <= templates  # 13-channel depthwise: narrow at 16


def test_three_block_tiles_match_the_loop_nest():
    """The 3-block register tiles (48 output channels: 3 blocks of 16 by 8 pixels, or of 8 by 4
    flat pixels) compute what TVM's unscheduled loop nest does, on a 7-wide map (a tail) and a
    4x4 one (2 rows of 4 pixels)."""
    rng, target = np.random.default_rng(0), parse_target("host")
    for block, size in ((16, 7), (16, 4), (8, 7), (8, 4)):
        gm = trace(nn.Sequential(nn.Conv2d(32, 48, 1), nn.ReLU6()).eval(), torch.zeros(1, 32, size, size))
        (k,) = [k for k in lower(gm, block=block).kernels.values() if k.kind == "conv2d"]
        args = [rng.standard_normal(s).astype("float32") for s in k.shapes]
        (cfg,) = [c for c in candidates(k.func) if c.oc_tile == 3 * block]
        np.testing.assert_allclose(_run(apply_schedule(k.func, cfg), args, target), _run(k.func, args, target),
                                   rtol=1e-4, atol=1e-4, err_msg=cfg.key())


def test_register_tiles_follow_the_targets_registers():
    """AVX-512 (16 floats, 32 registers) and AVX2 (8 floats, 16 registers) tile differently: a direct
    conv (1x1) and a Winograd one (3x3; 49 tiles of 4x4 pixels)."""
    def keys(kernel_size, block, channels=32):
        gm = trace(nn.Sequential(nn.Conv2d(32, channels, kernel_size, padding=kernel_size // 2)).eval(), torch.zeros(1, 32, 28, 28))
        return [c.key() for k in lower(gm, block=block).kernels.values() if k.kind == "conv2d" for c in candidates(k.func)]

    assert keys(1, 16) == ["nchwc/oc16/v28/r1", "nchwc/oc16/v14/r1", "nchwc/oc32/v14/r1"]
    # three blocks by 7 pixels where three divide the blocks (AVX-512: 21 accumulators, ONNX Runtime's MLAS tiles so)
    assert keys(1, 16, channels=48) == ["nchwc/oc16/v28/r1", "nchwc/oc16/v14/r1", "nchwc/oc48/v7/r1"]
    # 12, 14 and 6 pixels as whole divisors of 28, and 4 blocks by 3 pixels in row-major order (AVX2's 16 registers)
    assert keys(1, 8) == ["nchwc/oc8/v7/r1", "nchwc/oc8/v14/r1", "nchwc/oc8/v4/r1", "nchwc/oc16/v4/r1", "flat/oc32/v3"]
    assert keys(3, 16) == ["wino/oc16/v28", "wino/oc32/v6"]  # tiles by channel blocks, at most 28 and 12 accumulators
    assert keys(3, 8) == ["wino/oc8/v12", "wino/oc16/v4", "wino/oc16/v6", "wino/oc32/v3"]
