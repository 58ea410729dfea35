"""A table of bad inputs to the command line: each exits 2 with one clear line and changes no user file."""

import hashlib
import sqlite3

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hakd.cli import main
from hakd.config import TrialConfig
from hakd.errors import HakdError


@pytest.fixture
def files(tmp_path):
    """User files a bad command must leave as they are."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "state.pt")
    db = sqlite3.connect(tmp_path / "app.db")
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    prune = tmp_path / "prune"
    prune.mkdir()
    (prune / "plan.json").write_text('{"format": "hakd.plan/1", "keep": {}, "widths": {}}')
    (prune / "model.pt").write_bytes(b"a finished run's model")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"damaged")
    return tmp_path


def checksums(folder):
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


CASES = [  # (argv, words the message must hold); T is the test's folder
    (["train", "resnet21", "--out", "T/o"], ["resnet21", "valid names"]),
    (["train", "resnet20", "--epochs", "0", "--out", "T/o"], ["epochs", ">= 1"]),
    (["staircase", "resnet20", "--table", "T/t.db", "--group", "layers.0.conv1", "--threads", "1000000000"], ["threads", "at most 1024"]),
    (["train", "resnet20", "--threads", "99999", "--out", "T/o"], ["threads", "at most 1024"]),
    (["train", "resnet20", "--batch-size", "-3", "--out", "T/o"], ["batch_size", ">= 1"]),
    (["train", "resnet20", "--batch-size", "100000000000", "--out", "T/o"], ["batch_size", "at most 65536"]),
    (["train", "resnet20", "--lr", "0", "--out", "T/o"], ["lr", "> 0"]),
    (["train", "resnet20", "--out", "T/prune"], ["T/prune", "hakd train does not write (model.pt, plan.json)"]),
    (["train", "resnet20", "--seed", "99999999999999999999", "--out", "T/o"], ["seed", "at most 4294967295"]),
    (["distill", "--teacher", "T/nowhere", "--student", "T/prune", "--lr", "0"], ["lr", "> 0"]),
    (["train", "resnet20", "--train-device", "tpu", "--out", "T/o"], ["TrainConfig.device", "cuda:N"]),
    (["train", "resnet20", "--train-device", "cpu", "--precision", "fp16", "--limit-train", "8", "--out", "T/o"],
     ["fp16", "needs a CUDA device", "bf16"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--train-device", "gpu", "--out", "T/o"], ["PruneConfig.device"]),
    (["train", "resnet20", "--limit-train", "0", "--out", "T/o"], ["limit_train", ">= 1"]),
    (["train", "resnet20", "--data-root", "T/nowhere", "--out", "T/o"], ["T/nowhere", "apt-get install"]),
    (["train", "resnet20", "--resume", "--limit-train", "8", "--out", "T/run"], ["T/run/checkpoint.pt", "cannot be read"]),
    (["prune", "resnet20", "--method", "l1", "--amount", "-1", "--out", "T/p1"], ["amount", "(0, 1)"]),
    (["prune", "resnet20", "--method", "l1", "--amount", "0", "--out", "T/p1"], ["amount", "(0, 1)"]),
    (["prune", "resnet20", "--method", "uniform", "--amount", "1.5", "--out", "T/p1"], ["amount", "(0, 1)"]),
    (["prune", "resnet20", "--method", "uniform", "--round", "-8", "--out", "T/p1"], ["--round", "-8"]),
    (["prune", "resnet20", "--method", "uniform", "--round", "1000", "--round-mode", "up", "--out", "T/p1"],
     ["--round 1000", "widest prunable group (64 channels)", "undoing the pruning"]),
    (["prune", "resnet20", "--method", "l1", "--out", "T/prune"], ["T/prune", "already holds", "--overwrite"]),
    (["prune", "resnet20", "--method", "l1", "--target", "latency", "--out", "T/p2"], ["--target params"]),
    (["prune", "--method", "fisher", "--out", "T/p3"], ["--run"]),
    (["prune", "resnet20", "--method", "l1", "--out", "T/notes.txt"], ["T/notes.txt", "is a file"]),
    (["prune", "resnet20", "--method", "l1", "--out", "T/run"], ["T/run", "hakd prune does not write (checkpoint.pt)"]),
    (["prune", "resnet20", "--method", "l1", "--overwrite", "--out", "T/run"], ["hakd prune does not write"]),
    (["export", "resnet20", "--out", "T/run"], ["T/run", "hakd export does not write (checkpoint.pt)"]),
    (["export", "resnet20", "--out", "T/prune"], ["hakd export does not write (model.pt, plan.json)"]),
    (["staircase", "resnet20", "--group", "nope"], ["nope", "prunable groups"]),
    (["profile", "resnet20", "--target", "llvm -mcpu=nonsense"], ["nonsense", "nearest names"]),
    (["profile", "resnet20", "--target", "cuda"], ["cuda", "Accepted forms"]),
    (["profile", "resnet20", "--target", '"'], ["No closing quotation", "Accepted forms"]),
    (["profile", "resnet20", "--target", "''"], ["of kind 'llvm', not ''", "Accepted forms"]),
    (["profile", "resnet20", "--device", "tcp://x"], ["tcp://x", "rpc://HOST:PORT"]),
    (["profile", "resnet20", "--target", "llvm -num-cores=0"], ["-num-cores", "at least 1"]),
    (["profile", "resnet20", "--build-workers", "0"], ["--build-workers", "at least 1"]),
    (["profile", "--run", "T/nowhere"], ["T/nowhere", "hakd train"]),
    (["table", "list", "--table", "T/app.db"], ["T/app.db", "not a hakd latency table"]),
    (["table", "export", "T/rows.csv", "--table", "T/app.db"], ["T/app.db", "not a hakd latency table"]),
    (["table", "list", "--table", "T/none.sqlite"], ["T/none.sqlite", "no latency table"]),
    (["export", "--model-file", "T/junk.pt", "--out", "T/e"], ["T/junk.pt", "not a torch file"]),
    (["staircases", "T/notes.txt"], ["T/notes.txt", "not a prune folder"]),
    (["snap", "T", "--mode", "up", "--out", "T/s"], ["not a prune folder"]),
    (["snap", "T/prune", "--budget", "1.5", "--out", "T/s"], ["--budget", "(0, 1]"]),
    (["snap", "T/prune", "--budget", "0.5", "--budget-us", "30", "--out", "T/s"], ["--budget-us"]),
    (["snap", "T/prune", "--out", "T/s"], ["--mode", "--budget"]),
    (["snap", "T/prune", "--budget", "0.5", "--min-keep", "1.5", "--out", "T/s"], ["min_keep", "[0, 1]"]),
    (["snap", "T/prune", "--mode", "up", "--out", "T"], ["not empty", "--overwrite"]),
    (["distill", "--teacher", "T/nowhere", "--student", "T/prune"], ["T/nowhere", "hakd train"]),
    (["optimize", "--model", "no_such_pkg_xyz.models:net", "--out", "T/o"], ["no_such_pkg_xyz", "pip install"]),
    (["optimize", "--model-file", "T/state.pt", "--out", "T/o"], ["T/state.pt", "not an nn.Module"]),
    (["optimize", "--model-file", "T/junk.pt", "--out", "T/o"], ["T/junk.pt", "not a torch file"]),
    (["optimize", "--model-file", "T/none.pt", "--out", "T/o"], ["T/none.pt", "does not exist"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--input-shape", "1,2", "--out", "T/o"], ["1,2", "C,H,W"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--input-shape", "1,100000,100000", "--out", "T/o"],
     ["10,000,000,000 values per image", "check the numbers"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "2", "--out", "T/o"], ["budget", "(0, 1]"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--min-keep", "-1", "--out", "T/o"],
     ["min_keep", "[0, 1]"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--value", "importance,fisher", "--out", "T/o"],
     ["fisher", "importance, params"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--min-keep", "0,half", "--out", "T/o"],
     ["--min-keep", "0,half", "separated by commas"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--ways", "uniform", "fisher", "--out", "T/o"],
     ["fisher", "importance, params or uniform"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--ways", "uniform:0.5", "--out", "T/o"],
     ["uniform:0.5", "min_keep floor does not apply"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--ways", "uniform", "--value", "params",
      "--out", "T/o"], ["ways", "not both"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--ways", "uniform", "--out", "T/o"], ["ways", "give a budget"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--held-out", "0", "--out", "T/o"],
     ["held_out", ">= 1"]),
    (["diagnose", "--model-file", "T/none.pt"], ["T/none.pt", "does not exist"]),
    (["prune", "resnet20", "--method", "l1", "--out", ""], ["--out is empty"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--out", " "], ["--out is empty"]),
    (["profile", "resnet20", "--table", ""], ["--table is empty"]),
    (["diagnose", "--model", "tests.cli_models:tiny", "--headroom", "0"], ["headroom", ">= 1"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--snap", "down", "--budget", "0.5", "--out", "T/o"],
     ["--snap down and --budget", "give one"]),
    # NaN, inf and zero are numbers to argparse: each is refused, not taken as "no budget" or "no limit"
    (["snap", "T/prune", "--budget-us", "inf", "--out", "T/s"], ["--budget-us", "finite"]),
    (["snap", "T/prune", "--budget-us", "nan", "--out", "T/s"], ["--budget-us", "finite"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget-us", "0", "--out", "T/o"], ["budget_s", "> 0"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget-us", "inf", "--out", "T/o"], ["budget_s", "finite"]),
    (["optimize", "--model", "tests.cli_models:tiny", "--budget", "0.5", "--lr", "nan", "--out", "T/o"],
     ["lr", "finite"]),
    (["distill", "--teacher", "T/nowhere", "--student", "T/prune", "--beta", "nan"], ["beta", "finite"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_exits_2_with_a_clear_line_and_changes_nothing(files, capsys, argv, words):
    before = checksums(files)
    argv = [a.replace("T/", f"{files}/") if a != "T" else str(files) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("hakd: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word.replace("T/", f"{files}/") in err, (word, err)
    assert checksums(files) == before  # nothing a user made is changed


def test_damaged_data_and_tables_are_hakd_errors(tmp_path):
    import gzip
    import struct

    from hakd.config import DataConfig
    from hakd.cost.measure import Measurement
    from hakd.cost.table import LatencyTable, TableError
    from hakd.data import load
    from hakd.errors import DataError

    def idx(path, header, body):
        with gzip.open(path, "wb") as f:
            f.write(header + body)

    for prefix in ("train", "t10k"):
        idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28), bytes(2 * 784))
        idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", struct.pack(">BBBBI", 0, 0, 8, 1, 2), bytes([3, 12]))
    with pytest.raises(DataError, match="label 12"):
        load(DataConfig(root=str(tmp_path)))
    raw = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(raw[:20] + bytes(b ^ 0xFF for b in raw[20:40]) + raw[40:])
    with pytest.raises(DataError, match="damaged or not gzip"):
        load(DataConfig(root=str(tmp_path)))
    table = LatencyTable(tmp_path / "t.sqlite")
    table.record("llvm", "sig", "a", 1, Measurement(1e-5, 0.0))
    with pytest.raises(TableError, match="read-only"):  # as a read-only file would (root ignores file modes)
        LatencyTable(tmp_path / "t.sqlite", readonly=True).record("llvm", "sig", "b", 1, Measurement(1e-5, 0.0))
    assert table.lookup("llvm", "sig", "a", 1).latency_s == 1e-5  # what was written is kept


def test_the_api_raises_hakd_errors(tmp_path):
    from hakd.passes.groups import find_groups
    from hakd.passes.trace import trace
    from hakd.plan import PrunePlan

    with pytest.raises(HakdError, match="nn.Module"):
        trace(lambda x: x, torch.zeros(1))
    with pytest.raises(HakdError, match="takes 3 input channels, the input has 1"):
        from hakd.models import resnet20

        trace(resnet20(), torch.zeros(1, 1, 8, 8))
    with pytest.raises(HakdError, match="from hakd.passes.trace.trace"):
        find_groups(torch.fx.symbolic_trace(torch.nn.Conv2d(1, 2, 1)))
    with pytest.raises(HakdError, match="got a Module: trace the model first"):
        find_groups(torch.nn.Module())
    with pytest.raises(HakdError, match="no plan file"):
        PrunePlan.load(tmp_path / "missing.json")


# Per subcommand: a command line that fails fast on its own (a folder that is not a run, an occupied --out,
# another program's table), and the options whose values are drawn. Whatever the value: exit 2, never a traceback.
SUBCOMMANDS = {
    "train": (["train", "resnet20", "--data-root", "T/nowhere", "--out", "T/o"],
              ["--epochs", "--batch-size", "--limit-train", "--limit-test", "--lr", "--seed", "--threads",
               "--train-device", "--precision"]),
    "prune": (["prune", "resnet20", "--method", "uniform", "--out", "T/prune"],
              ["--amount", "--round", "--prune-every", "--batch-size", "--penalty", "--threads", "--target", "--method",
               "--round-mode", "--train-device"]),
    "profile": (["profile", "resnet20", "--table", "T/app.db"], ["--threads", "--target", "--device", "--tune-trials",
                                                                       "--build-workers"]),
    "staircase": (["staircase", "resnet20", "--table", "T/app.db", "--group", "layers.0.conv1"], ["--tol", "--threads", "--build-workers"]),
    "staircases": (["staircases", "T/notes.txt"], ["--tol", "--hw-threads", "--groups", "--build-workers"]),
    "snap": (["snap", "T/nowhere", "--out", "T/s"],
             ["--budget", "--budget-us", "--mode", "--value", "--hw-threads", "--min-keep", "--tol", "--build-workers"]),
    "export": (["export", "--model-file", "T/junk.pt", "--out", "T/e"], ["--threads", "--tune-trials", "--target", "--build-workers"]),
    "table": (["table", "list", "--table", "T/app.db"], ["--table"]),
    "distill": (["distill", "--teacher", "T/nowhere", "--student", "T/nowhere"],
                ["--epochs", "--alpha", "--beta", "--temperature", "--batch-size", "--lr", "--init", "--loss",
                 "--train-device", "--precision", "--threads"]),
    "optimize": (["optimize", "--model-file", "T/none.pt", "--out", "T/o"],
                 ["--budget", "--budget-us", "--amount", "--epochs", "--threads", "--input-shape", "--snap",
                  "--min-keep", "--value", "--trial-images", "--held-out", "--ways", "--train-device",
                  "--precision", "--torch-threads", "--build-workers"]),
    "diagnose": (["diagnose", "--model-file", "T/none.pt"], ["--headroom", "--threads", "--groups", "--input-shape", "--unpruned", "--target",
                                                      "--build-workers"]),
}
# options whose value is any path (--out, --table) are not drawn: random text is a valid folder name
VALUES = st.one_of(st.integers(-10**9, 10**9).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8))


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_option_value_makes_a_traceback(files, capsys, command, data):
    base, options = SUBCOMMANDS[command]
    option, value = data.draw(st.sampled_from(options)), data.draw(VALUES)
    argv = [a.replace("T/", f"{files}/") for a in base] + [f"{option}={value}"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: a value of the wrong type or not among the choices
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)


@pytest.mark.parametrize("kwargs,words", [
    (dict(model="resnet20"), ["model is a torch nn.Module", "str"]),
    (dict(budget="0.5"), ["budget is a fraction"]),
    (dict(example_input=torch.zeros(1, 28, 28)), ["example_input is one batch", "N,C,H,W"]),
    (dict(example_input="x"), ["example_input is one batch"]),
    (dict(out=123), ["out is a folder path"]),
    (dict(log=None), ["log is a function"]),
    (dict(distill=None), ["distill is a hakd.config.DistillConfig"]),
    (dict(trial="fast"), ["trial is a hakd.config.TrialConfig"]),
    (dict(build_workers=0), ["--build-workers", "at least 1"]),
    (dict(budget=0.5, trial=TrialConfig(images=32, held_out=64)), ["holds out 64 training images", "there are 64"]),
])
def test_optimize_refuses_arguments_of_the_wrong_kind_before_anything_runs(tmp_path, kwargs, words):
    import hakd
    from hakd.data import Split
    from tests.cli_models import tiny

    split = Split(torch.zeros(64, 1, 8, 8, dtype=torch.uint8), torch.zeros(64, dtype=torch.long), (0.5,), (0.25,), False)
    args = {**dict(model=tiny(), data=(split, split), out=tmp_path / "o", table=tmp_path / "t.sqlite"), **kwargs}
    with pytest.raises(HakdError) as e:
        hakd.optimize(args.pop("model"), **args)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "o").exists()  # nothing ran, nothing was written
