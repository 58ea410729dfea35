import pytest
import torch
from torch import nn

from hakd.errors import HakdError, TraceError
from hakd.models import resnet20
from hakd.passes.trace import trace


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), DataDependent())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def test_shapes_are_recorded_and_model_untouched():
    model = resnet20()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gm = trace(model, torch.zeros(2, 3, 32, 32))
    shapes = {n.target: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes if n.op == "call_module"}
    assert shapes["conv1"] == (2, 16, 32, 32) and shapes["layers.8.conv2"] == (2, 64, 8, 8) and shapes["fc"] == (2, 10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # trace restores the mode it found


def test_untraceable_model_names_module_and_remedies():
    with pytest.raises(TraceError) as info:
        trace(Outer(), torch.zeros(1, 3, 8, 8))
    text = str(info.value)
    assert "body.1" in text and "DataDependent" in text and "control flow" in text
    assert "leaf_modules=[DataDependent]" in text and "concrete_args" in text
    assert isinstance(info.value, HakdError)


def test_leaf_modules_make_it_traceable():
    gm = trace(Outer(), torch.zeros(1, 3, 8, 8), leaf_modules=[DataDependent])
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["stem", "body.0", "body.1", "head"]


def test_wrong_input_shape_is_a_trace_error():
    with pytest.raises(TraceError, match=r"shape \(1, 5, 32, 32\)"):
        trace(resnet20(), torch.zeros(1, 5, 32, 32))
