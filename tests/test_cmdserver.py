"""The command server (gc_polecat/cmdserver.py): a served write does what the cold one does.

Real processes throughout: the `gc-polecat` entry point as a subprocess, the server it starts,
the child the server forks. Each test has its own socket directory (GC_POLECAT_SERVER_DIR),
so its server is its own; the fixture stops it at the end. Whether a command was served is
read from the server's log (one line per served command: caller PID, child PID, status), never
from a stopwatch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gc_polecat import cmdserver

from .conftest import ROOT, git, wait_for


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    pid: int


class Served:
    """Runs the CLI with the server on, in a socket directory of its own."""

    def __init__(self, sockets: Path, repo: Path) -> None:
        self.sockets, self.repo = sockets, repo
        self.env = {**os.environ, "GC_POLECAT_SERVER_DIR": str(sockets)}
        self.env.pop("GC_POLECAT_SERVER")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gc_polecat", "--repo", str(self.repo), *args]

    def run(self, *args: str, stdin: str = "", **env: str) -> Ran:
        proc = subprocess.Popen(
            self.argv(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**self.env, **env}, cwd=ROOT,
        )  # fmt: skip
        out, err = proc.communicate(stdin, timeout=60)
        return Ran(proc.returncode, out, err, proc.pid)

    def socket(self) -> Path | None:
        found = list(self.sockets.glob("cmd-*.sock"))
        return found[0] if found else None

    def start(self) -> Path:
        """The first command starts the server (and runs cold); wait until it listens."""
        self.run("bead", "create", "warm-up")
        return wait_for(self.socket, "the command server's socket", 30)

    def callers(self) -> list[int]:
        """The caller PIDs of the served commands, from the servers' logs."""
        return [int(line.split()[1]) for line in _log_lines(self)]

    def stop(self) -> None:
        """End the server (its lock file names no PID: find it by its socket's argv)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"gc_polecat.cmdserver" in argv and any(
                str(self.sockets).encode() in a for a in argv
            ):
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGTERM)


@pytest.fixture
def served(repo: Path, short_tmp: Path) -> Iterator[Served]:
    s = Served(short_tmp / "sock", repo)
    yield s
    s.stop()


def test_only_write_commands_are_served() -> None:
    """The command words after the global options decide; --help, --version and anything
    not in SERVED run cold, as click answers them."""
    yes = [
        ["verdict", "gc-a1", "--merged"],
        ["--repo", "r", "submit"],
        ["--json", "bead", "create", "t"],
        ["--repo=r", "bead", "update", "gc-a1"],
        ["bead", "close", "gc-a"],
        ["import", "issues.jsonl"],
    ]
    no = [
        ["bead", "list"],
        ["bead", "show", "gc-a"],
        ["await", "gc-a"],
        ["--help"],
        ["--version"],
        ["bead", "--help", "create"],
        [],
        ["session", "start"],
        ["bead"],
    ]
    assert [cmdserver.served(a) for a in yes] == [True] * len(yes)
    assert [cmdserver.served(a) for a in no] == [False] * len(no)


def _moment(out: str) -> str:
    """Output with what depends on the moment it was written masked: times, and the IDs of the
    commits made then (the twin repositories write the same commands a second apart)."""
    out = re.sub(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\b", "TIME", out)
    return re.sub(r"\bcommit [0-9a-f]{12}\b", "commit C", out)


def test_a_served_write_says_and_does_what_the_cold_one_does(
    served: Served, tmp_path: Path
) -> None:
    """The same command lines, served in one repository and cold in a twin: the same stdout,
    stderr, exit status and resulting beads, errors included."""
    served.start()
    twin = tmp_path / "twin"
    git(tmp_path, "clone", "-q", str(served.repo), str(twin))
    jsonl = tmp_path / "issues.jsonl"
    jsonl.write_text(
        '{"id":"gc-i1","title":"imported","status":"open","priority":1,"issue_type":"bug",'
        '"created_at":"2025-12-23T00:14:08.420722-08:00","updated_at":"2025-12-23T08:14:08Z"}\n'
    )
    lines = [
        ("bead", "create", "--id", "gc-s1", "first", "-d", "described"),
        ("--json", "bead", "create", "--id", "gc-s2", "second", "-l", "a,b"),
        ("bead", "update", "gc-s1", "--status", "in_progress"),
        ("bead", "close", "gc-s2", "-r", "done"),
        ("bead", "create"),  # no title: exit 2, one line
        ("bead", "update", "gc-nope", "--status", "open"),  # no such bead
        ("bead", "create", "--no-such-option", "x"),  # click's usage error
        ("bead", "close", "../x"),  # a path trick
        ("import", str(jsonl)),
        ("import", str(jsonl)),  # again: nothing to do
        ("import", str(tmp_path / "missing.jsonl")),
    ]
    before = len(served.callers())
    for line in lines:
        hot = served.run(*line)
        cold = subprocess.run(
            [sys.executable, "-m", "gc_polecat", "--repo", str(twin), *line],
            capture_output=True, text=True, env={**served.env, "GC_POLECAT_SERVER": "0"},
            cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert (hot.returncode, _moment(hot.stdout), hot.stderr) == (
            cold.returncode, _moment(cold.stdout), cold.stderr), line  # fmt: skip
        assert hot.pid in served.callers(), f"{line} was not served"
    assert len(served.callers()) == before + len(lines)
    for bead in ("gc-s1", "gc-s2"):
        shown = [
            json.loads(served.run("--json", "bead", "show", bead, GC_POLECAT_SERVER="0").stdout)
            for served.repo in (served.repo, twin)
        ]
        for b in shown:  # the same but for the moments each was written at
            for key in [k for k in b[0] if k.endswith("_at")]:
                del b[0][key]
        assert shown[0] == shown[1]


def test_stdin_reaches_the_served_command(served: Served) -> None:
    served.start()
    proc = served.run("bead", "create", "from stdin", "--stdin", stdin="line one\nline two\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.pid in served.callers()
    shown = served.run("--json", "bead", "show", proc.stdout.strip(), GC_POLECAT_SERVER="0")
    assert json.loads(shown.stdout)[0]["description"] == "line one\nline two\n"


def _blocked(served: Served) -> subprocess.Popen[str]:
    """A served `bead create --stdin` blocked reading the stdin the test holds open."""
    proc = subprocess.Popen(
        served.argv("bead", "create", "blocked", "--stdin"), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=served.env, cwd=ROOT,
    )  # fmt: skip
    time.sleep(1.0)  # being early is harmless: the signal then ends it before it reads
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_caller_reaches_the_command(served: Served, signum: int) -> None:
    """The caller passes the signal on and ends as its command ended, exactly as the same
    command run cold ends: SIGTERM and SIGHUP kill both, SIGINT is the command's own
    "aborted" (exit 1). Nothing is written either way."""
    served.start()
    head = git(served.repo, "rev-parse", "HEAD")
    ended = []
    for server in ("1", "0"):
        served.env["GC_POLECAT_SERVER"] = server
        proc = _blocked(served)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        ended.append((proc.returncode, err))
    assert ended[0] == ended[1]
    assert ended[0][0] == (1 if signum == signal.SIGINT else -signum)
    assert "Traceback" not in ended[0][1]
    assert git(served.repo, "rev-parse", "HEAD") == head


def test_a_caller_killed_takes_its_command_with_it(served: Served) -> None:
    """SIGKILL cannot be passed on: the server sees the caller's end of the socket close and
    kills the command, as a killed cold process would have died. Nothing is written, even
    once the stdin it was reading is closed."""
    served.start()
    head = git(served.repo, "rev-parse", "HEAD")
    proc = _blocked(served)
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(lambda: any(line.endswith(" -9") for line in _log_lines(served)), "the kill", 30)
    assert git(served.repo, "rev-parse", "HEAD") == head


def _log_lines(served: Served) -> list[str]:
    """Every served command's line, from the logs of all the servers this test started."""
    return [
        line for log in sorted(served.sockets.glob("cmd-*.sock.log"))
        for line in log.read_text().splitlines()
    ]  # fmt: skip


