"""Fault-injection points for tests/test_faults.py, off unless the environment asks for them.

GPUCOMP_TEST_KILL=<point> kills this process with SIGKILL right at that point (as a power cut or
the OOM killer would); GPUCOMP_TEST_SLOW=<seconds> slows each rendered item so a run can be
caught midway.
"""
from __future__ import annotations

import os
import signal
import time


def fault(point: str) -> None:
    if os.environ.get("GPUCOMP_TEST_KILL") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if point.startswith("image:") and "GPUCOMP_TEST_SLOW" in os.environ:
        time.sleep(float(os.environ["GPUCOMP_TEST_SLOW"]))
