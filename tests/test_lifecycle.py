"""The feature request's acceptance criteria, end to end: real git, real processes, real tmux.

The polecat is tests/agent.sh, a scripted stand-in for the LLM agent (which cannot run here):
it runs inside a real session, submits, blocks in `gc-polecat await`, fixes and resubmits.
The test plays the refinery with `gc-polecat verdict` and the operator with `controller run`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, assert_clean, configure, git, submitted_ids, wait_for

AGENT = ROOT / "tests" / "agent.sh"


class CliCity:
    """One beads repository plus the environment every gc-polecat process here shares."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.socket = tmp / "tmux.sock"
        self.env = {
            **os.environ,
            "GC_POLECAT_REPO": str(root),
            "GC_POLECAT_TMUX_SOCKET": str(self.socket),
        }
        for var in ("GC_SESSION_ID", "GC_CONTINUATION_EPOCH"):
            self.env.pop(var, None)

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "gc_polecat", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gc-polecat {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def bead(self, bead_id: str) -> dict[str, Any]:
        return self.json("bead", "show", bead_id)[0]

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()

    def start_agent(self, work: str, provider: str, name: str) -> tuple[str, Path]:
        evidence = self.tmp / f"{name}.evidence"
        wd = self.tmp / f"worktree-{name}"
        wd.mkdir()
        sid = self.run(
            "session",
            "start",
            "--pool",
            "polecats",
            "--name",
            name,
            "--provider",
            provider,
            "--work-dir",
            str(wd),
            "--",
            "sh",
            str(AGENT),
            work,
            str(evidence),
            sys.executable,
        ).stdout.strip()
        return sid, evidence

    def sling(self, work: str, session_id: str) -> None:
        self.run("bead", "update", work, "--status", "in_progress", "--assignee", session_id)

    def current_submission(self, work: str, attempt: int) -> str:
        """Wait until the work's attempt N is submitted; returns the submission ID."""

        def ready() -> str | None:
            meta = self.bead(work).get("metadata", {})
            if meta.get("gc.attempt") == str(attempt) and meta.get("gc.submission"):
                sub = self.bead(meta["gc.submission"])
                return sub["id"] if sub["status"] != "closed" else None
            return None

        return wait_for(ready, f"attempt {attempt} of {work}")


def evidence_lines(path: Path, n: int) -> list[list[str]]:
    return wait_for(
        lambda: (
            (
                lines := [line.split() for line in path.read_text().splitlines()]
                if path.exists()
                else []
            )
            and len(lines) >= n
            and lines
        ),
        f"{n} evidence lines in {path}",
    )


@pytest.fixture
def cli_city(repo: Path, tmp_path: Path) -> Iterator[CliCity]:
    c = CliCity(repo, tmp_path)
    yield c
    for bead in c.json("session", "list", "--all"):
        if bead["alive"]:
            c.run("session", "stop", bead["id"], check=False)
    subprocess.run(["tmux", "-S", str(c.socket), "kill-server"], capture_output=True)


# --- the minimum acceptance criteria ----------------------------------------------------------


def test_fix_needed_is_resumed_by_the_same_tmux_session_then_merged(cli_city: CliCity) -> None:
    """MAC 1 + 4: a failed merge is resumed by the same healthy session; the merge cleans up."""
    work = cli_city.run("bead", "create", "Fix the login test").stdout.strip()
    sid, evidence = cli_city.start_agent(work, "tmux", "furiosa")
    handle = cli_city.json("session", "show", sid)["handle"]
    cli_city.sling(work, sid)

    first = cli_city.current_submission(work, 1)
    log = cli_city.tmp / "pytest.log"
    log.write_text("".join(f"line {i}\n" for i in range(2000)) + "FAILED test_login\n")
    cli_city.run(
        "verdict",
        first,
        "--fix-needed",
        "--type",
        "tests",
        "--reason",
        "test_login fails",
        "--log",
        str(log),
    )
    second = cli_city.current_submission(work, 2)  # the same agent fixed and resubmitted
    cli_city.run("verdict", second, "--merged", "--merge-commit", "abcdef12")
    lines = evidence_lines(evidence, 2)

    (a1, code1, pid1, sid1, ep1, wd1, tty1), (a2, code2, pid2, sid2, ep2, wd2, tty2) = lines[:2]
    assert (a1, code1, a2, code2) == ("1", "10", "2", "0")
    assert pid1 == pid2 == handle["pane_pid"]  # the same process in the same pane
    assert sid1 == sid2 == sid and ep1 == ep2 == "1" and wd1 == wd2
    assert tty1 == tty2 != "-"
    session = cli_city.json("session", "show", sid)
    assert session["alive"] and session["handle"]["pane_id"] == handle["pane_id"]
    assert session["state"] == "active" and session["epoch"] == 1

    closed = cli_city.bead(work)
    assert closed["status"] == "closed" and closed["metadata"]["merged_sha"] == "abcdef12"
    verdict = cli_city.bead(cli_city.bead(first)["metadata"]["verdict"])
    assert verdict["status"] == "closed" and "FAILED test_login" in verdict["notes"]
    assert len(verdict["notes"].encode()) < 4096 + 200  # a bounded excerpt, not the whole log
    assert cli_city.json("wait", "list", "--state", "pending") == []
    assert cli_city.json("wait", "list", "--state", "ready") == []
    assert [w["metadata"]["state"] for w in cli_city.json("wait", "list")] == ["closed", "closed"]
    assert_clean(cli_city.root)


def test_killed_waiter_falls_back_and_a_fresh_session_finishes_from_metadata(
    cli_city: CliCity,
) -> None:
    """MAC 3: the original polecat is gone; the metadata-based pool path still works."""
    work = cli_city.run("bead", "create", "Flaky cache").stdout.strip()
    sid, _ = cli_city.start_agent(work, "process", "nux")
    cli_city.sling(work, sid)
    first = cli_city.current_submission(work, 1)
    pid = int(cli_city.json("session", "show", sid)["handle"]["pid"])
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not cli_city.json("session", "show", sid)["alive"], "the session to die")

    acted = cli_city.run("controller", "run", "--once").stdout
    assert "canceled (session-dead)" in acted
    fallen = cli_city.bead(work)
    meta = fallen["metadata"]
    assert fallen["status"] == "open" and "assignee" not in fallen
    assert meta["gc.routed_to"] == "polecats" and meta["gc.previous_session"] == sid
    assert meta["branch"] == f"polecat/test/{work}" and meta["gc.attempt"] == "1"
    assert meta["work_dir"].endswith("worktree-nux")
    assert cli_city.json("session", "show", sid)["state"] == "dead"

    cli_city.run(
        "verdict", first, "--fix-needed", "--type", "conflict", "--reason", "conflicts with main"
    )
    routed = cli_city.bead(work)
    assert (
        routed["status"] == "open"
        and routed["metadata"]["rejection_reason"] == "conflicts with main"
    )
    assert not any(d["depends_on_id"] == first for d in routed.get("dependencies", []))

    fresh, evidence = cli_city.start_agent(work, "process", "toast")
    cli_city.sling(work, fresh)  # a fresh polecat, resuming from the metadata above
    second = cli_city.current_submission(work, 2)
    assert cli_city.bead(second)["metadata"]["session"] == fresh
    assert cli_city.bead(second)["metadata"]["branch"] == meta["branch"]
    cli_city.run("verdict", second, "--merged")
    assert evidence_lines(evidence, 1)[0][:2] == ["1", "0"]
    assert cli_city.bead(work)["status"] == "closed"
    assert_clean(cli_city.root)


