"""hakd.passes.uniform: one keep ratio for every group, rounded to a multiple of the vector width and the slices."""

import pytest

from hakd.errors import ConfigError
from hakd.passes.uniform import uniform_steps, uniform_widths
from tests.passes.test_groups import groups_of
from tests.passes.tv_models import TV_MODELS


def test_widths_are_multiples_of_the_vector_width_and_of_a_grouped_convs_slices():
    groups = groups_of(TV_MODELS["regnet_x_tiny"]())
    slices, full = groups.slices(), groups.widths()
    for fraction in (0.0, 0.3, 0.5, 1.0):
        widths = uniform_widths(groups, fraction, 8)
        assert set(widths) == {g.name for g in groups.prunable()}
        for name, width in widths.items():
            step = 24 if slices.get(name) == 3 else 8  # lcm(8, 3): every conv group keeps as many channels
            assert width == full[name] or width % step == 0, (name, width)
            assert min(step, full[name]) <= width <= full[name] and width >= fraction * full[name]
    assert uniform_widths(groups, 1.0, 8) == {n: full[n] for n in uniform_widths(groups, 1.0, 8)}


def test_every_distinct_uniform_student_sits_at_one_of_the_steps():
    groups = groups_of(TV_MODELS["regnet_x_tiny"]())
    steps = uniform_steps(groups, 8)
    assert steps == sorted(steps) and steps[-1] == 1.0
    students = {tuple(sorted(uniform_widths(groups, f / 200, 8).items())) for f in range(201)}
    assert students == {tuple(sorted(uniform_widths(groups, s, 8).items())) for s in steps}


@pytest.mark.parametrize("multiple, fraction", [(0, 0.5), (2.5, 0.5), (True, 0.5), (8, 1.5), (8, -0.1)])
def test_a_bad_multiple_or_fraction_is_refused(multiple, fraction):
    with pytest.raises(ConfigError, match="uniform widths"):
        uniform_widths(groups_of(TV_MODELS["resnext_tiny"]()), fraction, multiple)
