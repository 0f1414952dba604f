"""The slim waiter (`gc_polecat/lifecycle/waiter.py`, issue 17): a blocked `await` execs into a
small
script and back, keeping its PID, and answers exactly as the full command line does.

Real processes throughout: `gc-polecat await` started with `python -m gc_polecat`, the real
`verdict` command, real git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gc_polecat.beads.store import Store
from gc_polecat.lifecycle.waiter import wait_state
from gc_polecat.plugins import make_plugin_manager

from .conftest import Cli, git, submitted_ids, wait_for


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture
def submitted(cli: Cli, repo: Path):  # noqa: ANN201
    """A session (this test process) with one submitted work item: (session, sub, wait)."""
    out = cli("session", "register", "--pool", "p", "--pid", str(os.getpid()), "--json")
    sid = json.loads(out.output)["id"]
    work = cli("bead", "create", "w").output.strip()
    cli("bead", "update", work, "--status", "in_progress", "--assignee", sid)
    sub, wait = submitted_ids(
        cli("submit", work, "--branch", "b", "--commit", "a" * 40, "--session", sid).output
    )
    return sid, sub, wait


def _until_slim(waiting: subprocess.Popen[str]) -> None:
    wait_for(lambda: any(a.endswith("waiter.py") for a in _cmdline(waiting.pid)),
             "the await to become the slim waiter")  # fmt: skip


def _await(repo: Path, sid: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GC_POLECAT_REPO": str(repo), "GC_SESSION_ID": sid,
           "GC_CONTINUATION_EPOCH": "1"}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "gc_polecat", "await", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_blocked_await_becomes_the_slim_waiter_and_answers_in_full(
    cli: Cli, repo: Path, submitted: tuple[str, str, str]
) -> None:
    sid, sub, wait = submitted
    waiting = _await(repo, sid, wait, "--json")
    try:
        _until_slim(waiting)
        slim = _cmdline(waiting.pid)
        assert slim[1] == "-S"  # no site: nothing but the doorbell is imported
        assert _rss_kib(waiting.pid) < 20 * 1024  # the full command line holds ~30 MiB
        time.sleep(0.5)
        assert waiting.poll() is None  # still blocked: a pending wait is not an answer
        judged = cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
        assert judged.exit_code == 0, judged.output
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 10, err
    payload = json.loads(out)
    assert payload["wait"] == wait and payload["outcome"] == "fix_needed"
    assert payload["state"] == "closed"  # delivered by the full command line after exec back
    delivered = json.loads(cli("bead", "show", wait, "--json").output)[0]["metadata"]
    assert delivered["delivered_to"] == f"{sid}:{waiting.pid}"  # one process: the same PID


def test_the_slim_waiter_keeps_the_timeout(repo: Path, submitted: tuple[str, str, str]) -> None:
    sid, _, wait = submitted
    started = time.monotonic()
    proc = _await(repo, sid, wait, "--timeout", "1.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 30, err
    assert out == f"{wait}: still pending\n"
    assert time.monotonic() - started >= 1.5


def test_a_wait_file_it_cannot_read_goes_back_to_the_full_command_line(
    cli: Cli, repo: Path, submitted: tuple[str, str, str]
) -> None:
    """A hand edit in flow style is valid YAML the slim reader does not parse: the full
    command line takes over for good (GC_POLECAT_AWAIT_SLIM=0) and still answers."""
    sid, sub, wait = submitted
    path = next(repo.glob(f"beads/*/*/{wait}.yaml"))
    bead = json.loads(cli("bead", "show", wait, "--json").output)[0]
    head, _, tail = path.read_text().partition("metadata:\n")
    lines = tail.split("\n")
    first = next(i for i, line in enumerate(lines) if not line.startswith("  "))
    rest = "\n".join(lines[first:])  # what follows the metadata block
    path.write_text(head + "metadata: " + json.dumps(bead["metadata"]) + "\n" + rest)
    git(repo, "commit", "-qam", "hand edit in flow style")
    assert cli("bead", "show", wait).exit_code == 0  # the real parser reads it

    waiting = _await(repo, sid, wait)
    try:
        wait_for(lambda: "waiter.py" not in " ".join(_cmdline(waiting.pid))
                 and "GC_POLECAT_AWAIT_SLIM=0" in Path(f"/proc/{waiting.pid}/environ")
                 .read_bytes().decode(errors="replace").replace("\0", " "),
                 "the full command line to block in place")  # fmt: skip
        assert cli("verdict", sub, "--merged").exit_code == 0
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out == f"{wait}: merged\n"


def test_in_process_await_never_execs(cli: Cli, submitted: tuple[str, str, str]) -> None:
    """Hosts that run the click group in their own process (tests, plugins) keep it."""
    _, _, wait = submitted
    result = cli("await", wait, "--timeout", "1.2")
    assert result.exit_code == 30 and result.output == f"{wait}: still pending\n"


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("id: gc-1\nmetadata:\n  kind: deps\n  state: pending\n", "pending"),
        ("id: gc-1\nmetadata:\n  state: ready\n  verdict: gc-2\n", "ready"),
        ("id: gc-1\nmetadata:\n  state: 'closed'\n", "closed"),
        ("id: gc-1\nmetadata:\n  kind: deps\n", "pending"),
        ("id: gc-1\nmetadata: {state: ready}\n", None),  # flow style: not ours to guess
        ("id: gc-1\n", None),
        ("id: gc-1\nmetadata:\n  state: pending\n  state: ready\n", None),  # duplicate key
        ("id: gc-1\nmetadata:\n  state: |\n    ready\n", None),
        ("description: |\n  state: ready\nmetadata:\n  state: pending\n", "pending"),
    ],
)
def test_wait_state_reads_only_the_plain_shape(text: str, state: str | None) -> None:
    assert wait_state(text) == state


def test_no_await_loses_a_ring_around_the_exec(
    cli: Cli, repo: Path, submitted: tuple[str, str, str]
) -> None:
    """A verdict right after `await` starts (during the full command line's read, the exec,
    or the waiter's bind) is never lost: the waiter reads git after binding."""
    sid, sub, wait = submitted
    waiting = _await(repo, sid, wait, "--timeout", "20")
    try:
        assert cli("verdict", sub, "--merged").exit_code == 0
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out == f"{wait}: merged\n"


def _daemon_pid(repo: Path) -> int | None:
    lock = repo / ".git" / "gc-polecat" / "waiterd.lock"
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


@pytest.fixture
def no_daemon_left(repo: Path):  # noqa: ANN201
    yield
    pid = _daemon_pid(repo)
    if pid:
        os.kill(pid, 9)


def test_the_settling_daemon_answers_without_the_full_command_line(
    cli: Cli, repo: Path, submitted: tuple[str, str, str], no_daemon_left: None
) -> None:
    """The waiter asks the repository's warm daemon to settle: it never execs the full
    command line (whose imports are the latency), and prints and exits the same."""
    sid, sub, wait = submitted
    waiting = _await(repo, sid, wait)
    try:
        _until_slim(waiting)
        wait_for(lambda: _daemon_pid(repo), "the settling daemon")
        assert (
            cli("verdict", sub, "--fix-needed", "--type", "build", "--reason", "no").exit_code == 0
        )
        shapes = set()
        while waiting.poll() is None:
            try:
                shapes.add(" ".join(_cmdline(waiting.pid)[1:3]))
            except OSError:
                break
            time.sleep(0.002)
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 10, err
    assert out == f"{wait}: fix needed (build): no\n"
    assert not any("gc_polecat" in s and "waiter.py" not in s for s in shapes), shapes
    delivered = json.loads(cli("bead", "show", wait, "--json").output)[0]["metadata"]
    assert delivered["delivered_to"] == f"{sid}:{waiting.pid}"  # the waiter, not the daemon


def test_without_its_daemon_the_waiter_still_answers(
    cli: Cli, repo: Path, submitted: tuple[str, str, str], no_daemon_left: None
) -> None:
    sid, sub, wait = submitted
    waiting = _await(repo, sid, wait, "--json")
    try:
        _until_slim(waiting)
        daemon = wait_for(lambda: _daemon_pid(repo), "the settling daemon")
        os.kill(daemon, 9)
        gone = Path(f"/proc/{daemon}/cmdline")
        wait_for(lambda: not gone.exists() or not gone.read_bytes(), "the daemon to die")
        assert cli("verdict", sub, "--merged").exit_code == 0
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out)["outcome"] == "merged"


