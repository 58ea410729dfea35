"""The one module that renders: staircase plots, per-layer latency bars, accuracy against latency,
and the report of an optimisation (``report.json``, ``report.md`` and PNGs). matplotlib is
imported here and nowhere else. Every figure states how its latencies were measured::

    caption = measured_on("llvm -mcpu=znver3", threads=1, context="reuse-4MiB", repeats="10 x 5")
    plot_staircase(stairs["layers.6.conv1"].curve, stairs["layers.6.conv1"].latency,
                   stairs["layers.6.conv1"].optimal, "stairs.png", "layers.6.conv1", caption, marks={"Fisher": 22})
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from hakd.checkpoint import atomic_write_text

__all__ = ["measured_on", "plot_staircase", "plot_sweeps", "plot_layer_latency", "plot_accuracy_latency", "pareto_front",
           "write_report", "widths_chosen", "simple_answer", "uniform_at_latency", "steadiness", "REPORT"]

REPORT = "report.json"


def measured_on(target: str, threads: int, context: str, repeats: str) -> str:
    """The line every figure carries: where and how its latencies were measured."""
    return f"target {target}, {threads} thread(s), cache context {context}, repeats {repeats}"


def _figure(size=(7, 3.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    return plt, fig, ax


def _save(plt, fig, path, caption: str) -> Path:
    fig.text(0.01, 0.01, caption, fontsize=6.5, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_staircase(curve: Mapping[int, float], measured: Mapping[int, float], optimal: Iterable[int], path, group: str,
                   caption: str, marks: Optional[Mapping[str, int]] = None) -> Path:
    """Latency (us) by width: the curve (measured and interpolated), the measured widths, the optimal
    points, and ``marks`` (label -> width, e.g. the Fisher width and the chosen one)."""
    plt, fig, ax = _figure()
    widths = sorted(curve)
    ax.plot(widths, [curve[w] * 1e6 for w in widths], "-", lw=1, color="0.5", label="staircase")
    ax.plot(sorted(measured), [measured[w] * 1e6 for w in sorted(measured)], "o", ms=3, label="measured")
    optimal = sorted(optimal)
    ax.plot(optimal, [curve[w] * 1e6 for w in optimal], "v", color="tab:red", label="optimal widths")
    for (label, width), color in zip((marks or {}).items(), ("tab:orange", "tab:green", "tab:purple", "tab:brown")):
        if width in curve:
            ax.axvline(width, color=color, lw=1, ls="--")
            ax.plot([width], [curve[width] * 1e6], "s", color=color, ms=6, label=f"{label}: {width}")
    ax.set_xlabel(f"width of {group}")
    ax.set_ylabel("latency of its kernels (us)")
    ax.legend(fontsize=7)
    return _save(plt, fig, path, caption)


def plot_sweeps(full, adaptive, path, group: str, caption: str) -> Path:
    """A full sweep (every width) against an adaptive one of the same group (hakd.cost.staircase.Sweep)."""
    plt, fig, ax = _figure()
    widths = sorted(full.latency)
    ax.plot(widths, [full.latency[w] * 1e6 for w in widths], "-", lw=1, color="0.4", label="full sweep")
    ax.plot(sorted(adaptive.latency), [adaptive.latency[w] * 1e6 for w in sorted(adaptive.latency)], "o", ms=3,
            color="tab:blue", label=f"adaptive ({adaptive.evaluations} widths)")
    ax.plot(full.optimal, [full.latency[w] * 1e6 for w in full.optimal], "v", color="tab:red", label="optimal (full)")
    ax.plot(adaptive.optimal, [adaptive.curve[w] * 1e6 for w in adaptive.optimal], "^", ms=4, mfc="none",
            color="tab:green", label="optimal (adaptive)")
    ax.set_xlabel(f"width of group {group}")
    ax.set_ylabel("latency of its kernels (us)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path, caption)


def plot_layer_latency(groups: Sequence[str], series: Mapping[str, Sequence[float]], path, caption: str) -> Path:
    """Grouped bars: per channel group, the latency (s) of its kernels in each model of ``series``."""
    plt, fig, ax = _figure((max(7, 0.45 * len(groups) + 2), 3.8))
    n = len(series)
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (n - 1) / 2) * 0.8 / n for i in range(len(groups))]
        ax.bar(xs, [v * 1e6 for v in values], width=0.8 / n, label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("latency of the group's kernels (us)")
    ax.legend(fontsize=7)
    return _save(plt, fig, path, caption)


def pareto_front(points: Sequence[Tuple[str, float, Optional[float]]]) -> List[str]:
    """The labels of the points no other point beats on both latency and accuracy (faster and at
    least as accurate, or as fast and more accurate), fastest first; accuracy None is left out.

    >>> pareto_front([("a", 1.0, 0.80), ("b", 2.0, 0.85), ("c", 2.5, 0.84), ("d", 3.0, 0.90), ("e", 1.0, 0.70)])
    ['a', 'b', 'd']
    """
    front, best = [], float("-inf")
    for label, _, accuracy in sorted((p for p in points if p[2] is not None), key=lambda p: (p[1], -p[2])):
        if accuracy > best:
            front.append(label)
            best = accuracy
    return front


def plot_accuracy_latency(points: Sequence[Tuple[str, float, Optional[float]]], path, caption: str,
                          latency: str = "measured", off_scale: float = 0.2) -> Path:
    """Accuracy against latency (s, ``latency`` says measured or predicted), one point per model
    (accuracy None: not plotted), and the Pareto front. Few points are labelled beside them,
    many in a legend. A point more than ``off_scale`` below the best accuracy is drawn on the
    bottom edge (its accuracy in its label), so that it does not squash the others."""
    import itertools

    shown = [p for p in points if p[2] is not None]
    best = max((a for _, _, a in shown), default=0.0)
    floor = min((a for _, _, a in shown if a >= best - off_scale), default=0.0)
    bottom = (floor - 0.02 * max(best - floor, 0.05)) * 100
    plt, fig, ax = _figure((6, 4) if len(shown) <= 6 else (8.5, 4.6))
    styles = itertools.cycle(itertools.product("os^Dvp*hX<>", plt.rcParams["axes.prop_cycle"].by_key()["color"][:7]))
    for (label, seconds, accuracy), (marker, color) in zip(shown, styles):
        low = accuracy < best - off_scale
        y = bottom if low else accuracy * 100
        text = f"{label} ({accuracy * 100:.1f}%, off scale)" if low else label
        ax.plot([seconds * 1e6], [y], "v" if low else marker, color=color, ms=7, label=text, clip_on=False)
        if len(shown) <= 6:
            ax.annotate(text, (seconds * 1e6, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    by_label = {p[0]: p for p in shown}
    on_front = [by_label[label] for label in pareto_front(shown)]  # fastest first
    if len(on_front) > 1:
        ax.step([p[1] * 1e6 for p in on_front], [p[2] * 100 for p in on_front], where="post", color="0.6", lw=1,
                ls="--", zorder=0, label="Pareto front")
    ax.set_ylim(bottom=bottom)
    ax.set_xlabel(f"{latency} latency (us)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    if len(shown) > 6:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(plt, fig, path, caption)


def widths_chosen(report: dict) -> str:
    """How the HAKD student's widths were chosen, in one sentence (empty when the report does not say).

    >>> widths_chosen({"decision": {"snap": "up"}})
    'Widths: the Fisher widths snapped up to their staircases.'
    >>> print(widths_chosen({"teacher_predicted_s": 600e-6, "budget_s": 360e-6, "decision": {"min_keep": 0.25, "fit": {
    ...     "predicted_s": 355e-6, "rounds": [{"predicted_s": 371e-6}, {"predicted_s": 355e-6}]}}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    Widths: a latency budget of 360.0 us (0.60 of the teacher's predicted 600.0 us) spent across the groups,
    no group below 0.25 of its channels; the allocator's rounds rebuilt students predicted at 371.0, 355.0 us;
    the one kept: 355.0 us.
    >>> print(widths_chosen({"teacher_predicted_s": 600e-6, "budget_s": 360e-6, "decision": {
    ...     "value": "params", "min_keep": 0.5, "trial": {"images": 10000, "held_out": 5000}, "fit": {
    ...     "predicted_s": 358e-6, "rounds": [{"predicted_s": 358e-6}], "way": "params,min_keep=0.5", "trials": [
    ...     {"way": "importance", "held_out_accuracy": 0.85, "params": 150000, "predicted_s": 356e-6},
    ...     {"way": "params,min_keep=0.5", "held_out_accuracy": 0.86, "params": 190000, "predicted_s": 358e-6}]}}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    Widths: a latency budget of 360.0 us (0.60 of the teacher's predicted 600.0 us) spent across the groups,
    keeping the most params, no group below 0.5 of its channels; each way of spending it fitted and its student
    distilled one epoch over 10000 training images, then ranked on 5000 held-out training images: importance 0.8500
    (150,000 parameters, 356.0 us), params,min_keep=0.5 0.8600 (190,000 parameters, 358.0 us); kept:
    params,min_keep=0.5, 1.00 points ahead of importance (the standard error of an accuracy on 5000 images: 0.49
    points); the allocator's rounds rebuilt students predicted at 358.0 us; the one kept: 358.0 us.
    """
    decision = report.get("decision") or {}
    if decision.get("snap"):
        return f"Widths: the Fisher widths snapped {decision['snap']} to their staircases."
    budget_s, teacher_s = report.get("budget_s"), report.get("teacher_predicted_s")
    if not budget_s or not teacher_s:
        return ""
    text = (f"Widths: a latency budget of {budget_s * 1e6:.1f} us ({budget_s / teacher_s:.2f} of the teacher's predicted "
            f"{teacher_s * 1e6:.1f} us) spent across the groups")
    if decision.get("value") == "uniform":
        text += ", one keep ratio for every group (the simple answer)"
    elif decision.get("value", "importance") != "importance":
        text += f", keeping the most {decision['value']}"
    if decision.get("min_keep"):
        text += f", no group below {decision['min_keep']:g} of its channels"
    fit = decision.get("fit")
    if fit and fit.get("trials"):
        trial = decision.get("trial") or {}
        text += (f"; each way of spending it fitted and its student distilled one epoch over "
                 f"{fit.get('trial_images', trial.get('images', '?'))} "
                 f"training images, then ranked on {trial.get('held_out', '?')} held-out training images: "
                 + ", ".join(f"{t['way']} " + (f"(the same student as {t['same_as']})" if t.get("same_as") else
                                               f"{t['held_out_accuracy']:.4f} ({t['params']:,} parameters, "
                                               f"{t['predicted_s'] * 1e6:.1f} us)") for t in fit["trials"])
                 + f"; kept: {fit['way']}")
        if fit.get("unreachable"):
            text += f" (not within the budget, so not tried: {', '.join(fit['unreachable'])})"
        text += _lead(fit["trials"], fit["way"], trial.get("held_out"))
        if fit.get("trial_seconds") is not None:
            trained = sum(1 for t in fit["trials"] if not t.get("same_as"))
            text += (f"; the trials cost {trained} x {fit.get('trial_images', '?')} training images and "
                     f"{fit['trial_seconds']:.0f} s")
    if fit:
        text += ("; the uniform fit's rebuilt students were predicted at " if decision.get("value") == "uniform" else
                 "; the allocator's rounds rebuilt students predicted at ")
        text += ", ".join(f"{r['predicted_s'] * 1e6:.1f}" for r in fit["rounds"]) + f" us; the one kept: {fit['predicted_s'] * 1e6:.1f} us"
    return text + "."


def simple_answer(report: dict) -> str:
    """What HAKD's student bought over the simple answer (one keep ratio for every group, at the
    same latency, distilled the same way), in one sentence (empty when the report has none)::

        >>> print(simple_answer({"models": {"HAKD student": {"params": 160000, "measured_s": 1.2e-3},
        ...     "uniform student": {"params": 150000, "measured_s": 1.25e-3}}, "simple_answer": {
        ...     "multiple": 8, "fraction": 0.5, "test_lead": 0.0123, "test_lead_se": 0.0031, "test_images": 10000,
        ...     "held_out_lead": 0.004, "measured_ratio": 0.96}}))   # doctest: +NORMALIZE_WHITESPACE
        The simple answer (one keep ratio for every group, 0.50 here, widths rounded up to a multiple of 8), fitted to the same latency and distilled the same way: HAKD's student leads it by 1.23 points of test
        accuracy (paired standard error 0.31 points over 10000 test images), 0.40 points on the held-out images of
        the trial, with 1.07x its parameters and 0.96x its measured latency.
        >>> simple_answer({"simple_answer": {"kept": True}})
        'The kept student is the simple answer itself (one keep ratio for every group), or the same student.'
    """
    s = report.get("simple_answer")
    if not s:
        return ""
    if s.get("kept"):
        return "The kept student is the simple answer itself (one keep ratio for every group), or the same student."
    if s.get("unreachable"):
        return f"The simple answer (one keep ratio for every group) was not fitted: {s['unreachable']}."
    m = report["models"]
    lead, se = s["test_lead"] * 100, s["test_lead_se"] * 100
    fraction = f"{s['fraction']:.2f}" if s.get("fraction") is not None else "?"
    text = (f"The simple answer (one keep ratio for every group, {fraction} here, widths rounded up to a multiple "
            f"of {s['multiple']}), fitted to the same latency and distilled the same way: HAKD's student "
            f"{'leads it by' if lead >= 0 else 'trails it by'} {abs(lead):.2f} points of test accuracy (paired standard "
            f"error {se:.2f} points over {s['test_images']} test images{'; within the noise' if abs(lead) < se else ''})")
    if s.get("held_out_lead") is not None:
        text += f", {s['held_out_lead'] * 100:.2f} points on the held-out images of the trial"
    text += f", with {m['HAKD student']['params'] / m['uniform student']['params']:.2f}x its parameters"
    if s.get("measured_ratio"):
        text += f" and {s['measured_ratio']:.2f}x its measured latency"
    return text + "."


def uniform_at_latency(uniform: dict, params: int, latency_s: float) -> str:
    """What the simple answer would keep at a pruned model's latency (:func:`hakd.diagnose.uniform_at`)::

        >>> print(uniform_at_latency({"multiple": 16, "fraction": 0.5, "params": 90000, "predicted_s": 1.1e-3,
        ...     "widths": {"a": 16, "b": 32}}, 80000, 1.2e-3))   # doctest: +NORMALIZE_WHITESPACE
        the simple answer at this latency (one keep ratio of the unpruned model, 0.50, widths rounded up to a
        multiple of 16): 90,000 parameters (1.12x this model's), predicted 1100.0 us (0.92x)
        >>> uniform_at_latency({"unreachable": "too tight"}, 1, 1.0)
        'the simple answer (one keep ratio of the unpruned model) cannot reach this latency: too tight'
    """
    if "unreachable" in uniform:
        return f"the simple answer (one keep ratio of the unpruned model) cannot reach this latency: {uniform['unreachable']}"
    return (f"the simple answer at this latency (one keep ratio of the unpruned model, {uniform['fraction']:.2f}, widths "
            f"rounded up to a multiple of {uniform['multiple']}): {uniform['params']:,} parameters "
            f"({uniform['params'] / params:.2f}x this model's), predicted {uniform['predicted_s'] * 1e6:.1f} us "
            f"({uniform['predicted_s'] / latency_s:.2f}x)")


def _lead(trials: List[dict], kept: str, held_out: Optional[int]) -> str:
    """How far the kept trial is ahead of the next student, against the binomial standard error
    of an accuracy on the held-out images (a lead within it is a close call, not a finding)::

        >>> _lead([{"way": "a", "held_out_accuracy": 0.8796}, {"way": "b", "held_out_accuracy": 0.878},
        ...        {"way": "c", "held_out_accuracy": 0.8796, "same_as": "a"}], "a", 5000)
        ', 0.16 points ahead of b (the standard error of an accuracy on 5000 images: 0.46 points; a close call)'
        >>> _lead([{"way": "a", "held_out_accuracy": 0.9}], "a", 5000)
        ''
    """
    others = [t for t in trials if t["way"] != kept and t.get("same_as") != kept]
    best = next((t for t in trials if t["way"] == kept), None)
    if not others or best is None or not held_out:
        return ""
    runner = max(others, key=lambda t: t["held_out_accuracy"])
    gap, p = best["held_out_accuracy"] - runner["held_out_accuracy"], best["held_out_accuracy"]
    se = math.sqrt(p * (1 - p) / held_out)
    return (f", {gap * 100:.2f} points ahead of {runner['way']} (the standard error of an accuracy on {held_out} images: "
            f"{se * 100:.2f} points{'; a close call' if gap < se else ''})")


def steadiness(report: dict) -> List[str]:
    """A warning paragraph when this run timed kernels while the host ran slower than its best
    (:class:`hakd.cost.steady.SteadyClock`), else nothing::

        >>> steadiness({"host_steadiness": {"checks": 40, "slow_checks": 3, "worst_ratio": 1.52, "waited_s": 120.0}})[0][:45]
        '**Timed on a busy host.** 3 of 40 checks of a'
    """
    s = report.get("host_steadiness") or {}
    if not s.get("slow_checks"):
        return []
    return [f"**Timed on a busy host.** {s['slow_checks']} of {s['checks']} checks of a reference kernel found this host "
            f"slower than its best (up to {s['worst_ratio']:.2f}x) after waiting {s['waited_s']:.0f} s for it to settle: "
            "kernels timed then are in the latency table too slow, and widths chosen from them keep time they do not "
            "need. Run again on a quiet machine with a new table (`--table`).", ""]


def _markdown(report: dict, images: List[str]) -> str:
    m = report["models"]
    lines = [f"# hakd report: {report['model']}", "", report["measured_on"], "", *steadiness(report),
             "| model | parameters | predicted latency (us) | measured latency (us) | ONNX Runtime (us) | "
             "held-out accuracy (trial) | test accuracy |", "|---|---|---|---|---|---|---|"]

    def fmt(v, f):
        return f.format(v) if v is not None else "-"

    for name, row in m.items():
        us = {k: row.get(k) and row[k] * 1e6 for k in ("predicted_s", "measured_s", "onnxruntime_s")}
        lines.append(f"| {name} | {row['params']:,} | {fmt(us['predicted_s'], '{:.1f}')} | {fmt(us['measured_s'], '{:.1f}')} | "
                     f"{fmt(us['onnxruntime_s'], '{:.1f}')} | {fmt(row.get('held_out_accuracy'), '{:.4f}')} | "
                     f"{fmt(row.get('accuracy'), '{:.4f}')} |")
    lines += ["", "ONNX Runtime: the same model exported to ONNX, run by ONNX Runtime on the CPU with as many threads, "
              "timed in the same interleaved rounds."] if any(r.get("onnxruntime_s") for r in m.values()) else []
    chosen, simple = widths_chosen(report), simple_answer(report)
    lines += ["", chosen] if chosen else []
    lines += ["", simple] if simple else []
    lines += ["", "Per group: the teacher's width, Fisher's, the final one, the latency of the group's kernels at "
              "Fisher's width and at the final one, and where Fisher's width sat on its staircase.", "",
              "| group | teacher | Fisher | final | latency at Fisher (us) | latency final (us) | Fisher's width on its staircase |",
              "|---|---|---|---|---|---|---|"]
    for g in report["groups"]:
        lines.append(f"| {g['group']} | {g['teacher_width']} | {g['fisher_width']} | {g['final_width']} | "
                     f"{g['fisher_latency_s'] * 1e6:.1f} | {g['final_latency_s'] * 1e6:.1f} | {g['diagnosis']} |")
    lines += ["", "Stages (seconds): " + ", ".join(f"{k} {v:.1f}" for k, v in report.get("stage_seconds", {}).items()), ""]
    lines += [f"![{Path(i).stem}]({Path(i).name})" for i in images]
    return "\n".join(lines) + "\n"


def write_report(folder, report: dict, staircases: Mapping[str, object], accuracy_points, caption: str,
                 latency: str = "measured") -> Dict[str, Path]:
    """``report.json``, ``report.md`` and the PNGs (one staircase per group with its Fisher and final
    widths, per-layer latency, accuracy against latency) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    rows = report["groups"]
    images.append(plot_layer_latency([r["group"] for r in rows], {
        "Fisher": [r["fisher_latency_s"] for r in rows], "HAKD": [r["final_latency_s"] for r in rows]},
        folder / "layer_latency.png", caption))
    images.append(plot_accuracy_latency(accuracy_points, folder / "accuracy_latency.png", caption, latency))
    for r in rows:
        st = staircases[r["group"]]
        images.append(plot_staircase(st.curve, st.latency, st.optimal, folder / f"staircase_{r['group'].replace('.', '_')}.png",
                                     r["group"], caption, {"Fisher": r["fisher_width"], "final": r["final_width"]}))
    atomic_write_text(folder / REPORT, json.dumps(report, indent=1, sort_keys=True))
    atomic_write_text(folder / "report.md", _markdown(report, [str(i) for i in images]))
    return {"json": folder / REPORT, "markdown": folder / "report.md", **{Path(i).stem: Path(i) for i in images}}
