"""bd-compatible bead hooks, exercised with real hook scripts (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gc_polecat.interop import bd_hooks_out as beadhooks
from gc_polecat.interop.bd_hooks_out import OUTPUT_CAP, fire, runnable_hooks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BEAD = {"id": "gp-1", "title": "Fix the frobnicator", "status": "open", "labels": ["a", "é"]}


@pytest.fixture(autouse=True)
def _hooks_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BD_NO_HOOKS", raising=False)


@pytest.fixture(autouse=True)
def _no_stray_supervisors() -> Iterator[None]:
    """Stop any supervisor a test left running; SIGTERM makes it kill its running hook's group."""
    yield
    for proc in beadhooks._background:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=15)
    beadhooks._background.clear()


@pytest.fixture
def pid_files() -> Iterator[list[Path]]:
    """Files holding PIDs of processes a test's hooks started; anything still alive is killed."""
    files: list[Path] = []
    yield files
    for path in files:
        pid = _read_pid(path)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".beads" / "hooks").mkdir(parents=True)
    return root


@pytest.fixture
def hook(repo: Path) -> Callable[..., Path]:
    """Write `.beads/hooks/<name>` with the given body (a sh script unless a shebang is given)."""

    def write(name: str, body: str, mode: int = 0o755) -> Path:
        path = repo / ".beads" / "hooks" / name
        text = body if body.startswith("#!") else "#!/bin/sh\n" + body
        path.write_text(text)
        path.chmod(mode)
        return path

    return write


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a killed orphan may await reaping by init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _recorder(out: Path) -> str:
    """A hook body appending '<hook file> <id> <event>' to out."""
    return f'echo "$(basename "$0") $1 $2" >> "{out}"\n'


