"""How much memory one call takes, measured in a fresh interpreter (a test's own process has
already grown its peak, so its ru_maxrss says nothing about the call)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_growth(setup: str, call: str) -> tuple[str, int]:
    """Run `setup`, then `call` (an expression) in a new Python; returns (repr of its value, bytes
    its peak resident memory grew by during the call)."""
    code = (f"import resource\n{setup}\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"value = {call}\nprint(repr(value))\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    value, grown = done.stdout.splitlines()[-2:]  # a call may print before them
    return value, int(grown)
