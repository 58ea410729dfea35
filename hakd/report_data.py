"""The numbers of an optimisation, measured: what :func:`hakd.optimize` reports.

For the teacher, the Fisher student and the HAKD student: parameters, predicted latency
(every fused kernel timed on the target), measured latency (each model compiled with its
measured schedules and timed in interleaved rounds, when the target runs on this host),
test accuracy, and the measured latency of the same model on ONNX Runtime (when it is installed);
the simple answer's student (one keep ratio, :mod:`hakd.passes.uniform`) beside the HAKD student,
with the paired standard error of their difference in accuracy; per channel group, its widths, the latency of its kernels in the Fisher
and the final student, and where Fisher's width sat on its staircase. Rendering is
:mod:`hakd.report`'s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from hakd.export import OnnxRuntimeModel, export, export_onnx, load
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import diagnose_width
from hakd.passes.trace import input_shape
from hakd.passes.uniform import uniform_choice
from hakd.report import measured_on, write_report
from hakd.sweep import group_modules
from hakd.train import evaluate

__all__ = ["build_report"]


def _measure(models: dict, folder: Path, profiler, rounds: int, compiled: dict) -> tuple:
    """Compile each model (those in ``compiled`` are already: name -> export folder) and time them,
    and their ONNX files on ONNX Runtime when it is installed, in interleaved rounds: (median seconds
    per model on hakd's backend, the same on ONNX Runtime)."""
    folders = {name: compiled.get(name) or export(gm.eval(), folder / name.replace(" ", "-"), profiler,
                                                  check_inputs=1).folder for name, gm in models.items()}
    runners = {(name, "hakd"): load(f) for name, f in folders.items()}
    if OnnxRuntimeModel.available():
        for name, gm in models.items():
            given = Path(folders[name]) / "model.onnx"  # an artefact the caller exported with its ONNX: not again
            path = given if name in compiled and given.is_file() else export_onnx(
                gm, folder / name.replace(" ", "-") / "model.onnx", torch.zeros(input_shape(gm)))
            runners[(name, "onnxruntime")] = OnnxRuntimeModel(path, profiler.measure.threads)
    times = {key: [] for key in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            times[key].append(float(np.median(runner.time(number=10, repeat=5, min_repeat_ms=20))))
    median = {key: float(np.median(t)) for key, t in times.items()}
    return ({name: median[(name, "hakd")] for name in models},
            {name: median[(name, "onnxruntime")] for name in models if (name, "onnxruntime") in median})


def _correct(model, split) -> torch.Tensor:
    """Per image of ``split``: whether ``model`` classifies it right."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        right = torch.cat([model(x).argmax(1) == y for x, y in split.loader(256, shuffle=False)])
    model.train(was_training)
    return right


def paired_lead(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """(accuracy of a minus accuracy of b, its standard error), both on the same images: the
    standard error of the mean per-image difference (paired, so the images both get right or both
    get wrong do not count as noise)::

        >>> a = torch.tensor([True] * 90 + [False] * 10); b = torch.tensor([True] * 85 + [False] * 15)
        >>> [round(v, 4) for v in paired_lead(a, b)]
        [0.05, 0.0219]
    """
    d = a.double() - b.double()
    return float(d.mean()), float(d.std(unbiased=True) / math.sqrt(len(d))) if len(d) > 1 else float("nan")


def _simple_row(simple: dict, fit: dict, student, test, measured: dict) -> dict:
    """What the report says of the simple answer: its trial, and HAKD's lead over it on the test images."""
    if "student" not in simple:
        return dict(simple)
    lead, se = paired_lead(_correct(student, test), _correct(simple["student"], test))
    trials = {t["way"]: t for t in (fit or {}).get("trials", ())}
    kept = trials.get((fit or {}).get("way"))
    multiple, fraction = uniform_choice(simple["plan"].note) or (None, None)
    out = {"multiple": multiple, "fraction": fraction, "test_lead": lead, "test_lead_se": se, "test_images": len(test),
           "held_out_lead": (kept["held_out_accuracy"] - simple["trial"]["held_out_accuracy"])
           if kept and simple.get("trial") else None}
    if "uniform student" in measured and "HAKD student" in measured:
        out["measured_ratio"] = measured["HAKD student"] / measured["uniform student"]
    return out


def build_report(folder, profiler, teacher, fisher, plan, student, history, groups, stairs, test, teacher_s,
                 budget_s, seconds, student_export=None, rounds: int = 3, decision=None, simple=None) -> dict:
    """Measure, write report.json, report.md and PNGs in ``folder``; returns the report.
    ``student_export``: the student's export folder, timed as it is; ``decision``: how the widths
    were chosen (snap mode, or budget, min_keep and the budget fit's rounds), as hakd.optimize records it;
    ``simple``: the simple answer as :func:`hakd.api.optimize` made it (its student and history), or None."""
    folder = Path(folder)
    fisher_student = rebuild(fisher.model, groups, fisher.plan)
    models = {"teacher": teacher, "Fisher student": fisher_student, "HAKD student": student}
    accuracy = {"teacher": evaluate(teacher, test)[1], "Fisher student": evaluate(fisher_student, test)[1],
                "HAKD student": history[-1]["test_acc"] if history else evaluate(student, test)[1]}
    if simple and "student" in simple:
        models["uniform student"] = simple["student"]
        accuracy["uniform student"] = simple["history"][-1]["test_acc"] if simple["history"] else evaluate(simple["student"], test)[1]
    timings = {name: profiler.model(gm) for name, gm in models.items()}
    compiled = {"HAKD student": student_export} if student_export is not None else {}
    measured, onnxruntime = (_measure(models, folder / "compiled", profiler, rounds, compiled)
                             if profiler.target.runs_here() else ({}, {}))
    fit = (decision or {}).get("fit")
    held_out = {t["way"]: t["held_out_accuracy"] for t in (fit or {}).get("trials", ())}
    held_out = {"HAKD student": held_out.get((fit or {}).get("way")), "uniform student": held_out.get("uniform")}
    shape = input_shape(teacher)
    counts = {name: count(gm, shape) for name, gm in models.items()}
    rows = {name: {"params": counts[name][0], "macs": counts[name][1], "predicted_s": timings[name].latency_s,
                   "measured_s": measured.get(name), "onnxruntime_s": onnxruntime.get(name),
                   "held_out_accuracy": held_out.get(name), "accuracy": accuracy[name]} for name, gm in models.items()}
    per_group = []
    for g, st in stairs.groups.items():
        members = group_modules(groups, g)
        per_group.append({"group": g, "teacher_width": groups[g].width, "fisher_width": fisher.plan.width(g),
                          "final_width": plan.width(g),
                          "fisher_latency_s": timings["Fisher student"].latency_of_modules(members),
                          "final_latency_s": timings["HAKD student"].latency_of_modules(members),
                          "diagnosis": _verdict(diagnose_width(st, fisher.plan.width(g)))})
    m, steady = profiler.measure, getattr(profiler.runner, "steady", None)
    caption = measured_on(profiler.target_key, m.threads, timings["teacher"].context, f"{m.number} x {m.repeat}, "
                          f"{rounds} interleaved rounds of the compiled models")
    report = {"format": "hakd.report/1", "model": type(teacher).__name__, "target": profiler.target_key,
              "device": str(profiler.device), "threads": m.threads, "cache_context": timings["teacher"].context,
              "measured_on": caption, "teacher_predicted_s": teacher_s, "budget_s": budget_s, "decision": decision or {},
              "plan_note": plan.note, "simple_answer": _simple_row(simple, fit, student, test, measured) if simple else None,
              "host_steadiness": steady.summary() if steady is not None else None,
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
