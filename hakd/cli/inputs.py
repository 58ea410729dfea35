"""What the ``hakd`` commands share: the model a command works on (a zoo name, a `hakd train` run,
a saved model or a factory), input shapes, the profiler, and option parsers. Every command
family (train, cost, prune, optimize) reads its inputs here, so a bad input is checked once.

>>> parse_shape("3,32,32"), names("importance, params"), fractions("0,0.5", "--min-keep")
((3, 32, 32), ('importance', 'params'), (0.0, 0.5))
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hakd.errors import ConfigError

__all__ = ["add_training_device", "output_folder", "INPUTS", "traced_model", "model_in_channels", "user_model", "unpruned_model", "profiler", "parse_shape", "names", "fractions"]

INPUTS = {"fashion-mnist": (1, 1, 28, 28), "cifar10": (1, 3, 32, 32)}


def traced_model(args):
    """(traced GraphModule, description) from --run (a trained run folder) or a zoo name."""
    import torch

    from hakd import models
    from hakd.passes.trace import trace
    from hakd.train import load_trained, run_config

    if getattr(args, "model_file", None):
        model, shape = model_file(args.model_file)
        return trace(model, torch.zeros(1, *(shape or INPUTS[args.data][1:]))), args.model_file
    if args.run:
        model = load_trained(args.run)
        shape = (1, model_in_channels(model), *INPUTS[run_config(args.run)["data"]["name"]][2:])
        what = f"{args.run}"
    else:
        if not args.model:
            raise ConfigError("give a zoo model name or --run RUN_FOLDER")
        shape = INPUTS[args.data]
        model = models.create(args.model, in_channels=shape[1]).eval()
        what = f"{args.model} (untrained)"
    return trace(model.eval(), torch.zeros(shape)), what


def model_in_channels(model) -> int:
    from torch import nn

    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def profiler(args, threads: int, target=None):
    """The Profiler of --target (``hw_target``, or ``target``), --device, --table, with ``threads``,
    --tune-trials and --build-workers."""
    from hakd.cost.build_pool import build_workers
    from hakd.cost.measure import MeasureConfig
    from hakd.cost.profile import Profiler

    return Profiler(target or args.hw_target, device=args.device, table=args.table, measure=MeasureConfig(threads=threads),
                    tune_trials=getattr(args, "tune_trials", 0), build_workers=build_workers(args.build_workers))


def add_build_workers(p) -> None:
    """--build-workers, on every command that measures kernels."""
    p.add_argument("--build-workers", type=int, default=None, metavar="N",
                   help="processes that compile kernels while this one times them, alone (default: this host's cores)")


MAX_INPUT_VALUES = 2**26  # values of one input image: 256 MiB as float32


def parse_shape(text):
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ConfigError(f"--input-shape is C,H,W (three positive integers, e.g. 3,32,32); got {text!r}")
    values = dims[0] * dims[1] * dims[2]
    if values > MAX_INPUT_VALUES:
        raise ConfigError(f"--input-shape {text} is {values:,} values per image ({values * 4 / 2**30:.0f} GiB as float32), "
                          f"more than the {MAX_INPUT_VALUES:,} hakd takes (3x4096x4096 fits): check the numbers")
    return dims


def names(text):
    """A comma-separated list: ``importance,params`` -> ('importance', 'params')."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def fractions(text, option):
    """Comma-separated numbers: ``0,0.5`` -> (0.0, 0.5)."""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{option} takes numbers separated by commas (e.g. 0,0.25,0.5), got {text!r}") from None


