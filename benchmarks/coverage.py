"""How much of each model hakd can prune: conv output channels in prunable groups.

    .venv/bin/python benchmarks/coverage.py [--label now] [--out coverage.csv]
    .venv/bin/python benchmarks/coverage.py --update-now   # this checkout as the "now" columns of coverage.csv

For every model family the tests hold (hakd's zoo, torchvision-style and timm-style blocks
written as their authors write them), traced as a new user would: `trace(model, x)`, and if
tracing fails, again with the failing module kept whole, as hakd's error message advises.
Also says whether the traced model lowers to TVM (what measuring and export need).
Writes results/coverage.csv (columns: benchmarks/README.md). The share is
`ChannelGroups.conv_coverage()`: it leaves out channels that reach the model output (a
classifier's), which no pruner may remove. Checkouts older than that method were measured
with this script as of commit d80fb89, which computed the same share itself.
"""

import argparse
import csv
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests/ (its models)

from hakd import models  # noqa: E402
from hakd.cost.lower import lower  # noqa: E402
from hakd.errors import TraceError  # noqa: E402
from hakd.passes.groups import find_groups  # noqa: E402
from hakd.passes.trace import trace  # noqa: E402
from common import RESULTS, write_csv  # noqa: E402
from tests.passes.tv_models import TV_MODELS  # noqa: E402

try:
    from tests.passes.timm_models import TIMM_MODELS  # noqa: E402
except ImportError:  # an older checkout
    TIMM_MODELS = {}


def traced_as_a_user_would(model, x):
    """(GraphModule, what the user had to do): trace, and on a TraceError keep the named module whole."""
    leaves = []
    for _ in range(5):
        try:
            return trace(model, x, leaf_modules=leaves), (f"leaf_modules={[t.__name__ for t in leaves]}" if leaves else "")
        except TraceError as e:
            found = re.search(r"leaf_modules=\[(\w+)\]", str(e))
            kind = next((type(m) for m in model.modules() if found and type(m).__name__ == found.group(1)), None)
            if kind is None:
                raise
            leaves.append(kind)
    raise RuntimeError("tracing kept failing")


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="now", help="what this checkout is (a column of the CSV)")
    ap.add_argument("--out", default="coverage.csv")
    ap.add_argument("--update-now", action="store_true",
                    help="rewrite the *_now columns of results/coverage.csv (a before/now table) from this checkout, "
                         "keeping its *_before columns (empty for a model that is new since)")
    args = ap.parse_args()
    families = {**{n: (lambda n=n: models.create(n)) for n in models.names()}, **TV_MODELS, **TIMM_MODELS}
    rows = []
    for name, make in sorted(families.items()):
        torch.manual_seed(0)
        model = make().eval()
        gm, remedy = traced_as_a_user_would(model, torch.zeros(1, 3, 32, 32))
        groups = find_groups(gm)
        pruned, total = groups.conv_coverage()
        blocked = sorted({(g.reason or "").split(": ")[-1][:80] for g in groups if not g.prunable
                          and "reaches the model output" not in (g.reason or "") and "model input" not in (g.reason or "")})
        try:
            lower(gm)
            lowers = "yes"
        except Exception as e:  # noqa: BLE001  (what a user sees, whatever its class)
            lowers = f"no: {type(e).__name__}: {str(e)[:120]}"
        rows.append(dict(model=name, checkout=args.label, conv_channels=total, in_prunable_groups=pruned,
                         share=f"{pruned / total:.3f}", groups=len(groups), prunable_groups=len(groups.prunable()),
                         user_had_to=remedy, blocked_by=" | ".join(blocked), compiles_with_tvm=lowers))
        print(rows[-1], flush=True)
    write_csv("coverage.csv", before_and_now(rows)) if args.update_now else write_csv(args.out, rows)


def before_and_now(rows):
    """The before/now table: *_before columns from results/coverage.csv, *_now from ``rows``."""
    with open(RESULTS / "coverage.csv", newline="") as f:
        before = {r["model"]: r for r in csv.DictReader(f)}
    return [dict(model=r["model"], conv_channels=r["conv_channels"], share_before=before.get(r["model"], {}).get("share_before", ""),
                 share_now=r["share"], compiles_before=before.get(r["model"], {}).get("compiles_before", ""),
                 compiles_now=r["compiles_with_tvm"], before_user_had_to=before.get(r["model"], {}).get("before_user_had_to", ""),
                 now_blocked_by=r["blocked_by"]) for r in rows]


if __name__ == "__main__":
    run()
