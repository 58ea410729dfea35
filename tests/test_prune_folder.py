"""hakd.prune_folder: a prune folder written and read back, and a hand-edited importance.json refused clearly."""

import json

import numpy as np
import pytest

from hakd.errors import ConfigError
from hakd.plan import PrunePlan
from hakd.prune_folder import IMPORTANCE, load_prune_folder, write_prune_folder
from tests.passes.test_fisher import traced


@pytest.fixture
def folder(tmp_path):
    gm, groups = traced()
    importance = {g.name: np.arange(g.width, dtype=float) for g in groups.prunable()}
    write_prune_folder(tmp_path / "p", gm, groups, PrunePlan.from_widths({"conv1": 3}, groups.widths()), importance)
    return tmp_path / "p"


def test_a_prune_folder_reads_back_as_written(folder):
    _, groups, plan, importance = load_prune_folder(folder)
    assert plan.width("conv1") == 3 and set(importance) == {g.name for g in groups.prunable()}
    assert all(np.array_equal(v, np.arange(len(v))) for v in importance.values())


@pytest.mark.parametrize("text, words", [
    ('{"conv1": [NaN, 1, 2, 3, 4, 5]}', "6 finite scores"), ('{"conv1": [1, 2, "x", 4, 5, 6]}', "6 finite scores"),
    ('{"conv1": [1, 2]}', "6 finite scores"), ('{"conv9": [1]}', "'conv9' that the base model does not have"),
    ('[1, 2]', "holds a list"), ('{"conv1": [1, 2', "is not JSON"), ('{"conv1": [Infinity, 1, 2, 3, 4, 5]}', "finite")])
def test_a_bad_importance_file_is_refused_with_the_fix(folder, text, words):
    (folder / IMPORTANCE).write_text(text)
    with pytest.raises(ConfigError, match="delete it to rank channels by their L1 norms") as e:
        load_prune_folder(folder)
    assert words in str(e.value) and str(folder / IMPORTANCE) in str(e.value)
    assert (folder / IMPORTANCE).read_text() == text


def test_overwrite_replaces_a_prune_folder_instead_of_mixing_old_files_in(tmp_path):
    from hakd.cli import main

    out = tmp_path / "p"
    assert main(["prune", "resnet20", "--method", "l1", "--amount", "0.5", "--out", str(out)]) == 0
    (out / "staircases.json").write_text("{}")  # measured around the old plan: must not survive a new one
    (out / "history.json").write_text("[]")
    assert main(["prune", "resnet20", "--method", "uniform", "--amount", "0.6", "--overwrite", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["base.pt", "importance.json", "model.pt", "plan.json"]
    assert "uniform" in json.loads((out / "plan.json").read_text())["note"]
