"""Model-based testing: random sequences of pool operations, invariants after every step.

A hypothesis `RuleBasedStateMachine` drives a real city: a beads repository with pool `cats`
(2 persistent polecats, room for an ephemeral third) over a real code clone with worktrees and
a bare origin, sessions running `sleep` through the process provider (built once, copied back
for every example). Each example starts with two work items slung to the two polecats; then
every step is one operation, calling the library the way the CLI does:

- create work; `sling` it;
- the holding session commits, pushes and `submit`s (attempt 1, or a resubmit after a
  fix-needed verdict reached it);
- the refinery's `record_verdict`: merged, or fix needed;
- `await` by the waiting session (its current epoch); a session's `cleanup` after a merge;
- kill: SIGKILL to a session's process group;
- expire: a pending wait's `expires_at` moved into the past (a transaction);
- a session's continuation epoch bumped (its next incarnation: its older waits are stale);
- `controller.one_pass`; the pool's own `reconcile.reconcile`;
- resize: the pool's `max_active` / `min_active` / `max_waiting` changed with plain git, as a
  person would (a shrink below the waiters, or a growth).

The step is a single rule that picks, by weight, among the operations that apply at that
moment: hypothesis' own choice among many rules, most of them inapplicable at any one time,
kept picking the first few in its order. A failure prints each operation it took.

Checked after every step:
- one owner per work item: assigned to a session whose bead is live (its process may have just
  died: the controller has not looked yet) and held by that session's polecat and no other;
  or unassigned, open and routed to the pool, held by no polecat; or merged; or escalated;
- the epoch fence: every open wait, awaited with the epoch after the one that registered it,
  exits 20 once settled (30 while pending) and writes nothing;
- every operation that changes state adds exactly one commit per transition (counted with
  `git log`): the verdict's one commit already holds the verdict, the closed submission, the
  settled wait and the routed work (read at that very commit); the wake plugin's `woken by
  nudge` record is a transition of its own; a reconcile adds one commit per action it reports;
  a refused operation writes nothing;
and after every reconcile: a session that held a pending wait when the pass began is still
live, unless that wait ended in the pass (expired, released, stale): pinned sessions are never
drained, whatever the limits; live pending waiters are within `max_waiting` (and after every
step, unless the cap was lowered by hand since the last reconcile); after a controller
pass no open wait lacks its live session at the same epoch. A verdict for a waiter whose epoch
moved on neither rings nor nudges it (no wake record, nothing in its inbox).

Settings: 25 examples of up to 25 steps (GC_POLECAT_MODEL_EXAMPLES, GC_POLECAT_MODEL_STEPS);
GC_POLECAT_MODEL_SHRINK=0 reports a failure as found instead of minimising it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import cleanup
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.controller import one_pass as controller_pass
from gc_polecat.lifecycle.providers import get_providers
from gc_polecat.lifecycle.routing import ESCALATED_LABEL
from gc_polecat.lifecycle.submit import SUBMISSION_LABEL, submit
from gc_polecat.lifecycle.verdict import record_verdict
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.pool.reconcile import reconcile as pool_reconcile
from gc_polecat.pool.sling import sling
from gc_polecat.pool.status import init_pool

from .conftest import code_origin, configure, git

POOL = "cats"
EXAMPLES = int(os.environ.get("GC_POLECAT_MODEL_EXAMPLES", "25"))
STEPS = int(os.environ.get("GC_POLECAT_MODEL_STEPS", "25"))
MAX_WORK = 4
WAKE_RECORD = ": woken by "
COUNTS: Counter[str] = Counter()  # operations run, for the report
PHASES = (
    tuple(Phase)
    if os.environ.get("GC_POLECAT_MODEL_SHRINK", "1") != "0"
    else (Phase.explicit, Phase.reuse, Phase.generate)
)


def pool_settings(code: Path, max_active: int, min_active: int, max_waiting: int) -> str:
    return (
        f"pools:\n  {POOL}:\n    max_active: {max_active}\n    min_active: {min_active}\n"
        f"    max_waiting: {max_waiting}\n    repo: {code}\n    provider: process\n"
        "    command: [sleep, '900']\n"
    )


class Template:
    """The city built once, restored for every example at the same absolute path (worktrees
    and the pool's configuration name absolute paths)."""

    def __init__(self, tmp: Path) -> None:
        self.live, self.saved = tmp / "city", tmp / "template"
        root = self.live
        code_origin(root / "origin.git", root / "code")
        pm = make_plugin_manager(load_entrypoints=False)
        Store.init(root / "beads", prefix="gc", pm=pm)
        configure(root / "beads", pool_settings(root / "code", 3, 0, 2))
        store = Store(root / "beads", pm=pm)
        init_pool(store, POOL, 2)
        store.catalog.close()
        shutil.copytree(root, self.saved, symlinks=True)

    def restore(self) -> Path:
        shutil.rmtree(self.live)
        shutil.copytree(self.saved, self.live, symlinks=True)
        return self.live


class PoolModel(RuleBasedStateMachine):
    template: Template

    def __init__(self) -> None:
        super().__init__()
        root = self.template.restore()
        self.beads, self.code = root / "beads", root / "code"
        self.pm = make_plugin_manager(load_entrypoints=False)
        self.store = Store(self.beads, pm=self.pm)
        self.providers = get_providers(self.pm)
        self.works: list[str] = []
        self.limits = (3, 0, 2)  # max_active, min_active, max_waiting
        self.cap_lowered = False  # by hand, below the waiters: the next reconcile releases them
        COUNTS["examples"] += 1

    def teardown(self) -> None:
        for s in self.sessions(live_only=True):
            if sessions.is_alive(s, self.providers):
                with contextlib.suppress(Exception):
                    self.providers[s.provider].stop(s.handle, grace=0.1)
        self.store.catalog.close()

    # --- reading ------------------------------------------------------------------------------

    def get(self, bead_id: str) -> dict[str, Any]:
        return self.store.get(bead_id)

    def open_beads(self, label: str) -> list[dict[str, Any]]:
        self.store.catalog.refresh()
        return self.store.catalog.list(Query(labels=(label,), include_closed=False))

    def sessions(self, live_only: bool = False) -> list[sessions.Session]:
        self.store.catalog.refresh()
        beads = self.store.catalog.list(
            Query(labels=(sessions.SESSION_LABEL,), include_closed=not live_only)
        )
        return [sessions.Session.of(b) for b in beads]

    def session(self, session_id: str) -> sessions.Session | None:
        try:
            return sessions.get(self.store, session_id) if session_id else None
        except BadInput:
            return None

    def alive(self, session_id: str) -> bool:
        s = self.session(session_id)
        return s is not None and sessions.is_alive(s, self.providers)

    def head(self) -> str:
        return (self.store.head()[1] or b"").decode()

    def commits_since(self, before: str) -> list[str]:
        """Subjects of the commits made since `before`, oldest first."""
        if self.head() == before:
            return []
        return git(self.beads, "log", "--reverse", "--format=%s", f"{before}..HEAD").splitlines()

    def held(self) -> list[str]:
        """Work in progress on a live session with no submission open: ready to submit."""
        found = []
        for w in self.works:
            work = self.get(w)
            sub = work.get("metadata", {}).get("gc.submission")
            if work["status"] != "in_progress" or not self.alive(work.get("assignee", "")):
                continue
            if sub and self.get(sub)["status"] != "closed":
                continue
            found.append(w)
        return found

    def slingable(self) -> list[str]:
        found = []
        for w in self.works:
            work = self.get(w)
            if work["status"] == "open" and not work.get("assignee"):
                found.append(w)
        return found

    def waiting(self) -> list[dict[str, Any]]:
        """Open waits whose session's process runs."""
        return [
            w
            for w in self.open_beads(waits.WAIT_LABEL)
            if self.alive(w["metadata"].get("session_id", ""))
        ]

    def pinned(self) -> dict[str, list[str]]:
        """Sessions whose process runs and which hold a pending wait: session -> waits."""
        found: dict[str, list[str]] = {}
        for w in self.waiting():
            if waits.state(w) == "pending":
                found.setdefault(w["metadata"]["session_id"], []).append(w["id"])
        return found

    def describe(self) -> str:
        """Where everything stands, for a failure message."""
        lines = [f"limits {self.limits}"]
        for w in self.works:
            b = self.get(w)
            m = b.get("metadata", {})
            lines.append(
                f"{w} {b['status']} assignee={b.get('assignee', '')} sub={m.get('gc.submission')}"
                f" wait={m.get('gc.wait')} attempt={m.get('gc.attempt')} labels={b.get('labels')}"
            )
        for p in polecats.of_pool(self.store, POOL, include_retired=True):
            lines.append(f"polecat {p.name} {p.state} work={p.work} session={p.session}")
        for s in self.sessions():
            alive = sessions.is_alive(s, self.providers) if s.state in sessions.LIVE_STATES else ""
            lines.append(
                f"session {s.id} {s.state} epoch={s.epoch} alive={alive} "
                f"{s.bead.get('close_reason', '')}"
            )
        for w in self.open_beads(waits.WAIT_LABEL):
            m = w["metadata"]
            lines.append(
                f"wait {w['id']} {waits.state(w)} session={m.get('session_id')} "
                f"epoch={m.get('registered_epoch')} work={m.get('work')}"
            )
        log = git(self.beads, "log", "--format=%s", "-25").splitlines()
        return "\n".join(lines + ["recent commits:"] + [f"  {c}" for c in log])

    def done_polecats(self) -> list[polecats.Polecat]:
        return [
            p
            for p in polecats.of_pool(self.store, POOL)
            if p.state == "done" and self.alive(p.session)
        ]

    # --- rules ----------------------------------------------------------------------------------

    @initialize()
    def two_polecats_at_work(self) -> None:
        """Every example starts with two work items slung to the two persistent polecats."""
        for _ in range(2):
            self.create_work()
            before = self.head()
            done = sling(self.store, self.providers, self.works[-1], POOL)
            assert not done.queued and len(self.commits_since(before)) == 1

    def create_work(self, i: int = 0) -> None:
        if len(self.works) >= MAX_WORK:
            return
        COUNTS["create_work"] += 1
        before = self.head()
        with self.store.transaction() as tx:
            self.works.append(tx.create({"title": f"model work {len(self.works)}"})["id"])
        assert len(self.commits_since(before)) == 1

    def sling_work(self, i: int) -> None:
        choices = self.slingable()
        if not choices:
            return
        COUNTS["sling_work"] += 1
        work = choices[i % len(choices)]
        before = self.head()
        try:
            done = sling(self.store, self.providers, work, POOL)
        except BadInput:  # blocked by its open submission: refused, nothing written
            assert self.commits_since(before) == []
            return
        commits = self.commits_since(before)
        if done.queued:
            assert len(commits) <= 1, commits  # queued again unchanged: no commit
        else:
            assert len(commits) == 1, commits

    def submit_work(self, i: int) -> None:
        """The holding session's edit, push and submit: attempt 1, or N+1 after the same
        session was woken with "fix needed" (a resubmit)."""
        self._submit(self.held(), i)

    def _submit(self, choices: list[str], i: int) -> None:
        if not choices:
            return
        work_id = choices[i % len(choices)]
        work = self.get(work_id)
        meta = work["metadata"]
        COUNTS["resubmit (a fix)" if meta.get("gc.attempt") else "submit"] += 1
        s = self.session(work["assignee"])
        assert s is not None
        tree, branch = Path(meta["work_dir"]), meta["branch"]
        with open(tree / f"{work_id}.txt", "a") as f:
            f.write(f"{work_id} attempt\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-qm", work_id)
        git(tree, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        commit = git(tree, "rev-parse", "HEAD").strip()
        before = self.head()
        try:
            with self.store.transaction() as tx:
                submit(
                    tx, work_id, session_id=s.id, epoch=s.epoch, branch=branch, commit=commit,
                    target="main", ttl=3600, worktree=str(tree),
                )  # fmt: skip
        except BadInput as exc:  # past the attempt cap: refused, nothing written
            assert "attempts" in str(exc), exc
            assert self.commits_since(before) == []
            return
        assert len(self.commits_since(before)) == 1

    def verdict_merged(self, i: int) -> None:
        self._verdict(i, merged=True)

    def verdict_fix_needed(self, i: int) -> None:
        self._verdict(i, merged=False)

    def _verdict(self, i: int, merged: bool) -> None:
        subs = self.open_beads(SUBMISSION_LABEL)
        if not subs:
            return
        COUNTS["verdict_merged" if merged else "verdict_fix_needed"] += 1
        sub = subs[i % len(subs)]
        wait = self.get(sub["metadata"]["wait"])
        waiter = self.session(wait["metadata"]["session_id"])
        stale = waiter is not None and str(waiter.epoch) != wait["metadata"]["registered_epoch"]
        inbox = Path(waiter.handle.get("inbox", "/nonexistent")) if waiter else None
        heard = inbox.read_text() if inbox and inbox.exists() else ""
        before = self.head()
        with self.store.transaction() as tx:
            judged = record_verdict(
                tx, sub["id"], "merged" if merged else "fix_needed", providers=self.providers,
                failure_type=None if merged else "tests", reason="" if merged else "red",
            )  # fmt: skip
        commits = self.commits_since(before)
        transitions = [c for c in commits if WAKE_RECORD not in c]
        assert len(transitions) == 1 and len(commits) <= 2, commits
        # the one commit routed the work: read it at that commit, not later
        first = git(self.beads, "rev-list", "--reverse", f"{before}..HEAD").split()[0]
        tree = self.store.git.commit_tree(first.encode())
        work = self.store.get(sub["metadata"]["work"], tree=tree)
        settled = self.store.get(wait["id"], tree=tree)
        assert self.store.get(sub["id"], tree=tree)["status"] == "closed"
        if waits.state(wait) == "pending":
            assert waits.state(settled) in ("ready", "canceled"), settled
        else:  # it had ended (expired, released, canceled): a late verdict leaves it so
            assert waits.state(settled) == waits.state(wait), settled
        expected = {
            "closed": lambda: work["status"] == "closed",
            "escalated": lambda: work["status"] == "blocked" and not work.get("assignee"),
            "session": lambda: work.get("assignee") == waiter.id,  # type: ignore[union-attr]
            "pool": lambda: work["status"] == "open" and not work.get("assignee"),
        }[judged.routed]
        assert expected(), (judged.routed, work)
        if stale:  # a verdict never wakes a session whose epoch moved on
            COUNTS["verdict for a stale epoch"] += 1
            assert not any(WAKE_RECORD in c for c in commits), commits
            now = inbox.read_text() if inbox and inbox.exists() else ""
            assert wait["id"] not in now[len(heard) :], now

    def await_verdict(self, i: int) -> None:
        """`await` in the waiting session, with its current epoch."""
        found = self.waiting()
        if not found:
            return
        COUNTS["await_verdict"] += 1
        wait = found[i % len(found)]
        s = self.session(wait["metadata"]["session_id"])
        assert s is not None
        before, state = self.head(), waits.state(wait)
        result = waits.await_verdict(self.store, wait, timeout=0, epoch=s.epoch, session_id=s.id)
        commits = self.commits_since(before)
        if result.code in (waits.EXIT_MERGED, waits.EXIT_FIX_NEEDED):
            assert state == "ready" and str(s.epoch) == wait["metadata"]["registered_epoch"]
            assert len(commits) == 1, commits  # delivered
        else:
            assert commits == [], (result.code, commits)
            assert result.code == (waits.EXIT_PENDING if state == "pending" else waits.EXIT_ENDED)

    def session_cleanup(self, i: int) -> None:
        """A live session whose work left it runs its cleanup (`gc-polecat cleanup`)."""
        found = self.done_polecats()
        if not found:
            return
        COUNTS["session_cleanup"] += 1
        p = found[i % len(found)]
        fin = p.bead["metadata"].get("cleanup", "")
        before = self.head()
        outcome = cleanup.run(self.store, fin, self.providers)
        assert outcome.result == "verified", outcome
        assert len(self.commits_since(before)) == 1

    def kill(self, i: int) -> None:
        live = [s for s in self.sessions(live_only=True) if self.alive(s.id)]
        if not live:
            return
        COUNTS["kill"] += 1
        s = live[i % len(live)]
        before = self.head()
        os.killpg(int(s.handle["pgid"]), signal.SIGKILL)
        end = time.monotonic() + 10
        while sessions.is_alive(s, self.providers):
            assert time.monotonic() < end, f"session {s.id} survived SIGKILL"
            time.sleep(0.002)
        assert self.commits_since(before) == []

    def expirable(self) -> list[dict[str, Any]]:
        return [w for w in self.waiting() if waits.state(w) == "pending" and not waits.expired(w)]

    def expire(self, i: int) -> None:
        pending = self.expirable()
        if not pending:
            return
        COUNTS["expire"] += 1
        wait = pending[i % len(pending)]
        before = self.head()
        with self.store.transaction(f"{wait['id']}: expiry moved into the past") as tx:
            meta = {**wait["metadata"], "expires_at": waits.at(-1)}
            tx.update(wait["id"], {"metadata": meta})
        assert len(self.commits_since(before)) == 1

    def bump_epoch(self, i: int) -> None:
        """The session's next incarnation: same bead, epoch + 1 (what a restart that keeps
        the identity records); its older waits are stale from now on."""
        live = [s for s in self.sessions(live_only=True) if self.alive(s.id)]
        if not live:
            return
        COUNTS["bump_epoch"] += 1
        s = live[i % len(live)]
        before = self.head()
        with self.store.transaction(f"{s.id}: epoch {s.epoch + 1}") as tx:
            meta = {**s.bead["metadata"], "continuation_epoch": str(s.epoch + 1)}
            tx.update(s.id, {"metadata": meta})
        assert len(self.commits_since(before)) == 1

    def controller(self, i: int) -> None:
        """A controller pass: waits, submissions, launches, then the pools."""
        COUNTS["controller"] += 1
        pinned, before = self.pinned(), self.head()
        actions = controller_pass(self.store, self.providers)
        self._check_reconcile(before, [done for _, done in actions], pinned)
        for wait in self.open_beads(waits.WAIT_LABEL):
            meta = wait["metadata"]
            s = self.session(meta.get("session_id", ""))
            why = f"open wait {wait['id']} after {actions}:\n{self.describe()}"
            assert s is not None and sessions.is_alive(s, self.providers), why
            assert str(s.epoch) == meta.get("registered_epoch"), why

    def reconcile_pool(self, i: int) -> None:
        """`pool reconcile`: the pool's desired state alone."""
        COUNTS["reconcile_pool"] += 1
        pinned, before = self.pinned(), self.head()
        done = pool_reconcile(self.store, self.providers)
        assert not [o for _, o in done if o and o.startswith("failed")], done
        applied = [o for _, o in done if o and not o.startswith("skipped")]
        self._check_reconcile(before, applied, pinned)

    def _check_reconcile(
        self, before: str, applied: list[str], pinned: dict[str, list[str]]
    ) -> None:
        commits = self.commits_since(before)
        transitions = [c for c in commits if WAKE_RECORD not in c]
        assert len(transitions) == len(applied), (applied, commits)
        for sid, held in pinned.items():  # never drained or stopped while it waits
            if not any(waits.state(self.get(w)) == "pending" for w in held):
                continue  # its wait ended in this pass (expired, released, stale): it may go
            s = self.session(sid)
            why = f"pinned session {sid} stopped by {applied}:\n{self.describe()}"
            assert s is not None and s.state in sessions.LIVE_STATES, why
            assert sessions.is_alive(s, self.providers), why
        live_waiters = sum(len(held) for held in self.pinned().values())
        why = f"{live_waiters} live waiters after {applied}:\n{self.describe()}"
        assert live_waiters <= self.limits[2], why
        self.cap_lowered = False

    def resize(self, i: int) -> None:
        """A person edits the pool's limits (a shrink below the waiters, or a growth)."""
        max_active, min_active, max_waiting = 1 + i % 3, i // 3 % 4, i // 12 % 4
        limits = (max_active, min(min_active, max_active), max_waiting)
        if limits == self.limits:
            return
        COUNTS["resize"] += 1
        before = self.head()
        configure(self.beads, pool_settings(self.code, *limits))
        self.cap_lowered |= limits[2] < self.limits[2]
        self.limits = limits
        assert len(self.commits_since(before)) == 1

    # --- the one rule: an operation among those that apply now --------------------------------

    OPERATIONS = (  # (operation, weight, whether it applies now)
        ("create_work", 1, lambda self: len(self.works) < MAX_WORK),
        ("sling_work", 2, lambda self: self.slingable()),
        ("submit_work", 4, lambda self: self.held()),
        ("verdict_merged", 2, lambda self: self.open_beads(SUBMISSION_LABEL)),
        ("verdict_fix_needed", 2, lambda self: self.open_beads(SUBMISSION_LABEL)),
        ("await_verdict", 3, lambda self: self.waiting()),
        ("session_cleanup", 2, lambda self: self.done_polecats()),
        ("kill", 1, lambda self: self.live()),
        ("expire", 2, lambda self: self.expirable()),
        ("bump_epoch", 1, lambda self: self.live()),
        ("controller", 3, lambda self: True),
        ("reconcile_pool", 2, lambda self: True),
        ("resize", 1, lambda self: True),
    )

    @rule(pick=st.integers(0, 1 << 16), i=st.integers(0, 47))
    def operation(self, pick: int, i: int) -> None:
        """One operation, chosen by weight among those that apply (hypothesis' own choice of
        rules favours the first ones when many are disabled)."""
        weighted = [name for name, n, applies in self.OPERATIONS if applies(self) for _ in range(n)]
        name = weighted[pick % len(weighted)]
        note(f"{name}({i})")
        getattr(self, name)(i)

    def live(self) -> list[sessions.Session]:
        return [s for s in self.sessions(live_only=True) if self.alive(s.id)]

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def one_owner_per_work_item(self) -> None:
        COUNTS["steps"] += 1
        holders: dict[str, list[str]] = {}
        for p in polecats.of_pool(self.store, POOL):
            if p.state in ("working", "awaiting_verdict"):
                holders.setdefault(p.work, []).append(p.session)
        for w in self.works:
            work = self.get(w)
            sid = work.get("assignee", "")
            if work["status"] == "closed":
                assert work["metadata"].get("merge_result") == "merged", work
                assert w not in holders, (w, holders)
            elif ESCALATED_LABEL in work.get("labels", []):
                assert work["status"] == "blocked" and not sid, work
                assert w not in holders, (w, holders)
            elif sid:
                s = self.session(sid)
                assert s is not None and s.state in sessions.LIVE_STATES, (w, sid)
                assert holders.get(w) == [sid], (w, sid, holders.get(w))
            else:
                assert work["status"] == "open", work
                routed = work.get("metadata", {}).get("gc.routed_to")
                assert routed in (POOL, None), work
                assert w not in holders, (w, holders)

    @invariant()
    def waiters_within_the_cap(self) -> None:
        """After every step: a submit past `max_waiting` released the oldest waiter in its own
        commit, so only a cap lowered by hand since the last reconcile may be exceeded."""
        live_waiters = sum(len(held) for held in self.pinned().values())
        COUNTS["cap checked" + (" (lowered by hand)" if self.cap_lowered else "")] += 1
        if not self.cap_lowered:
            assert live_waiters <= self.limits[2], f"{live_waiters} waiters:\n{self.describe()}"

    @invariant()
    def stale_epoch_is_never_delivered(self) -> None:
        for wait in self.open_beads(waits.WAIT_LABEL):
            meta = wait["metadata"]
            stale = int(meta.get("registered_epoch", "1")) + 1
            COUNTS[f"fence checked on a {waits.state(wait)} wait"] += 1
            before = self.head()
            result = waits.await_verdict(
                self.store, wait, timeout=0, epoch=stale, session_id=meta.get("session_id")
            )
            expected = waits.EXIT_PENDING if waits.state(wait) == "pending" else waits.EXIT_ENDED
            assert result.code == expected, (wait, result.code)
            assert self.head() == before


def test_random_pool_operations_keep_every_invariant(tmp_path: Path) -> None:
    (tmp_path / "city").mkdir()
    COUNTS.clear()
    started = time.monotonic()
    PoolModel.template = Template(tmp_path)
    run_state_machine_as_test(
        PoolModel,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=PHASES,
        ),
    )
    print(
        f"\nmodel: {time.monotonic() - started:.1f} s; "
        + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
    )


# --- the defects the model found, each on its own --------------------------------------------


class _City(PoolModel):
    """One example's city, driven by hand."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "city").mkdir()
        PoolModel.template = Template(tmp)
        super().__init__()
        self.two_polecats_at_work()


def test_a_resubmission_collects_the_verdict_it_answers(tmp_path: Path) -> None:
    """A session nudged with "fix needed" may fix and resubmit without running `await`: the
    ready wait of attempt 1 then stayed open, re-delivered (rung and nudged) every
    `delivery_timeout` while attempt 2 waited. The resubmission now collects it, in its
    own commit."""
    city = _City(tmp_path)
    try:
        work = city.works[0]
        city.submit_work(0)
        first = city.get(work)["metadata"]["gc.wait"]
        city.verdict_fix_needed(0)
        assert waits.state(city.get(first)) == "ready"
        city.submit_work(0)  # attempt 2, no await in between
        wait = city.get(first)
        assert waits.state(wait) == "closed" and wait["status"] == "closed"
        assert wait["metadata"]["delivered_to"].startswith(city.get(work)["assignee"])
        assert city.get(work)["metadata"]["gc.attempt"] == "2"
    finally:
        city.teardown()


def test_a_drain_never_stops_a_waiter_and_cancels_an_uncollected_verdict(
    tmp_path: Path,
) -> None:
    """The pool's drain re-checked assignment and the polecat, not the session's waits: a
    session with a pending wait (a waiter) could be drained by a stale plan, and a drained
    session's uncollected (ready) wait stayed open for a stopped session. docs/pool.md: "A
    stopped or drained session's waits are cancelled in the same commit"."""
    from gc_polecat.pool.reconcile import Action, apply

    city = _City(tmp_path)
    try:
        cfg = city.store.config()["pools"][POOL]
        idle = [_idle_session(city, p) for p in polecats.of_pool(city.store, POOL)[:1]][0]
        for state in ("pending", "ready"):
            with city.store.transaction(f"a {state} wait for {idle.id}") as tx:
                wait = waits.create(tx, sessions.get(tx, idle.id), "gc-none", "", 3600)
                if state == "ready":
                    wait = waits.make_ready(tx, wait, "")
            done = apply(city.store, Action("drain", idle.id, "test"), cfg, city.providers)
            if state == "pending":
                assert done is None and city.alive(idle.id)  # a waiter is never drained
                with city.store.transaction() as tx:
                    waits.cancel(tx, tx.require(wait["id"]), "test")
            else:
                assert done == "drained" and not city.alive(idle.id)
                assert waits.state(city.get(wait["id"])) == "canceled"
                assert city.get(wait["id"])["metadata"]["last_error"] == "session-closed"
    finally:
        city.teardown()


def _idle_session(city: PoolModel, p: polecats.Polecat) -> sessions.Session:
    """Finish the polecat's work (merge, await, cleanup): it stays idle with a live session."""
    work = p.work
    city.submit_work(city.held().index(work))
    sub = city.get(work)["metadata"]["gc.submission"]
    with city.store.transaction() as tx:
        record_verdict(tx, sub, "merged", providers=city.providers)
    wait = city.get(city.get(work)["metadata"]["gc.wait"])
    s = city.session(wait["metadata"]["session_id"])
    assert s is not None
    waits.await_verdict(city.store, wait, timeout=0, epoch=s.epoch, session_id=s.id)
    fin = polecats.get(city.store, p.id).bead["metadata"]["cleanup"]
    assert cleanup.run(city.store, fin, city.providers).result == "verified"
    assert polecats.get(city.store, p.id).state == "idle" and city.alive(s.id)
    return s
