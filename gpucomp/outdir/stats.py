"""Counters and stage timers that ride along the pipeline; thread-safe."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.stage_s: dict[str, float] = {}
        self.counters: dict[str, float] = {}

    @contextmanager
    def timer(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(stage, time.perf_counter() - t0)

    def add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def count(self, name: str, value: float = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + value


class Progress:
    """Progress of a run: a one-line bar with items/s and ETA on a terminal; on a pipe or a log file
    a `progress:` line every LINE_EVERY seconds (a piped run is not silent until `done:`);
    `enabled=False` is silent, True always the bar. The rate, and so the ETA, is measured from the
    first finished item: the time before it (starting the backend, the first batch) says nothing of
    the time left, and made the first ETA on a one-minute run "1330s"."""

    LINE_EVERY = 10.0  # seconds between lines on a stream that is not a terminal

    def __init__(self, total: int, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        tty = self.stream.isatty()
        self.mode = ("bar" if tty else "lines") if enabled is None else ("bar" if enabled else "off")
        self.total, self.done, self.t0, self._last = total, 0, time.perf_counter(), 0.0
        self._first: tuple[float, int] | None = None  # (time, count) at the first finished item

    def _rate_eta(self, now: float) -> tuple[float, str]:
        if self._first is None or now - self._first[0] < 0.5:
            return self.done / max(now - self.t0, 1e-9), "--"
        rate = (self.done - self._first[1]) / (now - self._first[0])
        return rate, f"{(self.total - self.done) / rate:.0f}s" if rate > 0 else "--"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self.done)
        last = self.done == self.total
        if self.mode == "bar" and (now - self._last > 0.1 or last):
            self._last = now
            rate, eta = self._rate_eta(now)
            width = 30
            fill = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                              f"{rate:6.1f} items/s ETA {eta:>5} ")
            self.stream.flush()
        elif self.mode == "lines" and now - max(self._last, self.t0) >= self.LINE_EVERY and not last:
            self._last = now
            rate, eta = self._rate_eta(now)
            self.stream.write(f"progress: {self.done}/{self.total} items, {rate:.1f} items/s, ETA {eta}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
