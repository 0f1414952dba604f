"""Typed views over lifecycle beads (issue 15, point 5): `Wait`, `Submission` and `Verdict`
read what `submit` and `verdict` really wrote, and refuse a bead of another kind (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import keys
from gc_polecat.lifecycle.submit import Submission
from gc_polecat.lifecycle.verdict import Verdict
from gc_polecat.lifecycle.wait import Wait

from .conftest import Cli, submitted_ids


def run(cli: Cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_views_read_a_submission_its_wait_and_its_verdict(
    cli: Cli, repo: Path, sleeper: int
) -> None:
    session = json.loads(run(cli, "session", "register", "--pool", "p", "--pid", str(sleeper),
                             "--json"))["id"]  # fmt: skip
    work = run(cli, "bead", "create", "Viewed work").strip()
    run(cli, "bead", "update", work, "--status", "in_progress", "--assignee", session)
    sha = "ab" * 20
    sub_id, wait_id = submitted_ids(run(
        cli, "submit", work, "--branch", "polecat/v", "--commit", sha, "--session", session
    ))  # fmt: skip
    store = Store(repo)

    sub = Submission.of(store.get(sub_id))
    assert (sub.id, sub.work, sub.session, sub.attempt) == (sub_id, work, session, 1)
    assert (sub.branch, sub.commit, sub.target, sub.wait, sub.pool) == (
        "polecat/v", sha, "main", wait_id, "p"
    )  # fmt: skip
    assert sub.open and sub.verdict == ""
    wait = Wait.of(store.get(wait_id))
    assert (wait.state, wait.session_id, wait.work, wait.submission) == (
        "pending", session, work, sub_id
    )  # fmt: skip
    assert wait.open and wait.registered_epoch == "1" and wait.expires_at.endswith("Z")
    assert store.get(work)["metadata"][keys.SUBMISSION] == sub_id

    run(cli, "verdict", sub_id, "--fix-needed", "--type", "tests", "--reason", "red")
    sub = Submission.of(store.get(sub_id))
    assert not sub.open and sub.verdict
    verdict = Verdict.of(store.get(sub.verdict))
    assert (verdict.outcome, verdict.failure_type, verdict.submission, verdict.work) == (
        "fix_needed", "tests", sub_id, work
    )  # fmt: skip
    assert (verdict.session, verdict.attempt, verdict.routed) == (session, 1, "session")
    assert Wait.of(store.get(wait_id)).state == "ready"
    assert Wait.of(store.get(wait_id)).verdict == verdict.id
    assert store.get(work)["metadata"][keys.FAILURE_TYPE] == "tests"


def test_a_view_refuses_a_bead_of_another_kind(cli: Cli, repo: Path) -> None:
    plain = Store(repo).get(run(cli, "bead", "create", "Just a task").strip())
    for view in (Wait, Submission, Verdict):
        with pytest.raises(BadInput, match="is not a"):
            view.of(plain)