def test_payload_argv_stdin_cwd_and_environment(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "payload.json"
    hook(
        "on_create",
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "record = {'argv': sys.argv[1:], 'stdin': json.load(sys.stdin), 'cwd': os.getcwd(),\n"
        "          'custom': os.environ.get('GC_POLECAT_TEST_VAR')}\n"
        f"open({str(out)!r}, 'w').write(json.dumps(record))\n",
    )
    monkeypatch.setenv("GC_POLECAT_TEST_VAR", "inherited value")

    runs = fire(repo, [("gp-1", "create", BEAD)], wait=True)

    assert [(r.hook, r.bead_id, r.event, r.returncode, r.error) for r in runs] == [
        ("on_create", "gp-1", "create", 0, None)
    ]
    record = json.loads(out.read_text())
    assert record["argv"] == ["gp-1", "create"]
    assert record["stdin"] == BEAD
    assert os.path.samefile(record["cwd"], repo)
    assert record["custom"] == "inherited value"


def test_each_event_runs_its_own_hook(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "calls.txt"
    for event in beadhooks.HOOK_EVENTS:
        hook(f"on_{event}", _recorder(out))

    events = [("a", "close", BEAD), ("b", "create", BEAD), ("c", "update", BEAD)]

    runs = fire(repo, events, wait=True)

    assert [(r.hook, r.event) for r in runs] == [
        ("on_close", "close"),
        ("on_create", "create"),
        ("on_update", "update"),
    ]
    assert _lines(out) == ["on_close a close", "on_create b create", "on_update c update"]


def test_events_without_a_hook_spawn_nothing(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "calls.txt"
    hook("on_close", _recorder(out))

    assert fire(repo, [("a", "create", BEAD), ("a", "update", BEAD)], wait=True) == []
    assert fire(repo, [("a", "create", BEAD), ("a", "update", BEAD)]) == []
    assert beadhooks._background == []
    assert [r.hook for r in fire(repo, [("a", "close", BEAD)], wait=True)] == ["on_close"]
    assert _lines(out) == ["on_close a close"]


def test_non_executable_file_and_directory_are_ignored(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "calls.txt"
    hook("on_update", _recorder(out), mode=0o644)
    (repo / ".beads" / "hooks" / "on_create").mkdir()
    (repo / ".beads" / "hooks" / "on_create").chmod(0o755)

    assert runnable_hooks(repo / ".beads" / "hooks") == {}
    events = [("a", "create", BEAD), ("a", "update", BEAD)]
    assert fire(repo, events, wait=True) == []
    assert fire(repo, events) == []
    assert beadhooks._background == []
    assert not out.exists()


def test_runnable_hooks_lists_only_executable_regular_files(
    repo: Path, hook: Callable[..., Path]
) -> None:
    hooks_dir = repo / ".beads" / "hooks"
    close = hook("on_close", "exit 0\n")
    hook("on_other", "exit 0\n")  # not a bd event
    (hooks_dir / "on_update").symlink_to(close)  # followed, like bd's os.Stat

    assert runnable_hooks(hooks_dir) == {"close": close, "update": hooks_dir / "on_update"}
    assert runnable_hooks(repo / "missing") == {}


@pytest.mark.parametrize("value", ["1", "true"])
@pytest.mark.parametrize("wait", [True, False])
def test_bd_no_hooks_runs_nothing(
    repo: Path,
    hook: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    wait: bool,
) -> None:
    out = tmp_path / "calls.txt"
    hook("on_create", _recorder(out))
    monkeypatch.setenv("BD_NO_HOOKS", value)

    assert fire(repo, [("a", "create", BEAD)], wait=wait) == []
    assert beadhooks._background == []
    assert not out.exists()


def test_failing_hook_is_reported_not_raised(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    hook("on_update", "echo 'bad things' >&2\nexit 3\n")
    log = tmp_path / "logs" / "hooks.log"

    [run] = fire(repo, [("a", "update", BEAD)], wait=True, log_path=log)

    assert (run.returncode, run.timed_out, run.error) == (3, False, None)
    assert run.stderr == b"bad things\n"
    header, output = _lines(log)
    assert header.split()[1:5] == ["on_update", "a", "update", "exit=3"]
    assert header.endswith("ms")
    assert output == "    err| bad things"


@pytest.mark.parametrize(
    "body",
    ["#!/nonexistent/interpreter\necho hi\n", "\x7fELF this is not a real executable\n"],
    ids=["missing-interpreter", "exec-format-error"],
)
def test_hook_that_cannot_start_is_reported_not_raised(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, body: str
) -> None:
    path = repo / ".beads" / "hooks" / "on_create"
    path.write_text(body)
    path.chmod(0o755)
    log = tmp_path / "hooks.log"

    [run] = fire(repo, [("a", "create", BEAD)], wait=True, log_path=log)

    assert run.returncode is None
    assert not run.timed_out
    assert run.error and run.error.startswith(("FileNotFoundError", "OSError"))
    assert " create error=" in log.read_text()


def test_hanging_hook_and_its_process_group_are_killed_at_timeout(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, pid_files: list[Path]
) -> None:
    hook_pid, child_pid = tmp_path / "hook.pid", tmp_path / "child.pid"
    pid_files += [hook_pid, child_pid]
    hook(
        "on_close",
        f'echo $$ > "{hook_pid}"\nsleep 300 &\necho $! > "{child_pid}"\necho started\nwait\n',
    )
    log = tmp_path / "hooks.log"

    [run] = fire(repo, [("a", "close", BEAD)], wait=True, timeout=0.5, log_path=log)

    assert run.timed_out
    assert run.returncode is None
    assert run.stdout == b"started\n"
    assert 0.5 <= run.duration < 5
    pids = [_read_pid(hook_pid), _read_pid(child_pid)]
    assert None not in pids
    assert _wait_for(lambda: not any(_alive(pid) for pid in pids), 5)
    assert " close timeout " in log.read_text()


def test_hook_that_closes_its_output_but_keeps_running_times_out(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, pid_files: list[Path]
) -> None:
    hook_pid = tmp_path / "hook.pid"
    pid_files.append(hook_pid)
    hook("on_create", f'echo $$ > "{hook_pid}"\nexec >/dev/null 2>&1 </dev/null\nsleep 300\n')

    [run] = fire(repo, [("a", "create", BEAD)], wait=True, timeout=0.5)

    assert run.timed_out
    assert _wait_for(lambda: not _alive(_read_pid(hook_pid) or 0), 5)


def test_huge_output_does_not_block_and_is_capped(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    hook(
        "on_create",
        f"#!{sys.executable}\n"
        "import sys\n"
        "line = 'x' * 1023 + '\\n'\n"
        "sys.stdout.write(line * 10240)\n"  # 10 MiB each, one stream after the other
        "sys.stdout.flush()\n"
        "sys.stderr.write(line * 10240)\n",
    )
    log = tmp_path / "hooks.log"

    [run] = fire(repo, [("a", "create", BEAD)], wait=True, timeout=30, log_path=log)

    assert (run.returncode, run.timed_out) == (0, False)
    assert len(run.stdout) == len(run.stderr) == OUTPUT_CAP
    size = log.stat().st_size
    assert 2 * OUTPUT_CAP < size <= 2 * OUTPUT_CAP + 8 * 1024  # two capped streams + prefixes


def test_hook_that_ignores_a_large_stdin_payload(repo: Path, hook: Callable[..., Path]) -> None:
    hook("on_update", "exit 0\n")
    big = dict(BEAD, description="y" * (4 * 1024 * 1024))

    [run] = fire(repo, [("a", "update", big)], wait=True)

    assert (run.returncode, run.timed_out, run.error) == (0, False, None)


@pytest.mark.parametrize("wait", [True, False])
def test_events_fire_in_the_given_order(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, wait: bool
) -> None:
    out = tmp_path / "calls.txt"
    for event in beadhooks.HOOK_EVENTS:
        hook(f"on_{event}", _recorder(out))
    events = [("a", "create"), ("a", "update"), ("b", "create"), ("a", "close"), ("b", "update")]
    expected = [f"on_{event} {bead_id} {event}" for bead_id, event in events]

    runs = fire(repo, [(bead_id, event, BEAD) for bead_id, event in events], wait=wait)

    if wait:
        assert [(r.bead_id, r.event) for r in runs] == events
    else:
        assert runs == []
        assert _wait_for(lambda: len(_lines(out)) == len(events))
    assert _lines(out) == expected


def test_background_returns_at_once_and_the_hook_still_completes(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    marker, log = tmp_path / "done.txt", tmp_path / "logs" / "hooks.log"
    hook("on_close", f'sleep 1\ncat > "{marker}"\n')

    started = time.perf_counter()
    runs = fire(repo, [("a", "close", BEAD)], log_path=log)
    elapsed = time.perf_counter() - started

    print(f"\nfire(wait=False) returned in {elapsed * 1000:.2f} ms")
    assert runs == []
    assert not marker.exists()
    assert _wait_for(lambda: marker.exists() and marker.stat().st_size > 0)
    assert json.loads(marker.read_text()) == BEAD
    assert _wait_for(lambda: " close exit=0 " in (log.read_text() if log.exists() else ""))


def test_background_hook_survives_its_caller_exiting(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    marker = tmp_path / "done.txt"
    hook("on_create", f'sleep 1\necho "$1 $2" > "{marker}"\n')
    caller_script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from gc_polecat.interop.bd_hooks_out import fire\n"
        "t = time.perf_counter()\n"
        "fire(Path(sys.argv[1]), [('a', 'create', {'id': 'a'})])\n"
        "print(time.perf_counter() - t)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", caller_script, str(repo)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as caller:
        stdout, stderr = caller.communicate(timeout=30)  # EOF: no hook holds the caller's pipes
    with pytest.raises(ProcessLookupError):  # the caller's whole process group is gone...
        os.killpg(caller.pid, signal.SIGKILL)

    assert caller.returncode == 0, stderr
    print(f"\nfire(wait=False) in a fresh process: {float(stdout) * 1000:.2f} ms")
    assert not marker.exists()
    assert _wait_for(lambda: _lines(marker) == ["a create"])  # ...yet the hook completes


def test_log_is_bounded_and_keeps_the_newest_entries(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    hook("on_update", "echo newest entry\n")
    log = tmp_path / "hooks.log"
    log.write_bytes(b"old line\n" * (beadhooks.LOG_CAP // 9 + 1))  # just past the cap

    fire(repo, [("a", "update", BEAD)], wait=True, log_path=log)

    data = log.read_bytes()
    assert len(data) <= beadhooks.LOG_CAP // 2
    assert data.startswith(b"old line\n")  # cut at a line boundary
    assert data.endswith(b"    out| newest entry\n")
    assert list(tmp_path.glob("hooks.log.*")) == []


def test_unwritable_log_does_not_fail_the_run(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    hook("on_create", 'cat > /dev/null; echo "ran $1"\n')
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    [run] = fire(repo, [("a", "create", BEAD)], wait=True, log_path=blocker / "hooks.log")

    assert (run.returncode, run.timed_out, run.error, run.stdout) == (0, False, None, b"ran a\n")
    assert blocker.read_text() == ""  # nothing written in the log's stead


def test_fire_never_raises(tmp_path: Path) -> None:
    assert fire(tmp_path / "no-such-repo", [("a", "create", BEAD)], wait=True) == []
    assert fire(tmp_path, [("a", "bogus", BEAD)], wait=True) == []
    assert fire(tmp_path, None, wait=True) == []  # type: ignore[arg-type]


def test_supervisor_entry_point_runs_a_request(
    repo: Path, hook: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "calls.txt"
    hook("on_create", _recorder(out))
    request = {"repo_root": str(repo), "events": [["x", "create", BEAD]], "timeout": 5}

    subprocess.run(
        [sys.executable, "-m", "gc_polecat.interop.bd_hooks_out"],
        input=json.dumps(request | {"log_path": None}),
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
        timeout=30,
    )

    assert _lines(out) == ["on_create x create"]


def test_terminated_supervisor_takes_its_running_hook_with_it(
    repo: Path, hook: Callable[..., Path], tmp_path: Path, pid_files: list[Path]
) -> None:
    hook_pid, child_pid = tmp_path / "hook.pid", tmp_path / "child.pid"
    pid_files += [hook_pid, child_pid]
    hook("on_update", f'echo $$ > "{hook_pid}"\nsleep 300 &\necho $! > "{child_pid}"\nwait\n')

    fire(repo, [("a", "update", BEAD)], timeout=60)
    [supervisor] = beadhooks._background
    assert _wait_for(lambda: _read_pid(child_pid) is not None)
    supervisor.terminate()

    assert supervisor.wait(timeout=10) == 143
    pids = [_read_pid(hook_pid), _read_pid(child_pid)]
    assert _wait_for(lambda: not any(_alive(pid) for pid in pids if pid), 5)
