"""Winograd convs on blocked channels (hakd/cost/winograd.py): every tile size and register tile
against PyTorch's conv, at widths and map sizes that fill no block or tile, and the layout's choice."""

import numpy as np
import pytest
import torch
from torch import nn
from tvm import te

from hakd.cost.lower import lower
from hakd.cost.schedules import apply_schedule, candidates
from hakd.cost.target import parse_target
from hakd.cost.winograd import conv2d_winograd_nchwc, tile_size, winograd_weight
from hakd.passes.trace import trace
from tests.cost.test_lower_and_schedules import _run


def _blocked(x: np.ndarray, block: int) -> np.ndarray:
    n, c, h, w = x.shape
    padded = np.zeros((n, -(-c // block) * block, h, w), x.dtype)
    padded[:, :c] = x
    return padded.reshape(n, -1, block, h, w).transpose(0, 1, 3, 4, 2).copy()


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("block", [8, 16])
@pytest.mark.parametrize("in_channels,out_channels,size,padding,batch", [
    (21, 13, 7, (1, 1, 1, 1), 1),  # partial blocks in and out, a map no tile divides
    (16, 40, 9, (0, 2, 1, 1), 2),  # uneven padding, two images
])
def test_winograd_computes_what_pytorch_computes(m, block, in_channels, out_channels, size, padding, batch):
    target = parse_target("host")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, in_channels, size, size)).astype("float32")
    w = rng.standard_normal((out_channels, in_channels, 3, 3)).astype("float32")
    weight = te.placeholder((out_channels, in_channels, 3, 3), name="w")
    transformed = winograd_weight(weight, m, block)
    u = _run(te.create_prim_func([weight, transformed]), [w, np.zeros([int(d) for d in transformed.shape], "float32")], target)
    data = te.placeholder(_blocked(x, block).shape, name="x")
    u_in = te.placeholder(u.shape, name="u")
    conv = conv2d_winograd_nchwc(data, u_in, padding, m)
    func = te.create_prim_func([data, u_in, conv])
    top, left, bottom, right = padding
    padded = torch.nn.functional.pad(torch.tensor(x), (left, right, top, bottom))
    expected = _blocked(torch.nn.functional.conv2d(padded, torch.tensor(w)).numpy(), block)
    out = np.zeros(expected.shape, "float32")
    configs = candidates(func)
    assert configs and {c.template for c in configs} == {"wino"}
    for cfg in configs:
        got = _run(apply_schedule(func, cfg), [_blocked(x, block), u, out], target)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-4 * np.abs(expected).max(), err_msg=cfg.key())
        assert not got[:, -1, ..., out_channels % block or block:].any()  # the last block's padding lanes: zero


def test_only_3x3_stride_1_convs_on_blocked_channels_are_winograd():
    gm = trace(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1), nn.Conv2d(32, 32, 3, stride=2, padding=1),
                             nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3, padding=2, dilation=2)).eval(), torch.zeros(1, 3, 16, 16))
    names = sorted(k.name for k in lower(gm, block=16).kernels.values() if k.kind == "conv2d")
    assert sum("winograd" in n for n in names) == 1 and len(names) == 5  # the stem reads plain NCHW


def test_tile_size_follows_the_map_the_vector_and_the_transformed_weights():
    assert tile_size(56, 56, 64, 64, 16) == 4 and tile_size(14, 14, 128, 128, 16) == 4  # 2.4 MiB of F(4x4) weights
    assert tile_size(7, 7, 64, 64, 16) == 2 and tile_size(7, 7, 64, 64, 8) == 4  # 4 tiles: too few for 16 lanes, not for 8
    assert tile_size(8, 8, 256, 256, 8) == 2 and tile_size(5, 5, 32, 32, 8) == 2  # 9.4 MiB in F(4x4); a small map
    assert tile_size(4, 4, 256, 256, 8) == 0 and tile_size(8, 8, 512, 512, 8) == 0  # weights streamed for few tiles
