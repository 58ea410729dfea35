"""A round of bad and odd inputs against the CLI and hakd.optimize, tried as a careless user would.

    .venv/bin/python benchmarks/bad_inputs.py [--only WORD]

Each case runs `python -m hakd ...` (or a few lines calling ``hakd.optimize``) in its own process,
with a timeout, in a scratch folder holding a user's files: a real `hakd train` run, a real prune
folder, a tiny model file, a latency table, unrelated files; damaged copies are made per case. The
verdict of a case:

- ``clear error``: exit 2 with one ``hakd: error:`` line and no traceback (what a bad input must get);
- ``right result``: exit 0 where the input is odd but valid (the case says so);
- ``wrong with exit 0``, ``refused``, ``internal`` (a traceback or "internal error"), ``no answer``
  (the timeout) and ``overwritten`` (a file that existed before the case changed or went; the shared
  latency table may gain rows, not lose any).

Writes results/bad_inputs.csv (columns: benchmarks/README.md; with --only, the other cases' rows stay); exits 1
when a case fails.
"""

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import isa, merge_rows, write_csv  # noqa: E402

ERROR, OK, EITHER = "error", "ok", "either"
QUICK = ["--limit-train", "64", "--limit-test", "64"]
TINY = ["optimize", "--model", "tests.cli_models:tiny", *QUICK, "--epochs", "1", "--prune-every", "1",
        "--trial-images", "32", "--held-out", "16", "--threads", "1", "--table", "T/t.sqlite"]
API = """
import sys, torch, hakd
from hakd.config import DataConfig, DistillConfig, PruneConfig
from hakd.errors import HakdError
from tests.cli_models import tiny
data = DataConfig("fashion-mnist", limit_train=64, limit_test=64)
quick = dict(prune=PruneConfig(prune_every=1), distill=DistillConfig(epochs=1), table="T/t.sqlite", out="T/api-out")
try:
    hakd.optimize({call})
except HakdError as e:
    print(f"hakd: error: {{e}}", file=sys.stderr)
    sys.exit(2)
"""


def api(call: str) -> list:
    return ["-c", API.format(call=call)]


def hakd_cli(*argv) -> list:
    return ["-m", "hakd", *argv]


def profile(*argv) -> list:
    """`hakd profile` of the tiny model file, with ``argv``."""
    return hakd_cli("profile", "--model-file", "T/tiny.pt", *argv)


def damaged(src: str, name: str, edit):
    """A setup: copy folder T/src to T/name, then ``edit(folder)``."""
    def setup(t: Path):
        shutil.copytree(t / src, t / name)
        edit(t / name)
    return setup


def write(path: str, text):
    return lambda folder: (folder / path).write_text(text if isinstance(text, str) else json.dumps(text))


def remove(path: str):
    return lambda folder: (folder / path).unlink()


def plan_edit(change):
    def edit(folder):
        plan = json.loads((folder / "plan.json").read_text())
        change(plan)
        (folder / "plan.json").write_text(json.dumps(plan))
    return edit


def first_group(plan):
    return next(iter(plan["widths"]))


