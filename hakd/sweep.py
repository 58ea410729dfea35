"""Measure channel-group staircases: where the cost model (kernels, widths) meets the graph
passes (groups, plans). The cost model sweeps widths of a ``width -> model`` callable; here
that callable is "the model rebuilt with one group at that width and every other group at
the plan's width", and the result is saved as :class:`hakd.staircases.Staircases`::

    prof = Profiler("host")
    stairs = model_staircases(prof, gm, groups, plan, save_to="runs/fisher/staircases.json")
    snapped = snap(plan, stairs, importance, "up")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp
from tqdm import tqdm

from hakd.cost.lower import Lowered, lower
from hakd.cost.profile import PREDICTION, Profiler, ProfileError
from hakd.cost.width_sweep import sweep_widths
from hakd.cost.schedules import SCHEDULE_VERSION
from hakd.errors import PlanError, StaircaseError
from hakd.passes.groups import ChannelGroups
from hakd.passes.neighbourhood import neighbourhood
from hakd.passes.rebuild import rebuild, rebuild_part
from hakd.passes.trace import input_shape
from hakd.plan import PrunePlan
from hakd.staircases import GroupStaircase, Staircases

__all__ = ["group_modules", "neighbours", "lower_group", "group_latency", "group_staircase", "model_staircases",
           "refresh", "predict", "latency_of", "latency_saved", "load_or_measure"]


def group_modules(groups: ChannelGroups, group: str) -> Set[str]:
    """The fx modules whose channels a group's width changes: its producers, its consumers and
    its per-channel layers (a depthwise conv, a BatchNorm not folded into a conv)."""
    return {m.module for m in groups[group].members}


def neighbours(groups: ChannelGroups, group: str) -> List[str]:
    """The other groups that share a layer with ``group``: their widths shape its kernels."""
    mine = group_modules(groups, group)
    return [g.name for g in groups if g.name != group and mine & {m.module for m in g.members}]


def _plan_at(groups: ChannelGroups, widths: Dict[str, int], group: str, width: int) -> PrunePlan:
    """The plan of ``widths`` with ``group`` at ``width``."""
    full = groups[group].width
    if not 1 <= width <= full:
        raise ProfileError(f"width {width} is outside 1..{full} for group {group!r}")
    return groups.plan({**widths, group: width})


def _at_width(gm: fx.GraphModule, groups: ChannelGroups, widths: Dict[str, int], group: str, width: int) -> fx.GraphModule:
    return rebuild(gm, groups, _plan_at(groups, widths, group, width))


def _member_calls(low, members: Set[str]) -> List[str]:
    """The signatures of the kernel calls that read the weights of ``members``, sorted."""
    return sorted(k.signature for k in low.kernels.values() for call in k.call_modules if members & set(call))


def _models_for(gm: fx.GraphModule, groups: ChannelGroups, widths: Dict[str, int], group: str, at_plan: Lowered,
                lower_model: Callable[[fx.GraphModule], Lowered]) -> Callable[[int], fx.GraphModule]:
    """width -> the model to lower for ``group``'s kernels at that width: the part of the model
    around the group (:func:`hakd.passes.neighbourhood.neighbourhood`, a fraction of the lowering
    time on a deep model) when, at the plan's width, it lowers to exactly the kernel calls the
    whole model (``at_plan``: it lowered at ``widths``) makes on the group's layers; else the
    whole model. The part is rebuilt alone (:func:`hakd.passes.rebuild.rebuild_part`) where it
    can be, else cut from the whole model rebuilt (where a channel shuffle's size reads are gone)."""
    members = group_modules(groups, group)
    cut = neighbourhood(gm, members)

    def whole(width: int) -> fx.GraphModule:
        return _at_width(gm, groups, widths, group, width)

    def part(width: int) -> fx.GraphModule:
        return rebuild_part(cut, groups, _plan_at(groups, widths, group, width))

    def part_of_whole(width: int) -> Optional[fx.GraphModule]:
        model = whole(width).eval()
        with torch.no_grad():
            ShapeProp(model).propagate(torch.zeros(input_shape(gm)))  # rebuild keeps the unpruned shapes
        return neighbourhood(model, members)

    expected = _member_calls(at_plan, members)
    for model_at in ((part,) if cut is not None else ()) + (part_of_whole,):
        try:
            around = model_at(widths[group])
        except PlanError:  # an input whose shape cannot be told, a channel move from outside the part
            continue
        if around is not None and _member_calls(lower_model(around), members) == expected:
            return model_at
    return whole


def _widths(groups: ChannelGroups, plan: Optional[PrunePlan]) -> Dict[str, int]:
    if plan is None:
        return groups.widths()
    plan.validate(groups)
    return plan.pruned_widths()


def lower_group(gm: fx.GraphModule, groups: ChannelGroups, group: str, width: int, plan: Optional[PrunePlan] = None,
                block: int = 0):
    """(The lowered model with ``group`` at ``width`` and the other groups as in ``plan``
    (default: unpruned), the modules whose kernels count for the group: :func:`group_modules`).
    ``block``: the channel block it is lowered with (:func:`hakd.cost.lower.lower`).

    >>> import torch
    >>> from hakd.models import resnet20
    >>> from hakd.passes.groups import find_groups
    >>> from hakd.passes.trace import trace
    >>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    >>> low, modules = lower_group(gm, find_groups(gm), "layers.0.conv1", 8)
    >>> sorted(modules)  # its BatchNorm is folded into the conv: no kernel of its own
    ['layers.0.bn1', 'layers.0.conv1', 'layers.0.conv2']
    """
    return lower(_at_width(gm, groups, _widths(groups, plan), group, width), block=block), group_modules(groups, group)


def group_latency(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, group: str, width: int,
                  context: Optional[str] = None, plan: Optional[PrunePlan] = None) -> float:
    """Latency of the fused kernels that read or write one group's channels, with the group at
    ``width`` and every other group as in ``plan``. ``context``: the cache context (default:
    that of the model at this width)."""
    low, members = lower_group(gm, groups, group, width, plan, profiler.channel_block)
    return profiler.lowered(low, context).latency_of_modules(members)


def group_staircase(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, group: str,
                    plan: Optional[PrunePlan] = None, adaptive: bool = True, grid: Optional[int] = None, tol: Optional[float] = None,
                    context: Optional[str] = None, at_plan: Optional[Lowered] = None):
    """The staircase of one group around ``plan`` (default: the unpruned model): a
    :class:`hakd.cost.staircase.Sweep` of latency (s) by width (:func:`hakd.cost.width_sweep.sweep_widths`).
    The plan's own width of the group is always measured. ``at_plan``: the model lowered at the
    plan's widths, when the caller has it (it is lowered here otherwise)."""
    if group not in groups.by_name:
        raise StaircaseError(f"no group {group!r}; prunable groups: {', '.join(g.name for g in groups.prunable())}")
    if not groups[group].prunable:
        raise ProfileError(f"group {group!r} cannot be pruned ({groups[group].reason}); it has no staircase")
    widths = _widths(groups, plan)
    at_plan = at_plan or profiler.lower(rebuild(gm, groups, groups.plan(widths)))
    context = context or profiler.context(at_plan)  # the whole (pruned) model's, held for every width
    n = groups[group].slices  # a group in slices is swept in units of one channel per slice
    model_at = _models_for(gm, groups, widths, group, at_plan, profiler.lower)
    sweep = sweep_widths(profiler, lambda u: model_at(u * n), group_modules(groups, group),
                         groups[group].width // n, adaptive=adaptive, grid=grid, tol=tol, context=context,
                         include=(widths[group] // n,))
    return sweep if n == 1 else sweep.in_units(n)


def model_staircases(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: Optional[PrunePlan] = None,
                     only: Optional[Iterable[str]] = None, previous: Optional[Staircases] = None, save_to=None,
                     adaptive: bool = True, tol: Optional[float] = None, log: Callable[[str], None] = print,
                     progress: Optional[bool] = None) -> Staircases:
    """The staircase of every prunable group (or the groups in ``only``) around ``plan``.

    Groups of ``previous`` that are still fresh for ``plan`` (and, given ``tol``, were swept with
    it) are kept, not measured again;
    with ``save_to`` the file is rewritten after every group, so an interrupted run resumes
    where it stopped (pass the loaded file as ``previous``). Layers of equal shape share
    their kernels through the profiler's table."""
    plan = plan or groups.plan()
    widths = _widths(groups, plan)
    names = list(only) if only is not None else [g.name for g in groups.prunable()]
    for name in names:
        if name not in groups.by_name or not groups[name].prunable:
            raise StaircaseError(f"group {name!r} is not a prunable group of this model; prunable: "
                                 f"{', '.join(g.name for g in groups.prunable())}")
    at_plan = profiler.lower(rebuild(gm, groups, groups.plan(widths)))
    context = profiler.context(at_plan)
    stairs = Staircases(groups.widths(), profiler.target_key, profiler.measure.threads, context, {}, SCHEDULE_VERSION,
                        PREDICTION)
    if previous is not None:
        previous.check_model(groups.widths())
        fresh = set(previous.groups) - set(previous.stale_groups(widths))
        if tol is not None:  # measured with another noise tolerance: swept again with this one (kernels from the table)
            fresh = {g for g in fresh if previous.groups[g].tol == tol}
        same = ("target", "threads", "kernels", "prediction")  # else: other kernels, or another sum of their timings
        if all(getattr(previous, f) == getattr(stairs, f) for f in same):
            stairs = stairs.with_groups({g: previous.groups[g] for g in names if g in fresh})
    todo = [g for g in names if g not in stairs]
    bar = tqdm(todo, desc="staircases", unit="group", disable=None if progress is None else not progress)
    for name in bar:
        t0, compiles = time.time(), profiler.compiles
        sweep = group_staircase(profiler, gm, groups, name, plan, adaptive=adaptive, tol=tol, context=context,
                                at_plan=at_plan)
        st = GroupStaircase(name, groups[name].width, widths[name], sweep.tol, sweep.latency, tuple(sweep.optimal),
                            {n: widths[n] for n in neighbours(groups, name)}, sweep.estimated)
        stairs = stairs.with_groups({name: st})
        if save_to is not None:
            stairs.save(save_to)
        log(f"staircase {name}: width {widths[name]}/{groups[name].width}, {sweep.evaluations} widths measured, "
            f"{profiler.compiles - compiles} compiles, {time.time() - t0:.1f} s; optimal {list(sweep.optimal)}")
    if save_to is not None:
        stairs.save(save_to)
    return stairs


def refresh(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan, stairs: Staircases,
            **kwargs) -> Staircases:
    """``stairs`` with its stale groups (neighbours moved since) measured again around ``plan``."""
    return model_staircases(profiler, gm, groups, plan, only=list(stairs.groups), previous=stairs, **kwargs)


def predict(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan) -> float:
    """Predicted latency (s) of the model rebuilt with ``plan``: every fused kernel, timed."""
    return profiler.model(rebuild(gm, groups, plan)).latency_s


def load_or_measure(path, profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan,
                    **kwargs) -> Staircases:
    """The staircase of every prunable group around ``plan``, saved at ``path``: the groups the file
    holds are kept where still fresh, stale ones are measured again, and groups it lacks (a sweep
    that was interrupted, or `hakd staircases --groups` of a few) are measured, so a decision never
    rests on part of the model."""
    path = Path(path)
    previous = Staircases.load(path) if path.is_file() else None
    if previous is not None:
        missing = [g.name for g in groups.prunable() if g.name not in previous]
        if missing:
            kwargs.get("log", print)(f"{path} holds {len(previous.groups)} of {len(groups.prunable())} groups' staircases "
                                     f"(an interrupted sweep, or a few groups asked for): measuring the other {len(missing)}")
    return model_staircases(profiler, gm, groups, plan, previous=previous, save_to=path, **kwargs)


def latency_of(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups) -> Callable[[Dict[str, int]], float]:
    """The narrow callable a pass takes for latency: group widths -> predicted seconds of the
    model rebuilt at those widths (its first channels: latency does not depend on which)."""
    return lambda widths: predict(profiler, gm, groups, groups.plan(widths))


def latency_saved(stairs: Staircases, full_latency_s: float,
                  slices: Optional[Dict[str, int]] = None) -> Callable[[str, int], float]:
    """(group, width) -> the share of ``full_latency_s`` one channel less saves, read from the
    staircases (0 for groups without one): Fisher's latency penalty. ``slices``
    (:meth:`ChannelGroups.slices`): a group in n slices loses n channels at once."""
    slices = slices or {}
    return lambda group, width: (stairs.groups[group].saving(width, slices.get(group, 1)) / full_latency_s
                                 if group in stairs else 0.0)
