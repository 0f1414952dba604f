"""Persistent pools end to end: real git worktrees, real processes and tmux, real CLI agents.

The polecats are `tests/polecat_agent.sh`, a shell script standing in for the LLM agent (which
cannot run here); it drives the real `gc-polecat next/submit/await/cleanup` commands from
inside the sessions the pool starts. The test plays the refinery (verdicts) and the controller
(reconcile passes). Leaks are counted from git, the filesystem and the process table, not from
our own beads alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store
from gc_polecat.demo.audit import audit, session_leaks
from gc_polecat.lifecycle import cleanup, sandbox
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.controller import one_pass as controller_pass
from gc_polecat.lifecycle.providers import get_providers
from gc_polecat.lifecycle.submit import SUBMISSION_LABEL
from gc_polecat.lifecycle.verdict import record_verdict
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.pool.reconcile import reconcile
from gc_polecat.pool.sling import sling

from .conftest import ROOT, assert_clean, code_origin, configure, git, wait_for

AGENT = ROOT / "tests" / "polecat_agent.sh"


class PoolCity:
    """A bare origin, the code clone the sandboxes hang off, and the beads repository."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.beads = repo
        self.tmp = tmp
        self.origin = tmp / "origin.git"
        self.code = tmp / "code"
        self.evidence = tmp / "evidence"
        code_origin(self.origin, self.code)
        self.pm = make_plugin_manager(load_entrypoints=False)
        self.store = Store(repo, pm=self.pm)
        self.providers = get_providers(self.pm)

    def configure(self, provider: str = "process", **settings: Any) -> None:
        lines = [f"    {k}: {v}" for k, v in settings.items()]
        configure(
            self.beads,
            "pools:\n  cats:\n"
            + "\n".join(lines)
            + f"\n    repo: {self.code}\n    provider: {provider}\n"
            + f"    command: [sh, {AGENT}]\n",
        )

    def work(self, title: str) -> str:
        with self.store.transaction() as tx:
            return tx.create({"title": title})["id"]

    def bead(self, bead_id: str) -> dict[str, Any]:
        return self.store.get(bead_id)

    def open_beads(self, label: str) -> list[dict[str, Any]]:
        self.store.catalog.refresh()
        return self.store.catalog.list(Query(labels=(label,), include_closed=False))

    def pending_waits(self) -> list[dict[str, Any]]:
        return [w for w in self.open_beads(waits.WAIT_LABEL) if waits.state(w) == "pending"]

    def polecat(self, name: str) -> polecats.Polecat:
        return next(p for p in polecats.of_pool(self.store, "cats") if p.name == name)

    def verdict(self, sub_id: str, outcome: str, failure: str | None = None) -> str:
        with self.store.transaction() as tx:
            judged = record_verdict(
                tx,
                sub_id,
                outcome,
                providers=self.providers,
                failure_type=failure,
                reason="tests failed" if failure else "",
            )
        return judged.routed

    def submission(self, work: str, attempt: int) -> str:
        def probe() -> str | None:
            meta = self.bead(work).get("metadata", {})
            if meta.get("gc.attempt") == str(attempt) and meta.get("gc.submission"):
                sub = self.bead(meta["gc.submission"])
                return sub["id"] if sub["status"] != "closed" else None
            return None

        return wait_for(probe, f"attempt {attempt} of {work}")

    def evidence_lines(self) -> list[list[str]]:
        if not self.evidence.exists():
            return []
        return [line.split() for line in self.evidence.read_text().splitlines()]

    def session_pids(self) -> dict[str, tuple[int, bool]]:
        """session ID -> (pid, bead open) for every pool session ever started."""
        self.store.catalog.refresh()
        out = {}
        for bead in self.store.catalog.list(Query(labels=(sessions.SESSION_LABEL,))):
            s = sessions.Session.of(bead)
            pid = s.handle.get("pid") or s.handle.get("pane_pid") or "0"
            out[s.id] = (int(pid), s.state in sessions.LIVE_STATES)
        return out

    def describe(self, works: list[str]) -> str:
        """Where everything stands, for a failure message."""
        lines = []
        for w in works:
            b = self.bead(w)
            m = b.get("metadata", {})
            if b["status"] != "closed":
                lines.append(
                    f"{w} {b['status']} assignee={b.get('assignee', '')} "
                    f"attempt={m.get('gc.attempt')} sub={m.get('gc.submission')} "
                    f"polecat={m.get('gc.polecat')} deps={b.get('dependencies', [])}"
                )
        for p in polecats.of_pool(self.store, "cats", include_retired=True):
            lines.append(f"polecat {p.name} {p.state} work={p.work} session={p.session}")
        for f in self.open_beads(cleanup.CLEANUP_LABEL):
            lines.append(f"finalizer {f['id']} {f['metadata']}")
        for sid, (pid, open_) in self.session_pids().items():
            lines.append(f"session {sid} pid={pid} open={open_} running={_running(pid)}")
        return "\n".join(lines)

    def audit(self) -> None:
        """No leaked worktree, branch, session, wait or finalizer (gc_polecat.demo.audit reads git,
        /proc and tmux). A session stopped from inside (a retired polecat's own cleanup) exits
        by itself when its `next` returns 20: give it a moment first."""
        wait_for(
            lambda: not session_leaks(self.store, self.providers), "stopped sessions to exit", 10
        )
        assert audit(self.store, self.providers) == []
        assert_clean(self.beads)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def pool_city(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PoolCity]:
    monkeypatch.setenv("GC_TEST_PYTHON", sys.executable)
    monkeypatch.setenv("EVIDENCE", str(tmp_path / "evidence"))
    monkeypatch.setenv("GC_POLECAT_TMUX_SOCKET", str(tmp_path / "tmux.sock"))
    c = PoolCity(repo, tmp_path)
    yield c
    for sid, (pid, _open) in c.session_pids().items():
        s = sessions.get(c.store, sid)
        provider = c.providers.get(s.provider)
        if provider is not None and _running(pid):
            provider.stop(s.handle, grace=0.5)
    subprocess.run(["tmux", "-S", str(tmp_path / "tmux.sock"), "kill-server"], capture_output=True)


