import pytest
import torch

from hakd import models
from hakd.errors import HakdError, UnknownModelError

# Published parameter counts (CIFAR-10, 10 classes), within 5%.
PUBLISHED = {"resnet20": 0.27e6, "resnet56": 0.85e6, "wrn40_2": 2.2e6, "densenet100": 0.8e6, "wrn16_2": 0.7e6}


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32)])
def test_forward_in_both_formats(name, shape):
    torch.manual_seed(0)
    net = models.create(name, in_channels=shape[1], num_classes=10).eval()
    out = net(torch.randn(shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published(name):
    count = sum(p.numel() for p in models.create(name).parameters())
    assert abs(count - PUBLISHED[name]) / PUBLISHED[name] < 0.05, count


@pytest.mark.parametrize("name", models.names())
def test_zoo_models_trace_with_fx(name):
    gm = torch.fx.symbolic_trace(models.create(name))
    assert any(n.op == "call_module" for n in gm.graph.nodes)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownModelError) as info:
        models.create("resnet21")
    assert isinstance(info.value, HakdError)
    for name in models.names():
        assert name in str(info.value)


def test_name_lookup_is_forgiving_of_dashes_and_case():
    assert type(models.create("WRN16-2")).__name__ == "WideResNet"
