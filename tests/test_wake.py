"""The local doorbell: real AF_UNIX sockets, real threads and real child processes, no mocks.

Nothing here measures speed. Deadlines are generous (10 s) and each waiter's own timeout is far
longer (60 s), so a waiter that returns before the deadline returned because it was rung.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import doorbell as wake
from gc_polecat.lifecycle.doorbell import MAX_PAYLOAD, Doorbell, UnsafeWakeDir, ring, validate_key

from .conftest import ROOT

DEADLINE = 10.0  # seconds a rung waiter may take to report back; its own timeout is 60 s
WAITER_TIMEOUT = 60.0


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """A child Python process running `code` with `args` in sys.argv[1:]."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    """The child's stdout once it exits on its own, within the deadline, with status 0."""
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("child did not exit within the deadline") from None
    assert proc.returncode == 0, err
    return out


def first_line(proc: subprocess.Popen[str]) -> str:
    """The first line a child prints (its report that it is listening), within the deadline."""
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"child did not report: {proc.communicate()[1]}")
    return line.strip()


# A child that listens on the keys in argv[2:], reports its socket paths, waits (60 s timeout)
# and prints what it received.
WAITER = """
import json, sys
from gc_polecat.lifecycle.doorbell import Doorbell
with Doorbell(sys.argv[1], sys.argv[2:]) as bell:
    print(json.dumps([str(p) for p in bell.paths]), flush=True)
    print(json.dumps(bell.wait(60.0)), flush=True)
"""

# A child that opens argv[2] doorbells on key argv[3], reports, then waits on each in turn.
MANY_WAITERS = """
import json, sys
from gc_polecat.lifecycle.doorbell import Doorbell
bells = [Doorbell(sys.argv[1], [sys.argv[3]]) for _ in range(int(sys.argv[2]))]
print("ready", flush=True)
print(json.dumps([bell.wait(60.0) for bell in bells]), flush=True)
"""

# A child that listens, reports its socket path, then sleeps until it is killed.
SLEEPER = """
import sys, time
from gc_polecat.lifecycle.doorbell import Doorbell
bell = Doorbell(sys.argv[1], [sys.argv[2]])
print(bell.paths[0], flush=True)
time.sleep(60)
"""

RINGER = """
import sys
from gc_polecat.lifecycle.doorbell import ring
print(ring(sys.argv[1], sys.argv[2], sys.argv[3]), flush=True)
"""


@pytest.fixture
def wake_dir(short_tmp: Path) -> Path:
    """Short enough that every socket sits in it directly, not in the hashed /tmp fallback,
    however deep pytest's own directories are (pytest-xdist adds a level per worker)."""
    return short_tmp / "wake"


def long_wake_dir(tmp_path: Path) -> Path:
    return tmp_path / ("x" * 100) / "wake"


def fallback_root() -> Path:
    return Path(f"/tmp/gc-polecat-wake-{os.getuid()}")


# --- ringing and waking ------------------------------------------------------------------------