def _drain_until_idle(pool_city: PoolCity, rounds: int = 150) -> None:
    """Controller passes until the pool has nothing left to do."""
    for _ in range(rounds):
        done = controller_pass(pool_city.store, pool_city.providers)
        if not done and not pool_city.open_beads(cleanup.CLEANUP_LABEL):
            return
        time.sleep(0.1)
    raise AssertionError(f"pool never settled: {done}\n" + pool_city.describe([]))


# --- point 7: the four named tests -------------------------------------------------------------


def test_pool_shrink_keeps_three_waiters_and_drains_only_the_idle_session(
    pool_city: PoolCity,
) -> None:
    pool_city.configure(max_active=4, min_active=4, max_waiting=3)
    polecats_made = [p.name for p in _init(pool_city, 4)]
    assert len(polecats_made) == 4
    started = [a for a, out in reconcile(pool_city.store, pool_city.providers) if a.kind == "start"]
    assert len(started) == 4
    works = [pool_city.work(f"task {i}") for i in range(3)]
    for w in works:
        done = sling(pool_city.store, pool_city.providers, w, "cats")
        assert not done.started  # an idle live session took it: no new session
    subs = [pool_city.submission(w, 1) for w in works]
    wait_for(lambda: len(pool_city.pending_waits()) == 3, "three waiters")
    waiters = {w["metadata"]["session_id"] for w in pool_city.pending_waits()}

    pool_city.configure(max_active=1, min_active=0, max_waiting=3)  # shrink while they wait
    plan = reconcile(pool_city.store, pool_city.providers, dry_run=True)
    assert [a.kind for a, _ in plan] == ["drain"]
    assert plan[0][0].target not in waiters
    head = git(pool_city.beads, "rev-parse", "HEAD")
    assert git(pool_city.beads, "rev-parse", "HEAD") == head  # the dry run wrote nothing
    applied = reconcile(pool_city.store, pool_city.providers)
    assert [(a.kind, out) for a, out in applied] == [("drain", "drained")]
    for sid in waiters:
        s = sessions.get(pool_city.store, sid)
        assert s.state == "awaiting_verdict" and sessions.is_alive(s, pool_city.providers)
    assert len(pool_city.pending_waits()) == 3
    assert (
        reconcile(pool_city.store, pool_city.providers) == []
    )  # pinned: a second pass does nothing

    for sub in subs:
        assert pool_city.verdict(sub, "merged") == "closed"
    wait_for(lambda: len([e for e in pool_city.evidence_lines() if e[1] == "0"]) == 3, "3 merges")
    wait_for(lambda: not pool_city.open_beads(cleanup.CLEANUP_LABEL), "cleanups by the sessions")
    for line in pool_city.evidence_lines():  # each merge reached the session that submitted it
        assert line[3] in waiters
    _drain_until_idle(pool_city)
    pool_city.audit()
    assert not [s for s in pool_city.session_pids().values() if s[1]]  # idle sessions drained


