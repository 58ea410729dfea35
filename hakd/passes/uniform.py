"""The simple answer: one keep ratio for every channel group, each width rounded up to a multiple.

This is what a user gets from a pruning library with one ratio and ``round_to`` (Torch-Pruning's
``round_to=8``), with the multiple chosen for the target's vector width. hakd fits it to a latency
budget (:func:`hakd.budget.fit_uniform`) and tries it beside its own ways of spending one, so that
its student is never worse than the simple answer beyond the trial's noise::

    >>> import torch
    >>> from hakd.models import resnet20
    >>> from hakd.passes.trace import trace
    >>> from hakd.passes.groups import find_groups
    >>> groups = find_groups(trace(resnet20(), torch.zeros(1, 3, 32, 32)))
    >>> sorted(set(uniform_widths(groups, 0.3, 8).values()))   # 16 -> 8, 32 -> 16, 64 -> 24
    [8, 16, 24]
    >>> [round(f, 3) for f in uniform_steps(groups, 16)]   # the ratios where some width changes
    [0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

from hakd.errors import ConfigError
from hakd.passes.groups import ChannelGroups

__all__ = ["uniform_widths", "uniform_steps", "uniform_note", "uniform_choice"]


def _step(multiple: int, slices: int) -> int:
    return math.lcm(multiple, slices)


def _check(multiple: int) -> None:
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"uniform widths: the multiple must be an integer >= 1, got {multiple!r}")


def uniform_widths(groups: ChannelGroups, fraction: float, multiple: int) -> Dict[str, int]:
    """Every prunable group at ``fraction`` of its width, rounded up to a multiple of ``multiple``
    (of it and the group's slices), at least one multiple, at most the group's width."""
    _check(multiple)
    if not 0 <= fraction <= 1:
        raise ConfigError(f"uniform widths: the keep fraction must be in [0, 1], got {fraction!r}")
    widths = {}
    for g in groups.prunable():
        step = _step(multiple, g.slices)
        widths[g.name] = min(g.width, max(step, math.ceil(fraction * g.width / step - 1e-9) * step))
    return widths


def uniform_steps(groups: ChannelGroups, multiple: int) -> List[float]:
    """The keep fractions, ascending, at which some group's uniform width reaches a new multiple:
    every distinct student of :func:`uniform_widths` is the one at one of these fractions."""
    _check(multiple)
    fractions = {1.0}
    for g in groups.prunable():
        step = _step(multiple, g.slices)
        fractions.update(min(1.0, k * step / g.width) for k in range(1, math.ceil(g.width / step) + 1))
    return sorted(fractions)


def uniform_note(multiple: int, fraction: float, budget_s: float) -> str:
    """The note of a uniform plan fitted to a budget, which :func:`uniform_choice` reads back::

        >>> uniform_note(8, 0.5, 1.25e-3)
        'uniform x8 keep 0.5000 budget 1250.0 us'
        >>> uniform_choice(uniform_note(8, 0.5, 1.25e-3)), uniform_choice("importance budget 1250.0 us")
        ((8, 0.5), None)
    """
    return f"uniform x{multiple} keep {fraction:.4f} budget {budget_s * 1e6:.1f} us"


def uniform_choice(note: str) -> Optional[Tuple[int, float]]:
    """(multiple, keep fraction) of a plan whose note :func:`uniform_note` wrote; None for any other."""
    match = re.match(r"uniform x(\d+) keep ([0-9.]+) ", note)
    return (int(match[1]), float(match[2])) if match else None