def test_waiting_session_is_never_reaped_by_the_controller(cli_city: CliCity) -> None:
    """MAC 2 (the controller half; pool sizing is issue 4): a live waiter keeps its work."""
    work = cli_city.run("bead", "create", "Long review").stdout.strip()
    sid, _ = cli_city.start_agent(work, "process", "slit")
    cli_city.sling(work, sid)
    cli_city.current_submission(work, 1)
    head = cli_city.head()
    for _ in range(3):
        assert cli_city.run("controller", "run", "--once").stdout == ""
    assert cli_city.head() == head
    assert cli_city.json("session", "show", sid)["state"] == "awaiting_verdict"
    assert cli_city.bead(work)["assignee"] == sid


# --- verdicts that arrive late, twice, conflicting, or for the wrong attempt --------------------


@pytest.fixture
def manual(cli_city: CliCity) -> tuple[CliCity, str, str, dict[str, str]]:
    """A live session (a sleeping process) and a work item assigned to it; no agent."""
    work = cli_city.run("bead", "create", "Manual").stdout.strip()
    sid = cli_city.run(
        "session", "start", "--pool", "polecats", "--provider", "process", "--", "sleep", "300"
    ).stdout.strip()
    cli_city.sling(work, sid)
    return cli_city, work, sid, {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}


