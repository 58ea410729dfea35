"""Staircases as data: each channel group's latency by width, measured around one plan.

A group's staircase is the latency of the kernels that read or write its channels, for
each width of the group, with every other group held at the plan's width (a conv's
kernel depends on its input and its output width). It is measured once by the cost
model (:mod:`hakd.sweep`) and saved as JSON beside the plan, so that snapping and the
budget allocator need no compiler. A staircase is *stale* for a plan when one of its
neighbours (a group sharing a layer with it) has another width there than when it was
measured::

    >>> st = GroupStaircase("conv1", full_width=16, width=12, tol=0.04,
    ...                     latency={1: 1e-6, 8: 1e-6, 9: 2e-6, 12: 2e-6, 16: 2e-6},
    ...                     optimal=(8, 16), neighbours={"fc": 10})
    >>> st.at(12), st.saving(9)
    (2e-06, 1e-06)
    >>> stairs = Staircases({"conv1": 16, "fc": 10}, "llvm -mcpu=znver3", 1, "warm", {"conv1": st})
    >>> Staircases.from_json(stairs.to_json()) == stairs
    True
    >>> stairs.stale_groups({"conv1": 12, "fc": 7})
    ['conv1']
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from hakd.checkpoint import atomic_write_text
from hakd.errors import StaircaseError

__all__ = ["GroupStaircase", "Staircases", "tile_staircase", "FORMAT"]

FORMAT = "hakd.staircases/1"


@dataclasses.dataclass(frozen=True)
class GroupStaircase:
    """One group's staircase. ``latency``: seconds by width, measured; ``estimated``: widths
    interpolated on measured ramps; ``optimal``: the widest widths of their steps (every wider
    width slower by more than ``tol``); ``width``: the group's width in the plan it was measured
    around; ``neighbours``: the widths of the groups sharing a layer with it, then."""

    group: str
    full_width: int
    width: int
    tol: float
    latency: Mapping[int, float]
    optimal: Tuple[int, ...]
    neighbours: Mapping[str, int]
    estimated: Mapping[int, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "latency", {int(w): float(s) for w, s in sorted(self.latency.items())})
        object.__setattr__(self, "estimated", {int(w): float(s) for w, s in sorted(self.estimated.items())})
        object.__setattr__(self, "optimal", tuple(sorted(int(w) for w in self.optimal)))
        object.__setattr__(self, "neighbours", {k: int(v) for k, v in sorted(self.neighbours.items())})
        known = self.curve
        if not self.optimal or any(w not in known for w in self.optimal):
            raise StaircaseError(f"staircase of group {self.group!r}: every optimal width must have a latency "
                                 f"(optimal {list(self.optimal)}, known widths {sorted(known)[:12]}...)")
        if not 1 <= self.width <= self.full_width or any(not 1 <= w <= self.full_width for w in known):
            raise StaircaseError(f"staircase of group {self.group!r}: widths must lie in 1..{self.full_width}")

    @property
    def curve(self) -> Dict[int, float]:
        """Every width with a latency: measured ones, and interpolated ones on ramps."""
        return {**self.estimated, **self.latency}

    def at(self, width: int) -> float:
        """The latency at ``width``; a width the sweep skipped (inside a flat interval, where
        no width can be optimal) takes the latency of the nearest wider known width."""
        curve = self.curve
        if width in curve:
            return curve[width]
        wider = [w for w in curve if w > width]
        if not wider or not 1 <= width <= self.full_width:
            raise StaircaseError(f"staircase of group {self.group!r} has no latency for width {width} "
                                 f"(widths 1..{self.full_width})")
        return curve[min(wider)]

    def saving(self, width: int, step: int = 1) -> float:
        """Seconds saved per channel by removing ``step`` channels at ``width`` (0 at the
        narrowest width; ``step``: a group in slices moves that many channels at once)."""
        return 0.0 if width <= step else max(0.0, self.at(width) - self.at(width - step)) / step

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("latency", "estimated"):
            d[key] = {str(w): s for w, s in d[key].items()}
        d["optimal"] = list(self.optimal)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GroupStaircase":
        return cls(**{**d, "latency": {int(w): s for w, s in d["latency"].items()},
                      "estimated": {int(w): s for w, s in d.get("estimated", {}).items()}})


def tile_staircase(group: str, full_width: int, tile: int) -> GroupStaircase:
    """The staircase a schedule with channel tile ``tile`` would have if latency were
    proportional to the number of tiles: what rounding widths to a multiple assumes
    (Torch-Pruning's ``round_to``). Its optimal widths are the multiples of ``tile`` and the
    full width. Not measured: a model of the allowed widths, not a latency.

    >>> tile_staircase("g", 20, 8).optimal
    (8, 16, 20)
    """
    if tile < 1:
        raise StaircaseError(f"a channel tile must be >= 1, got {tile}")
    latency = {w: float(-(-w // tile)) for w in range(1, full_width + 1)}
    optimal = sorted({*range(tile, full_width + 1, tile), full_width})
    return GroupStaircase(group, full_width, full_width, 0.0, latency, tuple(optimal), {})


@dataclasses.dataclass(frozen=True)
class Staircases:
    """The staircases of a model's groups, measured around one plan on one target.

    ``model_widths``: the unpruned width of every group of the model (as in a PrunePlan),
    so that staircases of another model are refused."""

    model_widths: Mapping[str, int]
    target: str
    threads: int
    context: str
    groups: Mapping[str, GroupStaircase]
    kernels: int = 0  # the version of the kernel templates that were timed (files older than the field: 0)
    prediction: int = 0  # how kernel timings were summed (hakd.cost.profile.PREDICTION; older files: 0)

    def __post_init__(self):
        object.__setattr__(self, "model_widths", {k: int(v) for k, v in sorted(self.model_widths.items())})
        object.__setattr__(self, "groups", dict(sorted(self.groups.items())))

    def __getitem__(self, group: str) -> GroupStaircase:
        if group not in self.groups:
            raise StaircaseError(f"no staircase for group {group!r}; measured groups: {', '.join(self.groups) or 'none'}")
        return self.groups[group]

    def __contains__(self, group: str) -> bool:
        return group in self.groups

    def with_groups(self, measured: Mapping[str, GroupStaircase]) -> "Staircases":
        """A copy with some groups' staircases replaced or added (e.g. re-swept)."""
        return dataclasses.replace(self, groups={**self.groups, **measured})

    def check_model(self, model_widths: Mapping[str, int], where: str = "staircases") -> None:
        """Raise StaircaseError unless these staircases were measured on a model with these groups."""
        if dict(model_widths) != self.model_widths:
            differ = sorted(set(model_widths) ^ set(self.model_widths)) or \
                [g for g in model_widths if model_widths[g] != self.model_widths[g]]
            raise StaircaseError(f"{where} were measured on another model (groups differ: {differ[:5]}); "
                                 "measure them on this model (`hakd staircases`)")

    def stale_groups(self, widths: Mapping[str, int]) -> List[str]:
        """Groups whose staircase was measured with a neighbour at another width than in ``widths``."""
        return [g for g, st in self.groups.items() if any(widths.get(n, w) != w for n, w in st.neighbours.items())]

    def check_plan(self, plan, where: str = "staircases") -> None:
        """Raise StaircaseError when the staircases belong to another model or are stale for ``plan``."""
        self.check_model(plan.widths, where)
        stale = self.stale_groups(plan.pruned_widths())
        if stale:
            st = self.groups[stale[0]]
            moved = [f"{n} {w}->{plan.width(n)}" for n, w in st.neighbours.items() if plan.width(n) != w]
            raise StaircaseError(f"{where} are stale for this plan: {len(stale)} group(s) were measured with other "
                                 f"neighbour widths (e.g. {stale[0]}: {', '.join(moved[:3])}); measure them again "
                                 "around this plan (`hakd staircases`, or sweep.refresh)")

    def to_dict(self) -> dict:
        return {"format": FORMAT, "model_widths": dict(self.model_widths), "target": self.target, "threads": self.threads,
                "context": self.context, "kernels": self.kernels, "prediction": self.prediction, "groups": {g: st.to_dict() for g, st in self.groups.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "staircases") -> "Staircases":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise StaircaseError(f"{where} is not valid JSON: {e}") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise StaircaseError(f"{where} is not a hakd staircases file (expected format {FORMAT!r})")
        try:
            groups = {g: GroupStaircase.from_dict(st) for g, st in d["groups"].items()}
            return cls(d["model_widths"], d["target"], d["threads"], d["context"], groups, int(d.get("kernels", 0)),
                       int(d.get("prediction", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StaircaseError(f"{where} is damaged: {type(e).__name__}: {e}") from e

    def save(self, path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path, plan: Optional[object] = None) -> "Staircases":
        """Read a staircases file; with ``plan``, also check that it fits and is not stale."""
        path = Path(path)
        if not path.is_file():
            raise StaircaseError(f"no staircases file at {path}; measure them first (`hakd staircases`)")
        stairs = cls.from_json(path.read_text(), where=str(path))
        if plan is not None:
            stairs.check_plan(plan, where=str(path))
        return stairs
