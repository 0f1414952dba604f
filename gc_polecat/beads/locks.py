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

`FileLock` is the other kind: an `flock` on a file that stays in place (`.git/gc-polecat/
write.lock`, `sync.lock`, a sandbox's lock), which the kernel releases when its holder exits,
however it dies. It replaces the `filelock` package with the part of it gc-polecat used: same
files, same `flock`, so processes of either kind exclude each other.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import fcntl
import os
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
    return b"%s %d %s %s\n" % (TAG, pid, start.encode(), os.urandom(8).hex().encode())


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
        tmp = tmp_dir / f"lock-{os.getpid()}-{os.urandom(4).hex()}"
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
    grave = tmp_dir / f"dead-lock-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return True  # someone else removed it: the name is free again
    if _read_record(grave) != record:  # not the lock we judged: give it back
        with contextlib.suppress(FileExistsError):
            os.link(grave, path)
    grave.unlink(missing_ok=True)
    return True


# --- flock locks ------------------------------------------------------------------------------

POLL_SECONDS = 0.05  # how often a waiter retries a held flock (filelock's default interval)
_CONTENDED = (errno.EAGAIN, errno.EACCES)  # EWOULDBLOCK is EAGAIN on Linux


class LockTimeout(GcPolecatError):
    """An flock (`FileLock`) was still held by another holder when the timeout ran out. Not an
    OSError (filelock's Timeout was one, so `except OSError` around a write caught it first and
    the write failed as an internal error instead of "repository busy")."""


class FileLock:
    """An exclusive `flock` on `path`, created (mode 0644 less the umask) if missing and never
    removed, so every waiter locks the same inode. Re-entrant per thread: each thread holds
    through its own descriptor, so two threads exclude each other as two processes do, and a
    thread's nested acquires only count. `timeout` is in seconds, negative waits forever, 0
    tries once; LockTimeout when it runs out. A child forked while the lock is held does not
    hold it: its `release` only closes its copy of the descriptor."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = -1) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._held: dict[int, list[int]] = {}  # thread id: [descriptor, depth, pid]

    @property
    def is_locked(self) -> bool:
        return _thread.get_ident() in self._held

    def acquire(self, timeout: float | None = None) -> Acquired:
        """Take the lock (or count one more hold); `with lock.acquire(timeout=0):` holds it for
        the block, as filelock's acquire did."""
        held = self._held.get(_thread.get_ident())
        if held is not None and held[2] == os.getpid():
            held[1] += 1
            return Acquired(self)
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait < 0 else time.monotonic() + wait
        while True:
            fd = self._try_lock()
            if fd is not None:
                self._held[_thread.get_ident()] = [fd, 1, os.getpid()]
                return Acquired(self)
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"{self.path} is locked by another process")
            time.sleep(POLL_SECONDS)

    def _try_lock(self) -> int | None:
        """A descriptor holding the flock, or None while another holder has it."""
        while True:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _CONTENDED:
                    return None
                raise
            if os.fstat(fd).st_nlink > 0:
                return fd
            os.close(fd)  # removed before we locked it: lock the file at that name now

    def release(self) -> None:
        """Drop one hold; the last one unlocks. Releasing a lock this thread does not hold
        does nothing."""
        tid = _thread.get_ident()
        held = self._held.get(tid)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0 and held[2] == os.getpid():
            return
        del self._held[tid]
        if held[2] == os.getpid():  # a forked child closes its copy: the parent still holds
            with contextlib.suppress(OSError):
                fcntl.flock(held[0], fcntl.LOCK_UN)
        os.close(held[0])

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Acquired:
    """What `FileLock.acquire` returns: a block that releases the hold just taken."""

    def __init__(self, lock: FileLock) -> None:
        self.lock = lock

    def __enter__(self) -> FileLock:
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
