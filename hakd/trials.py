"""Choose how to spend a latency budget by trying each way (NetAdapt's short-term fine-tuning).

What a budget buys depends on what the allocator keeps: Fisher importance values the
high-resolution channels, which are expensive; parameters value the cheap low-resolution ones;
``min_keep`` puts a floor under every group; ``uniform`` is the simple answer (one keep ratio
for every group, widths rounded to the target's vector width: :mod:`hakd.passes.uniform`), tried
by default so that the student kept is never worse than it beyond the trial's noise. Which student learns best is not known before it
is trained (on ResNet-20 at Torch-Pruning round-to-8's parameter count, parameters kept with
``min_keep=0.5`` matched its accuracy at 0.85x its latency, and ``0.25`` lost 9 points:
benchmarks/README.md). So each way is fitted to the same budget, each student is distilled
for one epoch on part of the training images, and the one most accurate on held-out
training images is kept, as NetAdapt (Yang et al. 2018) ranks its proposals. The test split
is never used to choose::

    ways = spending_ways(("importance", "params"), (0.0, 0.5))
    trials = try_plans(teacher, fisher_model, groups, {w: plan_of[w] for w in ways}, train,
                       DistillConfig(lr=0.01), TrialConfig(), "runs/hakd/trials")
    best = chosen(trials)

>>> [w.label for w in spending_ways(("importance", "params"), (0, 0.5))]
['importance', 'importance,min_keep=0.5', 'params', 'params,min_keep=0.5']
>>> [w.label for w in parse_ways(DEFAULT_WAYS)]
['importance', 'params,min_keep=0.5', 'uniform']
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, List, Mapping, Sequence, Tuple, Union

from torch import fx

from hakd.config import DistillConfig, TrialConfig
from hakd.data import Split
from hakd.errors import ConfigError
from hakd.passes.allocate import VALUES, check_min_keep
from hakd.passes.counts import count
from hakd.passes.groups import ChannelGroups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import input_shape
from hakd.plan import PrunePlan

__all__ = ["Way", "Trial", "spending_ways", "parse_ways", "DEFAULT_WAYS", "WAY_VALUES", "same_student", "trial_splits",
           "try_plans", "chosen"]

WAY_VALUES = VALUES + ("uniform",)  # what the allocator keeps, or one keep ratio for every group
DEFAULT_WAYS = ("importance", "params:0.5", "uniform")


@dataclasses.dataclass(frozen=True)
class Way:
    """One way of spending a budget: what the allocator keeps, and the floor under every group."""

    value: str
    min_keep: float = 0.0

    def __post_init__(self):
        if self.value not in WAY_VALUES:
            raise ConfigError(f"a way of spending a budget keeps one of {', '.join(WAY_VALUES)}; got {self.value!r}")
        check_min_keep(self.min_keep)
        if self.value == "uniform" and self.min_keep:
            raise ConfigError("the uniform way keeps one ratio of every group: a min_keep floor does not apply to it")

    @property
    def label(self) -> str:
        return f"{self.value},min_keep={self.min_keep:g}" if self.min_keep else self.value

    @property
    def folder_name(self) -> str:
        return self.label.replace(",", "_").replace("=", "")


def spending_ways(values: Union[str, Sequence[str]], min_keeps: Union[float, Sequence[float]]) -> List[Way]:
    """Every combination of ``values`` and ``min_keeps`` (each one value or several), in order,
    without repeats::

        >>> spending_ways("importance", 0.0)
        [Way(value='importance', min_keep=0.0)]
        >>> spending_ways("fisher", 0.0)
        Traceback (most recent call last):
        ...
        hakd.errors.ConfigError: value is what the budget allocator keeps; valid values: importance, params; got 'fisher'
    """
    values = (values,) if isinstance(values, str) else tuple(values)
    min_keeps = (min_keeps,) if isinstance(min_keeps, (int, float)) else tuple(min_keeps)
    if not values or not min_keeps:
        raise ConfigError("give at least one value (importance, params) and one min_keep to spend a budget")
    for v in values:
        if v not in VALUES:
            raise ConfigError(f"value is what the budget allocator keeps; valid values: {', '.join(VALUES)}; got {v!r}")
    for m in min_keeps:
        check_min_keep(m)
    return list(dict.fromkeys(Way(v, float(m)) for v in values for m in min_keeps))


def parse_ways(specs: Sequence[Union[str, Way]]) -> List[Way]:
    """Ways from short specs: ``importance``, ``params``, ``uniform``, a floor as ``params:0.5``
    (or a way's label, ``params,min_keep=0.5``), in order, without repeats::

        >>> [w.label for w in parse_ways(["uniform", "importance:0.25", "params,min_keep=0.5", "uniform"])]
        ['uniform', 'importance,min_keep=0.25', 'params,min_keep=0.5']
        >>> parse_ways(["params:half"])
        Traceback (most recent call last):
        ...
        hakd.errors.ConfigError: a way is importance, params or uniform, with a floor as params:0.5; got 'params:half'
    """
    if isinstance(specs, (str, Way)):
        specs = (specs,)
    ways = []
    for spec in specs:
        if isinstance(spec, Way):
            ways.append(spec)
            continue
        if not isinstance(spec, str):
            raise ConfigError(f"a way is a str such as 'params:0.5' or a hakd.trials.Way; got {type(spec).__name__}")
        value, _, floor = spec.replace(",min_keep=", ":").partition(":")
        try:
            ways.append(Way(value.strip(), float(floor) if floor else 0.0))
        except (ValueError, ConfigError) as e:
            detail = f" ({e})" if isinstance(e, ConfigError) and value.strip() in WAY_VALUES else ""
            raise ConfigError(f"a way is {', '.join(WAY_VALUES[:-1])} or {WAY_VALUES[-1]}, with a floor as params:0.5; "
                              f"got {spec!r}{detail}") from None
    if not ways:
        raise ConfigError("give at least one way of spending the budget (importance, params, uniform)")
    return list(dict.fromkeys(ways))


def trial_splits(train: Split, config: TrialConfig) -> Tuple[Split, Split]:
    """(the images trials train on, the held-out images that rank them): the first
    ``config.images`` of ``train`` and its last ``config.held_out``, which never overlap::

        >>> import torch
        >>> s = Split(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10), (0.5,), (0.25,), True)
        >>> fit, held = trial_splits(s, TrialConfig(images=8, held_out=3))
        >>> fit.labels.tolist(), held.labels.tolist(), held.augment
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9], False)
    """
    n = len(train)
    if config.held_out >= n:
        raise ConfigError(f"TrialConfig.held_out is {config.held_out}, but the training split has only {n} images; "
                          "hold out fewer, so that trials have images to train on")
    rest = n - config.held_out
    fit = dataclasses.replace(train, images=train.images[:min(config.images, rest)], labels=train.labels[:min(config.images, rest)])
    held = dataclasses.replace(train, images=train.images[rest:], labels=train.labels[rest:], augment=False)
    return fit, held


@dataclasses.dataclass(frozen=True)
class Trial:
    label: str
    plan: PrunePlan
    params: int
    held_out_accuracy: float
    held_out_loss: float
    same_as: str = ""  # the earlier way whose student this way's plan rebuilds (trained once, scored once)

    def row(self) -> dict:
        return {"way": self.label, "params": self.params, "held_out_accuracy": self.held_out_accuracy,
                "held_out_loss": self.held_out_loss, **({"same_as": self.same_as} if self.same_as else {})}


def same_student(plan: PrunePlan) -> tuple:
    """What makes two plans one student: the channels kept in each group (a group a plan does
    not name keeps them all), not the plan's note::

        >>> a = PrunePlan({"c": (0, 1)}, {"c": 2, "d": 3}, note="importance")
        >>> b = PrunePlan({"d": (0, 1, 2)}, {"c": 2, "d": 3}, note="params")
        >>> same_student(a) == same_student(b)
        True
    """
    return tuple((g, plan.kept(g)) for g in plan.widths)


def try_plans(teacher: fx.GraphModule, base: fx.GraphModule, groups: ChannelGroups, plans: Mapping[Way, PrunePlan],
              train: Split, distill: DistillConfig, config: TrialConfig, folder, log: Callable[[str], None] = print,
              ) -> List[Trial]:
    """Rebuild each of ``plans`` ({way: plan} of ``base``), distil it from ``teacher`` for one
    epoch of ``distill``'s recipe on the trial images, and score it on the held-out ones. Each
    trial trains in ``folder/<way.folder_name>`` and resumes from it. Ways whose plans are one
    student (:func:`same_student`) share the first one's trial."""
    from hakd.distill import distill as distil

    fit, held = trial_splits(train, config)
    recipe = dataclasses.replace(distill, epochs=1)
    trials, tried = [], {}
    for way, plan in plans.items():
        key = same_student(plan)
        earlier = tried.get(key)
        if earlier is not None:
            trials.append(dataclasses.replace(earlier, label=way.label, plan=plan, same_as=earlier.label))
            log(f"trial {way.label}: the same student as {earlier.label}, not trained again")
            continue
        student = rebuild(base, groups, plan)
        params = count(student, input_shape(base))[0]
        history = distil(teacher, student, fit, held, recipe, Path(folder) / way.folder_name, resume=True,
                         run_info={"plan": plan.to_dict(), "trial": config.identity()}, progress=False)
        last = history[-1]
        trials.append(Trial(way.label, plan, int(params), float(last["test_acc"]), float(last["test_loss"])))
        tried[key] = trials[-1]
        log(f"trial {way.label}: {params:,} parameters, held-out accuracy {last['test_acc']:.4f} (loss {last['test_loss']:.4f})")
    return trials


def chosen(trials: Sequence[Trial]) -> Trial:
    """The most accurate trial on the held-out images (ties: the lower held-out loss, then the first)::

        >>> t = [Trial("a", None, 1, 0.8, 0.5), Trial("b", None, 1, 0.9, 0.6), Trial("c", None, 1, 0.9, 0.4)]
        >>> chosen(t).label
        'c'
    """
    if not trials:
        raise ConfigError("no trial to choose from: give at least one way of spending the budget")
    return max(trials, key=lambda t: (t.held_out_accuracy, -t.held_out_loss))
