"""``hakd`` subcommands that train: models (the zoo), train (a teacher), distill (a student).

    hakd models
    hakd train resnet20 --data fashion-mnist --epochs 1 --out runs/r20     # --resume after an interruption
    hakd distill --teacher runs/r20 --student runs/budget --epochs 30       # torchrun --nproc-per-node 2 -m hakd distill ...
    hakd train resnet20 --epochs 200 --train-device cuda --precision bf16 --out runs/r20   # on a GPU
"""

from __future__ import annotations

import time

from hakd.cli.inputs import add_training_device, output_folder
from hakd.config import DATASETS, DataConfig, TrainConfig
from hakd.errors import ConfigError

__all__ = ["add_train_commands"]


RUN_FILES = {"checkpoint.pt", "metrics.csv", "config.json"}  # what a training or distillation run writes


def _train(args) -> None:
    import torch

    from hakd import data, models
    from hakd.train import fit

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                         device=args.train_device, precision=args.precision)
    data_config = DataConfig(args.data, root=args.data_root, limit_train=args.limit_train, limit_test=args.limit_test)
    models.create(args.model)  # fail on a bad name before reading any data
    output_folder(args.out, RUN_FILES, "hakd train", keep=True)  # a prune folder, a user's files: refused
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


def _distill(args) -> None:
    import os

    import torch
    import torch.distributed as dist

    from hakd import data
    from hakd.checkpoint import load_checkpoint
    from hakd.config import DistillConfig
    from hakd.distill import distill
    from hakd.passes.trace import trace
    from hakd.train import load_trained, run_config

    # the options first: a bad one is refused before any file is read
    config = DistillConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                           init=args.init, loss=args.loss, alpha=args.alpha, beta=args.beta, temperature=args.temperature,
                           device=args.train_device, precision=args.precision)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # started by torchrun
        from hakd.device import training_device

        device = training_device(config.device, config.precision)  # on CUDA: each process its own GPU (LOCAL_RANK)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    run = run_config(args.teacher)
    teacher = load_trained(args.teacher)
    student_file = os.path.join(args.student, "model.pt")
    saved = load_checkpoint(student_file)
    if "model" not in saved or "input_shape" not in saved:
        raise ConfigError(f"{student_file} is not a pruned model written by `hakd prune` or `hakd snap`")
    shape = saved["input_shape"]
    d = run["data"]
    train, test = data.load(DataConfig(d["name"], root=args.data_root or d.get("root"), limit_train=args.limit_train,
                                       limit_test=args.limit_test))
    teacher_gm = trace(teacher, torch.zeros(shape))
    student_gm = trace(saved["model"].eval(), torch.zeros(shape))
    out = args.out or os.path.join(args.student, "distilled")
    output_folder(out, RUN_FILES | {"model.pt"}, "hakd distill", keep=True)  # the teacher's run, the student's folder: refused
    info = {"teacher": os.path.abspath(args.teacher), "student": os.path.abspath(student_file)}
    history = distill(teacher_gm, student_gm, train, test, config, out, resume=args.resume, run_info=info)
    if history and (not dist.is_initialized() or dist.get_rank() == 0):
        print(f"done: student test accuracy {history[-1]['test_acc']:.4f} after epoch {history[-1]['epoch']}; "
              f"student in {out}/model.pt, metrics in {out}/metrics.csv")
    if dist.is_initialized():
        dist.destroy_process_group()


def _models(args) -> None:
    from hakd import models

    for name in models.names():
        n = sum(p.numel() for p in models.create(name).parameters())
        print(f"{name:14s} {n / 1e6:6.2f}M parameters")


def add_train_commands(sub) -> None:
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
    add_training_device(p)
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(handler=_train)

    p = sub.add_parser("distill", help="retrain a pruned student from its teacher (KD + attention transfer)",
                       description="Distil a student (a folder from `hakd prune` or `hakd snap`) from its teacher "
                                   "(a `hakd train` run) on the teacher's data set. Many processes: "
                                   "torchrun --nproc-per-node 2 -m hakd distill ...")
    p.add_argument("--teacher", required=True, help="the teacher's `hakd train` run folder")
    p.add_argument("--student", required=True, help="a prune folder holding model.pt (the rebuilt student)")
    p.add_argument("--out", default=None, help="run folder (default: STUDENT/distilled)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--init", default="inherit", choices=["inherit", "reset"],
                   help="inherit: keep the teacher's kept weights; reset: fresh initialisation")
    p.add_argument("--loss", default="kd+at", choices=["ce", "kd", "kd+at"])
    p.add_argument("--alpha", type=float, default=0.9, help="weight of KD against cross-entropy")
    p.add_argument("--beta", type=float, default=1e3, help="weight of attention transfer")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=128, help="global batch (split across processes)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    add_training_device(p)
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.set_defaults(handler=_distill)
