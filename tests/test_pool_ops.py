"""Sling, pool init, reconcile and cleanup: their refusals and failure paths, on real git
worktrees and real processes. Sessions run `sleep` (no agent acts): the test submits on a
session's behalf with the same call the `submit` command makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.store import Store
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import sandbox
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle.cleanup import CLEANUP_LABEL
from gc_polecat.lifecycle.providers import get_providers
from gc_polecat.lifecycle.submit import submit
from gc_polecat.lifecycle.verdict import record_verdict
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.pool.reconcile import reconcile
from gc_polecat.pool.sling import sling
from gc_polecat.pool.status import init_pool

from .conftest import Cli, assert_clean, code_origin, configure, git, wait_for


class Pool:
    """A beads repository with pool `cats` over a real code clone and its bare origin."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.beads, self.tmp = repo, tmp
        self.origin, self.code = tmp / "origin.git", tmp / "code"
        code_origin(self.origin, self.code)
        self.pm = make_plugin_manager(load_entrypoints=False)
        self.store = Store(repo, pm=self.pm)
        self.providers = get_providers(self.pm)
        self.cli = Cli(repo)

    def configure(self, **settings: Any) -> None:
        body = "".join(f"    {k}: {v}\n" for k, v in settings.items())
        configure(
            self.beads,
            f"pools:\n  cats:\n{body}    repo: {self.code}\n    provider: process\n"
            "    command: [sleep, '300']\n",
        )

    def work(self, title: str = "work") -> str:
        with self.store.transaction() as tx:
            return tx.create({"title": title})["id"]

    def head(self) -> str:
        return git(self.beads, "rev-parse", "HEAD").strip()

    def polecat(self, polecat_id: str) -> polecats.Polecat:
        found = polecats.get(self.store, polecat_id)
        assert found is not None
        return found

    def submit(self, work: str, *, push: bool = True) -> tuple[str, str]:
        """What the polecat does: commit in its sandbox, push, submit. (submission, wait)"""
        bead = self.store.get(work)
        tree = Path(bead["metadata"]["work_dir"])
        with open(tree / f"{work}.txt", "a") as f:
            f.write(f"{work} attempt\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-qm", work)
        if push:
            git(tree, "push", "-q", "origin", bead["metadata"]["branch"])
        commit = git(tree, "rev-parse", "HEAD").strip()
        with self.store.transaction() as tx:
            done = submit(
                tx,
                work,
                session_id=bead["assignee"],
                epoch=None,
                branch=bead["metadata"]["branch"],
                commit=commit,
                target="main",
                ttl=3600,
                worktree=str(tree),
            )
        return done.submission["id"], done.wait["id"]

    def verdict(self, sub: str, outcome: str) -> str:
        with self.store.transaction() as tx:
            return record_verdict(
                tx,
                sub,
                outcome,
                providers=self.providers,
                failure_type="tests" if outcome == "fix_needed" else None,
                reason="failed" if outcome == "fix_needed" else "",
            ).routed

    def finalizers(self) -> list[dict[str, Any]]:
        from gc_polecat.beads.catalog import Query

        self.store.catalog.refresh()
        return self.store.catalog.list(Query(labels=(CLEANUP_LABEL,), include_closed=False))

    def stop_all(self) -> None:
        from gc_polecat.beads.catalog import Query

        self.store.catalog.refresh()
        for bead in self.store.catalog.list(Query(labels=(sessions.SESSION_LABEL,))):
            s = sessions.Session.of(bead)
            if sessions.is_alive(s, self.providers):
                self.providers[s.provider].stop(s.handle, grace=0.2)


@pytest.fixture
def pool(repo: Path, tmp_path: Path):  # noqa: ANN201 - a generator fixture
    p = Pool(repo, tmp_path)
    p.configure(max_active=3)
    yield p
    p.stop_all()


# --- pool init ----------------------------------------------------------------------------------