CASES = [  # (name, argv for python, expected, setup or None)
    # --build-workers, new with the build pool
    ("build workers 0", profile("--table", "T/t.sqlite", "--build-workers", "0"), ERROR, None),
    ("build workers negative", profile("--build-workers", "-2"), ERROR, None),
    ("build workers a word", profile("--build-workers", "two"), ERROR, None),
    ("build workers beyond the cores", profile("--table", "T/t.sqlite",
                                                "--build-workers", "64"), OK, None),
    ("build workers on snap", hakd_cli("snap", "T/prune", "--mode", "up", "--build-workers", "0", "--out", "T/s0"), ERROR, None),
    ("build workers on optimize", hakd_cli(*TINY, "--build-workers", "-1", "--out", "T/o-bw"), ERROR, None),
    # targets
    ("target empty -mcpu", profile("--target", "llvm -mcpu="), ERROR, None),
    ("target num-cores a word", profile("--target", "llvm -num-cores=abc"), ERROR, None),
    ("target num-cores 0", profile("--target", "llvm -num-cores=0"), ERROR, None),
    ("target num-cores negative", profile("--target", "llvm -num-cores=-4"), ERROR, None),
    ("target riscv without a board", profile("--target", "llvm -mtriple=riscv64-linux-gnu"), ERROR, None),
    ("target arm cpu without a board", profile("--target", "llvm -mcpu=cortex-a72"), ERROR, None),
    ("target unknown option", profile("--target", "llvm -foo=bar"), ERROR, None),
    ("target opencl", profile("--target", "opencl"), ERROR, None),
    ("target host with options", profile("--target", "host -mcpu=znver3"), EITHER, None),
    ("target json garbage", profile("--target", "{kind: llvm"), ERROR, None),
    ("target json not llvm", profile("--target", '{"kind": "cuda"}'), ERROR, None),
    ("target only spaces", profile("--target", "   "), ERROR, None),
    ("target on optimize unknown cpu", hakd_cli(*TINY, "--target", "llvm -mcpu=pentium9", "--out", "T/o-t"), ERROR, None),
    # devices
    ("device nothing listening", profile("--table", "T/t.sqlite", "--device", "rpc://127.0.0.1:1/key"), ERROR, None),
    ("device no host", profile("--device", "rpc://:9190/key"), ERROR, None),
    ("device port out of range", profile("--device", "rpc://h:99999/key"), ERROR, None),
    ("device port a word", profile("--device", "rpc://h:port/key"), ERROR, None),
    ("device no key", profile("--device", "rpc://127.0.0.1:9190/"), ERROR, None),
    ("device no path", profile("--device", "rpc://127.0.0.1:9190"), ERROR, None),
    ("device local", profile("--table", "T/t.sqlite", "--device", "local"), OK, None),
    # input shapes
    ("input shape zero", hakd_cli(*TINY, "--input-shape", "1,0,28", "--out", "T/o-s1"), ERROR, None),
    ("input shape four numbers", hakd_cli(*TINY, "--input-shape", "1,28,28,1", "--out", "T/o-s2"), ERROR, None),
    ("input shape negative", hakd_cli(*TINY, "--input-shape", "-1,28,28", "--out", "T/o-s3"), ERROR, None),
    ("input shape enormous", hakd_cli(*TINY, "--input-shape", "1,100000,100000", "--out", "T/o-s4"), ERROR, None),
    ("input shape floats", hakd_cli(*TINY, "--input-shape", "1.0,28,28", "--out", "T/o-s5"), ERROR, None),
    # numbers in training options
    ("train lr negative", hakd_cli("train", "resnet20", "--lr", "-0.1", "--out", "T/tr1"), ERROR, None),
    ("train lr inf", hakd_cli("train", "resnet20", "--lr", "inf", "--out", "T/tr2"), ERROR, None),
    ("train lr zero", hakd_cli("train", "resnet20", "--lr", "0", "--out", "T/tr3"), ERROR, None),
    ("train epochs fraction", hakd_cli("train", "resnet20", "--epochs", "1.5", "--out", "T/tr4"), ERROR, None),
    ("train batch huge", hakd_cli("train", "resnet20", "--batch-size", "100000000000", "--out", "T/tr5"), ERROR, None),
    ("train seed negative", hakd_cli("train", "resnet20", "--seed", "-1", *QUICK, "--epochs", "1", "--threads", "1",
                                     "--out", "T/tr6"), EITHER, None),
    ("train seed enormous", hakd_cli("train", "resnet20", "--seed", "99999999999999999999", *QUICK, "--epochs", "1",
                                     "--out", "T/tr7"), EITHER, None),
    ("train limit-test negative", hakd_cli("train", "resnet20", "--limit-test", "-5", "--out", "T/tr8"), ERROR, None),
    ("train unknown model case", hakd_cli("train", "ResNet20", *QUICK, "--epochs", "1", "--out", "T/tr9"), EITHER, None),
    ("distill temperature 0", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--temperature", "0",
                                       "--out", "T/d1"), ERROR, None),
    ("distill temperature negative", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--temperature",
                                              "-2", "--out", "T/d2"), ERROR, None),
    ("distill alpha above 1", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--alpha", "1.5",
                                       "--out", "T/d3"), ERROR, None),
    ("distill alpha negative", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--alpha", "-0.1",
                                        "--out", "T/d4"), ERROR, None),
    ("distill batch 0", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--batch-size", "0",
                                 "--out", "T/d5"), ERROR, None),
    ("distill epochs negative", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--epochs", "-1",
                                         "--out", "T/d6"), ERROR, None),
    ("distill lr zero", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--lr", "0", "--out", "T/d7"),
     ERROR, None),
    ("distill beta negative", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--beta", "-1",
                                       "--out", "T/d8"), ERROR, None),
    ("distill limit-train 0", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--limit-train", "0",
                                       "--out", "T/d9"), ERROR, None),
    ("distill loss unknown", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--loss", "mse",
                                      "--out", "T/d10"), ERROR, None),
    ("prune prune-every 0", hakd_cli("prune", "--run", "T/run", "--prune-every", "0", "--out", "T/p1"), ERROR, None),
    ("prune prune-every negative", hakd_cli("prune", "--run", "T/run", "--prune-every", "-5", "--out", "T/p2"), ERROR, None),
    ("prune penalty negative", hakd_cli("prune", "--run", "T/run", "--penalty", "-1", "--out", "T/p3"), ERROR, None),
    ("prune penalty inf", hakd_cli("prune", "--run", "T/run", "--penalty", "inf", "--out", "T/p4"), ERROR, None),
    ("prune amount nan", hakd_cli("prune", "resnet20", "--method", "l1", "--amount", "nan", "--out", "T/p5"), ERROR, None),
    ("prune amount inf", hakd_cli("prune", "resnet20", "--method", "uniform", "--amount", "inf", "--out", "T/p6"), ERROR, None),
    ("prune round 3 down", hakd_cli("prune", "resnet20", "--method", "uniform", "--round", "3", "--out", "T/p7"), OK, None),
    ("prune fisher on a zoo name", hakd_cli("prune", "resnet20", "--out", "T/p8"), ERROR, None),
    ("prune latency target without a device", hakd_cli("prune", "--run", "T/run", "--target", "latency", "--hw-target",
                                                       "llvm -mcpu=cortex-a72", "--out", "T/p9"), ERROR, None),
    ("optimize trial images 0", hakd_cli(*TINY, "--budget", "0.5", "--trial-images", "0", "--out", "T/o1"), ERROR, None),
    ("optimize trial images negative", hakd_cli(*TINY, "--budget", "0.5", "--trial-images", "-5", "--out", "T/o2"), ERROR, None),
    ("optimize epochs 0", hakd_cli(*TINY, "--epochs", "0", "--out", "T/o3"), ERROR, None),
    ("optimize amount 1", hakd_cli(*TINY, "--amount", "1", "--out", "T/o4"), ERROR, None),
    ("optimize amount 0", hakd_cli(*TINY, "--amount", "0", "--out", "T/o5"), ERROR, None),
    ("optimize tune trials negative", hakd_cli(*TINY, "--tune-trials", "-1", "--out", "T/o6"), ERROR, None),
    ("optimize threads 0", hakd_cli(*TINY, "--threads", "0", "--out", "T/o7"), ERROR, None),
    ("optimize torch threads 0", hakd_cli(*TINY, "--torch-threads", "0", "--out", "T/o8"), ERROR, None),
    ("optimize budget below any student", hakd_cli(*TINY, "--budget", "0.000001", "--out", "T/o9"), ERROR, None),
    ("optimize budget-us negative", hakd_cli(*TINY, "--budget-us", "-5", "--out", "T/o10"), ERROR, None),
    ("optimize min-keep without a budget", hakd_cli(*TINY, "--min-keep", "0.5", "--out", "T/o11"), ERROR, None),
    ("optimize value without a budget", hakd_cli(*TINY, "--value", "params", "--out", "T/o12"), ERROR, None),
    ("optimize held-out above the images", hakd_cli(*TINY, "--budget", "0.5", "--held-out", "100000", "--out", "T/o13"),
     ERROR, None),
    ("optimize model factory needs arguments", hakd_cli("optimize", "--model", "torch.nn:Conv2d", *QUICK, "--out", "T/o14"),
     ERROR, None),
    ("optimize model that is a class attribute path", hakd_cli("optimize", "--model", "tests.cli_models:Tiny.forward",
                                                              *QUICK, "--out", "T/o15"), ERROR, None),
    ("optimize model spec without a colon", hakd_cli("optimize", "--model", "tests.cli_models", *QUICK, "--out", "T/o16"),
     ERROR, None),
    ("optimize weights of another model", hakd_cli("optimize", "--model", "tests.cli_models:tiny", "--weights", "T/state.pt",
                                                   *QUICK, "--out", "T/o18"), ERROR, None),
    ("optimize weights that are junk", hakd_cli("optimize", "--model", "tests.cli_models:tiny", "--weights", "T/junk.pt",
                                                *QUICK, "--out", "T/o19"), ERROR, None),
    ("optimize both model and run", hakd_cli("optimize", "--model", "tests.cli_models:tiny", "--run", "T/run", *QUICK,
                                             "--out", "T/o17"), ERROR, None),
    ("diagnose headroom negative", hakd_cli("diagnose", "--model-file", "T/tiny.pt", "--headroom", "-1"), ERROR, None),
    ("diagnose unknown group", hakd_cli("diagnose", "--model-file", "T/tiny.pt", "--table", "T/t.sqlite", "--groups", "nope"),
     ERROR, None),
    ("diagnose groups only commas", hakd_cli("diagnose", "--model-file", "T/tiny.pt", "--groups", ",,"), ERROR, None),
    ("diagnose unpruned is junk", hakd_cli("diagnose", "--model-file", "T/tiny.pt", "--unpruned", "T/junk.pt"), ERROR, None),
    ("staircases tol 1", hakd_cli("staircases", "T/prune", "--tol", "1"), ERROR, None),
    ("staircases tol negative", hakd_cli("staircases", "T/prune", "--tol", "-0.5"), ERROR, None),
    ("staircases unknown group", hakd_cli("staircases", "T/prune", "--groups", "nope"), ERROR, None),
    ("snap value unknown", hakd_cli("snap", "T/prune", "--budget", "0.5", "--value", "nope", "--out", "T/s1"), ERROR, None),
    ("snap mode unknown", hakd_cli("snap", "T/prune", "--mode", "sideways", "--out", "T/s2"), ERROR, None),
    ("staircase tol 2", hakd_cli("staircase", "resnet20", "--group", "layers.0.conv1", "--tol", "2"), ERROR, None),
    ("staircase plot into a missing folder", hakd_cli("staircase", "--model-file", "T/tiny.pt", "--table", "T/t.sqlite",
                                                      "--group", "stem.0", "--plot", "T/nowhere/deep/s.png"), EITHER, None),
    # files and folders that are not what an option wants
    ("model file is a folder", hakd_cli("profile", "--model-file", "T/dir"), ERROR, None),
    ("model file is a sqlite file", hakd_cli("profile", "--model-file", "T/app.db"), ERROR, None),
    ("run is a prune folder", hakd_cli("profile", "--run", "T/prune"), ERROR, None),
    ("run is a file", hakd_cli("profile", "--run", "T/notes.txt"), ERROR, None),
    ("export out is a file", hakd_cli("export", "--model-file", "T/tiny.pt", "--table", "T/t.sqlite", "--out", "T/notes.txt"),
     ERROR, None),
    ("table export into a folder", hakd_cli("table", "export", "T/dir", "--table", "T/t.sqlite"), ERROR, None),
    ("table merge a text file", hakd_cli("table", "merge", "T/notes.txt", "--table", "T/t.sqlite"), ERROR, None),
    ("table merge into itself", hakd_cli("table", "merge", "T/t.sqlite", "--table", "T/t.sqlite"), EITHER, None),
    ("table merge a folder", hakd_cli("table", "merge", "T/dir", "--table", "T/t.sqlite"), ERROR, None),
    ("table list a folder", hakd_cli("table", "list", "--table", "T/dir"), ERROR, None),
    ("table export from a missing table", hakd_cli("table", "export", "T/x.csv", "--table", "T/none.sqlite"), ERROR, None),
    ("table merge a missing table", hakd_cli("table", "merge", "T/none.sqlite", "--table", "T/t.sqlite"), ERROR, None),
    ("staircases with a foreign sqlite table", hakd_cli("staircases", "T/prune", "--table", "T/app.db"), ERROR, None),
    ("staircases with a text file as table", hakd_cli("staircases", "T/prune", "--table", "T/notes.txt"), ERROR, None),
    ("distill student is a run", hakd_cli("distill", "--teacher", "T/run", "--student", "T/run"), ERROR, None),
    ("distill teacher is a prune folder", hakd_cli("distill", "--teacher", "T/prune", "--student", "T/prune"), ERROR, None),
    ("distill out is the teacher", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--out", "T/run",
                                            *QUICK), ERROR, None),
    ("distill out is the student folder", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--out",
                                                   "T/prune", *QUICK), ERROR, None),
    ("distill out is a file", hakd_cli("distill", "--teacher", "T/run", "--student", "T/prune", "--out", "T/notes.txt",
                                       *QUICK), ERROR, None),
    ("train out is a prune folder", hakd_cli("train", "resnet20", "--out", "T/prune", *QUICK), ERROR, None),
    ("train out is a file", hakd_cli("train", "resnet20", "--out", "T/notes.txt", *QUICK), ERROR, None),
    ("groups of a junk file", hakd_cli("groups", "--model-file", "T/junk.pt"), ERROR, None),
    ("groups of an unknown model", hakd_cli("groups", "resnet7"), ERROR, None),
    ("models with an argument", hakd_cli("models", "resnet20"), ERROR, None),
    # damaged prune folders and runs (copies)
    ("plan is a list", hakd_cli("snap", "T/pl1", "--mode", "up", "--out", "T/s3"), ERROR, damaged("prune", "pl1", write("plan.json", []))),
    ("plan of a future format", hakd_cli("snap", "T/pl2", "--mode", "up", "--out", "T/s4"), ERROR,
     damaged("prune", "pl2", plan_edit(lambda p: p.update(format="hakd.plan/99")))),
    ("plan with an unknown group", hakd_cli("snap", "T/pl3", "--mode", "up", "--out", "T/s5"), ERROR,
     damaged("prune", "pl3", plan_edit(lambda p: p["widths"].update(nope=3)))),
    ("plan with a width 0", hakd_cli("snap", "T/pl4", "--mode", "up", "--out", "T/s6"), ERROR,
     damaged("prune", "pl4", plan_edit(lambda p: p["widths"].update({first_group(p): 0})))),
    ("plan wider than the model", hakd_cli("snap", "T/pl5", "--mode", "up", "--out", "T/s7"), ERROR,
     damaged("prune", "pl5", plan_edit(lambda p: p["widths"].update({first_group(p): 10**6})))),
    ("plan empty file", hakd_cli("snap", "T/pl6", "--mode", "up", "--out", "T/s8"), ERROR, damaged("prune", "pl6", write("plan.json", ""))),
    ("prune folder without base.pt", hakd_cli("snap", "T/pl7", "--mode", "up", "--out", "T/s9"), ERROR,
     damaged("prune", "pl7", remove("base.pt"))),
    ("prune folder with junk base.pt", hakd_cli("snap", "T/pl8", "--mode", "up", "--out", "T/s10"), ERROR,
     damaged("prune", "pl8", write("base.pt", "junk"))),
    ("importance is a list", hakd_cli("snap", "T/pl9", "--budget", "0.5", "--out", "T/s11"), ERROR,
     damaged("prune", "pl9", write("importance.json", [1, 2, 3]))),
    ("importance missing a group", hakd_cli("snap", "T/pl10", "--budget", "0.5", "--out", "T/s12"), ERROR,
     damaged("prune", "pl10", lambda f: (f / "importance.json").write_text(json.dumps(
         dict(list(json.loads((f / "importance.json").read_text()).items())[1:]))))),
    ("importance negative", hakd_cli("snap", "T/pl11", "--budget", "0.5", "--out", "T/s13"), EITHER,
     damaged("prune", "pl11", lambda f: (f / "importance.json").write_text(json.dumps(
         {g: [-abs(v) for v in vs] for g, vs in json.loads((f / "importance.json").read_text()).items()})))),
    ("staircases file is an empty object", hakd_cli("snap", "T/pl12", "--mode", "up", "--out", "T/s14"), EITHER,
     damaged("prune", "pl12", write("staircases.json", {}))),
    ("run without config.json", hakd_cli("profile", "--run", "T/run1", "--table", "T/t.sqlite"), ERROR,
     damaged("run", "run1", remove("config.json"))),
    ("run with a garbage config.json", hakd_cli("distill", "--teacher", "T/run2", "--student", "T/prune", "--out", "T/d11"),
     ERROR, damaged("run", "run2", write("config.json", "{{{"))),
    ("run naming an unknown model", hakd_cli("profile", "--run", "T/run3", "--table", "T/t.sqlite"), EITHER,
     damaged("run", "run3", lambda f: (f / "config.json").write_text(
         (f / "config.json").read_text().replace('"resnet20"', '"resnet99"')))),
    # the API
    ("api target a number", api("tiny(), target=123, data=data, **quick"), ERROR, None),
    ("api budget a string", api('tiny(), data=data, budget="0.5", **quick'), ERROR, None),
    ("api build workers 0", api("tiny(), data=data, build_workers=0, **quick"), ERROR, None),
    ("api threads a string", api('tiny(), data=data, threads="1", **quick'), ERROR, None),
    ("api out a number", api("tiny(), data=data, prune=PruneConfig(prune_every=1), distill=DistillConfig(epochs=1), "
                             "table='T/t.sqlite', out=123"), ERROR, None),
    ("api example input without a batch", api("tiny(), data=data, example_input=torch.zeros(1, 28, 28), **quick"), ERROR, None),
    ("api example input a string", api('tiny(), data=data, example_input="x", **quick'), ERROR, None),
    ("api data a string", api('tiny(), data="fashion-mnist", **quick'), ERROR, None),
    ("api no convolution", api("torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), data=data, **quick"),
     ERROR, None),
    ("api snap sideways", api('tiny(), data=data, snap="sideways", **quick'), ERROR, None),
    ("api log not callable", api("tiny(), data=data, log=None, **quick"), ERROR, None),
    ("api ways duplicated", api('tiny(), data=data, budget=0.5, ways=["uniform", "uniform"], **quick'), EITHER, None),
    ("api table a folder", api("tiny(), data=data, prune=PruneConfig(prune_every=1), distill=DistillConfig(epochs=1), "
                               "table='T/dir', out='T/api-out2'"), ERROR, None),
]


