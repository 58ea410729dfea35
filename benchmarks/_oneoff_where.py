"""One-off (not committed): where ResNet-20's time goes, hakd's kernels against ONNX Runtime's nodes."""
import json, sys, tempfile, collections
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).parent))
from common import hide_avx512, host, calibrated
hide_avx512("--hide-avx512" in sys.argv)
import onnxruntime as ort
from hakd.cost.profile import Profiler
from hakd.export import export, export_onnx, load, META
from hakd.passes.trace import trace

name = sys.argv[1]
shape = (1, 1, 28, 28) if "28" in sys.argv else (1, 3, 32, 32)
torch.set_num_threads(1)
model = calibrated(name, shape)
gm = trace(model, torch.zeros(shape))
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    export(gm, d / "hakd", Profiler(host()))
    meta = json.loads((d / "hakd" / META).read_text())
    m = load(d / "hakd")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    measured = float(np.median(m.time(number=20, repeat=15, min_repeat_ms=100)))
    opts = ort.SessionOptions(); opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling, opts.profile_file_prefix = True, str(d / "ort")
    s = ort.InferenceSession(str(export_onnx(gm, d / "m.onnx", torch.zeros(shape))), opts, providers=["CPUExecutionProvider"])
    for _ in range(200): s.run(None, {"input": x})
    prof = json.loads(Path(s.end_profiling()).read_text())
    runs = 200
    by_op = collections.Counter(); convs = []
    model_run = [e["dur"] for e in prof if e.get("name") == "model_run"]
    for e in prof:
        a = e.get("args", {})
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[a.get("op_name")] += e["dur"] / runs
    print("ORT model_run median us", np.median(model_run[50:]), "node sum per run", round(sum(by_op.values()), 1))
    for op, us in by_op.most_common(): print(f"  ORT {op:30s} {us:8.1f}")
    kinds = collections.Counter()
    for k in meta["kernels"]:
        kinds[k["signature"].split("|")[0]] += k["latency_s"] * k["calls"] * 1e6
    calls = sum(k["calls"] for k in meta["kernels"])
    print("hakd measured us", round(measured * 1e6, 1), "predicted", round(meta.get("predicted_latency_s", 0) * 1e6, 1), "calls", calls, "call overhead us", round(meta["call_overhead_s"] * 1e6 * calls, 1))
    for kind, us in kinds.most_common(): print(f"  hakd {kind:30s} {us:8.1f}")
