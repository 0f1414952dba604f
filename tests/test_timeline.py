"""`gc-polecat timeline WORK`: one work item's life read back from git history (issue 16).

The story is played with the real commands (register, submit, verdict, await, session stop,
controller) in a real repository; the timeline must tell it in order, with the facts each step
recorded, and must not mix in another work item's steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import Cli, run_cli, submitted_ids


def _session(cli: Cli, pid: int) -> str:
    out = cli("session", "register", "--pool", "cats", "--pid", str(pid), "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["id"]


def _submit(cli: Cli, work: str, sid: str, commit: str) -> tuple[str, str]:
    out = cli("submit", work, "--branch", f"polecat/x/{work}", "--commit", commit,
              "--session", sid)  # fmt: skip
    assert out.exit_code == 0, out.output
    return submitted_ids(out.output)


def test_the_timeline_tells_fix_merge_fallback_and_resume_in_order(cli: Cli, repo: Path) -> None:
    first_agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        a = _session(cli, first_agent.pid)
        b = _session(cli, os.getpid())
        work = cli("bead", "create", "Fix the login test").output.strip()
        other = cli("bead", "create", "Something else").output.strip()
        cli("bead", "update", work, "--status", "in_progress", "--assignee", a)
        cli("bead", "update", other, "--status", "in_progress", "--assignee", b)
        _submit(cli, other, b, "f" * 40)  # another work's story must stay out of this one

        sub1, wait1 = _submit(cli, work, a, "a" * 40)
        verdict = cli("verdict", sub1, "--fix-needed", "--type", "tests", "--reason", "red")
        assert verdict.exit_code == 0, verdict.output
        env = {"GC_POLECAT_REPO": str(repo), "GC_SESSION_ID": a, "GC_CONTINUATION_EPOCH": "1"}
        collected = run_cli("await", wait1, "--timeout", "30", env=env)
        assert collected.returncode == 10, collected.stderr
        sub2, _ = _submit(cli, work, a, "b" * 40)
        first_agent.kill()
        first_agent.wait()
        assert "session-dead" in cli("controller", "run", "--once").output  # it died waiting
        cli("bead", "update", work, "--status", "in_progress", "--assignee", b)
        assert cli("verdict", sub2, "--merged").exit_code == 0
    finally:
        first_agent.kill()
        first_agent.wait()

    shown = cli("timeline", work, "--json")
    assert shown.exit_code == 0, shown.output
    story = json.loads(shown.output)
    assert story["work"] == work
    events = story["events"]
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "created",
        "slung",
        "submitted",
        "verdict",
        "delivered",
        "submitted",
        "wait ended",
        "fell back",
        "resumed",
        "verdict",
        "closed",
    ], kinds
    by_kind = {}
    for e in events:
        by_kind.setdefault(e["kind"], []).append(e)
    first, second = by_kind["submitted"]
    assert first["details"]["attempt"] == "1" and first["details"]["commit"] == "a" * 40
    assert second["details"]["attempt"] == "2" and second["bead"] == sub2
    fix = by_kind["verdict"][0]
    assert fix["details"]["outcome"] == "fix_needed" and fix["details"]["failure_type"] == "tests"
    assert "'red'" in fix["text"] and fix["details"]["routed"] == "session"
    assert by_kind["delivered"][0]["bead"] == wait1
    assert by_kind["fell back"][0]["details"] == {"reason": "session-dead", "session": a}
    resumed = by_kind["resumed"][0]["details"]
    assert resumed == {"session": b, "previous_session": a}
    assert by_kind["verdict"][1]["details"]["outcome"] == "merged"
    assert all(e["bead"] in {work, sub1, sub2, wait1} or e["kind"] in ("wait ended", "verdict")
               for e in events)  # fmt: skip
    assert all(e["since_previous"] >= 0 for e in events)
    assert events[-1]["since_start"] == sum(e["since_previous"] for e in events[1:])

    text = cli("timeline", work).output.splitlines()
    assert text[0] == f"{work}: closed (merged) after {text[0].split(' after ')[1]}"
    assert text[0].endswith("2 attempt(s), 2 session(s)")
    assert len(text) == 1 + len(events)
    assert "resumed by session " + b in text[9]


def test_timeline_of_an_unknown_or_malformed_id_exits_2(cli: Cli) -> None:
    unknown = run_cli("--repo", str(cli.repo), "timeline", "gc-zzzz")
    assert unknown.returncode == 2 and "no history for gc-zzzz" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1
    bad = run_cli("--repo", str(cli.repo), "timeline", "../etc/passwd")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
