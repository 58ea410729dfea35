import numpy as np
import torch

from hakd.baselines.deep_compression import compress, decompress, magnitude_prune, share_in_place
from hakd.baselines.huffman import decode, encode, huffman_codes
from hakd.baselines.widths import fit_fraction, l1_importance, l1_plan, round_to_multiple, uniform_plan
from hakd.models import resnet20
from hakd.passes.counts import count
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace


def setup():
    torch.manual_seed(0)
    gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    return gm, find_groups(gm)


def test_l1_keeps_the_largest_filters():
    gm, groups = setup()
    with torch.no_grad():
        gm.get_submodule("layers.0.conv1").weight[5].mul_(100)
        gm.get_submodule("layers.0.conv1").weight[7].mul_(0)
    scores = l1_importance(gm, groups)["layers.0.conv1"]
    assert scores.argmax() == 5 and scores.argmin() == 7
    plan = l1_plan(gm, groups, 0.25)
    assert 5 in plan.keep["layers.0.conv1"] and 7 not in plan.keep["layers.0.conv1"]
    assert len(plan.keep["layers.0.conv1"]) == 4


def test_fit_fraction_meets_the_parameter_budget():
    gm, groups = setup()
    full, _ = count(gm, (1, 3, 32, 32))
    plan = fit_fraction(lambda f: uniform_plan(groups, f), gm, groups, 0.5, (1, 3, 32, 32))
    params, _ = count(rebuild(gm, groups, plan), (1, 3, 32, 32))
    assert 0.4 * full < params <= 0.5 * full


def test_l1_and_uniform_keep_whole_slices_of_grouped_convs():
    from tests.passes.tv_models import TV_MODELS

    torch.manual_seed(0)
    gm = trace(TV_MODELS["regnet_x_tiny"](), torch.zeros(1, 3, 32, 32))
    groups = find_groups(gm)
    g = "trunk.2.f.1.0"  # 32 channels in 4 slices
    with torch.no_grad():
        gm.get_submodule(g).weight[9].mul_(100)  # slice 1's largest filter
    for plan in (l1_plan(gm, groups, 0.3), uniform_plan(groups, 0.3)):
        assert plan.width(g) == 12 and all(plan.width(n) % s == 0 for n, s in groups.slices().items())
        rebuild(gm, groups, plan)
    assert 9 in l1_plan(gm, groups, 0.3).keep[g]


def test_round_to_multiple_down_and_up():
    gm, groups = setup()
    plan = l1_plan(gm, groups, 0.3)  # 16 -> 5, 32 -> 10, 64 -> 20
    down = round_to_multiple(plan, groups, gm, 8, "down").pruned_widths()
    up = round_to_multiple(plan, groups, gm, 8, "up").pruned_widths()
    assert (down["layers.0.conv1"], down["layers.3.conv1"], down["layers.6.conv1"]) == (8, 8, 16)
    assert (up["layers.0.conv1"], up["layers.3.conv1"], up["layers.6.conv1"]) == (8, 16, 24)
    kept = set(plan.keep["layers.6.conv1"])
    assert kept <= set(round_to_multiple(plan, groups, gm, 8, "up").keep["layers.6.conv1"])


def test_huffman_round_trip_and_prefers_frequent_symbols():
    rng = np.random.default_rng(0)
    symbols = rng.geometric(0.3, 5000).tolist()
    codes = huffman_codes(symbols)
    assert decode(encode(symbols, codes), codes, len(symbols)) == symbols
    assert len(codes[1]) <= len(codes[max(codes)])
    assert decode(encode([4, 4], huffman_codes([4, 4])), huffman_codes([4, 4]), 2) == [4, 4]


def test_deep_compression_round_trip_is_lossless_and_small():
    torch.manual_seed(0)
    model = resnet20()
    masks = magnitude_prune(model, 0.9)
    conv = model.layers[3].conv2.weight
    assert abs((conv == 0).float().mean().item() - 0.9) < 0.01
    assert masks["layers.3.conv2.weight"].sum() == (conv != 0).sum()
    share_in_place(model)
    packed = compress(model)
    restored = resnet20()
    restored.load_state_dict(model.state_dict())
    for m in restored.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.weight.data.normal_()
    decompress(packed, restored)
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    dense_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert dense_bytes / packed.size_bytes > 10  # 90% sparse, 8-bit shared, Huffman: well over 10x