def test_the_daemon_refuses_what_is_not_a_settling_request(
    cli: Cli, repo: Path, submitted: tuple[str, str, str]
) -> None:
    """Bad requests get an `error` answer (the waiter then falls back), never a crash."""
    import socket

    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle import waiterd

    store = Store(repo)
    work = cli("bead", "create", "not a wait").output.strip()
    for request, needle in (
        (b"not json\n", "Expecting value"),
        (b"[1, 2]\n", "not an object"),
        (b'{"wait": "../x", "pid": 1}\n', "invalid"),
        (json.dumps({"wait": work, "pid": 1}).encode() + b"\n", "is not a wait"),
        (json.dumps({"wait": submitted[2], "pid": "1"}).encode() + b"\n", "integers"),
    ):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.sendall(request)
            waiterd._answer(store, theirs)  # noqa: SLF001
            answer = json.loads(ours.recv(65536))
        assert needle in answer.get("error", ""), (request, answer)
    pending = waiterd.settle(store, {"wait": submitted[2], "pid": 1, "session": submitted[0],
                                     "epoch": 1})  # fmt: skip
    assert pending == {"pending": True}


def test_the_daemon_carries_no_session_identity(
    repo: Path, submitted: tuple[str, str, str], no_daemon_left: None
) -> None:
    """Sweeps find a session's processes by GC_SESSION_ID in their environment; the daemon,
    started by a session's await, must not look like one of them."""
    sid, _, wait = submitted
    waiting = _await(repo, sid, wait, "--timeout", "30")
    try:
        pid = wait_for(lambda: _daemon_pid(repo), "the settling daemon")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith((b"GC_SESSION_", b"GC_CONTINUATION_"))]
        assert f"GC_SESSION_ID={sid}".encode() in Path(f"/proc/{waiting.pid}/environ").read_bytes()
    finally:
        waiting.kill()
        waiting.communicate()


