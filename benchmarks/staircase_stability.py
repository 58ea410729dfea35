"""Do cold sweeps of the same staircases agree? Optimal points and snap decisions, run against run.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/staircase_stability.py [--models resnet20] [--runs 2] [--against REV]
        [--full] [--build-workers N] [--prune-folder FOLDER]

The teacher and its Fisher plan come from benchmarks/snap.py's `prepare` (runs/bench/). Every group's
staircase around the Fisher plan is swept --runs times, each in a new process from a new empty latency
table (every kernel compiled and timed anew), one after the other on this host. With --against, the same
sweeps of hakd as it was at git revision REV (its files exported to a temporary folder) alternate with
this checkout's, so that both meet the same spells of load. Per code and group, the row holds each run's
optimal points and what snapping the Fisher width up and down chooses on them; a last row per code
(group "all") holds the snapped students' parameters and how far the runs agree. Each run's staircases
are kept in runs/bench/stability/. With --full, this checkout also sweeps every width of every group (code
`<commit>-full`), alternating with the adaptive sweeps, and a row per model (group "adaptive vs full") says how far
the adaptive runs differ from the full ones, beside the full runs' own noise, and a row (code "adaptive replayed on
full") replays the adaptive sweep on each full run's own measurements: what the adaptive sweep decides differently
on the same numbers, without the noise between two runs. --prune-folder sweeps around another prune folder's plan
(one model). --reuse CODE: no sweeping; the runs kept for CODE (and CODE-full) are compared again. Writes
results/staircase_stability.csv; columns: benchmarks/README.md.
"""

import argparse
import dataclasses
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("model", "code", "group", "fisher_width", "optimal_points", "in_one_run_only", "snap_up", "snap_down",
           "budget", "pair_differing", "optimal_in_all", "optimal_in_any", "width_spread", "sweep_s", "compiles")
BUDGET = 0.8  # of the way from the fastest allocation to the plan's staircase latency, spent on each run's staircases


def sweep_once(folder: Path, out: Path, full: bool = False, workers: int = 1) -> None:
    """One cold sweep of every group around the Fisher plan in ``folder``, saved to ``out``
    (run in its own process: imports only hakd, which may be another revision's); ``full``: every
    width; ``workers``: build workers (a revision without them takes 1)."""
    import torch

    from hakd.cost.profile import Profiler
    from hakd.cost.table import LatencyTable
    from hakd.prune_folder import load_prune_folder
    from hakd.sweep import model_staircases

    torch.set_num_threads(1)
    gm, groups, fisher, _ = load_prune_folder(folder)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        pool = {"build_workers": workers} if workers != 1 else {}
        prof = Profiler("host", table=LatencyTable(Path(tmp) / "table.sqlite"), **pool)
        model_staircases(prof, gm, groups, fisher, log=lambda s: None, progress=False, save_to=out, adaptive=not full)
    print(f"{time.time() - t:.1f} {prof.compiles}")


def git(*args: str, check: bool = True) -> bytes:
    """The output of a git command in this repository."""
    return subprocess.run(["git", "-C", str(HERE.parent), *args], check=check, capture_output=True).stdout


def revision_tree(rev: str, into: Path) -> Path:
    """The files of the repository's revision ``rev`` under ``into`` (for PYTHONPATH)."""
    subprocess.run(["tar", "-x", "-C", str(into)], input=git("archive", rev), check=True)
    return into


def sweeps(folder: Path, codes: dict, runs: int, keep: Path) -> dict:
    """code -> [(staircases file, seconds, compiles)]: ``runs`` sweeps per code, alternating codes
    (``codes``: code -> (PYTHONPATH or None for this checkout, full sweep?, build workers))."""
    done = {code: [] for code in codes}
    for i, code in itertools.product(range(runs), codes):
        out = keep / code / f"run{i}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TVM_NUM_THREADS="1")
        path, full, workers = codes[code]
        if path is not None:
            env["PYTHONPATH"] = str(path)
        line = subprocess.run([sys.executable, __file__, "--sweep-once", str(folder), str(out),
                               *(["--full"] if full else []), "--build-workers", str(workers)], env=env, check=True,
                              capture_output=True, text=True).stdout.split()
        done[code].append((out, float(line[-2]), int(line[-1])))
        out.with_suffix(".time").write_text(f"{line[-2]} {line[-1]}\n")  # seconds, compiles: for --reuse
        print(f"{code}: sweep {i + 1} of {runs}: {line[-2]} s, {line[-1]} compiles", file=sys.stderr, flush=True)
    return done


