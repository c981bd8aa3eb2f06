"""islab.progress: the per-job progress line (known answers) and when it is shown."""
from __future__ import annotations

import io

from helpers import reset_heartbeat

from islab import progress, runs


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_line_known_answers():
    assert progress.clock(0) == "0:00" and progress.clock(65) == "1:05" and progress.clock(3725) == "1:02:05"
    # 3 of 10 done, 2 of them by this process in 60 s: 30 s per job, 7 left -> 3:30
    assert progress.line(3, 10, 60.0, 2, "seed=1") == \
        "[progress] 3/10 jobs (30 %), elapsed 1:00, about 3:30 left; last: seed=1"
    assert progress.line(10, 10, 5.0, 10).endswith("done")
    assert "unknown" in progress.line(2, 10, 5.0, 0)
    assert progress.key_label({"config": "clean", "alpha": 0.3, "seed": 2}) == "config=clean alpha=0.3 seed=2"


def test_shown_in_a_terminal_only(monkeypatch):
    monkeypatch.delenv("ISLAB_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    tty, pipe = TTY(), io.StringIO()
    assert progress.report(1, 2, 1.0, 1, {"seed": 0}, stream=tty) and "1/2 jobs" in tty.getvalue()
    assert not progress.report(1, 2, 1.0, 1, stream=pipe) and pipe.getvalue() == ""
    monkeypatch.setenv("CI", "true")            # quiet in CI, even in a terminal
    assert not progress.enabled(TTY())
    monkeypatch.setenv("ISLAB_PROGRESS", "1")   # forced on
    assert progress.enabled(io.StringIO())
    monkeypatch.setenv("ISLAB_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not progress.enabled(TTY())


def test_run_folder_reports_each_finished_job(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISLAB_PROGRESS", "1")
    run = runs.RunFolder(tmp_path / "r", {"x": 1}, quiet=True)
    run.plan([{"seed": s} for s in range(3)])
    for s in range(2):
        with run.claim({"seed": s}) as job:
            job.finish([{"metric": "m", "value": 1.0}])
    out = capsys.readouterr().out.splitlines()
    assert [o.split(",")[0] for o in out] == ["[progress] 1/3 jobs (33 %)", "[progress] 2/3 jobs (67 %)"]
    assert "left" in out[-1] and not (tmp_path / "r" / "log.txt").exists() or \
        "[progress]" not in (tmp_path / "r" / "log.txt").read_text()


def test_heartbeat_interval_off_in_a_terminal_on_in_a_pipe(monkeypatch):
    monkeypatch.delenv("ISLAB_HEARTBEAT", raising=False)
    assert progress.heartbeat_interval(TTY()) == 0.0                       # the tqdm bar's place
    assert progress.heartbeat_interval(io.StringIO()) == progress.HEARTBEAT_S == 60.0
    monkeypatch.setenv("ISLAB_HEARTBEAT", "15")
    assert progress.heartbeat_interval(TTY()) == 15.0
    monkeypatch.setenv("ISLAB_HEARTBEAT", "0")
    assert progress.heartbeat_interval(io.StringIO()) == 0.0


def test_heartbeat_prints_when_due_on_a_fake_clock(monkeypatch, tmp_path):
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    reset_heartbeat()
    out = io.StringIO()
    beat = progress.Heartbeat("[clean] dris s0", every=60, stream=out)
    assert not beat.tick(1, 8, 1, 23)                                     # the clock starts at 100 s
    now[0] = 159.0
    assert not beat.tick(1, 8, 10, 23) and out.getvalue() == ""
    now[0] = 161.5
    run = runs.RunFolder(tmp_path / "run", {"x": 1})
    run.plan([{"seed": 0}, {"seed": 1}])
    assert beat.tick(2, 8, 5, 23)
    assert out.getvalue() == "[heartbeat] [clean] dris s0: epoch 2/8, step 5/23; 1:02 elapsed; run 0/2 jobs done\n"
    assert not beat.tick(2, 8, 6, 23)                                     # next one 60 s later
    # a new training run (a new Heartbeat) keeps the process's clock: due at 221.5 s, not 60 s later
    other = progress.Heartbeat("[clean] dris s1", every=60, stream=out)
    now[0] = 222.0
    assert other.tick(1, 8, 1, 23) and out.getvalue().splitlines()[-1].startswith("[heartbeat] [clean] dris s1: "
                                                                                   "epoch 1/8, step 1/23; 2:02")
    run.close()
    never = progress.Heartbeat("x", every=0, stream=out)
    now[0] = 1e9
    assert not never.tick(1, 1, 1, 1)
    reset_heartbeat()


def test_training_loop_beats_where_stderr_is_not_a_terminal(monkeypatch, capsys):
    """islab.train ticks the heartbeat every step: with a 1 ns interval every step prints its line."""
    import torch
    import torch.nn as nn
    from torch.utils.data import TensorDataset

    import islab

    monkeypatch.setenv("ISLAB_HEARTBEAT", "1e-9")
    reset_heartbeat()
    data = TensorDataset(torch.randn(20, 2), torch.arange(20) % 2)
    islab.proxy_statistics(data, {"a": lambda: nn.Linear(2, 2), "b": lambda: nn.Linear(2, 2)}, epochs=2,
                           batch_size=10)
    err = capsys.readouterr().err
    assert "[heartbeat] proxy a s1000: epoch 1/2, step 2/2;" in err   # the first tick starts the clock
    assert "[heartbeat] proxy b s1001: epoch 2/2, step 2/2;" in err