@pytest.mark.parametrize("gc_state", ["ready", "pending"])
def test_a_drain_never_ends_a_wait_gc_made_for_the_session(
    pool_city: PoolCity, gc_state: str
) -> None:
    """gc's own waits (`gc session wait`: a gate labelled `gc:wait` and `session:<id>`, no
    `submission`) are gc's to end (Gas City: `internal/session/waits.go`, `IsWaitBead`,
    `CancelWaits`, `IsWaitTerminalState`). Draining an idle session must neither cancel one
    nor strand it: while it is open and not terminal, the session is not drained."""
    pool_city.configure(max_active=1, min_active=1)
    _init(pool_city, 1)
    started = [a for a, _ in reconcile(pool_city.store, pool_city.providers) if a.kind == "start"]
    assert len(started) == 1
    (sid,) = pool_city.session_pids()
    with pool_city.store.transaction() as tx:
        gc_wait = tx.create(
            {
                "title": "gc session wait",
                "issue_type": "gate",
                "labels": [waits.LEGACY_WAIT_LABEL, waits.LEGACY_SESSION_LABEL_PREFIX + sid],
                "metadata": {"session_id": sid, "state": gc_state, "kind": "deps"},
            }
        )
    before = pool_city.bead(gc_wait["id"])

    pool_city.configure(max_active=1, min_active=0)
    assert [a.kind for a, _ in reconcile(pool_city.store, pool_city.providers, dry_run=True)] == [
        "drain"
    ]
    applied = reconcile(pool_city.store, pool_city.providers)
    assert [(a.kind, out) for a, out in applied] == [("drain", "skipped (no longer needed)")]
    assert pool_city.bead(gc_wait["id"]) == before  # untouched: gc ends its own waits
    s = sessions.get(pool_city.store, sid)
    assert s.state in sessions.LIVE_STATES and sessions.is_alive(s, pool_city.providers)

    with pool_city.store.transaction() as tx:  # gc ends its wait: now the session may go
        tx.put({**tx.require(gc_wait["id"]), "status": "closed", "closed_at": waits.at()})
    assert [(a.kind, out) for a, out in reconcile(pool_city.store, pool_city.providers)] == [
        ("drain", "drained")
    ]
    assert pool_city.bead(gc_wait["id"])["metadata"]["state"] == gc_state  # still gc's word
    _drain_until_idle(pool_city)
    pool_city.audit()