def test_pool_init_makes_idle_polecats_with_worktrees_and_is_idempotent(pool: Pool) -> None:
    result = pool.cli("pool", "init", "cats", "--size", "2", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert len(made) == 2
    for p in made:
        st = sandbox.state(Path(p["sandbox"]), p["name"], "main")
        assert st.exists and st.clean and st.on_base
        assert pool.polecat(p["id"]).state == "idle" and not pool.polecat(p["id"]).ephemeral
    head = pool.head()
    again = pool.cli("pool", "init", "cats", "--size", "2", "--json")
    assert again.exit_code == 0 and pool.head() == head  # nothing new, no commit
    assert sorted(sandbox.worktrees(pool.code)) == sorted(Path(p["sandbox"]) for p in made)
    assert_clean(pool.beads)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("pool", "init", "cats", "--size", "4"), "--size must be 1..3"),
        (("pool", "init", "cats", "--size", "0"), "--size"),
        (("pool", "init", "dogs", "--size", "1"), "unknown pool 'dogs'"),
        (("sling", "gc-zzz", "--pool", "cats"), "no bead gc-zzz"),
        (("sling", "../etc/passwd", "--pool", "cats"), "invalid"),
        (("pool", "reconcile", "dogs"), "unknown pool 'dogs'"),
        (("pool", "status", "dogs"), "no pool 'dogs'"),
        (("cleanup", "gc-zzz"), "gc-zzz"),
        (("cleanup",), "GC_SESSION_ID"),
    ],
)
def test_bad_pool_commands_exit_2_and_write_nothing(
    pool: Pool, args: tuple[str, ...], needle: str
) -> None:
    head = pool.head()
    result = pool.cli(*args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert pool.head() == head and sandbox.worktrees(pool.code) == []


def test_sling_refuses_what_is_not_slingable(pool: Pool) -> None:
    init_pool(pool.store, "cats", 1)
    closed, blocker, blocked = pool.work("done"), pool.work("blocker"), pool.work("blocked")
    with pool.store.transaction() as tx:
        tx.close(closed, "done")
        tx.add_dependency(blocked, blocker, "blocks")
        gate = tx.create({"title": "a gate", "issue_type": "gate"})["id"]
    head = pool.head()
    for work, needle in ((closed, "is closed"), (blocked, f"blocked by {blocker}"), (gate, "gate")):
        result = pool.cli("sling", work, "--pool", "cats")
        assert result.exit_code == 2 and needle in result.stderr, result.stderr
    assert pool.head() == head
    taken = pool.work("taken")
    assert sling(pool.store, pool.providers, taken, "cats").session
    result = pool.cli("sling", taken, "--pool", "cats")
    assert result.exit_code == 2 and "already assigned to live session" in result.stderr


# --- sling ----------------------------------------------------------------------------------------


def test_sling_never_picks_a_busy_polecat_allocates_under_the_max_then_queues(pool: Pool) -> None:
    (furiosa,) = init_pool(pool.store, "cats", 1)
    first = pool.work("first")
    before = pool.head()
    done = sling(pool.store, pool.providers, first, "cats")
    assert done.polecat == furiosa.id and done.started and not done.allocated
    commits = git(pool.beads, "rev-list", f"{before}..HEAD").split()
    assert len(commits) == 1  # the assignment is one commit
    work = pool.store.get(first)
    assert work["assignee"] == done.session and work["status"] == "in_progress"
    assert work["metadata"]["branch"].startswith(f"polecat/{furiosa.name}/{first}@")
    pool.submit(first)  # furiosa now awaits a verdict
    assert pool.polecat(furiosa.id).state == "awaiting_verdict"

    second, third, fourth = pool.work("2"), pool.work("3"), pool.work("4")
    two = sling(pool.store, pool.providers, second, "cats")
    three = sling(pool.store, pool.providers, third, "cats")
    assert furiosa.id not in (two.polecat, three.polecat)  # waiting and working are skipped
    assert two.allocated and three.allocated and two.polecat != three.polecat
    assert pool.polecat(two.polecat).ephemeral
    before = pool.head()
    four = sling(pool.store, pool.providers, fourth, "cats")  # 3 polecats = max_active
    assert four.queued
    assert pool.store.get(fourth)["metadata"]["gc.routed_to"] == "cats"
    assert len(git(pool.beads, "rev-list", f"{before}..HEAD").split()) == 1
    again = pool.head()
    assert sling(pool.store, pool.providers, fourth, "cats").queued
    assert pool.head() == again  # queueing twice changes nothing


def test_fix_needed_keeps_the_polecat_and_merge_cleans_it_to_idle(pool: Pool) -> None:
    (furiosa,) = init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    sub, _ = pool.submit(w)
    assert pool.verdict(sub, "fix_needed") == "session"
    p = pool.polecat(furiosa.id)
    assert p.state == "working" and p.count("fix_cycles") == 1 and p.count("attempts") == 1
    sub2, _ = pool.submit(w)
    assert pool.verdict(sub2, "merged") == "closed"
    p = pool.polecat(furiosa.id)
    assert p.state == "done" and p.count("completed") == 1
    (fin,) = pool.finalizers()
    assert fin["metadata"]["reason"] == "merged" and fin["metadata"]["polecat"] == furiosa.id
    result = pool.cli("cleanup", fin["id"])
    assert result.exit_code == 0 and "verified" in result.output
    p = pool.polecat(furiosa.id)
    assert (p.state, p.work, p.branch) == ("idle", "", "")
    assert f"{w} merged" in p.bead["notes"]
    st = sandbox.state(Path(done.sandbox), furiosa.name, "main")
    assert st.clean and st.on_base and st.branches == ()
    remote = git(pool.origin, "for-each-ref", "--format=%(refname)", "refs/heads/polecat")
    assert remote == ""  # the merged work's branch is gone from origin too
    assert pool.finalizers() == []


# --- cleanup failure paths ----------------------------------------------------------------------


def test_cleanup_refuses_a_dirty_sandbox_and_the_controller_retries(pool: Pool) -> None:
    (furiosa,) = init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    sub, _ = pool.submit(w)
    pool.verdict(sub, "merged")
    (Path(done.sandbox) / "scratch.txt").write_text("uncommitted")
    result = pool.cli("cleanup", "--all")
    assert result.exit_code == 1 and "uncommitted changes" in result.stderr
    (fin,) = pool.finalizers()
    assert "uncommitted changes" in fin["metadata"]["last_error"]
    assert (Path(done.sandbox) / "scratch.txt").exists()  # nothing dirty is ever reset
    status = json.loads(pool.cli("pool", "status", "cats", "--json").output)[0]
    assert status["polecats"][furiosa.id]["health"] == "zombie"
    head = pool.head()
    assert pool.cli("cleanup", "--all").exit_code == 1 and pool.head() == head  # same error
    (Path(done.sandbox) / "scratch.txt").unlink()
    actions = reconcile(pool.store, pool.providers)
    assert [(a.kind, out) for a, out in actions] == [("cleanup", "verified")]
    assert pool.finalizers() == [] and pool.polecat(furiosa.id).state == "idle"


def test_released_work_with_unpushed_commits_is_pushed_not_lost(pool: Pool) -> None:
    (furiosa,) = init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    sub, wait = pool.submit(w, push=False)  # the polecat never pushed
    tip = git(Path(done.sandbox), "rev-parse", "HEAD").strip()
    result = pool.cli("wait", "cancel", wait, "--reason", "operator")
    assert result.exit_code == 0
    assert pool.polecat(furiosa.id).state == "done"
    assert pool.store.get(w)["metadata"]["gc.routed_to"] == "cats"
    actions = reconcile(pool.store, pool.providers)
    assert ("cleanup", "verified") in [(a.kind, out) for a, out in actions]
    pushed = git(pool.origin, "rev-parse", done.branch).strip()
    assert pushed == tip  # kept on origin for whoever resumes it
    assert not sandbox.has_branch(Path(done.sandbox), done.branch)
    assert pool.polecat(furiosa.id).state == "idle"
    # the verdict arrives later: to the pool, then slung back to the identity that knew it
    assert pool.verdict(sub, "fix_needed") == "pool"
    again = sling(pool.store, pool.providers, w, "cats")
    assert again.polecat == furiosa.id and again.branch != done.branch
    git(Path(again.sandbox), "merge-base", "--is-ancestor", tip, "HEAD")  # resumed from origin


def test_a_submission_past_max_waiting_releases_the_oldest_waiter_in_its_own_commit(
    pool: Pool,
) -> None:
    """max_waiting 1: the second polecat's submit releases the first waiter in the same commit
    (no commit ever holds two waiters); the first's blocked `await`, a real process, exits 20;
    its work is in the pool with its resume fields and its submission stays open."""
    pool.configure(max_active=3, max_waiting=1)
    init_pool(pool.store, "cats", 2)
    first, second = pool.work("first"), pool.work("second")
    sling(pool.store, pool.providers, first, "cats")
    sling(pool.store, pool.providers, second, "cats")
    sub1, wait1 = pool.submit(first)
    session1 = pool.store.get(first)["assignee"]
    waiter = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "--repo", str(pool.beads), "await", wait1],
        env={**os.environ, "GC_SESSION_ID": session1},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    before = pool.head()
    sub2, wait2 = pool.submit(second)
    assert git(pool.beads, "rev-list", "--count", f"{before}..HEAD").strip() == "1"
    released = pool.store.get(wait1)["metadata"]
    assert (released["state"], released["last_error"]) == ("canceled", "released-capacity")
    work = pool.store.get(first)
    assert not work.get("assignee") and work["metadata"]["gc.routed_to"] == "cats"
    assert work["metadata"]["gc.fallback_reason"] == "released-capacity"
    assert work["metadata"]["branch"] and work["metadata"]["gc.previous_session"] == session1
    assert pool.store.get(sub1)["status"] != "closed"  # the refinery still judges it
    assert pool.store.get(wait2)["metadata"]["state"] == "pending"
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 20, (out, err)
    assert "release" not in [a.kind for a, _ in reconcile(pool.store, pool.providers)]
    pool.stop_all()


