"""PrunePlan: which channels of each channel group a pruned model keeps.

A plan is a decision, not a model: pruners and ``snap`` write plans; only
:func:`hakd.passes.rebuild.rebuild` applies them. Plans serialise to JSON and replay::

    >>> plan = PrunePlan.from_widths({"conv1": 8}, {"conv1": 16, "fc": 10})
    >>> plan.keep["conv1"][:3], plan.width("conv1"), plan.width("fc")
    ((0, 1, 2), 8, 10)
    >>> PrunePlan.from_json(plan.to_json()) == plan
    True

A group read or written by a grouped conv of g groups comes in g *slices* (equal blocks of
channels, one per conv group); a plan keeps the same number of channels in each::

    >>> PrunePlan.from_widths({"mid": 4}, {"mid": 8}, slices={"mid": 2}).keep["mid"]
    (0, 1, 4, 5)
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from hakd.checkpoint import atomic_write_text
from hakd.errors import PlanError

__all__ = ["PrunePlan", "first_channels", "unequal_slices"]

FORMAT = "hakd.plan/1"


def _whole(value, what: str) -> int:
    """``value`` as an int when it is a whole number (3, 3.0, numpy ints); a PlanError for 1.5, "3", True."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise PlanError(f"plan: {what} must be a whole number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """``keep[group]`` lists the kept channel positions of a group, sorted; groups not
    named keep every channel. ``widths`` are the unpruned widths of every group of the
    model the plan was made for (so a plan cannot be applied to another model); ``slices``
    the groups whose channels come in equal slices (grouped convs), by their number of slices."""

    keep: Mapping[str, Tuple[int, ...]]
    widths: Mapping[str, int]
    note: str = ""
    slices: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "keep", {k: tuple(_whole(i, f"a kept channel of {k!r}") for i in v)
                                          for k, v in sorted(self.keep.items())})
        object.__setattr__(self, "widths", {k: _whole(v, f"the width of {k!r}") for k, v in sorted(self.widths.items())})
        slices = {k: _whole(v, f"the slices of {k!r}") for k, v in sorted(self.slices.items())}
        object.__setattr__(self, "slices", {k: v for k, v in slices.items() if v > 1})
        for name, n in self.slices.items():
            if name not in self.widths or self.widths[name] % n:
                raise PlanError(f"plan splits group {name!r} into {n} slices, but its model's width is "
                                f"{self.widths.get(name, 'missing')}: make the plan from this model's groups")
        for name, kept in self.keep.items():
            if name not in self.widths:
                raise PlanError(f"plan keeps channels of group {name!r}, which is not among its model's groups")
            width = self.widths[name]
            if not kept:
                raise PlanError(f"plan empties group {name!r}: keep at least one of its {width} channels")
            if list(kept) != sorted(set(kept)):
                raise PlanError(f"plan for group {name!r}: kept channels must be sorted and unique, got {list(kept)[:8]}...")
            if kept[0] < 0 or kept[-1] >= width:
                raise PlanError(f"plan for group {name!r}: channel indices must lie in [0, {width}), got {kept[0]}..{kept[-1]}")
            counts = unequal_slices(kept, width, self.slices.get(name, 1))
            if counts:
                raise PlanError(f"plan for group {name!r} keeps {counts} channels in its {len(counts)} slices (the "
                                "groups of a grouped conv): keep the same number in each, e.g. with PrunePlan.from_widths "
                                "or ChannelGroups.plan")

    @classmethod
    def from_widths(cls, widths: Mapping[str, int], model_widths: Mapping[str, int], note: str = "",
                    slices: Optional[Mapping[str, int]] = None) -> "PrunePlan":
        """Keep the first ``widths[g]`` channels of each named group (for when channel order is
        arbitrary); the first ``widths[g] / n`` of each slice of a group in ``n`` slices."""
        slices = slices or {}
        return cls({g: first_channels(g, w, model_widths.get(g, w), slices.get(g, 1)) for g, w in widths.items()},
                   model_widths, note, slices)

    def width(self, group: str) -> int:
        """The width a group has after pruning."""
        return len(self.keep[group]) if group in self.keep else self.widths[group]

    def kept(self, group: str) -> Tuple[int, ...]:
        """The channel positions a group keeps (all of them when the plan does not name it)::

            >>> PrunePlan({"a": (0, 2)}, {"a": 3, "b": 2}).kept("b")
            (0, 1)
        """
        return self.keep.get(group, tuple(range(self.widths[group])))

    def pruned_widths(self) -> Dict[str, int]:
        return {g: self.width(g) for g in self.widths}

    def validate(self, groups) -> None:
        """Check that the plan fits ``groups`` (a ChannelGroups); raise PlanError naming the group if not."""
        model_widths = groups.widths()
        model_slices = groups.slices()
        for name, n in self.slices.items():
            if self.widths == model_widths and model_slices.get(name, 1) != n:
                raise PlanError(f"this plan splits group {name!r} into {n} slices, the model's groups into "
                                f"{model_slices.get(name, 1)}: make the plan from this model's groups (ChannelGroups.plan)")
        if self.widths != model_widths:
            missing = sorted(set(self.widths) - set(model_widths))
            changed = [f"{g} {self.widths[g]}->{model_widths[g]}" for g in self.widths if g in model_widths and model_widths[g] != self.widths[g]]
            raise PlanError(
                "this plan was made for another model: "
                + (f"groups {missing[:5]} do not exist here" if missing else "")
                + (f"{'; ' if missing else ''}widths differ ({', '.join(changed[:5])})" if changed else "")
                + (f"{'; ' if missing or changed else ''}this model has other groups" if not missing and not changed else "")
                + "; make the plan from this model's groups"
            )
        for name, kept in self.keep.items():
            group = groups[name]
            if not group.prunable and len(kept) != group.width:
                raise PlanError(f"plan prunes group {name!r}, which cannot be pruned: {group.reason}")
            counts = unequal_slices(kept, group.width, group.slices)
            if counts:
                raise PlanError(f"plan for group {name!r} keeps {counts} channels in its {group.slices} slices (the groups "
                                "of a grouped conv): keep the same number in each (make the plan with ChannelGroups.plan)")

    def to_dict(self) -> dict:
        out = {"format": FORMAT, "note": self.note, "widths": dict(self.widths), "keep": {k: list(v) for k, v in self.keep.items()}}
        if self.slices:
            out["slices"] = dict(self.slices)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, where: str = "plan") -> "PrunePlan":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PlanError(f"{where} is not a hakd plan (expected format {FORMAT!r})")
        try:
            return cls(data["keep"], data["widths"], data.get("note", ""), data.get("slices", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"{where} is damaged: {type(e).__name__}: {e}") from e

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> "PrunePlan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"{where} is not valid JSON: {e}") from e
        return cls.from_dict(data, where)

    def save(self, path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> "PrunePlan":
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"no plan file at {path}")
        return cls.from_json(path.read_text(), where=str(path))


def first_channels(group: str, width: int, full: int, slices: int = 1) -> Tuple[int, ...]:
    """The first ``width`` channels of a group of ``full`` channels in ``slices`` equal slices:
    the first ``width / slices`` of each.

    >>> first_channels("g", 4, 12, 2)
    (0, 1, 6, 7)
    """
    if width % slices:
        raise PlanError(f"group {group!r} comes in {slices} slices (the groups of a grouped conv): its width must be "
                        f"a multiple of {slices}, got {width}")
    block = full // slices
    return tuple(b * block + i for b in range(slices) for i in range(width // slices))


def unequal_slices(kept, width: int, slices: int) -> Tuple[int, ...]:
    """The kept channels per slice when they differ between slices, else ``()``."""
    if slices <= 1:
        return ()
    counts = np.bincount(np.asarray(kept, dtype=np.int64) // (width // slices), minlength=slices)
    return tuple(int(c) for c in counts) if len(set(counts.tolist())) > 1 else ()