def user_model(args):
    """(nn.Module in eval mode, input shape C,H,W, where it came from) from --run, --model or --model-file."""
    given = [a for a in ("run", "model", "model_file") if getattr(args, a, None)]
    if len(given) != 1:
        raise ConfigError("give the model one way: --run RUN (a `hakd train` folder), --model PACKAGE.MODULE:FACTORY, "
                          "or --model-file FILE (a saved nn.Module)")
    shape = parse_shape(args.input_shape) if args.input_shape else INPUTS[args.data][1:]
    if args.run:
        from hakd.train import load_trained, run_config

        if not args.input_shape:  # the data set the run was trained on, not --data
            shape = INPUTS[run_config(args.run)["data"]["name"]][1:]
        return load_trained(args.run), shape, args.run
    if args.model:
        module_name, _, factory = args.model.partition(":")
        if not factory:
            raise ConfigError(f"--model is PACKAGE.MODULE:FACTORY (e.g. torchvision.models:resnet18); got {args.model!r}")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            package = module_name.split(".")[0]
            raise ConfigError(f"cannot import {module_name!r} for --model ({e}); install it in this environment "
                              f"(pip install {package}) or save the model with torch.save and pass --model-file") from e
        if not hasattr(module, factory):
            raise ConfigError(f"{module_name} has no {factory!r}; check the name after the colon in --model")
        kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
        from torch import nn

        try:
            model = getattr(module, factory)(**kwargs)
        except Exception as e:  # the user's code: say where it failed, not as hakd's internal error
            raise ConfigError(f"--model {args.model}: calling {factory}({', '.join(f'{k}={v}' for k, v in kwargs.items())}) "
                              f"failed ({type(e).__name__}: {str(e)[:200]}); --model names a function that builds the "
                              "model with no arguments (or num_classes)") from e
        if not isinstance(model, nn.Module):
            raise ConfigError(f"--model {args.model} returned a {type(model).__name__}, not a torch nn.Module")
        if args.weights:
            from hakd.checkpoint import load_checkpoint

            state = load_checkpoint(args.weights)
            try:
                model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
            except Exception as e:
                raise ConfigError(f"--weights {args.weights} does not fit --model {args.model} "
                                  f"({type(e).__name__}: {str(e)[:200]}): give the state dict saved from this model") from e
        return model.eval(), shape, args.model
    model, saved_shape = model_file(args.model_file)
    return model, (shape if args.input_shape else saved_shape or shape), args.model_file


def model_file(path) -> tuple:
    """(nn.Module in eval mode, its input shape C,H,W or None) from a file: a model written by
    `hakd prune` (with its input shape) or a whole model saved with torch.save."""
    import torch
    from torch import nn

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model-file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{path} is not a torch file that holds a model ({type(e).__name__}: {str(e)[:200]})") from e
    shape = None
    if isinstance(saved, dict) and isinstance(saved.get("model"), nn.Module):
        shape = tuple(saved["input_shape"][1:]) if "input_shape" in saved else None
        saved = saved["model"]
    if not isinstance(saved, nn.Module):
        raise ConfigError(f"{path} holds a {type(saved).__name__}, not an nn.Module: save the whole model "
                          "(torch.save(model, path)), or give a factory with --model and the weights with --weights")
    return saved.eval(), shape


def unpruned_model(path: str, data: str):
    """The model before pruning, for ``--unpruned``: a `hakd train` run folder or a saved nn.Module."""
    import argparse

    source = {"run": path, "model_file": None} if Path(path).is_dir() else {"run": None, "model_file": path}
    return user_model(argparse.Namespace(model=None, input_shape=None, data=data, **source))[0]


def add_training_device(parser) -> None:
    """``--train-device`` and ``--precision``: where training runs (teacher, Fisher's fine-tuning,
    distillation), kept apart from ``--device``, the board that times kernels."""
    parser.add_argument("--train-device", default="auto", metavar="DEVICE",
                        help="where training runs: auto (default: CUDA, then MPS, when present; else the CPU), cpu, "
                             "cuda, cuda:N, mps. Not --device, which is the board kernels are timed on")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="training precision: fp32 (default), bf16 autocast (CPU or CUDA), fp16 autocast with a "
                             "gradient scaler (CUDA)")


def output_folder(out, own: set, command: str, overwrite: bool = False, keep: bool = False) -> Path:
    """The folder a command writes ``own`` files into, checked before it writes: refused when it is a
    file or holds anything else (a `hakd train` run, a prune folder, a user's files), since the
    command's files would land beside them. With ``overwrite`` the command's earlier files are
    removed first, so that nothing of the old output mixes with the new (``keep``: a run that
    resumes keeps them)::

        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> (d / "notes.txt").write_text("mine") and None
        >>> output_folder(d, {"plan.json"}, "hakd prune")   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hakd.errors.ConfigError: --out ... holds files hakd prune does not write (notes.txt): give a folder of its own
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    foreign = [name for name in present if name not in own and not name.startswith(".")]  # .*: an atomic write's leftovers
    if foreign:
        raise ConfigError(f"--out {out} holds files {command} does not write ({', '.join(foreign[:4])}"
                          f"{', ...' if len(foreign) > 4 else ''}): give a folder of its own")
    if overwrite and not keep:
        for name in present:
            (out / name).unlink()
    return out