def test_waiting_maximum_releases_the_oldest_and_its_work_reaches_the_pool(
    pool_city: PoolCity,
) -> None:
    pool_city.configure(max_active=3, max_waiting=2)
    _init(pool_city, 3)
    first, second = pool_city.work("first"), pool_city.work("second")
    sling(pool_city.store, pool_city.providers, first, "cats")
    sub1 = pool_city.submission(first, 1)
    old_branch = pool_city.bead(first)["metadata"]["branch"]
    old_commit = pool_city.bead(sub1)["metadata"]["commit"]
    time.sleep(1.1)  # waits are ordered by creation time, to the second
    sling(pool_city.store, pool_city.providers, second, "cats")
    sub2 = pool_city.submission(second, 1)
    wait_for(lambda: len(pool_city.pending_waits()) == 2, "two waiters")
    first_polecat = pool_city.bead(first)["metadata"]["gc.polecat"]
    pool_city.configure(max_active=3, max_waiting=1)  # lowered by hand below the waiters

    done = reconcile(pool_city.store, pool_city.providers)
    assert ("release", "released") in [(a.kind, out) for a, out in done]
    released = pool_city.bead(pool_city.bead(first)["metadata"]["gc.wait"])
    assert released["metadata"]["state"] == "canceled"
    assert released["metadata"]["last_error"] == "released-capacity"
    work = pool_city.bead(first)
    assert work.get("assignee", "") == "" and work["metadata"]["gc.routed_to"] == "cats"
    assert work["metadata"]["gc.fallback_reason"] == "released-capacity"
    assert [w["metadata"]["work"] for w in pool_city.pending_waits()] == [second]  # newest kept
    wait_for(lambda: any(e[:2] == [first, "20"] for e in pool_city.evidence_lines()), "await 20")
    sling_try = reconcile(pool_city.store, pool_city.providers)
    assert "sling" not in [a.kind for a, _ in sling_try]  # blocked by its open submission
    pool_city.configure(max_active=3, max_waiting=2)  # raised again: the resubmit below keeps both

    assert pool_city.verdict(sub1, "fix_needed", "tests") == "pool"  # the late verdict finds it
    assert pool_city.bead(first)["metadata"]["rejection_reason"] == "tests failed"
    _drain_until_idle(pool_city)
    wait_for(lambda: pool_city.bead(first).get("assignee"), "the pool to sling it again")
    # it went through the pool, and the pool preferred the identity that knew it (idle again)
    assert "slung to polecat" in git(pool_city.beads, "log", "-1", "--format=%s", "--grep", first)
    assert pool_city.bead(first)["metadata"]["gc.polecat"] == first_polecat
    sub1b = pool_city.submission(first, 2)
    new_branch = pool_city.bead(sub1b)["metadata"]["branch"]
    assert new_branch != old_branch
    new_commit = pool_city.bead(sub1b)["metadata"]["commit"]
    git(pool_city.code, "fetch", "-q", "origin")
    git(
        pool_city.code, "merge-base", "--is-ancestor", old_commit, new_commit
    )  # resumed, not redone
    for sub in (sub1b, sub2):
        pool_city.verdict(sub, "merged")
    wait_for(lambda: pool_city.bead(first)["status"] == "closed", "first merged")
    _drain_until_idle(pool_city)
    wait_for(lambda: not pool_city.open_beads(cleanup.CLEANUP_LABEL), "cleanups")
    pool_city.audit()