# --- reconcile --------------------------------------------------------------------------------


def test_stalled_polecat_is_restarted_on_its_sandbox_then_falls_back(pool: Pool) -> None:
    (furiosa,) = init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    for restart in range(1, 4):
        session = sessions.get(pool.store, pool.store.get(w)["assignee"])
        os.killpg(int(session.handle["pgid"]), signal.SIGKILL)
        wait_for(lambda s=session: not sessions.is_alive(s, pool.providers), "the kill")
        status = json.loads(pool.cli("pool", "status", "--json").output)[0]
        assert status["polecats"][furiosa.id]["health"] == "stalled"
        (action, outcome) = reconcile(pool.store, pool.providers)[0]
        assert action.kind == "restart" and outcome.startswith("restarted as")
        work = pool.store.get(w)
        new = sessions.get(pool.store, work["assignee"])
        assert new.id != session.id and new.work_dir == done.sandbox
        assert work["metadata"]["gc.restarts"] == str(restart)
        assert sessions.get(pool.store, session.id).state == "dead"
        assert pool.polecat(furiosa.id).branch == done.branch  # same sandbox, same branch
    session = sessions.get(pool.store, pool.store.get(w)["assignee"])
    os.killpg(int(session.handle["pgid"]), signal.SIGKILL)
    wait_for(lambda: not sessions.is_alive(session, pool.providers), "the kill")
    kinds = [(a.kind, out) for a, out in reconcile(pool.store, pool.providers)]
    assert ("restart", "fell back (restart-limit)") in kinds
    work = pool.store.get(w)
    assert "assignee" not in work and work["metadata"]["gc.routed_to"] == "cats"


