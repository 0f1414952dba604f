"""Bead metadata never steers a signal, a nudge or an inbox write (issue 12, point 6).

A session bead's `handle.*` keys are untrusted: anyone who can push to the beads repository
can edit them. Only the record the starting machine keeps outside the tracked files,
`.git/gc-polecat/sessions/<id>.json`, names the process, group, inbox, tmux socket and pane
that gc-polecat may signal, stop or type into. Every test here runs the real CLI in separate
processes against real sessions, forges the bead with `bead update --set-metadata`, and proves
with a bystander that traps the signals and writes down each one it receives that nothing
reached it, while the real session still gets its nudge or its stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.procs import process_start_time

from .conftest import code_origin, configure, submitted_ids, wait_for

SHA = "a" * 40
TRAPPED = ("SIGUSR1", "SIGTERM", "SIGHUP", "SIGINT")
# Writes each trapped signal's name to argv[1]; touches argv[2] when ready; exits on SIGTERM
# only if argv[3] is "die" (a real session), else lives on (a bystander keeps its evidence).
TRAP = """\
import pathlib, signal, sys, time
out, ready, die = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "die"
def on(sig, _frame):
    with open(out, "a") as f:
        f.write(signal.Signals(sig).name + "\\n")
    if die and sig == signal.SIGTERM:
        sys.exit(0)
for name in ("SIGUSR1", "SIGTERM", "SIGHUP", "SIGINT"):
    signal.signal(getattr(signal, name), on)
ready.touch()
while True:
    time.sleep(0.05)