def test_twenty_cycles_on_a_pool_of_three_leave_nothing_behind(pool_city: PoolCity) -> None:
    """Fixes (every 4th work), kills while waiting (every 5th), an ephemeral polecat beyond
    the two persistent ones; the refinery (this test) answers in random order."""
    pool_city.configure(max_active=3, max_waiting=3)
    _init(pool_city, 2)
    works = [pool_city.work(f"cycle {i}") for i in range(20)]
    for w in works:
        sling(pool_city.store, pool_city.providers, w, "cats")  # three assigned, the rest queued
    plan = {
        w: ("fix" if i % 4 == 1 else "kill" if i % 5 == 2 else "merge") for i, w in enumerate(works)
    }
    handled: set[str] = set()
    killed: dict[str, str] = {}  # work -> the submission whose waiter was killed
    deadline = time.monotonic() + 120
    while any(pool_city.bead(w)["status"] != "closed" for w in works):
        assert time.monotonic() < deadline, pool_city.describe(works)
        controller_pass(pool_city.store, pool_city.providers)
        for sub in pool_city.open_beads(SUBMISSION_LABEL):
            if sub["id"] in handled:
                continue
            meta = sub["metadata"]
            work, attempt = meta["work"], int(meta["attempt"])
            if plan[work] == "kill" and work not in killed:
                if waits.state(pool_city.bead(meta["wait"])) != "pending":
                    continue
                s = sessions.get(pool_city.store, meta["session"])
                os.killpg(int(s.handle["pgid"]), signal.SIGKILL)
                killed[work] = sub["id"]
                continue  # the controller must notice; the verdict comes later
            if killed.get(work) == sub["id"]:
                if waits.state(pool_city.bead(meta["wait"])) == "pending":
                    continue  # not yet noticed
                assert pool_city.verdict(sub["id"], "fix_needed", "tests") == "pool"
            elif plan[work] == "fix" and attempt == 1:
                assert pool_city.verdict(sub["id"], "fix_needed", "tests") == "session"
            else:
                assert pool_city.verdict(sub["id"], "merged") == "closed"
            handled.add(sub["id"])
        time.sleep(0.1)
    _drain_until_idle(pool_city)
    pool_city.audit()
    record = {c: 0 for c in polecats.COUNTERS}
    for p in polecats.of_pool(pool_city.store, "cats", include_retired=True):
        for c in polecats.COUNTERS:
            record[c] += p.count(c)
    assert record["completed"] == 20
    assert len(killed) == list(plan.values()).count("kill") == 3  # works 2, 7, 12
    assert record["fallbacks"] >= len(killed)
    assert record["fix_cycles"] == list(plan.values()).count("fix") == 5  # 1, 5, 9, 13, 17
    assert len(polecats.of_pool(pool_city.store, "cats", include_retired=True)) > 2  # one ephemeral


def test_reuse_is_branch_only_in_the_same_tmux_backed_worktree(pool_city: PoolCity) -> None:
    pool_city.configure(provider="tmux", max_active=1)
    (furiosa,) = _init(pool_city, 1)
    tree = Path(furiosa.sandbox)
    inode = tree.stat().st_ino
    branches = []
    for title in ("one", "two"):
        w = pool_city.work(title)
        done = sling(pool_city.store, pool_city.providers, w, "cats")
        assert done.sandbox == str(tree) and done.name == furiosa.name
        sub = pool_city.submission(w, 1)
        branches.append(pool_city.bead(sub)["metadata"]["branch"])
        assert sandbox.worktrees(pool_city.code) == [tree.resolve()]  # no worktree add
        assert tree.stat().st_ino == inode
        pool_city.verdict(sub, "merged")
        wait_for(
            lambda p=furiosa: pool_city.polecat(p.name).state == "idle", "cleanup by the session"
        )
    assert branches[0] != branches[1]
    assert all(b.startswith(f"polecat/{furiosa.name}/") for b in branches)
    sessions_used = {e[3] for e in pool_city.evidence_lines()}
    assert len(sessions_used) == 1  # the same tmux session took both assignments
    s = sessions.get(pool_city.store, sessions_used.pop())
    assert s.provider == "tmux" and sessions.is_alive(s, pool_city.providers)
    pool_city.audit()


def _init(pool_city: PoolCity, size: int) -> list[polecats.Polecat]:
    from gc_polecat.pool.status import init_pool

    return init_pool(pool_city.store, "cats", size)