def user_files(t: Path, python: str) -> None:
    """The scratch folder: a real run, a real prune folder, a tiny model, a latency table and unrelated files."""
    def run(*argv):
        subprocess.run([python, "-m", "hakd", *argv], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    (t / "notes.txt").write_text("mine")
    (t / "junk.pt").write_bytes(b"not a torch file")
    subprocess.run([python, "-c", f"import torch; torch.save({{'weights': torch.zeros(2)}}, {str(t / 'state.pt')!r})"], check=True)
    (t / "dir").mkdir()
    db = sqlite3.connect(t / "app.db")
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    subprocess.run([python, "-c", f"import torch; from tests.cli_models import tiny; torch.save(tiny(), {str(t / 'tiny.pt')!r})"],
                   check=True, cwd=ROOT)
    run("train", "resnet20", *QUICK, "--epochs", "1", "--threads", "1", "--out", str(t / "run"))
    run("prune", "--run", str(t / "run"), "--amount", "0.5", "--prune-every", "1", "--threads", "1", "--out", str(t / "prune"))
    run("profile", "--model-file", str(t / "tiny.pt"), "--table", str(t / "t.sqlite"))


TABLE = "t.sqlite"  # the latency table the cases share: it gains rows (its purpose), it must not lose any


def checksums(folder: Path) -> dict:
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(TABLE)}