"""
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


class Town:
    """A beads repository driven by the real `python -m gc_polecat` in separate processes."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo, self.tmp = repo, tmp
        self.state = repo / ".git" / "gc-polecat"
        self.socket = tmp / "tmux.sock"
        self.trap = tmp / "trap.py"
        self.trap.write_text(TRAP)
        self.env = {
            **os.environ,
            "GC_POLECAT_REPO": str(repo),
            "GC_POLECAT_TMUX_SOCKET": str(self.socket),
        }
        for var in ("GC_SESSION_ID", "GC_CONTINUATION_EPOCH", "GC_POLECAT_INBOX"):
            self.env.pop(var, None)
        self.bystanders: list[subprocess.Popen[bytes]] = []
        self.session_pids: list[int] = []

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "gc_polecat", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gc-polecat {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def bead(self, bead_id: str) -> dict[str, Any]:
        return json.loads(self.run("bead", "show", bead_id, "--json").stdout)[0]

    def show(self, session: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        return json.loads(self.run("session", "show", session, "--json", env=env).stdout)

    def bystander(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Another process, in its own session and group: what a forged handle points at."""
        out, ready = self.tmp / f"{name}.signals", self.tmp / f"{name}.ready"
        proc = subprocess.Popen(
            [sys.executable, str(self.trap), str(out), str(ready), "live"],
            start_new_session=True,
        )
        self.bystanders.append(proc)
        wait_for(ready.exists, f"bystander {name} ready", 20)
        return proc, out

    def session(self, name: str, env: dict[str, str] | None = None) -> tuple[str, Path, int]:
        """A real process session started by gc-polecat: (id, its signal file, its PID)."""
        out, ready = self.tmp / f"{name}.signals", self.tmp / f"{name}.ready"
        sid = self.run(
            "session", "start", "--pool", "p", "--provider", "process", "--",
            sys.executable, str(self.trap), str(out), str(ready), "die",
            env={"GC_POLECAT_NUDGE_SIGNAL": "1", **(env or {})},
        ).stdout.strip()  # fmt: skip
        wait_for(ready.exists, f"session {name} ready", 20)
        pid = int(self.bead(sid)["metadata"]["handle.pid"])
        self.session_pids.append(pid)
        return sid, out, pid

    def submitted(self, session: str) -> tuple[str, str, str]:
        """A work item assigned to `session` and submitted at epoch 1: (work, sub, wait)."""
        work = self.run("bead", "create", "work").stdout.strip()
        self.run("bead", "update", work, "--status", "in_progress", "--assignee", session)
        env = {"GC_SESSION_ID": session, "GC_CONTINUATION_EPOCH": "1"}
        sub, wait = submitted_ids(
            self.run("submit", work, "--branch", "polecat/x", "--commit", SHA, env=env).stdout
        )
        return work, sub, wait

    def forge(self, sid: str, /, **handle: object) -> None:
        """Edit the session bead's handle as anyone with push access could."""
        pairs = [x for k, v in handle.items() for x in ("--set-metadata", f"handle.{k}={v}")]
        self.run("bead", "update", sid, *pairs)

    def verdict(self, sub: str) -> dict[str, Any]:
        out = self.run("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "r",
                       "--json")  # fmt: skip
        return json.loads(out.stdout)

    def record(self, sid: str) -> dict[str, Any]:
        """The session's record in the state directory (what this machine may act on)."""
        return json.loads((self.state / "sessions" / f"{sid}.json").read_text())

    def signals_log(self) -> str:
        return read(self.state / "signals.log")

    def close(self) -> None:
        for proc in self.bystanders:
            proc.kill()
            proc.wait()
        for pid in self.session_pids:  # sessions a test left running (no leaked processes)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.socket.exists():
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)


@pytest.fixture
def town(repo: Path, tmp_path: Path) -> Iterator[Town]:
    t = Town(repo, tmp_path)
    try:
        yield t
    finally:
        t.close()


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def untouched(proc: subprocess.Popen[bytes], signals: Path) -> None:
    """The bystander received no signal at all and still runs. A signal is handled within
    milliseconds; the pause covers a delivery still on its way."""
    time.sleep(0.5)
    assert read(signals) == "", f"the bystander was signalled: {read(signals)!r}"
    assert proc.poll() is None


def test_a_forged_handle_steers_neither_the_nudge_signal_nor_the_inbox_write(
    town: Town, tmp_path: Path
) -> None:
    """The issue's reproduction: `handle.pid/pid_start/pgid` of another process,
    `handle.nudge_signal=1` and `handle.inbox=/any/path`, then the real `verdict`: the
    bystander gets no SIGUSR1, /any/path is not created, and the real session (through its
    record) gets the nudge line in its own inbox and its SIGUSR1."""
    victim, victim_signals = town.bystander("victim")
    sid, real_signals, real_pid = town.session("real")
    _, sub, wait = town.submitted(sid)
    forged_inbox = tmp_path / "any" / "path"
    forged_inbox.parent.mkdir()
    town.forge(sid, pid=victim.pid, pid_start=process_start_time(victim.pid), pgid=victim.pid,
               nudge_signal=1, inbox=forged_inbox)  # fmt: skip

    assert town.verdict(sub)["routed"] == "session"  # liveness: the record's process, alive
    untouched(victim, victim_signals)
    assert not forged_inbox.exists()
    assert town.bead(wait)["metadata"].get("woken_by") == "nudge"
    wait_for(lambda: "SIGUSR1" in read(real_signals), "the real session's SIGUSR1", 20)
    record = town.record(sid)
    inbox = Path(record["handle"]["inbox"])
    assert inbox.parent == town.state / "sessions"
    work = town.bead(wait)["metadata"]["work"]
    assert read(inbox) == (f"gc-polecat: refinery verdict on {work}: fix needed (wait {wait}); "
                           f"run: gc-polecat await {wait}\n")  # fmt: skip
    log = town.signals_log()
    assert f"{sid} nudge: bead handle differs from the record in inbox, " in log
    assert "pgid, pid, pid_start" in log
    assert running(real_pid)

    # the controller's re-delivery of the uncollected wake takes the same path
    configure(town.repo, "delivery_timeout: 1s\n")
    time.sleep(1.1)
    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d {wait} re-delivered\n", town.run("controller", "run", "--once").stdout
    )
    wait_for(lambda: read(real_signals) == "SIGUSR1\nSIGUSR1\n", "the second SIGUSR1", 20)
    assert len(read(inbox).splitlines()) == 2
    untouched(victim, victim_signals)
    assert not forged_inbox.exists()


def test_session_stop_with_a_forged_pgid_stops_the_real_session_only(town: Town) -> None:
    """The issue's second reproduction: only `handle.pgid` changed to another process group.
    `session stop` SIGTERMs the real session's group (from the record) and nothing else."""
    victim, victim_signals = town.bystander("victim")
    sid, real_signals, real_pid = town.session("real")
    town.forge(sid, pgid=victim.pid)
    stopped = town.run("session", "stop", sid)
    assert stopped.stdout == f"stopped {sid}\n" and stopped.stderr == ""
    untouched(victim, victim_signals)
    assert read(real_signals) == "SIGTERM\n"
    wait_for(lambda: not running(real_pid), "the real session gone", 10)
    assert f"{sid} stop: bead handle differs from the record in pgid: record used" in (
        town.signals_log()
    )
    assert town.bead(sid)["metadata"]["state"] == "stopped"


def test_the_controller_drains_only_the_recorded_process(town: Town, repo: Path) -> None:
    """`controller run --once` drains an idle session of a pool that needs none: through
    its record, whatever the bead's pid, start time and group say."""
    victim, victim_signals = town.bystander("victim")
    sid, real_signals, real_pid = town.session("real")
    town.forge(sid, pid=victim.pid, pid_start=process_start_time(victim.pid), pgid=victim.pid)
    # as if the pool had launched it for a polecat: a pool drains only such sessions
    town.run("bead", "update", sid, "--set-metadata", "polecat=gc-p0l")
    configure(repo, "pools:\n  p:\n    max_active: 1\n    min_active: 0\n")
    out = town.run("controller", "run", "--once").stdout
    assert re.fullmatch(rf"\d\d:\d\d:\d\d {sid} drained \(drain: .*\)\n", out), out
    untouched(victim, victim_signals)
    wait_for(lambda: not running(real_pid), "the drained session gone", 10)
    assert read(real_signals) == "SIGTERM\n"


@needs_tmux
def test_a_forged_tmux_socket_and_pane_receive_no_keys_and_no_kill(
    town: Town, tmp_path: Path
) -> None:
    """A tmux session of someone else's server (another socket): the bead is forged to name
    its socket, session, pane and pane process. The verdict's nudge is typed into the real
    pane only, and `session stop` kills the real session only."""
    other = tmp_path / "other.sock"
    victim_heard, real_heard = tmp_path / "victim.heard", tmp_path / "real.heard"
    reader = 'while IFS= read -r line; do printf "%s\\n" "$line" >> "$0"; done'
    made = subprocess.run(
        ["tmux", "-f", "/dev/null", "-S", str(other), "new-session", "-d", "-s", "victim",
         "-P", "-F", "#{pane_id} #{pane_pid}", "--", "sh", "-c", reader, str(victim_heard)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    try:
        pane_id, pane_pid = made.stdout.split()
        sid = town.run("session", "start", "--pool", "p", "--provider", "tmux", "--",
                       "sh", "-c", reader, str(real_heard)).stdout.strip()  # fmt: skip
        _, sub, wait = town.submitted(sid)
        town.forge(sid, socket=other, session="victim", pane_id=pane_id, pane_pid=pane_pid,
                   pane_pid_start=process_start_time(int(pane_pid)))  # fmt: skip
        assert town.verdict(sub)["routed"] == "session"
        town.run("session", "stop", sid)
        time.sleep(0.5)
        assert read(victim_heard) == ""
        alive = subprocess.run(["tmux", "-S", str(other), "has-session", "-t", "victim"])
        assert alive.returncode == 0 and running(int(pane_pid))
        assert wait in read(real_heard)  # the nudge, typed into the real pane before its stop
        gone = subprocess.run(["tmux", "-S", str(town.socket), "has-session"], capture_output=True)
        assert gone.returncode != 0  # the real session was killed (and its server with it)
        # both first panes are %0: the socket tells them apart
        log = town.signals_log()
        assert f"{sid} nudge: bead handle differs from the record in pane_pid, pane_pid_st" in log
        assert f"{sid} stop: bead handle differs from the record in pane_pid, pane_pid_st" in log
    finally:
        subprocess.run(["tmux", "-S", str(other), "kill-server"], capture_output=True)


def test_a_session_without_a_record_is_judged_alive_but_never_signalled(town: Town) -> None:
    """A session started before records existed (its record removed here): liveness still
    follows its bead's handle, but nothing is nudged, signalled or stopped; `session stop`
    says so on stderr, records the session stopped, and leaves the process to the operator."""
    sid, real_signals, real_pid = town.session("legacy")
    record = town.state / "sessions" / f"{sid}.json"
    record.unlink()
    inbox = Path(town.bead(sid)["metadata"]["handle.inbox"])
    assert town.show(sid)["alive"] is True
    _, sub, wait = town.submitted(sid)
    assert town.verdict(sub)["routed"] == "session"
    assert town.bead(wait)["metadata"].get("woken_by") is None  # no nudge
    stopped = town.run("session", "stop", sid)
    assert stopped.stderr == (f"warning: {sid}: process not signalled "
                              "(no record of starting it on this machine)\n")  # fmt: skip
    time.sleep(0.5)
    assert running(real_pid) and read(real_signals) == "" and read(inbox) == ""
    assert town.bead(sid)["metadata"]["state"] == "stopped"
    log = town.signals_log()
    assert f"{sid} nudge: no record of starting it on this machine" in log
    assert f"{sid} stop: no record of starting it on this machine" in log
    os.kill(real_pid, signal.SIGKILL)


@pytest.mark.parametrize("tamper", ["symlink", "group-writable", "another-session", "garbage"])
def test_a_record_that_cannot_be_trusted_counts_as_none(town: Town, tamper: str) -> None:
    """A record that is a symlink, writable by others, names another session or is not a
    record at all proves nothing: the session is not signalled."""
    sid, real_signals, real_pid = town.session("real")
    other, _, other_pid = town.session("other")
    record = town.state / "sessions" / f"{sid}.json"
    if tamper == "symlink":  # to a faithful copy kept elsewhere
        copy = town.tmp / "elsewhere.json"
        shutil.copy2(record, copy)
        record.unlink()
        record.symlink_to(copy)
    elif tamper == "group-writable":
        record.chmod(0o620)
    elif tamper == "another-session":
        body = json.loads((town.state / "sessions" / f"{other}.json").read_text())
        record.write_text(json.dumps(body))
    else:
        record.write_text("[" * 100)
    assert "not signalled" in town.run("session", "stop", sid).stderr
    time.sleep(0.5)
    assert running(real_pid) and running(other_pid) and read(real_signals) == ""
    os.kill(real_pid, signal.SIGKILL)


def test_inbox_writes_stay_in_the_repositorys_session_directory(town: Town, tmp_path: Path) -> None:
    """The inbox is written only under `.git/gc-polecat/sessions/`: a record naming another
    path is refused, and a symlink planted in the inbox's place is never followed."""
    outside = tmp_path / "outside"
    sid, real_signals, _ = town.session("real")
    record = town.state / "sessions" / f"{sid}.json"
    body = json.loads(record.read_text())
    inbox = Path(body["handle"]["inbox"])
    body["handle"]["inbox"] = str(outside)
    record.write_text(json.dumps(body))
    _, sub, wait = town.submitted(sid)
    town.verdict(sub)
    assert not outside.exists() and read(real_signals) == ""
    assert f"{sid} nudge: inbox outside: {outside}" in town.signals_log()

    sid2, real2, _ = town.session("real2")
    inbox2 = Path(town.bead(sid2)["metadata"]["handle.inbox"])
    inbox2.unlink()
    inbox2.symlink_to(outside)
    _, sub2, wait2 = town.submitted(sid2)
    town.verdict(sub2)
    assert not outside.exists() and read(real2) == ""
    assert town.bead(wait2)["metadata"].get("woken_by") is None
    assert inbox.exists()  # the first session's own inbox, never written either
    assert read(inbox) == ""


def test_the_record_decides_which_machine_judges_and_signals(town: Town) -> None:
    """A session started on machine b (GC_POLECAT_HOST): a bead forged to say it runs on
    machine a, or on machine z, changes nothing. Machine a never signals it; machine b judges
    it by its record and stops it (tests/test_hosts.py has the unforged case)."""
    b, a = {"GC_POLECAT_HOST": "machine-b"}, {"GC_POLECAT_HOST": "machine-a"}
    sid, real_signals, real_pid = town.session("real", env=b)
    assert town.record(sid)["host"] == "machine-b"
    town.forge(sid, host="machine-z")
    assert town.show(sid, env=b)["alive"] is True
    town.forge(sid, host="machine-a")
    assert town.show(sid, env=a)["alive"] is True  # presumed: b's to judge, whatever the bead
    assert town.run("session", "stop", sid, env=a).stderr == ""
    time.sleep(0.5)
    assert running(real_pid) and read(real_signals) == ""
    town.run("session", "stop", sid, env=b)
    wait_for(lambda: not running(real_pid), "stopped by its own machine", 10)
    assert read(real_signals) == "SIGTERM\n"

    gone, _, gone_pid = town.session("gone", env=b)
    town.forge(gone, host="machine-z")  # hiding a dead session from its own machine's reaper
    os.kill(gone_pid, signal.SIGKILL)
    wait_for(lambda: not running(gone_pid), "the process dead", 10)
    assert town.show(gone, env=b)["alive"] is False


def test_the_process_provider_never_writes_an_inbox_through_a_symlink(tmp_path: Path) -> None:
    """Below the record check: the provider itself opens the inbox with O_NOFOLLOW, both when
    it creates it at start and when it nudges, so a symlink planted in the inbox's place
    (between the check and the write) is never followed."""
    from gc_polecat.lifecycle.providers import ProcessProvider, ProviderError

    provider, outside = ProcessProvider(), tmp_path / "outside"
    log = tmp_path / "s" / "x.log"
    handle = provider.start("x", ["sleep", "60"], dict(os.environ), tmp_path, log)
    try:
        inbox = Path(handle["inbox"])
        assert inbox == Path(f"{log}.inbox")
        inbox.unlink()
        inbox.symlink_to(outside)
        with pytest.raises(ProviderError, match="inbox"):
            provider.nudge(handle, "hello")
        assert not outside.exists()
        with pytest.raises(ProviderError, match="inbox"):
            provider.start("y", ["sleep", "60"], dict(os.environ), tmp_path, log)
        assert not outside.exists()
    finally:
        provider.stop(handle, grace=1)


def test_an_inherited_inbox_variable_never_becomes_a_sessions_inbox(tmp_path: Path) -> None:
    """A launcher that is itself a session carries its own $GC_POLECAT_INBOX: the child's
    inbox is still its own, beside its log, and the launcher's inbox is left alone."""
    from gc_polecat.lifecycle.providers import ProcessProvider

    provider, theirs = ProcessProvider(), tmp_path / "launcher.inbox"
    theirs.write_text("unread\n")
    env = {**os.environ, "GC_POLECAT_INBOX": str(theirs)}
    handle = provider.start("x", ["sleep", "60"], env, tmp_path, tmp_path / "x.log")
    try:
        assert handle["inbox"] == f"{tmp_path / 'x.log'}.inbox"
        assert provider.nudge(handle, "hello")
        assert theirs.read_text() == "unread\n"
    finally:
        provider.stop(handle, grace=1)


def test_a_registered_session_is_never_signalled_whatever_its_bead_says(town: Town) -> None:
    """A process that registered itself (`session register`) is only watched: a bead forged
    to say `handle.registered=0` and `handle.nudge_signal=1` gets it neither the verdict's
    SIGUSR1 nor `session stop`'s SIGTERM."""
    agent, agent_signals = town.bystander("agent")
    sid = json.loads(
        town.run("session", "register", "--pool", "p", "--pid", str(agent.pid), "--json").stdout
    )["id"]
    _, sub, wait = town.submitted(sid)
    town.forge(sid, registered=0, nudge_signal=1)
    assert town.verdict(sub)["routed"] == "session"  # alive: the record's PID and start time
    assert town.bead(wait)["metadata"].get("woken_by") is None
    assert town.run("session", "stop", sid).stderr == ""
    untouched(agent, agent_signals)
    handle = town.record(sid)["handle"]
    assert handle["registered"] == "1" and handle["pid"] == str(agent.pid)


def test_sling_nudges_an_idle_polecat_through_its_record_only(
    town: Town, repo: Path, tmp_path: Path
) -> None:
    """`sling` to a pool whose idle polecat has a live session rings and nudges that session
    (`sling._tell`): with the session bead forged to name a bystander, the nudge still reaches
    only the session the controller started."""
    origin, code = tmp_path / "origin.git", tmp_path / "code"
    code_origin(origin, code)
    out, ready = tmp_path / "polecat.signals", tmp_path / "polecat.ready"
    argv = json.dumps([sys.executable, str(town.trap), str(out), str(ready), "die"])
    configure(repo, f"pools:\n  cats:\n    max_active: 1\n    min_active: 1\n    repo: {code}\n"
                    f"    provider: process\n    command: {argv}\n")  # fmt: skip
    town.run("pool", "init", "cats", "--size", "1")
    town.run("controller", "run", "--once", env={"GC_POLECAT_NUDGE_SIGNAL": "1"})
    wait_for(ready.exists, "the polecat's session ready", 20)
    sessions = json.loads(town.run("session", "list", "--pool", "cats", "--json").stdout)
    assert len(sessions) == 1 and sessions[0]["alive"]
    sid = sessions[0]["id"]
    victim, victim_signals = town.bystander("victim")
    forged_inbox = tmp_path / "forged.inbox"
    town.forge(sid, pid=victim.pid, pid_start=process_start_time(victim.pid), pgid=victim.pid,
               inbox=forged_inbox)  # fmt: skip
    work = town.run("bead", "create", "w").stdout.strip()
    town.run("sling", work, "--pool", "cats")
    untouched(victim, victim_signals)
    assert not forged_inbox.exists()
    wait_for(lambda: read(out) == "SIGUSR1\n", "the polecat's SIGUSR1", 20)
    inbox = Path(town.record(sid)["handle"]["inbox"])
    assert f"gc-polecat: work {work} slung to you on " in read(inbox)
    town.run("session", "stop", sid)


def test_the_signals_log_stays_bounded_with_whole_lines(tmp_path: Path) -> None:
    """A controller re-delivering to a session without a record notes it on every pass: the
    log keeps its last half once it passes 256 KiB, cut at a line boundary, mode 0600."""
    from gc_polecat.lifecycle.session import note_withheld

    for i in range(4000):
        note_withheld(tmp_path, "gc-abc", "nudge", f"{i:05d} " + "x" * 100)
    log = tmp_path / "signals.log"
    assert log.stat().st_size <= 256 * 1024 and log.stat().st_mode & 0o777 == 0o600
    lines = log.read_text().splitlines()
    assert all(line.split()[1:3] == ["gc-abc", "nudge:"] and line.endswith("x" * 100)
               for line in lines)  # fmt: skip
    assert lines[-1].split()[3] == "03999"
