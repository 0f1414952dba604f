"""Session providers against real processes and a real tmux server; nothing is mocked.

Every tmux test runs its own server on a socket in its tmp_path and kills it at teardown, and
every process a test starts is stopped at teardown, so nothing outlives the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gc_polecat.hookspecs import hookimpl
from gc_polecat.lifecycle.providers import (
    Handle,
    ProcessProvider,
    ProviderError,
    SessionProvider,
    TmuxProvider,
    get_providers,
    process_start_time,
)
from gc_polecat.plugins import make_plugin_manager

PLUGIN = "gc_polecat.builtin.providers_plugin"
SESSION_ENV = {
    "GC_SESSION_ID": "gc-42",
    "GC_SESSION_NAME": "polecat-furiosa",
    "GC_CONTINUATION_EPOCH": "3",
    "GC_INSTANCE_TOKEN": "tok-abc",
}
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(0.02)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def running(pid: int, start: str) -> bool:
    """The process with this start time exists and is not a zombie (checked independently
    of the code under test)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] == start and fields[0] != "Z"


def base_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], **SESSION_ENV, **extra}


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def stopper() -> Iterator[Callable[[SessionProvider, Handle], Handle]]:
    """`track(provider, handle)`: the handle is stopped at teardown, whatever the test did."""
    started: list[tuple[SessionProvider, Handle]] = []

    def track(provider: SessionProvider, handle: Handle) -> Handle:
        started.append((provider, handle))
        return handle

    yield track
    for provider, handle in started:
        provider.stop(handle, grace=0.5)


# --- process provider -----------------------------------------------------------------------


@pytest.fixture
def proc(
    tmp_path: Path, stopper: Callable[[SessionProvider, Handle], Handle]
) -> Callable[..., Handle]:
    """Start a `process` session in tmp_path; its log is tmp_path/session.log."""
    provider = ProcessProvider()

    def start(argv: list[str], name: str = "polecat-1", **env: str) -> Handle:
        handle = provider.start(name, argv, base_env(**env), tmp_path, tmp_path / "session.log")
        return stopper(provider, handle)

    start.provider = provider  # type: ignore[attr-defined]
    return start


def test_process_start_is_alive_with_a_string_handle(proc, tmp_path: Path) -> None:
    handle = proc(["sh", "-c", "echo started; echo oops >&2; exec sleep 60"])
    assert proc.provider.is_alive(handle)
    assert all(isinstance(v, str) for v in handle.values())
    pid = int(handle["pid"])
    assert handle["provider"] == "process"
    assert handle["pid_start"] == process_start_time(pid)
    assert handle["pgid"] == str(os.getpgid(pid)) == handle["pid"]
    assert os.getsid(pid) == pid  # its own session: no terminal hangup reaches it from ours
    assert handle["inbox"] == f"{tmp_path / 'session.log'}.inbox"
    assert handle["nudge_signal"] == "0"
    wait_for(lambda: "oops" in read(tmp_path / "session.log"))
    assert read(tmp_path / "session.log").splitlines() == ["started", "oops"]


def test_process_start_time_of_a_missing_pid_is_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert process_start_time(child.pid) is None
    stat = Path("/proc/self/stat").read_text()
    assert process_start_time(os.getpid()) == stat.rsplit(")", 1)[1].split()[19]  # field 22


