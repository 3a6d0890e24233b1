"""How many threads a command starts: what was asked for (0: one per CPU core), capped to what the
machine can use. Threads past a few per core only hold more items in flight (each a full canvas or
more: `--workers 100000` peaked at 3.6-5.8 GB and grew with the collection) and meet the process
limit (`can't start new thread`)."""
from __future__ import annotations

import os

MAX_PER_CORE = 4  # encoding and writing overlap I/O a little; past this only memory grows


def thread_count(asked: int | None) -> int:
    """The threads to start for `asked` (None or 0: one per core)."""
    cores = os.cpu_count() or 1
    return max(1, min(asked or cores, MAX_PER_CORE * cores))


def capped_note(asked: int | None, used: int) -> str | None:
    """A line saying that `asked` was capped to `used`, or None when it was not."""
    if not asked or asked <= used:
        return None
    return (f"workers: {asked} asked, {used} used (at most {MAX_PER_CORE} per CPU core here: more threads only "
            f"hold more items in memory)")
