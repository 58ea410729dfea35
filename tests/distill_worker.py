"""Run by tests/test_distill.py under torchrun (1 or 2 processes): distil a small student, save its weights.

    torchrun --nproc-per-node 2 tests/distill_worker.py OUT
"""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hakd.config import DistillConfig  # noqa: E402
from hakd.distill import distill  # noqa: E402
from hakd.passes.groups import find_groups  # noqa: E402
from hakd.passes.rebuild import rebuild  # noqa: E402
from hakd.passes.trace import trace  # noqa: E402
from hakd.plan import PrunePlan  # noqa: E402
# not tests.conftest: it imports the cost model, and a process that has loaded TVM's library aborts now and then at
# exit under torchrun ("terminate called without an active exception": 3 of 67 runs under load; 0 of 67 without)
from tests.synthetic import band_split  # noqa: E402


class NoNorm(nn.Module):
    """No BatchNorm: on CPU there is no SyncBatchNorm, so per-rank batch statistics would differ."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(nn.functional.max_pool2d(x, 2)))
        return self.fc(x.mean((2, 3)))


def main(out):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tvm", "tvm_ffi"))
    assert not loaded, f"the worker must not load TVM (see its imports), but loaded {loaded[:3]}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    teacher = trace(NoNorm(), torch.zeros(1, 1, 8, 8))
    groups = find_groups(teacher)
    student = rebuild(teacher, groups, PrunePlan.from_widths({"conv1": 5, "conv2": 6}, groups.widths()))
    # KD + AT: beta = 1e3 amplifies float rounding (the order of a sum differs with two ranks): at lr 0.05 the
    # two runs drift ~1e-3 apart in 8 steps, KD or CE alone agree to 1e-8; at lr 0.005 KD + AT agrees to ~3e-7
    config = DistillConfig(epochs=2, batch_size=16, lr=0.005, threads=1, init="inherit")
    distill(teacher, student, band_split(64), band_split(32, seed=1), config, out, progress=False)
    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save(student.state_dict(), os.path.join(out, "weights.pt"))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