def test_reconcile_dry_run_prints_the_plan_and_writes_nothing(pool: Pool) -> None:
    pool.configure(max_active=3, min_active=2)
    init_pool(pool.store, "cats", 2)
    queued = pool.work("queued")
    with pool.store.transaction() as tx:
        tx.update(queued, {"metadata": {"gc.routed_to": "cats"}})
    head = pool.head()
    result = pool.cli("pool", "reconcile", "--dry-run", "--json")
    assert result.exit_code == 0
    plan = json.loads(result.output)
    assert sorted(a["kind"] for a in plan) == ["sling", "start", "start"]
    assert all(a["outcome"] is None for a in plan)
    assert pool.head() == head
    text = pool.cli("pool", "reconcile", "--dry-run").output
    assert "sling" in text and queued in text
    applied = json.loads(pool.cli("pool", "reconcile", "--json").output)
    assert [a["kind"] for a in applied][:1] == ["sling"] or "sling" in [a["kind"] for a in applied]
    assert pool.store.get(queued)["status"] == "in_progress"
    assert json.loads(pool.cli("pool", "reconcile", "--json").output) == []  # converged


def test_an_orphan_worktree_is_removed_only_when_safe(pool: Pool) -> None:
    init_pool(pool.store, "cats", 1)
    root = Path(polecats.of_pool(pool.store, "cats")[0].sandbox).parent
    ghost = root / "ghost"  # as left by a sling killed between worktree add and its commit
    sandbox.create(pool.code, ghost, "main")
    (ghost / "wip.txt").write_text("someone's work")
    kinds = [(a.kind, out) for a, out in reconcile(pool.store, pool.providers)]
    assert kinds and kinds[0][0] == "orphan" and kinds[0][1].startswith("failed")
    assert ghost.exists()  # dirty: never removed
    (ghost / "wip.txt").unlink()
    kinds = [(a.kind, out) for a, out in reconcile(pool.store, pool.providers)]
    assert kinds == [("orphan", "removed")] and not ghost.exists()


