"""``hakd.optimize``: the HAKD pipeline, in order, and nothing else.

trace -> channel groups -> Fisher widths -> staircases (TVM, on the target) -> snap or budget
-> rebuild -> distil from the teacher -> export (TVM artefact and ONNX) -> report. Each stage
writes its own subfolder of ``out`` and resumes from it, so a rerun after an interruption
redoes only what was not finished::

    import hakd
    result = hakd.optimize(teacher, target="llvm -mcpu=cortex-a57", device="rpc://10.0.0.2:9190/a57",
                           data=hakd.DataConfig("fashion-mnist"), budget=0.6, out="runs/hakd")
    result.report["models"]["HAKD student"]
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import fx, nn

from hakd import data as datasets
from hakd.checkpoint import atomic_write_text
from hakd.config import DataConfig, DistillConfig, PruneConfig, TrialConfig
from hakd.data import Split
from hakd.errors import BudgetError, ConfigError
from hakd.passes.snap import MODES
from hakd.trials import DEFAULT_WAYS, Way, parse_ways, spending_ways

__all__ = ["optimize", "OptimizeResult"]

DECISION, BUDGET_FIT, PLAN = "decision.json", "budget_fit.json", "plan.json"


@dataclasses.dataclass
class OptimizeResult:
    student: fx.GraphModule  # distilled, at the chosen widths
    plan: "object"  # hakd.plan.PrunePlan
    export: "object"  # hakd.export.ExportResult (the compiled artefact)
    report: dict  # as written to out/report/report.json
    out: Path


def _splits(data) -> Tuple[Split, Split]:
    if isinstance(data, DataConfig):
        return datasets.load(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(s, Split) for s in data):
        return data[0], data[1]
    raise ConfigError(f"optimize: data is a DataConfig or a (train, test) pair of hakd.data.Split, got {type(data).__name__}")


def _check_arguments(model, example_input, out, log, configs) -> None:
    """Refuse, before anything runs, arguments of the wrong kind (``configs``: name -> (value, class))."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"optimize: model is a torch nn.Module (a trained teacher), got {type(model).__name__}")
    if example_input is not None and (not isinstance(example_input, torch.Tensor) or example_input.dim() != 4):
        raise ConfigError("optimize: example_input is one batch of images, a tensor N,C,H,W (e.g. torch.zeros(1, 3, 32, "
                          f"32)); got {getattr(example_input, 'shape', type(example_input).__name__)}")
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise ConfigError(f"optimize: out is a folder path, got {out!r}")
    if not callable(log):
        raise ConfigError(f"optimize: log is a function that takes a line (e.g. print), got {log!r}")
    for name, (value, kind) in configs.items():
        if not isinstance(value, kind):
            raise ConfigError(f"optimize: {name} is a hakd.config.{kind.__name__}, got {type(value).__name__}")


def _check(snap: Optional[str], budget: Optional[float], budget_s: Optional[float]) -> None:
    if snap is not None and snap not in MODES:
        raise ConfigError(f"optimize: snap is {snap!r}; valid values: {', '.join(MODES)} (or None with a budget)")
    if budget is not None and budget_s is not None:
        raise ConfigError("optimize: give the budget as a fraction (budget) or in seconds (budget_s), not both")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1):
        raise ConfigError(f"optimize: budget is a fraction of the teacher's predicted latency, in (0, 1]; got {budget!r}")
    if budget_s is not None and (isinstance(budget_s, bool) or not isinstance(budget_s, (int, float))
                                 or not 0 < budget_s < float("inf")):
        raise ConfigError(f"optimize: budget_s is a latency in seconds (> 0, finite); got {budget_s!r}")
    if snap is None and budget is None and budget_s is None:
        raise ConfigError("optimize: say how to use the staircases: snap='up'|'down'|'nearest', or a budget")


RUN_PARTS = {"fisher", "student", "distill", "trials", "uniform", "export", "report"}  # what optimize writes in out


