"""git's lock files (`index.lock`, `<ref>.lock`), taken so that a leftover one names its writer.

git's protocol (git: `lockfile.c`): create `<file>.lock` exclusively, write the new content into
it, rename it over `<file>`. While the lock exists every other writer of `<file>` fails or waits,
and git never removes a lock it did not create: one left by a killed git is removed by hand.

gc-polecat takes the same locks, so git and gc-polecat exclude each other, with two differences
that let a leftover lock be proved ours:
- the lock never exists empty: it is created by hard-linking a finished temporary file holding
  `gc-polecat-lock <pid> <start time> <nonce>` (`link` fails if the name exists, exactly like
  `O_EXCL`), the start time being /proc/<pid>/stat field 22, which with the PID names one
  process for the life of the machine;
- the new content goes through its own temporary file renamed over `<file>` while the lock is
  still held, so the lock keeps its record until it is removed.
A lock is removed by anyone but its taker only when its record says a gc-polecat writer took it
and that writer is gone (`remove_if_dead`); a lock from git, an editor or a live process is never
touched (docs/security.md, "Locks").
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from gc_polecat.errors import GcPolecatError
from gc_polecat.procs import process_start_time

TAG = b"gc-polecat-lock"
RECORD_MAX = 128  # a record is about 50 bytes; never read more of a file than this


class LockBusy(GcPolecatError):
    """A lock is held by another process (git, an editor, another writer); nothing was written."""


_identity: tuple[int, str] | None = None


def writer_identity() -> tuple[int, str]:
    """(pid, start time) of this process; recomputed after a fork."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, process_start_time(pid) or "")
    return _identity


def _record() -> bytes:
    pid, start = writer_identity()
    return b"%s %d %s %s\n" % (TAG, pid, start.encode(), secrets.token_hex(8).encode())


def _read_record(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(RECORD_MAX)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def writer_of(record: bytes | None) -> tuple[int, str] | None:
    """(pid, start time) named by a gc-polecat lock record, None for anything else."""
    if record is None:
        return None
    parts = record.split()
    if len(parts) != 4 or parts[0] != TAG or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), parts[2].decode()


def _alive(pid: int, start: str) -> bool:
    return process_start_time(pid) == start


class OwnLock:
    """One lock file we hold. `release` removes it only while it is still the file we made."""

    def __init__(self, path: Path, wait: float, what: str, tmp_dir: Path) -> None:
        self.path, self.tmp_dir = path, tmp_dir
        self.record = _record()
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"lock-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, self.record)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            self._link(tmp, wait, what)
        finally:
            tmp.unlink(missing_ok=True)
        self.ino, self.mtime_ns = st.st_ino, st.st_mtime_ns

    def _link(self, tmp: Path, wait: float, what: str) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                os.link(tmp, self.path)
                return
            except FileExistsError:
                if remove_if_dead(self.path, self.tmp_dir):
                    continue
                if time.monotonic() >= deadline:
                    raise LockBusy(held_message(self.path, what)) from None
                time.sleep(0.005)

    def ours(self) -> bool:
        """Whether the lock file is still the one we created (same inode, same record)."""
        try:
            return os.lstat(self.path).st_ino == self.ino and _read_record(self.path) == self.record
        except OSError:
            return False

    def release(self) -> None:
        if self.ours():
            self.path.unlink(missing_ok=True)


def held_message(path: Path, what: str) -> str:
    """One line naming the lock and what to do, for a lock we may not remove."""
    writer = writer_of(_read_record(path))
    who = f"gc-polecat process {writer[0]}" if writer else "another process (git, an editor)"
    return (
        f"{path} is held by {who}, so {what} was not done (nothing was written); retry when "
        f"it is finished, or remove the file if no such process is running"
    )


def remove_if_dead(path: Path, tmp_dir: Path) -> bool:
    """Remove `path` if its record proves it taken by a gc-polecat writer that is gone. The
    lock is first renamed aside (into `tmp_dir`, on the same file system, where git never looks
    for refs) and checked again there, so a lock someone else created at that name in the
    meantime is put back, never lost."""
    record = _read_record(path)
    writer = writer_of(record)
    if writer is None or _alive(*writer):
        return False
    tmp_dir.mkdir(parents=True, exist_ok=True)
    grave = tmp_dir / f"dead-lock-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return True  # someone else removed it: the name is free again
    if _read_record(grave) != record:  # not the lock we judged: give it back
        with contextlib.suppress(FileExistsError):
            os.link(grave, path)
    grave.unlink(missing_ok=True)
    return True