def test_escalation_frees_the_polecat_and_keeps_its_branch_on_origin(pool: Pool) -> None:
    configure(
        pool.beads,
        f"max_attempts: 1\npools:\n  cats:\n    max_active: 2\n    repo: {pool.code}\n"
        "    provider: process\n    command: [sleep, '300']\n",
    )
    (furiosa,) = init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    sub, _ = pool.submit(w)
    assert pool.verdict(sub, "fix_needed") == "escalated"
    (fin,) = pool.finalizers()
    assert fin["metadata"]["reason"] == "escalated"
    assert [out for a, out in reconcile(pool.store, pool.providers)] == ["verified"]
    assert pool.polecat(furiosa.id).state == "idle"
    assert git(pool.origin, "rev-parse", done.branch).strip()  # a person can pick it up
    assert pool.store.get(w)["status"] == "blocked"


def test_next_reports_work_a_stopped_session_and_a_timeout(pool: Pool) -> None:
    init_pool(pool.store, "cats", 1)
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    got = pool.cli("next", "--session", done.session, "--timeout", "0", "--json")
    assert got.exit_code == 0 and json.loads(got.output)["work"]["id"] == w
    pool.submit(w)  # waiting on the refinery: no work to hand out
    assert pool.cli("next", "--session", done.session, "--timeout", "0.2").exit_code == 30
    assert pool.cli("session", "stop", done.session).exit_code == 0
    assert pool.cli("next", "--session", done.session, "--timeout", "5").exit_code == 20
    assert pool.store.get(w)["metadata"]["gc.fallback_reason"] == "session-closed"
    assert pool.finalizers()[0]["metadata"]["reason"] == "released"


def test_the_audit_sees_each_kind_of_leak(pool: Pool) -> None:
    """The audit the demo and the cycle tests rely on must fail on every leak it promises."""
    from gc_polecat.demo.audit import audit

    (furiosa,) = init_pool(pool.store, "cats", 1)
    assert audit(pool.store, pool.providers) == []
    w = pool.work()
    done = sling(pool.store, pool.providers, w, "cats")
    pool.submit(w)
    found = "\n".join(audit(pool.store, pool.providers))
    for leak in ("wait", "submission", "is awaiting_verdict", f"branch refs/heads/{done.branch}"):
        assert leak in found, (leak, found)
    session = sessions.get(pool.store, done.session)
    os.killpg(int(session.handle["pgid"]), signal.SIGKILL)
    wait_for(lambda: not sessions.is_alive(session, pool.providers), "the kill")
    assert f"session {done.session}" in "\n".join(audit(pool.store, pool.providers))
    sandbox.create(pool.code, pool.tmp / "stray", "main")
    assert "belongs to no polecat" in "\n".join(audit(pool.store, pool.providers))
