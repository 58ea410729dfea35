"""Ctrl-C in every stage of `hakd optimize`: seconds until it stops, and the same command finishing after.

    .venv/bin/python benchmarks/interrupt.py

A `hakd train` run of ResNet-20 (1 epoch, 2,000 images) is the teacher. For each stage of
`hakd optimize` (Fisher, staircases, budget trials, distillation, the simple answer, export), a
fresh run of the same command is started, SIGINT is sent (as Ctrl-C sends it to the foreground
process group: hakd and its build workers) once the stage has started, and the seconds until
the process group has ended are measured; the same command is then run again, as the message
advises, and must finish. The latency table is shared by the runs, so the staircases are
measured cold only in the stage that interrupts them. Writes results/interrupt.csv (columns:
benchmarks/README.md).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from common import isa, merge_rows, write_csv  # noqa: E402

LIMIT = ["--limit-train", "2000", "--limit-test", "500"]
# stage -> (what shows it has started: a file under the run's folder, or a word hakd printed; options of its run)
STAGES = [
    ("fisher", ("file", "fisher"), []),
    ("staircases", ("said", "Fisher:"), []),
    ("trials", ("file", "trials"), []),
    ("distill", ("file", "distill"), []),
    ("simple answer", ("file", "uniform"), ["--ways", "importance"]),  # one way kept, not uniform: uniform is distilled too
    ("export", ("file", "export"), []),
]


def started(out: Path, log: Path, how) -> bool:
    kind, what = how
    if kind == "file":
        return (out / what).exists()
    return log.is_file() and what in log.read_text(errors="replace")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rerun", dest="rerun", action="store_false",
                        help="do not run each interrupted command again to its end (each rerun is a whole optimize)")
    parser.add_argument("--stages", nargs="+", choices=[s[0] for s in STAGES], help="only these stages (their rows replace "
                                                                                 "theirs in the CSV)")
    args = parser.parse_args()
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TVM_NUM_THREADS": "1"}
    print(f"host vector ISA {isa()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hakd-interrupt-") as scratch:
        t = Path(scratch)
        subprocess.run([python, "-m", "hakd", "train", "resnet20", *LIMIT, "--epochs", "1", "--threads", "1",
                        "--out", str(t / "teacher")], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        for stage, how, options in STAGES:
            if args.stages and stage not in args.stages:
                continue
            out, log = t / f"opt-{stage.replace(' ', '-')}", t / f"{stage.replace(' ', '-')}.log"
            argv = [python, "-m", "hakd", "optimize", "--run", str(t / "teacher"), *LIMIT, "--amount", "0.5",
                    "--prune-every", "2", "--epochs", "1", "--budget", "0.7", "--trial-images", "500", "--held-out", "250",
                    "--table", str(t / "latency.sqlite"), "--out", str(out), *options]
            with open(log, "w") as f:  # SIGINT as a terminal leaves it: a shell's background job ignores it, and so would hakd
                proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            deadline = time.time() + 1800
            while not started(out, log, how) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            if proc.poll() is not None:
                rows.append(dict(stage=stage, interrupted="no: finished first", seconds_to_stop="", exit="", rerun_exit=""))
                print(rows[-1], flush=True)
                continue
            time.sleep(2)  # inside the stage, not at its first line
            t0 = time.time()
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the foreground group
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                code = None
            while group_alive(proc.pid) and time.time() - t0 < 120:  # build workers included
                time.sleep(0.05)
            stop_s = time.time() - t0
            if code is None or group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
            said = log.read_text(errors="replace").strip().splitlines()[-1:]
            rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True) if args.rerun else None
            rows.append(dict(stage=stage, interrupted="yes", seconds_to_stop=f"{stop_s:.1f}", exit=code,
                             message=(said[0] if said else "")[:200].replace(str(t), "T"),
                             rerun_exit=rerun.returncode if rerun is not None else "not run"))
            print(rows[-1], flush=True)
    for r in rows:
        r.setdefault("message", "")
        r["isa"] = isa()
    write_csv("interrupt.csv", merge_rows("interrupt.csv", rows, key="stage") if args.stages else rows)
    slow = [r for r in rows if r["interrupted"] == "yes" and (float(r["seconds_to_stop"]) > 10 or r["exit"] != 130
                                                             or r["rerun_exit"] not in (0, "not run"))]
    print(f"{len(rows) - len(slow)} of {len(rows)} stages stopped within 10 s with exit 130 (and finished when rerun)",
          flush=True)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(run())
