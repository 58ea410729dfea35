import json

import pytest

from hakd.config import DataConfig, TrainConfig
from hakd.errors import ConfigError, HakdError


@pytest.mark.parametrize("config", [TrainConfig(), TrainConfig(epochs=3, threads=2, lr_milestones=(0.5,)), DataConfig(),
                                    DataConfig("cifar10", root="/data", limit_train=10, augment=False)])
def test_json_round_trip(config):
    again = type(config).from_json(config.to_json())
    assert again == config
    assert json.loads(again.to_json()) == json.loads(config.to_json())


@pytest.mark.parametrize("kwargs, words", [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"batch_size": -1}, "batch_size"),
    ({"threads": 0}, "threads"),
    ({"lr_milestones": (0.5, 1.5)}, "lr_milestones"),
    ({"epochs": True}, "epochs"),
])
def test_train_config_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kwargs)


def test_bad_data_name_lists_choices():
    with pytest.raises(ValueError, match="fashion-mnist, cifar10"):
        DataConfig("imagenet")


def test_unknown_option_is_named():
    with pytest.raises(HakdError, match="no option.*'epoch'.*valid options"):
        TrainConfig.from_dict({"epoch": 3})


def test_configs_are_frozen():
    with pytest.raises(Exception):
        TrainConfig().epochs = 5


def test_milestones_scale_with_epochs():
    assert TrainConfig(epochs=200).milestone_epochs() == [60, 120, 160]
    assert TrainConfig(epochs=10).milestone_epochs() == [3, 6, 8]
    assert TrainConfig(epochs=1).milestone_epochs() == []


def _float_options():
    """(config class, option) for every float option of every config (NaN and inf pass a `value < low` test)."""
    import dataclasses

    from hakd.config import DistillConfig, PruneConfig, TrialConfig

    for cls in (TrainConfig, PruneConfig, DistillConfig, TrialConfig, DataConfig):
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, float) or (isinstance(default, tuple) and default and isinstance(default[0], float)):
                yield cls, f.name, default


@pytest.mark.parametrize("cls, name, default", list(_float_options()), ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_no_option_takes_nan_or_inf(cls, name, default, bad):
    value = (bad,) * len(default) if isinstance(default, tuple) else bad
    with pytest.raises(ConfigError, match=f"{cls.__name__}.{name} must be a finite number"):
        cls(**{name: value})
