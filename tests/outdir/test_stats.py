"""stats.py: the progress of a run, as a bar on a terminal and as lines on a pipe or a log."""
import io

from gpucomp.outdir import stats
from gpucomp.outdir.stats import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run(progress: Progress, clock: Clock, steps: list[tuple[float, int]]) -> None:
    for dt, n in steps:
        clock.now += dt
        progress.update(n)
    progress.close()


def test_a_piped_run_prints_a_progress_line_every_few_seconds(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(stats.time, "perf_counter", clock)
    out = io.StringIO()  # not a terminal
    run(Progress(100, None, out), clock, [(30.0, 1)] + [(1.0, 3)] * 33)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("progress: ") for line in lines) and "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 4  # ~33 s of items after the first: a line each 10 s
    assert lines[0].startswith("progress: 1/100 items") or "items/s" in lines[0]


def test_the_eta_is_measured_from_the_first_finished_item(monkeypatch):
    """A slow start (backend start-up: 30 s before the first item) says nothing of the time left."""
    clock = Clock()
    monkeypatch.setattr(stats.time, "perf_counter", clock)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    run(Progress(61, None, out), clock, [(30.0, 1)] + [(1.0, 1)] * 10)
    last = out.getvalue().split("\r")[-1]
    assert "11/61" in last and "1.0 items/s" in last and "ETA   50s" in last  # not 50 x 4 s


def test_quiet_is_silent():
    out = io.StringIO()
    p = Progress(3, False, out)
    p.update(3)
    p.close()
    assert out.getvalue() == ""