@pytest.mark.parametrize("change", ["module", "install"])
def test_a_change_under_the_server_makes_it_step_aside(
    served: Served, tmp_path: Path, change: str
) -> None:
    """A module the server has loaded changed on disk (an upgrade, an edited plugin), or a
    directory on sys.path changed (a distribution installed or removed): the next command
    runs cold in its own process and the server exits; the one after starts a new server,
    which serves again."""
    extra = tmp_path / "extra"
    extra.mkdir()
    site = extra / "sitecustomize.py"  # imported at start-up by every interpreter, the server too
    site.write_text("VALUE = 1\n")
    served.env["PYTHONPATH"] = str(extra)
    sock = served.start()
    first = served.run("bead", "create", "served")
    assert first.returncode == 0 and first.pid in served.callers()
    time.sleep(0.05)
    if change == "module":
        site.write_text("VALUE = 2\n")  # the same directory entry: only the file changed
    else:
        (extra / "newly_installed.py").write_text("")
    count = len(served.callers())
    cold = served.run("bead", "create", "cold")
    assert cold.returncode == 0, cold.stderr
    assert len(served.callers()) == count and cold.pid not in served.callers()
    wait_for(lambda: not sock.exists(), "the stale server to exit", 30)
    served.run("bead", "create", "starts a new server")
    wait_for(served.socket, "a new server", 30)
    again = served.run("bead", "create", "served again")
    assert again.returncode == 0 and again.pid in served.callers()


