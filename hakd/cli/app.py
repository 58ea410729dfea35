"""The ``hakd`` command line: one parser over the command families (hakd.cli.train, cost, prune,
optimize, each reading its inputs through hakd.cli.inputs), and one way to end: a HakdError is a
clear message and exit 2, an interruption says how to resume, a bug leaves its traceback in a file."""

from __future__ import annotations

import argparse
import os
import sys
import time

from hakd import interrupt
from hakd.cli.cost import add_cost_commands
from hakd.cli.optimize import add_optimize_commands
from hakd.cli.prune import add_prune_commands
from hakd.cli.train import add_train_commands
from hakd.errors import ConfigError, HakdError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hakd", description="Hardware Aware Knowledge Distillation")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in (add_train_commands, add_cost_commands, add_prune_commands, add_optimize_commands):
        add_commands(sub)
    return parser


def _log_internal_error(argv) -> str:
    """Write the current exception's traceback to a log file; returns its path."""
    import tempfile
    import traceback

    folder = os.path.join(os.path.expanduser("~"), ".cache", "hakd", "logs")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.gettempdir()
    path = os.path.join(folder, f"hakd-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    with open(path, "w") as f:
        f.write(f"hakd {' '.join(argv if argv is not None else sys.argv[1:])}\n\n")
        traceback.print_exc(file=f)
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    interrupt.install()  # a Ctrl-C that TVM swallows is raised again after the lowering or build it hit
    try:
        for option in ("out", "table", "plot_dir"):  # '' would scatter a command's files into the current folder
            if getattr(args, option, None) is not None and not str(getattr(args, option)).strip():
                raise ConfigError(f"--{option.replace('_', '-')} is empty; give a folder or file path "
                                  "(e.g. runs/NAME), or leave the option out")
        args.handler(args)
    except HakdError as e:
        print(f"hakd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hakd: interrupted; what was finished is saved: rerun the same command (with --resume where it has "
              "one) to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped reading: like any Unix tool, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a file or folder the user named: missing, read-only, a file where a folder should be
        where = f" {e.filename}" if e.filename else ""
        print(f"hakd: error: cannot use{where}: {e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return 2
    except Exception as e:  # a bug in hakd, not bad input: one line, the traceback in a file
        log = _log_internal_error(argv)
        print(f"hakd: internal error: {type(e).__name__}: {str(e)[:300]}; the traceback is in {log} "
              "(please report it with that file)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
