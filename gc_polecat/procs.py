"""Process identity from /proc: a PID plus its start time names one process for the life of
the machine. Used by the lock files (beads/locks.py) to tell a dead writer from a live one, and
by the session providers (lifecycle/providers.py) to signal only the process they started."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class ProcStat(NamedTuple):
    state: str
    pgrp: int
    start: str


def proc_stat(pid: int) -> ProcStat | None:
    """State, process group and start time of `pid`, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcStat(state=fields[0], pgrp=int(fields[2]), start=fields[19])
    except (IndexError, ValueError):
        return None


def process_start_time(pid: int) -> str | None:
    """/proc/<pid>/stat field 22 (start time in clock ticks since boot), None if gone.

    Together with the PID it names one process for the life of the machine."""
    stat = proc_stat(pid)
    return stat.start if stat else None