def test_process_environment_reaches_the_child_exactly(
    proc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GC_POLECAT_NOT_FOR_CHILD", "1")
    out = tmp_path / "env.json"
    code = f"import json, os, time; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"
    handle = proc(py(code + "; time.sleep(60)"), SPACED="a b; $(x) #{y}")
    wait_for(lambda: read(out))
    env = json.loads(read(out))
    assert {k: env[k] for k in SESSION_ENV} == SESSION_ENV
    assert env["SPACED"] == "a b; $(x) #{y}"
    assert env["GC_POLECAT_INBOX"] == handle["inbox"]
    assert "GC_POLECAT_NOT_FOR_CHILD" not in env


def test_process_child_survives_its_starter_exiting(tmp_path: Path, stopper) -> None:
    starter = (
        "import json, sys; from pathlib import Path\n"
        "from gc_polecat.lifecycle.providers import ProcessProvider\n"
        "p = Path(sys.argv[1])\n"
        "h = ProcessProvider().start('polecat-1', ['sleep', '60'], {'PATH': sys.argv[2]},"
        " p, p / 'session.log')\n"
        "print(json.dumps(h))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter, str(tmp_path), os.environ["PATH"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    handle = json.loads(done.stdout)
    provider = ProcessProvider()
    stopper(provider, handle)
    time.sleep(0.2)
    assert provider.is_alive(handle)
    provider.stop(handle, grace=2)
    assert not provider.is_alive(handle)


def test_process_killed_is_not_alive_and_is_reaped(proc) -> None:
    handle = proc(["sleep", "60"])
    pid = int(handle["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not proc.provider.is_alive(handle))
    assert not Path(f"/proc/{pid}").exists()  # reaped, not left as a zombie


def test_a_zombie_child_is_not_alive_even_for_another_provider_instance(proc) -> None:
    """A second provider in the same process (no Popen object) still reaps our dead child."""
    handle = proc(["sleep", "60"])
    pid = int(handle["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z")
    assert not ProcessProvider().is_alive(handle)
    assert not Path(f"/proc/{pid}").exists()


def test_process_reused_pid_is_not_alive_and_never_signalled(proc, tmp_path: Path) -> None:
    term = tmp_path / "got-term"
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: pathlib.Path({str(term)!r}).touch())\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    handle = proc(py(code))
    wait_for(ready.exists)
    reused = dict(handle, pid_start=str(int(handle["pid_start"]) + 1))
    assert not proc.provider.is_alive(reused)
    proc.provider.stop(reused, grace=0.5)
    assert not proc.provider.nudge(reused, "hello")
    time.sleep(0.3)
    assert not term.exists()
    assert proc.provider.is_alive(handle)


def test_process_stop_escalates_to_sigkill_for_the_whole_group(proc, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f'trap "" TERM; sleep 600 & echo $! > {pidfile}; wait'
    handle = proc(["sh", "-c", script])
    wait_for(lambda: read(pidfile).strip())
    grandchild = int(read(pidfile))
    grandchild_start = process_start_time(grandchild)
    assert grandchild_start is not None
    began = time.monotonic()
    proc.provider.stop(handle, grace=0.5)
    assert time.monotonic() - began >= 0.5  # SIGTERM was ignored for the whole grace period
    assert not proc.provider.is_alive(handle)
    assert not running(int(handle["pid"]), handle["pid_start"])
    assert not running(grandchild, grandchild_start)
    proc.provider.stop(handle, grace=0.5)  # idempotent


def test_process_stop_is_quick_when_sigterm_works(proc) -> None:
    handle = proc(["sleep", "60"])
    began = time.monotonic()
    proc.provider.stop(handle, grace=5)
    assert time.monotonic() - began < 2
    assert not proc.provider.is_alive(handle)


def test_process_nudge_appends_to_the_inbox(proc) -> None:
    handle = proc(["sleep", "60"])
    inbox = Path(handle["inbox"])
    assert read(inbox) == ""
    assert proc.provider.nudge(handle, "rejected: see gc-7 $(touch x); C-c")
    assert proc.provider.nudge(handle, "second")
    assert read(inbox) == "rejected: see gc-7 $(touch x); C-c\nsecond\n"
    with pytest.raises(ProviderError):
        proc.provider.nudge(handle, "two\nlines")
    proc.provider.stop(handle, grace=1)
    assert not proc.provider.nudge(handle, "too late")
    assert "too late" not in read(inbox)


def test_process_nudge_signal_wakes_a_child_that_asked_for_it(proc, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    ready = tmp_path / "ready"
    code = (
        "import os, pathlib, signal, time\n"
        "def on_usr1(*_):\n"
        "    text = pathlib.Path(os.environ['GC_POLECAT_INBOX']).read_text()\n"
        f"    pathlib.Path({str(out)!r}).write_text(text)\n"
        "signal.signal(signal.SIGUSR1, on_usr1)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "while True: time.sleep(0.05)\n"
    )
    handle = proc(py(code), GC_POLECAT_NUDGE_SIGNAL="1")
    assert handle["nudge_signal"] == "1"
    wait_for(ready.exists)
    assert proc.provider.nudge(handle, "wake up")
    wait_for(lambda: read(out) == "wake up\n")
    assert proc.provider.is_alive(handle)


@pytest.mark.parametrize("provider", [ProcessProvider(), TmuxProvider()], ids=["process", "tmux"])
def test_a_malformed_handle_is_a_provider_error(provider: SessionProvider) -> None:
    with pytest.raises(ProviderError, match="handle"):
        provider.is_alive({"provider": provider.name, "pid": "x", "pane_pid": "x"})


@pytest.mark.parametrize(
    ("name", "argv", "cwd"),
    [
        ("polecat-1", [], None),
        ("polecat-1", [""], None),
        ("bad:name", ["sleep", "1"], None),
        ("bad name", ["sleep", "1"], None),
        ("polecat-1", ["/no/such/program"], None),
        ("polecat-1", ["sleep", "1"], "missing-dir"),
    ],
)
def test_process_start_rejects_bad_input(
    tmp_path: Path, name: str, argv: list[str], cwd: str | None
) -> None:
    where = tmp_path / cwd if cwd else tmp_path
    with pytest.raises(ProviderError):
        ProcessProvider().start(name, argv, base_env(), where, tmp_path / "s.log")


# --- tmux provider --------------------------------------------------------------------------


def kill_server(socket: Path) -> None:
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)


@pytest.fixture
def tmux_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    socket = tmp_path / "t.sock"
    monkeypatch.setenv("GC_POLECAT_TMUX_SOCKET", str(socket))
    yield socket
    kill_server(socket)


@pytest.fixture
def tmux(tmp_path: Path, tmux_socket: Path, stopper) -> Callable[..., Handle]:
    """Start a `tmux` session (cwd tmp_path, log tmp_path/<name>.log) on the test's server."""
    provider = TmuxProvider()

    def start(argv: list[str], name: str = "polecat-1", **env: str) -> Handle:
        log = tmp_path / f"{name}.log"
        return stopper(provider, provider.start(name, argv, base_env(**env), tmp_path, log))

    start.provider = provider  # type: ignore[attr-defined]
    return start


READER = 'echo ready; while IFS= read -r l; do printf "got:%s\\n" "$l" >> out; done'


def tmux_cmd(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True)


@needs_tmux
def test_tmux_start_is_alive_and_output_reaches_the_log(
    tmux, tmux_socket: Path, tmp_path: Path
) -> None:
    handle = tmux(["sh", "-c", READER])
    assert tmux.provider.is_alive(handle)
    assert all(isinstance(v, str) for v in handle.values())
    assert handle["provider"] == "tmux"
    assert handle["socket"] == str(tmux_socket)
    assert handle["session"] == "polecat-1"
    assert handle["pane_id"].startswith("%")
    assert handle["pane_pid_start"] == process_start_time(int(handle["pane_pid"]))
    wait_for(lambda: "ready" in read(tmp_path / "polecat-1.log"))


@needs_tmux
def test_tmux_nudge_delivers_the_line_literally(tmux, tmp_path: Path) -> None:
    handle = tmux(["sh", "-c", READER])
    lines = [
        "fix it $(touch pwned); `touch pwned2` C-c 'q' \"d\" #{session_name} \\",
        "C-c",
        "Enter",
        "-t %0 ends with;",
        "ünïcödé",
    ]
    for line in lines:
        assert tmux.provider.nudge(handle, line)
    expected = "".join(f"got:{line}\n" for line in lines)
    wait_for(lambda: read(tmp_path / "out") == expected)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert tmux.provider.is_alive(handle)  # C-c was typed as text, never sent as a key


@needs_tmux
@pytest.mark.parametrize(
    "line", ["two\nlines", "carriage\rreturn", "esc\x1b[A", "tab\tbed", "\x03"]
)
def test_tmux_nudge_rejects_control_characters(tmux, line: str) -> None:
    handle = tmux(["sh", "-c", READER])
    with pytest.raises(ProviderError):
        tmux.provider.nudge(handle, line)


@needs_tmux
def test_tmux_killed_session_is_not_alive(tmux, tmux_socket: Path) -> None:
    handle = tmux(["sleep", "60"])
    assert tmux_cmd(tmux_socket, "kill-session", "-t", "=polecat-1").returncode == 0
    assert not tmux.provider.is_alive(handle)
    assert not tmux.provider.nudge(handle, "anyone there?")
    tmux.provider.stop(handle, grace=0.5)  # idempotent on a gone session


@needs_tmux
def test_tmux_new_session_with_the_same_name_is_not_the_old_one(tmux, tmux_socket: Path) -> None:
    keeper = tmux(["sleep", "60"], name="keeper")  # keeps the server (and pane ids) going
    old = tmux(["sleep", "60"])
    tmux_cmd(tmux_socket, "kill-session", "-t", "=polecat-1")
    new = tmux(["sleep", "60"])
    assert new["session"] == old["session"]
    assert not tmux.provider.is_alive(old)
    assert tmux.provider.is_alive(new)
    tmux.provider.stop(old, grace=0.5)  # the old handle must not reach the new session
    assert tmux.provider.is_alive(new) and tmux.provider.is_alive(keeper)


@needs_tmux
def test_tmux_pane_with_a_reused_pid_is_not_alive(tmux) -> None:
    handle = tmux(["sleep", "60"])
    reused = dict(handle, pane_pid_start=str(int(handle["pane_pid_start"]) + 1))
    assert not tmux.provider.is_alive(reused)
    tmux.provider.stop(reused, grace=0.5)
    assert tmux.provider.is_alive(handle)


@needs_tmux
def test_tmux_command_that_exits_at_once_is_just_not_alive(tmux) -> None:
    handle = tmux(["/no/such/program", "x"])
    wait_for(lambda: not tmux.provider.is_alive(handle))
    assert not tmux.provider.nudge(handle, "hello")
    tmux.provider.stop(handle, grace=0.2)


@needs_tmux
def test_tmux_environment_reaches_the_pane(tmux, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = f"import json, os, time; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"
    tmux(py(code + "; time.sleep(60)"), ODD="a b; $(x) #{session_name} ends;")
    wait_for(lambda: read(out))
    env = json.loads(read(out))
    assert {k: env[k] for k in SESSION_ENV} == SESSION_ENV
    assert env["ODD"] == "a b; $(x) #{session_name} ends;"


@needs_tmux
def test_tmux_argv_is_passed_literally_even_as_a_single_word(tmux, tmp_path: Path) -> None:
    odd_dir = tmp_path / "dir with $x; and #{pane_id}"
    odd_dir.mkdir()
    script = odd_dir / "agent;"
    script.write_text(f'#!/bin/sh\necho "$0|$*" > {tmp_path / "argv.txt"}\nexec sleep 60\n')
    script.chmod(0o755)
    tmux([str(script)], name="single")
    wait_for(lambda: read(tmp_path / "argv.txt"))
    assert read(tmp_path / "argv.txt") == f"{script}|\n"
    tmux([str(script), "x;", "$(touch pwned)"], name="many")
    wait_for(lambda: "|x;" in read(tmp_path / "argv.txt"))  # the path itself holds "$x;"
    assert read(tmp_path / "argv.txt") == f"{script}|x; $(touch pwned)\n"
    assert not (tmp_path / "pwned").exists()


@needs_tmux
def test_tmux_odd_cwd_and_log_path_are_taken_literally(tmp_path: Path, tmux_socket: Path) -> None:
    cwd = tmp_path / "w #{session_name} $(touch pwned)"
    cwd.mkdir()
    log = tmp_path / "l;og $(touch pwned) #{pane_id}" / "s.log"
    provider = TmuxProvider()
    handle = provider.start("odd", ["sh", "-c", "pwd; exec sleep 60"], base_env(), cwd, log)
    try:
        wait_for(lambda: str(cwd) in read(log))
        assert not list(tmp_path.rglob("pwned"))
    finally:
        provider.stop(handle, grace=0.5)


@needs_tmux
def test_tmux_stop_kills_the_session_and_its_process_group(
    tmux, tmux_socket: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f'trap "" HUP TERM; sleep 600 & echo $! > {pidfile}; wait'
    handle = tmux(["sh", "-c", script])
    wait_for(lambda: read(pidfile).strip())
    grandchild = int(read(pidfile))
    grandchild_start = process_start_time(grandchild)
    assert grandchild_start is not None
    tmux.provider.stop(handle, grace=0.5)
    assert not tmux.provider.is_alive(handle)
    assert tmux_cmd(tmux_socket, "has-session", "-t", "=polecat-1").returncode != 0
    assert not running(int(handle["pane_pid"]), handle["pane_pid_start"])
    assert not running(grandchild, grandchild_start)
    tmux.provider.stop(handle, grace=0.5)  # idempotent


@needs_tmux
def test_tmux_default_socket_is_next_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GC_POLECAT_TMUX_SOCKET", raising=False)
    provider = TmuxProvider()
    logs = tmp_path / "logs"
    try:
        handle = provider.start("polecat-1", ["sleep", "60"], base_env(), tmp_path, logs / "a.log")
        assert handle["socket"] == str(logs / "tmux.sock")
        assert provider.is_alive(handle)
        provider.stop(handle, grace=0.5)
        assert not provider.is_alive(handle)
    finally:
        kill_server(logs / "tmux.sock")


@needs_tmux
@pytest.mark.parametrize("name", ["", "a:b", "a.b", "a b", "x" * 65, "é", "a;b", "$(x)"])
def test_tmux_rejects_invalid_session_names(tmp_path: Path, tmux_socket: Path, name: str) -> None:
    with pytest.raises(ProviderError, match="invalid session name"):
        TmuxProvider().start(name, ["sleep", "1"], base_env(), tmp_path, tmp_path / "s.log")
    assert not tmux_socket.exists()  # rejected before tmux ran


@needs_tmux
def test_tmux_refuses_a_taken_name_and_bad_input(tmux, tmp_path: Path) -> None:
    tmux(["sleep", "60"])
    with pytest.raises(ProviderError, match="duplicate session"):
        tmux(["sleep", "60"])
    with pytest.raises(ProviderError):
        tmux([], name="empty")
    with pytest.raises(ProviderError):
        TmuxProvider().start("x", ["sleep", "1"], base_env(), tmp_path / "nope", tmp_path / "l")


def test_tmux_missing_is_a_provider_error(tmp_path: Path) -> None:
    provider = TmuxProvider(socket=tmp_path / "t.sock", tmux="no-such-tmux-gc-polecat")
    with pytest.raises(ProviderError, match="not installed"):
        provider.start("polecat-1", ["sleep", "1"], base_env(), tmp_path, tmp_path / "s.log")


# --- the plugin hook ------------------------------------------------------------------------


def plugin_manager():
    pm = make_plugin_manager(load_entrypoints=False)
    if pm.get_plugin(PLUGIN) is None:
        import importlib

        pm.register(importlib.import_module(PLUGIN), name=PLUGIN)
    return pm


def test_get_providers_finds_both_builtins_through_the_hook() -> None:
    providers = get_providers(plugin_manager())
    assert set(providers) == {"process", "tmux"}
    assert isinstance(providers["process"], ProcessProvider)
    assert isinstance(providers["tmux"], TmuxProvider)


def test_get_providers_refuses_duplicate_names() -> None:
    class Impostor:
        name = "tmux"

    class Plugin:
        @hookimpl
        def gc_polecat_register_session_providers(self, register) -> None:
            register(Impostor())

    pm = plugin_manager()
    pm.register(Plugin())
    with pytest.raises(ProviderError, match="'tmux'"):
        get_providers(pm)
