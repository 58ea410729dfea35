"""The numbers of an optimisation, measured: what :func:`hakd.optimize` reports.

For the teacher, the Fisher student and the HAKD student: parameters, predicted latency
(every fused kernel timed on the target), measured latency (each model compiled with its
measured schedules and timed in interleaved rounds, when the target runs on this host),
and test accuracy; per channel group, its widths, the latency of its kernels in the Fisher
and the final student, and where Fisher's width sat on its staircase. Rendering is
:mod:`hakd.report`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hakd.export import export, load
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import diagnose_width
from hakd.passes.trace import input_shape
from hakd.report import measured_on, write_report
from hakd.sweep import group_modules
from hakd.train import evaluate

__all__ = ["build_report"]


def _measure(models: dict, folder: Path, profiler, rounds: int, compiled: dict) -> dict:
    """Compile each model (those in ``compiled`` are already: name -> export folder) and time them in
    interleaved rounds: median seconds per model."""
    folders = {name: compiled.get(name) or export(gm.eval(), folder / name.replace(" ", "-"), profiler,
                                                  check_inputs=1).folder for name, gm in models.items()}
    vms = {name: load(f) for name, f in folders.items()}
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, vm in vms.items():
            times[name].append(float(np.median(vm.time(number=10, repeat=5, min_repeat_ms=20))))
    return {name: float(np.median(t)) for name, t in times.items()}


def build_report(folder, profiler, teacher, fisher, plan, student, history, groups, stairs, test, teacher_s,
                 budget_s, seconds, student_export=None, rounds: int = 3, decision=None) -> dict:
    """Measure, write report.json, report.md and PNGs in ``folder``; returns the report.
    ``student_export``: the student's export folder, timed as it is; ``decision``: how the widths
    were chosen (snap mode, or budget, min_keep and the budget fit's rounds), as hakd.optimize records it."""
    folder = Path(folder)
    fisher_student = rebuild(fisher.model, groups, fisher.plan)
    models = {"teacher": teacher, "Fisher student": fisher_student, "HAKD student": student}
    timings = {name: profiler.model(gm) for name, gm in models.items()}
    compiled = {"HAKD student": student_export} if student_export is not None else {}
    measured = _measure(models, folder / "compiled", profiler, rounds, compiled) if profiler.target.runs_here() else {}
    accuracy = {"teacher": evaluate(teacher, test)[1], "Fisher student": evaluate(fisher_student, test)[1],
                "HAKD student": history[-1]["test_acc"] if history else evaluate(student, test)[1]}
    shape = input_shape(teacher)
    counts = {name: count(gm, shape) for name, gm in models.items()}
    rows = {name: {"params": counts[name][0], "macs": counts[name][1], "predicted_s": timings[name].latency_s,
                   "measured_s": measured.get(name), "accuracy": accuracy[name]} for name, gm in models.items()}
    per_group = []
    for g, st in stairs.groups.items():
        members = group_modules(groups, g)
        per_group.append({"group": g, "teacher_width": groups[g].width, "fisher_width": fisher.plan.width(g),
                          "final_width": plan.width(g),
                          "fisher_latency_s": timings["Fisher student"].latency_of_modules(members),
                          "final_latency_s": timings["HAKD student"].latency_of_modules(members),
                          "diagnosis": _verdict(diagnose_width(st, fisher.plan.width(g)))})
    m = profiler.measure
    caption = measured_on(profiler.target_key, m.threads, timings["teacher"].context, f"{m.number} x {m.repeat}, "
                          f"{rounds} interleaved rounds of the compiled models")
    report = {"format": "hakd.report/1", "model": type(teacher).__name__, "target": profiler.target_key,
              "device": str(profiler.device), "threads": m.threads, "cache_context": timings["teacher"].context,
              "measured_on": caption, "teacher_predicted_s": teacher_s, "budget_s": budget_s, "decision": decision or {},
              "plan_note": plan.note,
              "models": rows, "groups": per_group, "distill_history": history, "stage_seconds": seconds,
              "note": "a group's latency counts every kernel that reads or writes its channels: a conv between two "
                      "groups counts in both, so per-group latencies do not add up to the model's"}
    points = [(name, r["measured_s"] or r["predicted_s"], r["accuracy"]) for name, r in rows.items()]
    write_report(folder, report, stairs.groups, points, caption, "measured" if measured else "predicted")
    return report


def _verdict(d: dict) -> str:
    if d["verdict"] == "on an optimal point":
        return "on an optimal point"
    text = d["verdict"]
    if d["saving_s"] > 0:
        text += f": {d['width'] - d['down_width']} channel(s) fewer save {d['saving_s'] * 1e6:.1f} us ({d['saving_fraction']:.0%})"
    if d["free_channels"] > 0:
        text += f"; {d['free_channels']} more cost nothing"
    return text