def test_ring_wakes_doorbell_in_same_process(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert ring(wake_dir, "gc-abc", "verdict") == 1
        assert bell.wait(WAITER_TIMEOUT) == ["verdict"]


def test_empty_payload_is_still_a_ring(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert ring(wake_dir, "gc-abc") == 1
        assert bell.wait(WAITER_TIMEOUT) == [""]


def test_wait_times_out_with_nothing(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert bell.wait(0) == []
        assert bell.wait(0.05) == []


def test_ring_wakes_a_thread_blocked_in_wait(wake_dir: Path) -> None:
    got: list[list[str]] = []
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        waiter = threading.Thread(target=lambda: got.append(bell.wait(WAITER_TIMEOUT)))
        waiter.start()
        assert ring(wake_dir, "gc-abc", "go") == 1
        waiter.join(DEADLINE)
        assert not waiter.is_alive()
    assert got == [["go"]]


def test_ring_wakes_a_child_process_blocked_in_wait(wake_dir: Path) -> None:
    child = spawn(WAITER, str(wake_dir), "gc-abc")
    [path] = json.loads(first_line(child))
    assert Path(path).parent == wake_dir / "gc-abc"
    assert ring(wake_dir, "gc-abc", "verdict gc-abc") == 1
    assert json.loads(finish(child)) == ["verdict gc-abc"]
    assert not Path(path).exists()  # the child's close() removed its socket


def test_ring_from_a_child_process_wakes_this_one(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert finish(spawn(RINGER, str(wake_dir), "gc-abc", "from afar")).strip() == "1"
        assert bell.wait(WAITER_TIMEOUT) == ["from afar"]


def test_one_doorbell_hears_each_of_its_keys(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc", "session-1"]) as bell:
        assert ring(wake_dir, "session-1", "s") == 1
        assert bell.wait(WAITER_TIMEOUT) == ["s"]
        assert ring(wake_dir, "gc-abc", "w") == 1
        assert ring(wake_dir, "session-1", "s2") == 1
        assert sorted(bell.wait(WAITER_TIMEOUT)) == ["s2", "w"]


def test_a_ring_reaches_only_its_key(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as mine, Doorbell(wake_dir, ["gc-def"]) as other:
        assert ring(wake_dir, "gc-abc") == 1
        assert mine.wait(WAITER_TIMEOUT) == [""]
        assert other.wait(0) == []


def test_pending_rings_drain_into_one_wait(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        for payload in ("a", "b", "c"):
            assert ring(wake_dir, "gc-abc", payload) == 1
        assert bell.wait(WAITER_TIMEOUT) == ["a", "b", "c"]
        assert bell.wait(0) == []


def test_a_full_receive_queue_never_blocks_ring(wake_dir: Path) -> None:
    # The kernel queues only a few datagrams per socket (net.unix.max_dgram_qlen); beyond that
    # the send would block, and ring must count the listener as reached instead.
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert all(ring(wake_dir, "gc-abc", str(i)) == 1 for i in range(500))
        payloads = bell.wait(WAITER_TIMEOUT)
        assert 1 <= len(payloads) <= 500
        assert payloads == [str(i) for i in range(len(payloads))]
        assert bell.wait(0) == []


def test_two_hundred_threads_all_wake_from_one_ring(wake_dir: Path) -> None:
    n = 200
    results: list[list[str] | None] = [None] * n
    bound = threading.Barrier(n + 1)

    def listen(i: int) -> None:
        with Doorbell(wake_dir, ["gc-shared", f"session-{i}"]) as bell:
            bound.wait()
            results[i] = bell.wait(WAITER_TIMEOUT)

    threads = [threading.Thread(target=listen, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    bound.wait(DEADLINE)
    assert ring(wake_dir, "gc-shared", "verdict") == n
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    assert results == [["verdict"]] * n


def test_two_hundred_listeners_in_four_processes_all_wake(wake_dir: Path) -> None:
    children = [spawn(MANY_WAITERS, str(wake_dir), "50", "gc-shared") for _ in range(4)]
    for child in children:
        assert first_line(child) == "ready"
    assert ring(wake_dir, "gc-shared", "verdict") == 200
    for child in children:
        assert json.loads(finish(child)) == [["verdict"]] * 50


# --- missing, dead and stale listeners ---------------------------------------------------------


def test_ring_without_listeners_returns_zero(wake_dir: Path) -> None:
    assert ring(wake_dir, "gc-abc") == 0  # wake_dir does not exist
    wake_dir.mkdir()
    assert ring(wake_dir, "gc-abc") == 0  # no key directory
    with Doorbell(wake_dir, ["gc-abc"]):
        pass
    assert ring(wake_dir, "gc-abc") == 0  # the last listener left
    (wake_dir / "plain-file").write_text("")
    assert ring(wake_dir / "plain-file", "gc-abc") == 0  # wake_dir is not a directory


def test_ring_removes_the_socket_of_a_sigkilled_listener(wake_dir: Path) -> None:
    child = spawn(SLEEPER, str(wake_dir), "gc-abc")
    stale = Path(first_line(child))
    child.send_signal(signal.SIGKILL)
    child.wait(DEADLINE)
    assert stat.S_ISSOCK(stale.lstat().st_mode)  # SIGKILL left the socket behind
    with Doorbell(wake_dir, ["gc-abc"]) as live:
        assert ring(wake_dir, "gc-abc", "v") == 1
        assert not stale.exists()
        assert live.paths[0].exists()
        assert live.wait(WAITER_TIMEOUT) == ["v"]


def test_ring_leaves_files_that_are_not_sockets_alone(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        decoy = wake_dir / "gc-abc" / "decoy.sock"
        decoy.write_text("not a socket")
        assert ring(wake_dir, "gc-abc") == 1
        assert decoy.read_text() == "not a socket"
        assert bell.wait(WAITER_TIMEOUT) == [""]
        decoy.unlink()


# --- payloads and keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("x" * 5000, "x" * MAX_PAYLOAD),
        ("é" * 1000, "é" * (MAX_PAYLOAD // 2)),
        ("a" + "é" * 600, "a" + "é" * 511),  # a 2-byte character would cross the limit: dropped
        ("gc-abc approved", "gc-abc approved"),
    ],
)
def test_payload_is_truncated_to_whole_characters(
    wake_dir: Path, payload: str, expected: str
) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        assert ring(wake_dir, "gc-abc", payload) == 1
        assert bell.wait(WAITER_TIMEOUT) == [expected]


BAD_KEYS = ["../x", "a/b", "", ".", "..", "k" * 101, "a b", "a\0b", "/abs", "é", None]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_everywhere(wake_dir: Path, key: str) -> None:
    with pytest.raises(BadInput):
        validate_key(key)
    with pytest.raises(BadInput):
        ring(wake_dir, key)
    with pytest.raises(BadInput):
        Doorbell(wake_dir, ["gc-abc", key])
    assert not wake_dir.exists()  # refused before anything was created


@pytest.mark.parametrize("key", ["gc-4f2", "gc-4f2.1.3", "Session_ID-9", "k" * 100, "..."])
def test_good_keys_are_accepted(wake_dir: Path, key: str) -> None:
    assert validate_key(key) == key
    with Doorbell(wake_dir, [key]) as bell:
        assert ring(wake_dir, key, "ok") == 1
        assert bell.wait(WAITER_TIMEOUT) == ["ok"]


def test_a_doorbell_needs_a_key(wake_dir: Path) -> None:
    with pytest.raises(BadInput):
        Doorbell(wake_dir, [])


def test_duplicate_keys_share_one_socket(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc", "gc-abc"]) as bell:
        assert bell.keys == ("gc-abc",)
        assert len(bell.paths) == 1
        assert ring(wake_dir, "gc-abc") == 1


# --- security ----------------------------------------------------------------------------------


def test_permissions_are_private_whatever_the_umask(wake_dir: Path) -> None:
    old = os.umask(0)
    try:
        with Doorbell(wake_dir, ["gc-abc"]) as bell:
            assert stat.S_IMODE(wake_dir.stat().st_mode) == 0o700
            assert stat.S_IMODE((wake_dir / "gc-abc").stat().st_mode) == 0o700
            sock = bell.paths[0].lstat()
            assert stat.S_ISSOCK(sock.st_mode)
            assert stat.S_IMODE(sock.st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_symlinked_key_directory_is_refused(short_tmp: Path, wake_dir: Path) -> None:
    elsewhere = short_tmp / "elsewhere"
    with Doorbell(elsewhere, ["gc-abc"]) as target:
        wake_dir.mkdir()
        (wake_dir / "gc-abc").symlink_to(elsewhere / "gc-abc")
        assert ring(wake_dir, "gc-abc", "leak") == 0
        assert target.wait(0) == []
        with pytest.raises(UnsafeWakeDir):
            Doorbell(wake_dir, ["gc-abc"])
        assert [p.name for p in (elsewhere / "gc-abc").iterdir()] == [target.paths[0].name]


def test_a_key_directory_open_to_others_is_refused(wake_dir: Path) -> None:
    with Doorbell(wake_dir, ["gc-abc"]) as bell:
        (wake_dir / "gc-abc").chmod(0o755)
        assert ring(wake_dir, "gc-abc") == 0
        with pytest.raises(UnsafeWakeDir):
            Doorbell(wake_dir, ["gc-abc"])
        (wake_dir / "gc-abc").chmod(0o700)
        assert bell.wait(0) == []


def test_a_failed_doorbell_leaves_no_socket_behind(tmp_path: Path, wake_dir: Path) -> None:
    wake_dir.mkdir()
    (wake_dir / "gc-bad").symlink_to(tmp_path)
    with pytest.raises(UnsafeWakeDir):
        Doorbell(wake_dir, ["gc-good", "gc-bad"])
    assert not (wake_dir / "gc-good").exists()


# --- long paths: the /tmp fallback -------------------------------------------------------------


def test_long_wake_dir_falls_back_to_a_short_path(tmp_path: Path) -> None:
    wake_dir = long_wake_dir(tmp_path)
    key = "k" * 100
    with Doorbell(wake_dir, [key]) as bell:
        [path] = bell.paths
        assert path.parent.parent == fallback_root()
        assert len(os.fsencode(str(path))) <= wake.MAX_SOCKET_PATH
        assert stat.S_IMODE(fallback_root().lstat().st_mode) == 0o700
        assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert ring(wake_dir, key, "found") == 1
        assert bell.wait(WAITER_TIMEOUT) == ["found"]
    assert not path.parent.exists()  # the hashed key directory goes with its last listener


def test_fallback_listener_in_a_child_is_found_by_ring(tmp_path: Path) -> None:
    wake_dir = long_wake_dir(tmp_path)
    child = spawn(WAITER, str(wake_dir), "gc-abc", "session-7")
    paths = [Path(p) for p in json.loads(first_line(child))]
    assert all(p.parent.parent == fallback_root() for p in paths)
    assert ring(wake_dir, "session-7", "s7") == 1
    assert json.loads(finish(child)) == ["s7"]


def test_other_spellings_of_wake_dir_find_the_same_listeners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for wake_dir in (tmp_path / "wake", long_wake_dir(tmp_path)):
        alias = tmp_path / f"alias-{len(str(wake_dir))}"
        with Doorbell(wake_dir, ["gc-abc"]) as bell:
            alias.symlink_to(wake_dir)
            monkeypatch.chdir(wake_dir.parent)
            assert ring(Path(wake_dir.name), "gc-abc", "relative") == 1
            assert finish(spawn(RINGER, str(alias), "gc-abc", "via-link")).strip() == "1"
            assert bell.wait(WAITER_TIMEOUT) == ["relative", "via-link"]


def test_the_longest_direct_path_stays_direct(tmp_path: Path) -> None:
    base = os.path.realpath(tmp_path)
    key = "gc-abc"
    # Direct layout while <wake_dir>/<key>/ plus the longest socket name fits in 107 bytes.
    room = wake.MAX_SOCKET_PATH - wake._MAX_SOCKET_NAME - 1 - len(f"{base}//{key}")
    if room < 1:
        pytest.skip("temporary directory path too long for this check")
    fits = Path(base) / ("d" * room)
    too_long = Path(base) / ("d" * (room + 1))
    with Doorbell(fits, [key]) as direct, Doorbell(too_long, [key]) as hashed:
        assert direct.paths[0].parent == fits / key
        assert hashed.paths[0].parent.parent == fallback_root()
        assert ring(fits, key, "a") == 1 and ring(too_long, key, "b") == 1
        assert direct.wait(WAITER_TIMEOUT) == ["a"] and hashed.wait(WAITER_TIMEOUT) == ["b"]


@pytest.mark.parametrize("tamper", ["symlink", "open-mode"])
def test_an_unsafe_fallback_root_is_refused(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    monkeypatch.setattr(wake, "_FALLBACK_PARENT", str(short_tmp))
    root = short_tmp / f"gc-polecat-wake-{os.getuid()}"
    if tamper == "symlink":
        (short_tmp / "decoy").mkdir(mode=0o700)
        root.symlink_to(short_tmp / "decoy")
    else:
        root.mkdir()
        root.chmod(0o777)
    wake_dir = long_wake_dir(tmp_path)
    with pytest.raises(UnsafeWakeDir):
        Doorbell(wake_dir, ["gc-abc"])
    assert ring(wake_dir, "gc-abc") == 0


# --- lifecycle ---------------------------------------------------------------------------------


def test_close_is_idempotent_and_cleans_up(wake_dir: Path) -> None:
    bell = Doorbell(wake_dir, ["gc-abc", "session-1"])
    other = Doorbell(wake_dir, ["gc-abc"])
    paths = bell.paths
    bell.close()
    bell.close()
    assert not any(p.exists() for p in paths)
    assert not (wake_dir / "session-1").exists()  # emptied key directory removed
    assert (wake_dir / "gc-abc").is_dir()  # still in use by the other listener
    with pytest.raises(ValueError):
        bell.wait(0)
    assert ring(wake_dir, "gc-abc") == 1
    other.close()
    assert not (wake_dir / "gc-abc").exists()
    assert ring(wake_dir, "gc-abc") == 0