def kept_runs(keep: Path, codes) -> dict:
    """code -> [(staircases file, seconds, compiles)] of the runs :func:`sweeps` kept for ``codes``."""
    done = {}
    for code in codes:
        files = sorted((keep / code).glob("run*.json"))
        if len(files) < 2:
            raise SystemExit(f"--reuse: {keep / code} holds {len(files)} kept run(s); at least 2 are compared")
        done[code] = [(f, *(t(v) for t, v in zip((float, int), f.with_suffix(".time").read_text().split())))
                      for f in files]
    return done


def replayed(stairs, groups, grid: int):
    """``stairs`` (a full sweep) as the adaptive sweep would have found it from the same measurements:
    each group's sweep replayed with the full sweep's latency as its measure (in units of a slice)."""
    from hakd.cost.staircase import adaptive_sweep

    out = {}
    for g, st in stairs.groups.items():
        n = groups[g].slices
        sweep = adaptive_sweep(lambda u, st=st, n=n: st.latency[u * n], st.full_width // n, grid=grid, tol=st.tol,
                               include=(st.width // n,))
        sweep = sweep if n == 1 else sweep.in_units(n)
        out[g] = dataclasses.replace(st, latency=sweep.latency, estimated=sweep.estimated, optimal=tuple(sweep.optimal))
    return dataclasses.replace(stairs, groups=out)


def budget_widths(stairs, fisher, importance) -> dict:
    """The allocator's widths on one run's staircases, BUDGET of the way from the fastest choice to the
    plan's staircase latency (a plan already fitted to a budget has little room below it)."""
    from hakd.passes.allocate import allocate, budget_options

    options = budget_options(fisher, stairs.groups, importance)
    fastest = sum(min(o[1] for o in opts) for opts in options.values())
    plan = sum(st.at(fisher.width(g)) for g, st in stairs.groups.items())
    return allocate(options, fastest + BUDGET * max(plan - fastest, 0.0)).widths


def cross_row(name, adaptive, full, fisher, importance, pairs=None, code="adaptive vs full") -> dict:
    """How far adaptive runs differ from full runs: each mean over every (adaptive, full) pair
    (``pairs``: these (adaptive, full) staircases instead)."""
    from hakd.passes.snap import snap_width
    from hakd.staircases import Staircases

    if pairs is None:
        a_runs, f_runs = ([Staircases.load(path) for path, _, _ in runs] for runs in (adaptive, full))
        pairs = list(itertools.product(a_runs, f_runs))
    mean = lambda f: f"{statistics.mean(f(a, b) for a, b in pairs):.1f}"  # noqa: E731
    snaps = lambda mode: mean(lambda a, b: sum(snap_width(a[g], fisher.width(g), mode) != snap_width(b[g], fisher.width(g), mode)
                                               for g in a.groups))  # noqa: E731
    budgets = mean(lambda a, b: sum(x != y for x, y in zip(budget_widths(a, fisher, importance).values(),
                                                           budget_widths(b, fisher, importance).values())))
    return {"model": name, "code": code, "group": code, "snap_up": snaps("up"),
            "snap_down": snaps("down"), "budget": budgets,
            "pair_differing": mean(lambda a, b: sum(len(set(a[g].optimal) ^ set(b[g].optimal)) for g in a.groups))}


def rows_of(name, code, runs, gm, groups, fisher, importance, shape):
    from hakd.passes.counts import count
    from hakd.passes.rebuild import rebuild
    from hakd.passes.snap import snap, snap_width, with_widths
    from hakd.staircases import Staircases

    stairs = [Staircases.load(path) for path, _, _ in runs]
    rows = []
    for g in stairs[0].groups:
        width = fisher.width(g)
        points = [set(s[g].optimal) for s in stairs]
        rows.append({"model": name, "code": code, "group": g, "fisher_width": width,
                     "optimal_points": " | ".join(" ".join(map(str, sorted(p))) for p in points),
                     "in_one_run_only": " ".join(map(str, sorted(set.union(*points) - set.intersection(*points)))),
                     "snap_up": " | ".join(str(snap_width(s[g], width, "up")) for s in stairs),
                     "snap_down": " | ".join(str(snap_width(s[g], width, "down")) for s in stairs),
                     "budget": " | ".join(str(budget_widths(s, fisher, importance)[g]) for s in stairs)})
    fisher_params = count(rebuild(gm, groups, fisher), shape)[0]
    ratio = lambda mode: " | ".join(f"{count(rebuild(gm, groups, snap(fisher, s, importance, mode)), shape)[0] / fisher_params:.3f}"
                                    for s in stairs)
    differing = [sum(len(set(a[g].optimal) ^ set(b[g].optimal)) for g in a.groups) for a, b in itertools.combinations(stairs, 2)]
    every = [[set(s[g].optimal) for s in stairs] for g in stairs[0].groups]
    spread = sorted(max(a[g].latency[w], b[g].latency[w]) / min(a[g].latency[w], b[g].latency[w]) - 1
                    for a, b in itertools.combinations(stairs, 2) for g in a.groups
                    for w in set(a[g].latency) & set(b[g].latency))
    budget = " | ".join(f"{count(rebuild(gm, groups, with_widths(fisher, budget_widths(s, fisher, importance), importance, 'budget')), shape)[0] / fisher_params:.3f}"
                        for s in stairs)
    rows.append({"model": name, "code": code, "group": "all", "fisher_width": fisher_params, "snap_up": ratio("up"),
                 "snap_down": ratio("down"), "budget": budget, "pair_differing": f"{statistics.mean(differing):.1f}",
                 "optimal_in_all": sum(len(set.intersection(*p)) for p in every),
                 "optimal_in_any": sum(len(set.union(*p)) for p in every),
                 "width_spread": " ".join(f"{spread[int(q * (len(spread) - 1))]:.3f}" for q in (0.5, 0.9, 0.99)),
                 "sweep_s": " | ".join(f"{s:.0f}" for _, s, _ in runs), "compiles": " | ".join(str(c) for *_, c in runs)})
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-once", nargs=2, type=Path, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["resnet20"])
    parser.add_argument("--runs", type=int, default=2, help="cold sweeps per model and code (>= 2)")
    parser.add_argument("--against", metavar="REV", help="also sweep hakd as at this git revision, alternating")
    parser.add_argument("--full", action="store_true", help="also sweep every width with this checkout, alternating")
    parser.add_argument("--build-workers", type=int, default=1, help="build workers of this checkout's sweeps")
    parser.add_argument("--prune-folder", type=Path, help="sweep around this prune folder's plan (one model) instead "
                                                          "of snap.py's Fisher run")
    parser.add_argument("--reuse", metavar="CODE", help="sweep nothing: compare again the runs kept for CODE "
                                                        "(with --full, CODE-full's too)")
    args, _ = parser.parse_known_args()
    if args.sweep_once:
        return sweep_once(*args.sweep_once, full=args.full, workers=args.build_workers)

    sys.path.insert(0, str(HERE))
    from common import Bench, add_data_args, merge_rows, write_csv
    from snap import add_prepare_args, prepare

    from hakd.cost.profile import Profiler
    from hakd.cost.width_sweep import default_grid
    from hakd.prune_folder import load_prune_folder
    from hakd.staircases import Staircases

    add_prepare_args(parser)
    add_data_args(parser)
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs: at least 2 sweeps to compare")
    args.bench = bench = Bench(args.data, args.data_root)
    bench.runs.mkdir(parents=True, exist_ok=True)
    here = git("rev-parse", "--short", "HEAD", check=False).decode().strip() or "checkout"
    here += "+changes" if git("status", "--porcelain", "hakd", check=False).strip() else ""
    here = args.reuse or here
    out = bench.results("staircase_stability.csv")
    with tempfile.TemporaryDirectory() as tmp:
        codes = {here: (None, False, args.build_workers)}
        if args.full:
            codes[f"{here}-full"] = (None, True, args.build_workers)
        if args.against:
            rev = git("rev-parse", "--short", args.against).decode().strip()
            codes[rev] = (revision_tree(rev, Path(tmp)), False, 1)
        if args.prune_folder and len(args.models) != 1:
            parser.error("--prune-folder: one model (--models NAME)")
        for name in args.models:
            folder = args.prune_folder or prepare(name, args)[1]
            keep = bench.runs / "stability" / name
            done = kept_runs(keep, codes) if args.reuse else sweeps(folder, codes, args.runs, keep)
            gm, groups, fisher, importance = load_prune_folder(folder)
            rows = [r for code in codes for r in rows_of(name, code, done[code], gm, groups, fisher, importance,
                                                          bench.shape)]
            if args.full:
                rows.append({c: cross_row(name, done[here], done[f"{here}-full"], fisher, importance).get(c, "")
                             for c in COLUMNS})
                grid = default_grid(Profiler("host"))  # as the sweeps chose it
                fulls = [Staircases.load(path) for path, _, _ in done[f"{here}-full"]]
                rows.append({c: cross_row(name, None, None, fisher, importance, code="adaptive replayed on full",
                                          pairs=[(replayed(f, groups, grid), f) for f in fulls]).get(c, "")
                             for c in COLUMNS})
            write_csv(out, merge_rows(out, rows, key=("model", "code")))  # other codes' runs stay


if __name__ == "__main__":
    sys.exit(run())
