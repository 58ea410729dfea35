"""The errors hakd raises: each says what failed, where, and how to fix it.

Every error hakd raises on bad input is a :class:`HakdError`, so callers can catch
one class::

    try:
        hakd.models.create("resnet21")
    except hakd.HakdError as e:
        print(e)   # unknown model 'resnet21'; valid names: densenet40, ...
"""

__all__ = [
    "HakdError",
    "ConfigError",
    "UnknownModelError",
    "DataError",
    "CheckpointError",
    "TrainingError",
    "TraceError",
    "GroupError",
    "PlanError",
    "StaircaseError",
    "BudgetError",
]


class HakdError(Exception):
    """Base class of every error hakd raises about its input or its environment."""


class ConfigError(HakdError, ValueError):
    """An option has a value hakd cannot use; the message lists the valid ones."""


class UnknownModelError(ConfigError):
    """A model name is not in the zoo's registry."""


class DataError(HakdError):
    """A data set is missing or damaged; the message names the path and how to get it."""


class CheckpointError(HakdError):
    """A checkpoint cannot be read or does not belong to this run."""


class TrainingError(HakdError):
    """Training cannot go on (a NaN loss, an empty data loader)."""


class TraceError(HakdError):
    """torch.fx cannot trace a model; the message names the module and operation."""


class GroupError(HakdError):
    """The channel-dependency analysis met a graph it cannot describe."""


class PlanError(HakdError):
    """A prune plan does not fit the model it is applied to."""


class StaircaseError(HakdError):
    """Staircases are missing, damaged, of another model, or stale for the plan they are used with."""


class BudgetError(HakdError):
    """A latency budget cannot be met; the message states the fastest latency reachable."""
