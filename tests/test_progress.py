"""islab.progress: the per-job progress line (known answers) and when it is shown."""
from __future__ import annotations

import io

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
