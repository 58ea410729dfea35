"""The ``hakd`` command line.

    hakd models                                        list the zoo
    hakd train resnet20 --data fashion-mnist --epochs 1 --out runs/r20
    hakd train resnet20 --out runs/r20 --epochs 1 --resume   # after an interruption
    hakd groups | profile | staircase | export | table ...  (see hakd.cli_cost)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from hakd.config import DATASETS, DataConfig, TrainConfig
from hakd.errors import HakdError

__all__ = ["main", "build_parser"]


def _train(args) -> None:
    import torch

    from hakd import data, models
    from hakd.train import fit

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads)
    data_config = DataConfig(args.data, root=args.data_root, limit_train=args.limit_train, limit_test=args.limit_test)
    models.create(args.model)  # fail on a bad name before reading any data
    train, test = data.load(data_config)
    torch.manual_seed(config.seed)
    model = models.create(args.model, in_channels=train.in_channels, num_classes=train.num_classes)
    info = {"model": args.model, "in_channels": train.in_channels, "num_classes": train.num_classes, "data": data_config.to_dict()}
    print(f"training {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters) on {args.data}: "
          f"{len(train):,} train / {len(test):,} test images, {config.epochs} epochs, out {args.out}")
    t0 = time.time()
    history = fit(model, train, test, config, args.out, resume=args.resume, run_info=info)
    if history:
        print(f"done: test accuracy {history[-1]['test_acc']:.4f} after epoch {history[-1]['epoch']}, "
              f"{time.time() - t0:.1f} s this run; metrics in {args.out}/metrics.csv")


def _models(args) -> None:
    from hakd import models

    for name in models.names():
        n = sum(p.numel() for p in models.create(name).parameters())
        print(f"{name:14s} {n / 1e6:6.2f}M parameters")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hakd", description="Hardware Aware Knowledge Distillation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(handler=_models)

    p = sub.add_parser("train", help="train a zoo model (a teacher) on a real data set")
    p.add_argument("model", help="zoo model name (see `hakd models`)")
    p.add_argument("--data", default="fashion-mnist", choices=DATASETS)
    p.add_argument("--data-root", default=None, help="folder of the data set (default: Debian's Fashion-MNIST)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(handler=_train)

    from hakd.cli_cost import add_commands

    add_commands(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except HakdError as e:
        print(f"hakd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hakd: interrupted; finished epochs are checkpointed (rerun with --resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped reading: like any Unix tool, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
