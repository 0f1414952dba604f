"""The flock locks (`gc_polecat.beads.locks.FileLock`) that replaced the `filelock` package.

What the callers rely on: one holder at a time across processes and threads, a timeout that
raises `LockTimeout` (0 tries once), re-entrance within one thread, the lock freed by the kernel
when its holder dies however it dies, and the same files with the same `flock` as before, so an
old gc-polecat (filelock) and a new one exclude each other. Holders here are real processes;
the "old process" takes a plain `flock` on the same path, which is what filelock does on Linux.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gc_polecat.beads.locks import FileLock, LockTimeout
from gc_polecat.beads.store import Store
from gc_polecat.errors import GcPolecatError

NEW_HOLDER = (
    "import sys, time\n"
    "from gc_polecat.beads.locks import FileLock\n"
    "lock = FileLock(sys.argv[1])\n"
    "lock.acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)
OLD_HOLDER = (  # filelock on Linux: open the file (created if missing), flock it exclusively
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def holder(source: str, path: Path) -> subprocess.Popen[str]:
    """A process that holds the lock at `path` until killed (started once it says so)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", source, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "write.lock"


@pytest.fixture
def held_by_new(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = holder(NEW_HOLDER, lock_path)
    yield proc
    proc.kill()
    proc.wait()


def free(path: Path) -> bool:
    """Whether a plain flock on `path` can be taken right now (and is given back at once)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_held_lock_times_out_after_its_timeout(lock_path: Path, held_by_new: object) -> None:
    start = time.monotonic()
    with pytest.raises(LockTimeout, match="locked by another process"):
        FileLock(lock_path, timeout=0.3).acquire()
    assert 0.3 <= time.monotonic() - start < 5
    with pytest.raises(LockTimeout):
        FileLock(lock_path).acquire(timeout=0)  # 0 tries once
    assert isinstance(LockTimeout("x"), GcPolecatError)
    assert not isinstance(LockTimeout("x"), OSError)  # `except OSError` must not swallow it


def test_a_waiter_gets_the_lock_when_the_holder_dies(lock_path: Path) -> None:
    proc = holder(NEW_HOLDER, lock_path)
    lock = FileLock(lock_path, timeout=30)
    threading.Timer(0.3, proc.send_signal, [signal.SIGKILL]).start()  # no release: killed
    start = time.monotonic()
    with lock:
        assert time.monotonic() - start >= 0.2  # it did wait for the holder
        assert not free(lock_path)
    proc.wait()
    assert free(lock_path) and lock_path.exists()  # released, and the file stays in place


@pytest.mark.parametrize("source", [OLD_HOLDER, NEW_HOLDER], ids=["filelock-era", "ours"])
def test_old_and_new_holders_exclude_each_other(lock_path: Path, source: str) -> None:
    """Same file, same flock: an old gc-polecat (filelock) and a new one never both hold it."""
    proc = holder(source, lock_path)
    try:
        with pytest.raises(LockTimeout):
            FileLock(lock_path, timeout=0.2).acquire()
    finally:
        proc.kill()
        proc.wait()
    with FileLock(lock_path, timeout=5):
        assert not free(lock_path)  # what an old process's flock would see: held
    assert free(lock_path)


def test_reentrant_in_one_thread_exclusive_between_threads_and_objects(lock_path: Path) -> None:
    lock = FileLock(lock_path, timeout=0)
    with lock:
        with lock.acquire():  # the same thread again: counted, not deadlocked
            assert lock.is_locked
        assert lock.is_locked and not free(lock_path)  # the inner release kept the outer hold
        with pytest.raises(LockTimeout):
            FileLock(lock_path, timeout=0).acquire()  # another object: excluded
        other: list[BaseException | None] = []

        def take() -> None:
            try:
                lock.acquire()
                other.append(None)
            except LockTimeout as exc:
                other.append(exc)

        thread = threading.Thread(target=take)
        thread.start()
        thread.join()
        assert isinstance(other[0], LockTimeout)  # another thread: excluded, like a process
    assert not lock.is_locked and free(lock_path)
    lock.release()  # not held: nothing to do


def test_acquire_as_a_block_releases_at_its_end(lock_path: Path) -> None:
    lock = FileLock(lock_path)
    with lock.acquire(timeout=0) as got:
        assert got is lock and not free(lock_path)
    assert free(lock_path) and not lock.is_locked


def test_a_forked_child_does_not_release_its_parents_lock(lock_path: Path) -> None:
    lock = FileLock(lock_path)
    with lock:
        pid = os.fork()
        if pid == 0:  # the child: its release only closes its copy of the descriptor
            lock.release()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert not free(lock_path)
    assert free(lock_path)


def test_a_write_waits_out_a_held_write_lock_and_then_fails_busy(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's write lock is this flock on the same file as before: held elsewhere, a write
    fails in one named error after LOCK_TIMEOUT, and nothing is written."""
    from gc_polecat.beads import store as storemod

    monkeypatch.setattr(storemod, "LOCK_TIMEOUT", 0.3)
    before = store.head()
    proc = holder(OLD_HOLDER, store.state_dir / "write.lock")
    try:
        with pytest.raises(GcPolecatError, match="repository busy"), store.transaction() as tx:
            tx.create({"title": "never"})
    finally:
        proc.kill()
        proc.wait()
    assert store.head() == before
    with store.transaction() as tx:
        tx.create({"title": "now"})
    assert store.head() != before


def test_a_lock_in_an_unwritable_place_is_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileLock(tmp_path / "missing" / "x.lock").acquire()
    link = tmp_path / "link.lock"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):  # never follows a symlink planted at the lock's name
        FileLock(link).acquire()
    assert not (tmp_path / "elsewhere").exists()