def _check_out(out: Path, target_key: str) -> None:
    """Refuse, before any stage writes, an ``out`` that is a file, that holds files of something else
    (a `hakd train` run, a prune folder), or a run whose widths were chosen for another target."""
    if out.is_file():
        raise ConfigError(f"optimize: out {out} is a file; give a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not RUN_PARTS & set(entries):
        raise ConfigError(f"optimize: {out} holds other files ({', '.join(entries[:4])}) and no optimize run; "
                          "optimize writes a folder of its own: give another out folder")
    saved = out / "student" / DECISION
    before = json.loads(saved.read_text()).get("target") if saved.is_file() else None
    if before is not None and before != target_key:
        raise ConfigError(f"optimize: {out} holds a run whose widths were chosen for {before!r}, not {target_key!r}; "
                          "give another out folder for this target")


def _same_options(folder: Path, decision: dict) -> None:
    saved = json.loads((folder / DECISION).read_text()) if (folder / DECISION).is_file() else None
    if saved is not None and "target" not in saved:  # decided before the target was recorded
        decision = {k: v for k, v in decision.items() if k != "target"}
    if saved is not None and saved != decision:
        raise ConfigError(f"{folder} holds widths chosen with other options ({(folder / DECISION).read_text().strip()}, "
                          f"now {json.dumps(decision, sort_keys=True)}); use another out folder, or the same options")


def _decided(folder: Path, decision: dict, groups):
    """The plan a previous run chose with the same options, if there is one."""
    from hakd.plan import PrunePlan

    if not (folder / DECISION).is_file() or not (folder / PLAN).is_file():
        return None
    _same_options(folder, decision)
    plan = PrunePlan.load(folder / PLAN)
    plan.validate(groups)
    return plan


def _spend(profiler, fisher, groups, stairs, budget_s: float, ways, teacher, train: Split, distill: DistillConfig,
           trial: TrialConfig, folder: Path, decision: dict, log):
    """(plan, fit summary): the budget fitted each way; with several ways, each student tried
    (:mod:`hakd.trials`) and the most accurate on held-out training images kept. Each way's fit
    is saved in ``folder/<way>/`` (a rerun after an interruption keeps it)."""
    from hakd.budget import fit_budget, fit_uniform
    from hakd.plan import PrunePlan
    from hakd.trials import chosen, trial_splits, try_plans

    fitted, unreachable = {}, {}
    if len(ways) > 1:
        _same_options(folder, decision)  # trials begun with other options are not mixed with these
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / DECISION, json.dumps(decision, sort_keys=True))
    for way in ways:
        saved = folder / way.folder_name
        if len(ways) > 1 and (saved / PLAN).is_file():
            fitted[way] = PrunePlan.load(saved / PLAN), json.loads((saved / BUDGET_FIT).read_text())
            continue
        log(f"budget, keeping {way.label}:" if len(ways) > 1 else "budget:")
        try:
            if way.value == "uniform":
                r = fit_uniform(profiler, fisher.model, groups, fisher.plan, fisher.importance, budget_s, log=log)
            else:
                r = fit_budget(profiler, fisher.model, groups, fisher.plan, stairs, fisher.importance, budget_s,
                               value=way.value, min_keep=way.min_keep, log=log)
        except BudgetError as e:
            if len(ways) == 1:
                raise
            unreachable[way.label] = str(e)  # a floor too high for this budget: the other ways are still tried
            log(f"budget, keeping {way.label}: {e}")
            continue
        fit = {"predicted_s": r.predicted_s, "rounds": [
            {k: x[k] for k in ("round", "allocated_s", "predicted_s", "held_back_s", "fraction") if k in x} for x in r.rounds]}
        if len(ways) > 1:
            saved.mkdir(exist_ok=True)
            atomic_write_text(saved / BUDGET_FIT, json.dumps(fit, indent=1))
            r.plan.save(saved / PLAN)  # written last: the way is fitted
        fitted[way] = r.plan, fit
    if len(ways) == 1:
        return fitted[ways[0]]
    if not fitted:
        raise BudgetError(f"no way of spending a budget of {budget_s * 1e6:.1f} us reaches it: "
                          + "; ".join(f"{label}: {e}" for label, e in unreachable.items()))
    start = time.time()
    trials = try_plans(teacher, fisher.model, groups, {w: p for w, (p, _) in fitted.items()}, train, distill, trial,
                       folder, log=log)
    best = chosen(trials)
    log(f"kept the student that keeps {best.label} (held-out accuracy {best.held_out_accuracy:.4f})")
    plan, fit = fitted[next(w for w in ways if w.label == best.label)]
    images = len(trial_splits(train, trial)[0])
    return plan, dict(fit, way=best.label, unreachable=unreachable, trial_seconds=time.time() - start, trial_images=images, trials=[
        dict(t.row(), predicted_s=fit_s["predicted_s"]) for t, (_, fit_s) in zip(trials, fitted.values())])


