"""The one training loop: progress lines when output is not a terminal, stopping, stateless runs."""

import torch

from hakd.loop import Task, train_loop
from tests.conftest import band_split
from tests.passes.test_fisher import Small


def test_progress_goes_to_a_pipe_as_lines(tmp_path, capsys):
    model = Small()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pos = train_loop(model, opt, band_split(64).loader(16), Task(), tmp_path / "c.pt", epochs=2, report_s=0.0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("training epoch")]
    assert pos.epoch == 2 and pos.step == 8 and len(lines) == 8
    assert "batch 4/4, step 8" in lines[-1] and "images/s" in lines[-1]


def test_a_task_stops_the_run_and_a_stateless_run_writes_nothing(tmp_path):
    class Three(Task):
        def finished(self, pos):
            return pos.step >= 3

    model = Small()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pos = train_loop(model, opt, band_split(64).loader(16), Three(), None, progress=False)
    assert (pos.step, pos.epoch, pos.batch) == (3, 0, 3)
    assert list(tmp_path.iterdir()) == []


def test_more_training_threads_than_cores_are_capped_with_a_word():
    import os

    from hakd.loop import use_threads

    before, lines = torch.get_num_threads(), []
    try:
        cores = len(os.sched_getaffinity(0))
        assert use_threads(1000, log=lines.append) == cores
        assert lines == [f"1000 threads asked for, but this process may run on {cores} core(s): training with {cores}"]
        assert use_threads(None, log=lines.append) == cores and len(lines) == 1  # None: left as it is
    finally:
        torch.set_num_threads(before)