def table_rows(folder: Path) -> int:
    with sqlite3.connect(folder / TABLE) as db:
        return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]


def verdict(expected: str, code, err: str, changed: list) -> str:
    if changed:
        return "overwritten"
    if code is None:
        return "no answer"
    if "Traceback" in err or "internal error" in err or code not in (0, 2):
        return "internal"
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("hakd: error:") or line.startswith("usage:")
                 or ": error:" in line]
        return "clear error" if expected in (ERROR, EITHER) and lines else "refused" if lines else "internal"
    return "right result" if expected in (OK, EITHER) else "wrong with exit 0"


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run the cases whose name holds one of these words")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    python = sys.executable
    print(f"host vector ISA {isa()}; {len(CASES)} cases", flush=True)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="hakd-bad-inputs-") as scratch:
        t = Path(scratch)
        user_files(t, python)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TVM_NUM_THREADS": "1"}
        for name, argv, expected, setup in CASES:
            if args.only and not any(word in name for word in args.only):
                continue
            if setup is not None:
                setup(t)
            before, rows_before = checksums(t), table_rows(t)
            argv = [a.replace("T/", f"{t}/") for a in argv]
            t0 = time.time()
            try:
                proc = subprocess.run([python, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
                code, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as e:
                code, err = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            after = checksums(t)
            changed = sorted(str(p.relative_to(t)) for p, digest in before.items() if after.get(p) != digest)
            changed += [f"{TABLE} (rows {rows_before} -> {table_rows(t)})"] if table_rows(t) < rows_before else []
            v = verdict(expected, code, err, changed)
            ok = v in ("clear error", "right result")
            failed += not ok
            said = next((line for line in err.splitlines() if "error" in line), err.strip().splitlines()[-1] if err.strip() else "")
            rows.append(dict(case=name, expected=expected, exit=code, verdict=v, seconds=f"{time.time() - t0:.1f}",
                             changed=" ".join(changed), message=said.replace(str(t), "T")[:300]))
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {v} (exit {code}) {rows[-1]['message'][:160]}", flush=True)
    write_csv("bad_inputs.csv", merge_rows("bad_inputs.csv", rows, key="case") if args.only else rows)  # --only: the others stay
    print(f"{len(rows) - failed} of {len(rows)} cases as they should be", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