def submit(
    cli_city: CliCity, work: str, env: dict[str, str], commit: str = "a" * 40, *extra: str
) -> tuple[str, str]:
    return submitted_ids(
        cli_city.run(
            "submit", work, "--branch", f"polecat/m/{work}", "--commit", commit, *extra, env=env
        ).stdout
    )


def test_duplicate_conflicting_and_old_attempt_verdicts(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    sub1, wait1 = submit(cli_city, work, env)
    cli_city.run("verdict", sub1, "--fix-needed", "--type", "build", "--reason", "does not compile")
    sub2, wait2 = submit(cli_city, work, env, "b" * 40)
    head = cli_city.head()

    again = cli_city.run("verdict", sub1, "--fix-needed", "--type", "build", "--reason", "again")
    assert "already recorded" in again.stdout and cli_city.head() == head  # no-op, no commit
    other = cli_city.run("verdict", sub1, "--merged", check=False)
    assert other.returncode == 2 and "already judged fix_needed" in other.stderr
    wrong = cli_city.run("verdict", sub2, "--merged", "--commit", "c" * 40, check=False)
    assert wrong.returncode == 2 and "not " + "c" * 40 in wrong.stderr
    unknown = cli_city.run("verdict", "gc-zzzzz", "--merged", check=False)
    assert unknown.returncode == 2 and "no submission gc-zzzzz" in unknown.stderr
    assert cli_city.head() == head
    assert cli_city.bead(wait2)["metadata"]["state"] == "pending"  # nobody was woken

    cli_city.run("verdict", sub2, "--merged", "--commit", "b" * 40)
    dup = cli_city.run("verdict", sub2, "--merged")
    assert dup.returncode == 0 and "already recorded" in dup.stdout
    assert (
        cli_city.run(
            "verdict", sub2, "--fix-needed", "--type", "tests", "--reason", "x", check=False
        ).returncode
        == 2
    )
    assert cli_city.bead(work)["status"] == "closed"
    assert_clean(cli_city.root)


def test_verdict_after_the_wait_expired_goes_to_the_pool(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    sub, wait = submit(cli_city, work, env, "a" * 40, "--ttl", "1s")
    time.sleep(1.2)
    assert "expired" in cli_city.run("controller", "run", "--once").stdout
    assert cli_city.bead(wait)["metadata"]["state"] == "expired"
    assert cli_city.json("session", "show", sid)["state"] == "active"  # released, not pinned
    routed = cli_city.run("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "late")
    assert routed.stdout.split()[-1] == "pool"
    work_bead = cli_city.bead(work)
    assert work_bead["status"] == "open" and work_bead["metadata"]["gc.routed_to"] == "polecats"
    assert cli_city.bead(wait)["metadata"]["state"] == "expired"  # a late verdict wakes no one
    late = cli_city.run("await", wait, "--timeout", "1", env=env, check=False)
    assert late.returncode == 20


def test_submit_refusals(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    other = cli_city.run("bead", "create", "not yours").stdout.strip()
    head = cli_city.head()
    stale = cli_city.run(
        "submit",
        work,
        "--branch",
        "b",
        "--commit",
        "a" * 40,
        env={**env, "GC_CONTINUATION_EPOCH": "2"},
        check=False,
    )
    assert stale.returncode == 2 and "stale epoch" in stale.stderr
    notmine = cli_city.run(
        "submit", other, "--branch", "b", "--commit", "a" * 40, env=env, check=False
    )
    assert notmine.returncode == 2 and "assigned to nobody" in notmine.stderr
    for bad in (["--branch", "../x y"], ["--commit", "not-a-sha"], ["--branch", "-rf"]):
        args = {"--branch": "ok", "--commit": "a" * 40}
        args[bad[0]] = bad[1]
        proc = cli_city.run(
            "submit", work, *[x for kv in args.items() for x in kv], env=env, check=False
        )
        assert proc.returncode == 2
    assert cli_city.head() == head
    submit(cli_city, work, env)
    twice = cli_city.run(
        "submit", work, "--branch", "b", "--commit", "a" * 40, env=env, check=False
    )
    assert twice.returncode == 2 and "already has an open submission" in twice.stderr


def test_stale_epoch_is_never_delivered(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    sub, wait = submit(cli_city, work, env)
    cli_city.run("verdict", sub, "--fix-needed", "--type", "review", "--reason", "naming")
    later = cli_city.run(
        "await",
        wait,
        "--timeout",
        "1",
        "--json",
        env={**env, "GC_CONTINUATION_EPOCH": "2"},
        check=False,
    )
    assert later.returncode == 20 and json.loads(later.stdout)["reason"] == "continuation-stale"
    assert cli_city.bead(wait)["metadata"]["state"] == "ready"  # not delivered to the later epoch
    same = cli_city.run("await", wait, "--json", env=env, check=False)
    assert same.returncode == 10
    payload = json.loads(same.stdout)
    assert payload["work"]["metadata"]["rejection_reason"] == "naming"
    assert cli_city.bead(wait)["metadata"]["state"] == "closed"


def test_attempt_cap_escalates(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    configure(cli_city.root, "max_attempts: 2\n")
    for attempt, commit in ((1, "a" * 40), (2, "b" * 40)):
        sub, wait = submit(cli_city, work, env, commit)
        routed = cli_city.run(
            "verdict", sub, "--fix-needed", "--type", "tests", "--reason", f"r{attempt}"
        )
    assert routed.stdout.split()[-1] == "escalated"
    escalated = cli_city.bead(work)
    assert escalated["status"] == "blocked" and "gc:escalated" in escalated["labels"]
    assert "assignee" not in escalated
    assert cli_city.run("await", wait, env=env, check=False).returncode == 10  # told, so it stops
    third = cli_city.run(
        "submit", work, "--branch", "b", "--commit", "c" * 40, env=env, check=False
    )
    assert third.returncode == 2


def test_idle_tmux_session_is_nudged(cli_city: CliCity) -> None:
    """No `await` is listening: the verdict types one line into the session's pane."""
    work = cli_city.run("bead", "create", "Nudge me").stdout.strip()
    heard = cli_city.tmp / "heard"
    sid = cli_city.run(
        "session",
        "start",
        "--pool",
        "polecats",
        "--provider",
        "tmux",
        "--",
        "sh",
        "-c",
        f'while read line; do echo "$line" >> {heard}; done',
    ).stdout.strip()
    cli_city.sling(work, sid)
    env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}
    sub, wait = submit(cli_city, work, env)
    cli_city.run("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "x")
    line = wait_for(lambda: heard.exists() and heard.read_text().strip(), "the nudge")
    assert f"gc-polecat await {wait}" in line and f"verdict on {work}: fix needed" in line
    assert cli_city.bead(wait)["metadata"]["woken_by"] == "nudge"


def test_wait_commands(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    sub, wait = submit(cli_city, work, env)
    assert [w["id"] for w in cli_city.json("wait", "list", "--session", sid)] == [wait]
    assert cli_city.json("wait", "inspect", wait)[0]["metadata"]["registered_epoch"] == "1"
    cli_city.run("wait", "cancel", wait)
    assert cli_city.bead(wait)["metadata"]["state"] == "canceled"
    assert cli_city.bead(work)["metadata"]["gc.routed_to"] == "polecats"
    retried = cli_city.run("wait", "ready", wait).stdout.split()[-1]
    assert cli_city.bead(retried)["metadata"]["delivery_attempt"] == "2"
    assert cli_city.run("wait", "cancel", "gc-zzzz", check=False).returncode == 2


# --- the controller, killed and restarted -----------------------------------------------------


def test_controller_killed_mid_flight_converges(cli_city: CliCity) -> None:
    rng = random.Random(7)
    works, sessions = [], []
    for i in range(4):
        work = cli_city.run("bead", "create", f"w{i}").stdout.strip()
        sid = cli_city.run(
            "session", "start", "--pool", "polecats", "--provider", "process", "--", "sleep", "300"
        ).stdout.strip()
        cli_city.sling(work, sid)
        env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}
        submit(cli_city, work, env, f"{i + 1:040d}", *(["--ttl", "1s"] if i == 3 else []))
        works.append(work)
        sessions.append(sid)
    for sid in sessions[:2]:  # two waiters die
        os.killpg(int(cli_city.json("session", "show", sid)["handle"]["pid"]), signal.SIGKILL)
    time.sleep(1.2)  # the fourth wait expires
    for _ in range(3):  # start, let it work a little, kill it mid-pass
        proc = subprocess.Popen(
            [sys.executable, "-m", "gc_polecat", "controller", "run", "--interval", "0.05"],
            env=cli_city.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2 + rng.random() * 0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cli_city.run("controller", "run", "--once")
    head = cli_city.head()
    assert cli_city.run("controller", "run", "--once").stdout == ""  # converged: nothing left to do
    assert cli_city.head() == head
    states = [
        cli_city.bead(cli_city.bead(w)["metadata"]["gc.wait"])["metadata"]["state"] for w in works
    ]
    assert states == ["canceled", "canceled", "pending", "expired"]
    for w in (works[0], works[1], works[3]):
        assert (
            "assignee" not in cli_city.bead(w)
            and cli_city.bead(w)["metadata"]["gc.routed_to"] == "polecats"
        )
    assert cli_city.bead(works[2])["assignee"] == sessions[2]
    assert_clean(cli_city.root)


def test_session_register_tracks_the_calling_process(cli_city: CliCity) -> None:
    """`session register` records the caller (its parent shell) and prints its identity."""
    script = (
        f"{sys.executable} -m gc_polecat session register --pool polecats --name reg; "
        "echo PID=$$; sleep 300"
    )
    proc = subprocess.Popen(
        ["sh", "-c", script],
        env=cli_city.env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip() for _ in range(6)]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines[:5])
    assert lines[5] == f"PID={proc.pid}"
    sid = exports["GC_SESSION_ID"]
    shown = cli_city.json("session", "show", sid)
    assert shown["alive"] and shown["handle"]["pid"] == str(proc.pid)
    assert exports["GC_CONTINUATION_EPOCH"] == "1"
    cli_city.run("session", "stop", sid)  # registered: recorded as stopped, never killed
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    bad = cli_city.run("session", "register", "--pool", "p", "--pid", "999999999", check=False)
    assert bad.returncode == 2


def test_config_errors_name_the_key(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    configure(cli_city.root, "max_attempt: 2\n")  # a typo
    proc = cli_city.run("submit", work, "--branch", "b", "--commit", "a" * 40, env=env, check=False)
    assert proc.returncode == 2 and "unknown setting 'max_attempt'" in proc.stderr


def test_a_refinery_that_never_answers_releases_the_work(manual) -> None:  # noqa: ANN001
    """Abandonment: the wait expires, then the unanswered submission is withdrawn."""
    cli_city, work, sid, env = manual
    configure(cli_city.root, "submission_ttl: 1h\n")
    sub, wait = submit(cli_city, work, env, "a" * 40, "--ttl", "1s")
    time.sleep(1.2)
    first = cli_city.run("controller", "run", "--once").stdout
    assert "expired" in first and "withdrawn" not in first
    blocked = cli_city.bead(work)
    assert any(d["depends_on_id"] == sub for d in blocked["dependencies"])  # still blocked
    configure(cli_city.root, "submission_ttl: 1s\n")
    assert "withdrawn" in cli_city.run("controller", "run", "--once").stdout
    freed = cli_city.bead(work)
    assert freed["status"] == "open" and "assignee" not in freed
    assert not any(d["depends_on_id"] == sub for d in freed.get("dependencies", []))
    late = cli_city.run("verdict", sub, "--merged", check=False)
    assert late.returncode == 2 and "withdrawn" in late.stderr
    head = cli_city.head()
    assert cli_city.run("controller", "run", "--once").stdout == "" and cli_city.head() == head


def test_a_hand_edited_attempt_count_is_bad_input(manual) -> None:  # noqa: ANN001
    cli_city, work, sid, env = manual
    path = next((cli_city.root / "beads").glob(f"*/*/{work}.yaml"))
    path.write_text(
        path.read_text().replace("metadata:\n", "metadata:\n  gc.attempt: two\n", 1)
        if "metadata:\n" in path.read_text()
        else path.read_text() + "metadata:\n  gc.attempt: two\n"
    )
    git(cli_city.root, "commit", "-qam", "a bad hand edit")
    proc = cli_city.run("submit", work, "--branch", "b", "--commit", "a" * 40, env=env, check=False)
    assert proc.returncode == 2 and "metadata.gc.attempt must be a whole number" in proc.stderr