def test_an_open_socket_directory_is_never_used(served: Served) -> None:
    """A socket directory another user could write into (mode 0777): no server is started
    or asked there, every command runs cold."""
    served.sockets.mkdir(mode=0o700)
    served.sockets.chmod(0o777)
    for _ in range(3):
        assert served.run("bead", "create", "cold").returncode == 0
    time.sleep(1.0)
    assert list(served.sockets.iterdir()) == []


def test_switched_off_nothing_is_started(served: Served) -> None:
    for _ in range(2):
        assert served.run("bead", "create", "cold", GC_POLECAT_SERVER="0").returncode == 0
    time.sleep(1.0)
    assert not served.sockets.exists() or list(served.sockets.iterdir()) == []


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        (b'{"accepted": true}\n{"pid": 1}\n{"code": 3}\n', 3),  # all in one read
        (b'{"stale": true}\n', None),  # nothing ran: the caller runs it
        (b"", None),  # closed unanswered (an idle server on its way out): nothing ran
        (b'{"accepted": true}\n', 1),  # gone after accepting: it may have run, never rerun
        (b'{"accepted": true}\n{"pid": 1}\n', 1),  # gone mid-command
        (b"garbage\n", None),
    ],
)
def test_the_client_never_runs_a_command_the_server_may_have_started(
    replies: bytes, expected: int | None
) -> None:
    """The client reads the server's replies however they arrive (a command that fails at
    once sends its end in the same read as its start) and runs a command itself only when
    the server did not accept it: once accepted, a lost server is exit 1, never a second run.
    The server's side of a real socket pair is played by the test."""
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(replies)
        theirs.shutdown(socket.SHUT_WR)
        assert cmdserver._converse(ours, ["bead", "create", "x"]) == expected


def test_a_command_the_caller_never_handed_over_never_runs(served: Served) -> None:
    """The server forks a command only after the caller's GO, sent once it has read
    "accepted": a caller that timed out or died before that runs the command itself (or not
    at all), so the server must not run it too. Found under load: a slow handshake made the
    caller give up and run `bead close ../x` itself while the server also ran it (the error
    printed twice). Played here with a real server and a caller that stops short of GO."""
    import socket

    sock_path = served.start()
    head = git(served.repo, "rev-parse", "HEAD")
    request = {
        "argv": ["--repo", str(served.repo), "bead", "create", "never handed over"],
        "cwd": str(ROOT),
        "env": served.env,
        "streams": [["utf-8", "strict", False, False]] * 3,
    }
    before = len(_log_lines(served))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, open(os.devnull, "w") as null:
        sock.connect(str(sock_path))
        fd = null.fileno()
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [fd, fd, fd])
        assert sock.makefile("rb").readline() == b'{"accepted": true}\n'
    time.sleep(1.0)  # time enough to fork and write, were it going to
    assert git(served.repo, "rev-parse", "HEAD") == head
    assert len(_log_lines(served)) == before
    again = served.run("bead", "create", "handed over")  # the server is still serving
    assert again.returncode == 0 and again.pid in served.callers()


def test_the_server_carries_no_sessions_identity_its_commands_carry_their_callers(
    served: Served,
) -> None:
    """A server started from inside a session must not look like one of its processes: the
    launcher-died sweep (`session._kill_by_identity`) kills the process group of whatever
    carries GC_SESSION_ID and GC_POLECAT_REPO. Each served command still gets its own
    caller's environment, GC_POLECAT_REPO included."""
    identity = {"GC_SESSION_ID": "gc-sess1", "GC_POLECAT_REPO": str(served.repo)}
    served.run("bead", "create", "starts the server", **identity)
    wait_for(served.socket, "the command server's socket", 30)
    servers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
                if b"gc_polecat.cmdserver" in argv and str(served.sockets).encode() in argv:
                    servers.append((entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
    assert len(servers) == 1
    assert not [v for v in servers[0] if v.startswith((b"GC_SESSION_", b"GC_POLECAT_REPO="))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "bead", "create", "by the caller's repository"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**served.env, **identity},
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert proc.pid in served.callers()
    shown = served.run("bead", "show", out.strip(), GC_POLECAT_SERVER="0")
    assert "by the caller's repository" in shown.stdout