def _ways_decided(ways, trial: TrialConfig) -> dict:
    """What of the ways to spend a budget a decision records (one way: as before ways existed)."""
    if len(ways) > 1:
        return {"ways": [w.label for w in ways], "trial": trial.to_dict()}
    return {**({"min_keep": ways[0].min_keep} if ways[0].min_keep else {}),
            **({"value": ways[0].value} if ways[0].value != "importance" else {})}


def _resolve_ways(ways, value, min_keep):
    """The ways to spend a budget: ``ways`` (specs, :func:`hakd.trials.parse_ways`), or every
    combination of ``value`` and ``min_keep`` (the older form), or by default importance, params
    with a floor of half, and the uniform simple answer."""
    if ways is not None and (value is not None or min_keep is not None):
        raise ConfigError("optimize: give the ways to spend a budget as ways=[...] or as value/min_keep, not both")
    if ways is not None:
        return parse_ways(ways)
    if value is None and min_keep is None:
        return parse_ways(DEFAULT_WAYS)
    return spending_ways("importance" if value is None else value, 0.0 if min_keep is None else min_keep)


def _simple_answer(profiler, fisher, groups, plan, budget_s: Optional[float], fit: Optional[dict], teacher, train, test,
                   distill: DistillConfig, folder: Path, decision: dict, trials_folder: Path, log):
    """The uniform student (one keep ratio, widths rounded to the target's channel block) at the
    student's budget (in snap mode: at the student's predicted latency), distilled with the same
    recipe in ``folder``: {"plan", "student", "history", "trial" (its trial's row, or None)}; or
    {"kept": True} when the kept student is the uniform one (or the same student); or
    {"unreachable": why}. Its plan is the trial's when the uniform way was tried."""
    from hakd.budget import fit_uniform
    from hakd.distill import distill as distil
    from hakd.passes.rebuild import rebuild
    from hakd.plan import PrunePlan
    from hakd.sweep import predict
    from hakd.trials import same_student

    if (fit or {}).get("way") == "uniform":
        return {"kept": True}
    tried = next((t for t in (fit or {}).get("trials", ()) if t["way"] == "uniform"), None)
    uniform = _decided(folder, decision, groups)
    if uniform is None and tried is not None:
        uniform = PrunePlan.load(trials_folder / Way("uniform").folder_name / PLAN)
    if uniform is None:
        target_s = budget_s if budget_s is not None else predict(profiler, fisher.model, groups, plan)
        log(f"the simple answer, one keep ratio for every group, at {target_s * 1e6:.1f} us:")
        try:
            uniform = fit_uniform(profiler, fisher.model, groups, fisher.plan, fisher.importance, target_s, log=log).plan
        except BudgetError as e:
            log(f"the simple answer: {e}")
            return {"unreachable": str(e)}
    if same_student(uniform) == same_student(plan):
        return {"kept": True}
    if not (folder / DECISION).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        uniform.save(folder / PLAN)
        atomic_write_text(folder / DECISION, json.dumps(decision, sort_keys=True))  # written last
    student = rebuild(fisher.model, groups, uniform)
    history = distil(teacher, student, train, test, distill, folder / "distill", resume=True,
                     run_info={"plan": uniform.to_dict()})
    return {"plan": uniform, "student": student, "history": history, "trial": tried}