def test_a_repository_with_a_long_path_settles_through_the_daemon_in_tmp(tmp_path: Path) -> None:
    """AF_UNIX paths hold 107 bytes: a deep repository's daemon listens in the private wake root
    in /tmp (doorbell.py's rule, made private by whichever of the waiter and the daemon comes
    first),
    and the waiter gets its answer from the daemon, never from the full command line."""
    from gc_polecat.lifecycle import doorbell as wake
    from gc_polecat.lifecycle import waiter

    repo = tmp_path / ("d" * 60) / "beads"
    Store.init(repo, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    cli = Cli(repo)
    address = waiter.daemon_address(str(repo / ".git" / "gc-polecat"))
    assert os.path.dirname(address) == wake._fallback_root()  # noqa: SLF001
    out = cli("session", "register", "--pool", "p", "--pid", str(os.getpid()), "--json")
    sid = json.loads(out.output)["id"]
    work = cli("bead", "create", "w").output.strip()
    cli("bead", "update", work, "--status", "in_progress", "--assignee", sid)
    sub, wait = submitted_ids(
        cli("submit", work, "--branch", "b", "--commit", "a" * 40, "--session", sid).output
    )
    waiting = _await(repo, sid, wait)
    try:
        _until_slim(waiting)
        daemon = wait_for(lambda: _daemon_pid(repo), "the settling daemon")
        wait_for(lambda: os.path.exists(address), "the daemon's socket in /tmp")
        assert cli("verdict", sub, "--merged").exit_code == 0
        shapes = set()
        while waiting.poll() is None:
            try:
                shapes.add(" ".join(_cmdline(waiting.pid)[1:3]))
            except OSError:
                break
            time.sleep(0.002)
        out_text, err = waiting.communicate(timeout=60)
        assert not any("gc_polecat" in s and "waiter.py" not in s for s in shapes), shapes
    finally:
        waiting.kill()
        if _daemon_pid(repo):
            os.kill(daemon, 9)
    assert waiting.returncode == 0, err
    assert out_text == f"{wait}: merged\n"


def test_a_ring_never_sent_is_made_up_by_the_daemons_ref_watch(
    repo: Path, submitted: tuple[str, str, str], no_daemon_left: None
) -> None:
    """A verdict committed without any ring (its process had no wake observer: as if it died
    right after its commit, or bd or a sync moved the branch) still wakes the slim waiter
    within seconds: the settling daemon sees the ref move and rings the settled wait
    (waiterd.ring_settled), long before the waiter's own 30 s re-read."""
    from gc_polecat.lifecycle.providers import get_providers
    from gc_polecat.lifecycle.verdict import record_verdict
    from gc_polecat.lifecycle.waiter import RECHECK
    from gc_polecat.plugins import DEFAULT_PLUGINS

    sid, sub, wait = submitted
    waiting = _await(repo, sid, wait)
    try:
        _until_slim(waiting)
        wait_for(lambda: _daemon_pid(repo), "the settling daemon")
        silent = make_plugin_manager(
            load_entrypoints=False,
            builtins=tuple(p for p in DEFAULT_PLUGINS if not p.endswith("wake_plugin")),
        )
        store = Store(repo, pm=silent)
        with store.transaction() as tx:
            record_verdict(tx, sub, "merged", providers=get_providers(silent))
        start = time.monotonic()
        out, err = waiting.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        waiting.kill()
    assert (waiting.returncode, out) == (0, f"{wait}: merged\n"), err
    assert took < RECHECK / 2, took  # the daemon's watch, not the waiter's own timer
