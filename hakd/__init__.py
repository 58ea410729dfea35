"""hakd: Hardware Aware Knowledge Distillation.

Prune a convolutional network to widths at the optimal points of its layers'
latency staircases, measured through the compiler that deploys it, then distil.
"""

__version__ = "0.1.0"

from hakd.errors import *  # noqa: F401,F403
from hakd.errors import __all__ as _errors_all
from hakd.config import DataConfig, DistillConfig, PruneConfig, TrainConfig, TrialConfig  # noqa: E402

__all__ = ["__version__", "optimize", "DataConfig", "DistillConfig", "PruneConfig", "TrainConfig", "TrialConfig", *_errors_all]


def __getattr__(name):  # hakd.optimize imports torch.fx passes and, when it runs, tvm: only on first use
    if name == "optimize":
        from hakd.api import optimize

        return optimize
    raise AttributeError(f"module 'hakd' has no attribute {name!r}")