def _way_kept(ways, fit: Optional[dict]) -> Way:
    """The way the student's widths were chosen: the only one, or the trials' choice."""
    label = (fit or {}).get("way")
    return next((w for w in ways if w.label == label), ways[0])


def optimize(model: Union[nn.Module, fx.GraphModule], target="host", data=DataConfig("fashion-mnist"), *,
             example_input: Optional[torch.Tensor] = None, prune: PruneConfig = PruneConfig(), snap: Optional[str] = "up",
             budget: Optional[float] = None, budget_s: Optional[float] = None, ways: Optional[Sequence] = None,
             value: Union[None, str, Sequence[str]] = None, min_keep: Union[None, float, Sequence[float]] = None,
             trial: TrialConfig = TrialConfig(), distill: DistillConfig = DistillConfig(), simple_answer: bool = True,
             device=None, table=None, threads: int = 1, tune_trials: int = 0, build_workers: Optional[int] = None,
             out="hakd-out", log=print) -> OptimizeResult:
    """Make ``model`` (a trained teacher) fast on ``target`` while keeping its accuracy.

    ``prune``: Fisher pruning (how wide each layer needs to be); ``snap``: move each width to an
    optimal point of its staircase (``up``, ``down``, ``nearest``), or, with ``budget`` (a fraction
    of the teacher's predicted latency) or ``budget_s``, choose every width at once so that the
    student's predicted latency is within it (``snap`` is then ignored), each of ``ways``
    (default: ``importance``, the channels' Fisher importance kept; ``params:0.5``, parameters kept,
    no group below half its channels; ``uniform``, one keep ratio for every group: the simple
    answer): each student distilled briefly and the most accurate on held-out training images kept
    (``trial``, :mod:`hakd.trials`); one way: no trial (``value``/``min_keep``: ways as every
    combination of them); ``distill``: retrain the student from the teacher; ``simple_answer``:
    also distil the uniform student at the same latency and report the student's lead over it;
    ``device``/``table``/``threads``/``tune_trials``/``build_workers`` (default: this host's cores):
    where and how kernels are measured and built (:class:`hakd.cost.profile.Profiler`)."""
    from hakd import sweep
    from hakd.cost.build_pool import build_workers as build_workers_for
    from hakd.cost.measure import MeasureConfig
    from hakd.cost.profile import Profiler
    from hakd.distill import distill as distil
    from hakd.export import export, export_onnx
    from hakd.passes.fisher import fisher_prune
    from hakd.passes.groups import find_groups
    from hakd.passes.rebuild import rebuild
    from hakd.passes.snap import snap as snap_plan
    from hakd.passes.trace import trace
    from hakd.prune_folder import STAIRS, write_prune_folder
    from hakd.report_data import build_report

    _check_arguments(model, example_input, out, log, dict(prune=(prune, PruneConfig), trial=(trial, TrialConfig),
                                                         distill=(distill, DistillConfig)))
    _check(None if budget is not None or budget_s is not None else snap, budget, budget_s)
    if budget is None and budget_s is None and (ways, value, min_keep) != (None, None, None):
        raise ConfigError("optimize: ways (or value/min_keep) are ways of spending a latency budget: give a budget, "
                          f"or leave them out to snap {snap!r}")
    ways = _resolve_ways(ways, value, min_keep)
    if not isinstance(simple_answer, bool):
        raise ConfigError(f"optimize: simple_answer is True or False, got {simple_answer!r}")
    out, seconds = Path(out), {}
    train, test = _splits(data)
    if trial == TrialConfig() and len(ways) > 1 and trial.held_out > len(train) // 4:  # the default, on few images
        trial = TrialConfig(images=trial.images, held_out=max(1, len(train) // 4))
    if len(ways) > 1 and trial.held_out >= len(train):
        raise ConfigError(f"optimize: the trial holds out {trial.held_out} training images to rank the ways, but there "
                          f"are {len(train)}: hold out fewer (e.g. {max(1, len(train) // 4)}), or use more images")
        log(f"trials: {len(train)} training images, so {trial.held_out} (a quarter) are held out to rank the ways")
    x = example_input if example_input is not None else torch.zeros(1, *train.images.shape[1:])
    profiler = Profiler(target, device=device, table=table, measure=MeasureConfig(threads=threads), tune_trials=tune_trials,
                        build_workers=build_workers_for(build_workers, log))
    _check_out(out, profiler.target_key)

    t = time.time()
    teacher = trace(model.eval(), x)  # 1. the graph, with shapes
    groups = find_groups(teacher)  # 2. channels that are pruned together
    fisher = fisher_prune(teacher, groups, train, prune, out / "fisher", resume=True)  # 3. how wide each layer needs to be
    seconds["fisher"] = time.time() - t
    log(f"Fisher: {fisher.plan.note} ({seconds['fisher']:.0f} s)")

    t = time.time()  # 4. the latency staircase of every group around the Fisher widths, on the target
    stairs = sweep.load_or_measure(out / "fisher" / STAIRS, profiler, fisher.model, groups, fisher.plan, log=log)
    seconds["staircases"] = time.time() - t

    t = time.time()  # 5. widths at optimal points of their staircases, or a whole latency budget
    teacher_s = sweep.predict(profiler, fisher.model, groups, groups.plan())
    budget_s = budget_s if budget_s is not None or budget is None else budget * teacher_s
    decision = {"snap": None if budget_s is not None else snap, "budget": budget, "budget_s": budget_s if budget is None else None,
                "target": profiler.target_key}
    if budget_s is not None:
        decision.update(_ways_decided(ways, trial))
    plan = _decided(out / "student", decision, groups)  # a rerun keeps the widths it chose (the table may have moved)
    fitted_before = out / "student" / BUDGET_FIT
    fit = json.loads(fitted_before.read_text()) if plan is not None and fitted_before.is_file() else None
    if plan is None and budget_s is not None:
        plan, fit = _spend(profiler, fisher, groups, stairs, budget_s, ways, teacher, train, distill, trial,
                           out / "trials", decision, log)
    elif plan is None:
        plan = snap_plan(fisher.plan, stairs, fisher.importance, snap)
    if not (out / "student" / DECISION).is_file():
        write_prune_folder(out / "student", fisher.model, groups, plan, fisher.importance)
        if fit is not None:
            atomic_write_text(out / "student" / BUDGET_FIT, json.dumps(fit, indent=1))
        atomic_write_text(out / "student" / DECISION, json.dumps(decision, sort_keys=True))  # written last: the decision stands
    seconds["snap"] = time.time() - t

    t = time.time()  # 6. the student, physically smaller, retrained from the teacher
    student = rebuild(fisher.model, groups, plan)
    history = distil(teacher, student, train, test, distill, out / "distill", resume=True,
                     run_info={"plan": plan.to_dict()})
    seconds["distill"] = time.time() - t

    t = time.time()  # 6b. the simple answer at the same latency, distilled the same way, to compare with
    simple = _simple_answer(profiler, fisher, groups, plan, budget_s, fit, teacher, train, test, distill, out / "uniform",
                            decision, out / "trials", log) if simple_answer else None
    if simple_answer:
        seconds["simple answer"] = time.time() - t

    t = time.time()  # 7. the compiled artefact for the target (with its measured schedules) and ONNX
    artefact = export(student.eval(), out / "export", profiler)
    export_onnx(student, out / "export" / "model.onnx", x)
    seconds["export"] = time.time() - t

    t = time.time()  # 8. what was done, measured, in numbers and plots
    report = build_report(out / "report", profiler, teacher, fisher, plan, student, history, groups, stairs, test,
                          teacher_s, budget_s, seconds, student_export=artefact.folder, simple=simple,
                          decision=dict(decision, **dataclasses.asdict(_way_kept(ways, fit)), fit=fit) if budget_s is not None
                          else decision)
    seconds["report"] = time.time() - t
    log(f"report: {out / 'report' / 'report.md'}")
    return OptimizeResult(student, plan, artefact, report, out)
