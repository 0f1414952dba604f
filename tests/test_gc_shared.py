"""One store, two controllers: gc-polecat and Gas City's own (issue 14, "Shared with gc's
controller"; docs/interop.md, "Sharing a store with gc's controller").

`GcWaitPass` is a stand-in for the Go program, which cannot run here: a Python port of what
gc's controller does to waits on every tick, with gc's selection and transitions exactly as
written in `cmd/gc/cmd_wait.go` (`loadWaitBeads`, `prepareWaitWakeStateForCity`,
`depsWaitReadyDetailedForCity`, `finalizeReadyWaitFromNudge`) and `internal/session/waits.go`
(`IsWaitBead`, `CancelWaits`), applied to our store through gc's store calls (List by label,
Get, SetMetadataBatch, Close). Everything else is real: git, the CLI in its own processes, the
session's process.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store
from gc_polecat.errors import NotFound
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits

from .conftest import git, run_cli, submitted_ids

SHA = "a" * 40
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
# cmd/gc/session_reconcile.go `knownSessionStates`: a session bead in any other state is skipped
# by gc's session reconciler on every pass
GC_KNOWN_SESSION_STATES = {
    "active", "asleep", "awake", "stopped", "suspended", "orphaned", "closed", "quarantined",
    "creating", "drained", "",
}  # fmt: skip
GC_WAIT_TERMINAL = ("closed", "canceled", "expired", "failed")  # waits.go IsWaitTerminalState


class GcWaitPass:
    """Stand-in for gc's controller's wait handling (the Go program), ported, not imported."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.touched: list[tuple[str, str]] = []  # (wait, state gc gave it)
        self.delivered: list[str] = []

    @staticmethod
    def is_wait_bead(bead: dict[str, Any]) -> bool:
        """internal/session/waits.go `IsWaitBead`."""
        if bead.get("issue_type") not in ("gate", "wait"):
            return False
        labels = bead.get("labels", [])
        if "gc:wait" in labels:
            return True
        sid = bead.get("metadata", {}).get("session_id", "")
        return bool(sid) and f"session:{sid}" in labels

    def _list(self, label: str) -> list[dict[str, Any]]:
        """cmd_wait.go `loadWaitBeadsByLabel`: List(label), open ones that are wait beads."""
        self.store.catalog.refresh()
        listed = self.store.catalog.list(Query(labels=(label,)))
        return [b for b in listed if b["status"] != "closed" and self.is_wait_bead(b)]

    def _set(self, wait_id: str, batch: dict[str, str], close: bool = False) -> None:
        """SetMetadataBatch, then Close for `setWaitTerminalState`."""
        with self.store.transaction(f"gc: {wait_id} {batch['state']}") as tx:
            bead = tx.require(wait_id)
            fields: dict[str, Any] = {"metadata": {**bead.get("metadata", {}), **batch}}
            if close:
                fields["status"] = "closed"
            tx.update(wait_id, fields)
        self.touched.append((wait_id, batch["state"]))

    def tick(self, now: dt.datetime) -> None:
        """`prepareWaitWakeStateForCity`; a wait it found ready is closed as delivered, as
        `finalizeReadyWaitFromNudge` does once the nudge `dispatchReadyWaitNudges` queued is
        injected (taken here to happen between two ticks)."""
        ts = now.strftime(RFC3339)
        for wait in self._list("gc:wait"):
            meta = wait.get("metadata", {})
            state, sid = meta.get("state", ""), meta.get("session_id", "")
            if not sid or state in GC_WAIT_TERMINAL:
                continue
            try:
                session = self.store.get(sid)
            except NotFound:
                continue
            epoch = meta.get("registered_epoch", "")
            current = session.get("metadata", {}).get("continuation_epoch", "")
            if epoch and current and epoch != current:
                batch = {"state": "canceled", "canceled_at": ts, "last_error": "continuation-stale"}
                self._set(wait["id"], batch, close=True)
                continue
            expires = meta.get("expires_at", "")
            if expires and dt.datetime.strptime(expires, RFC3339).replace(tzinfo=dt.UTC) <= now:
                self._set(wait["id"], {"state": "expired", "expired_at": ts}, close=True)
                continue
            if state == "ready":
                self._set(wait["id"], {"state": "closed", "closed_at": ts}, close=True)
                self.delivered.append(wait["id"])
                continue
            if meta.get("kind") != "deps":
                continue
            if self._deps_ready(meta):
                self._set(wait["id"], {"state": "ready", "ready_at": ts})

    def _deps_ready(self, meta: dict[str, str]) -> bool:
        """`depsWaitReadyDetailedForCity` (a missing dependency is left out here)."""
        dep_ids = [d.strip() for d in meta.get("dep_ids", "").split(",") if d.strip()]
        closed = [self.store.get(d)["status"] == "closed" for d in dep_ids]
        if not dep_ids:
            return False
        return any(closed) if meta.get("dep_mode") == "any" else all(closed)

    def cancel_waits(self, session_id: str, now: dt.datetime) -> None:
        """waits.go `CancelWaits` (gc's `WakeSession`, and closing a session)."""
        for wait in self._list(f"session:{session_id}"):
            meta = wait.get("metadata", {})
            if meta.get("session_id") != session_id or meta.get("state") in GC_WAIT_TERMINAL:
                continue
            self._set(wait["id"], {"state": "canceled", "canceled_at": now.strftime(RFC3339)}, True)


# --- a city: our store, one live session process ------------------------------------------


class SharedCity:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root, self.tmp = root, tmp
        self.store = Store(root)
        self.proc = subprocess.Popen(["sleep", "600"], start_new_session=True)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_cli("--repo", str(self.root), *args, env=env)

    def ours(self) -> str:
        """A session we started (registered: our handle on a live process)."""
        handle = sessions.registered_handle(self.proc.pid, self.tmp / "s.log")
        fields = sessions.session_fields("cat", "polecats", "process", str(self.tmp), handle)
        with self.store.transaction() as tx:
            return tx.create(fields)["id"]

    def gcs(self, state: str) -> str:
        """A session bead as gc's session manager writes it: a fake of the Go program's output,
        modelled on internal/session/manager.go `createAliasedNamedWithTransport` (metadata
        and labels; `session_name` from `sessionNameFor`), with `state` as gc's reconciler
        later sets it (cmd/gc/session_reconcile.go `healStatePatch`: `awake`)."""
        with self.store.transaction() as tx:
            sid = tx.new_id({"title": "polecat"})
            meta = {
                "template": "polecat", "state": state, "provider": "claude",
                "work_dir": str(self.tmp), "command": "claude --dangerously-skip-permissions",
                "resume_flag": "--resume", "resume_style": "flag", "resume_command": "",
                "generation": "1", "continuation_epoch": "1", "instance_token": "0f3c9a1b2d4e",
                "session_key": "6a0e7e0c-5f0e-4f0a-9a3e-2b7c1d9e8f00",
                "session_origin": "manual", "session_name": f"s-{sid}",
            }  # fmt: skip
            tx.create({"id": sid, "title": "polecat", "issue_type": "session",
                       "labels": ["gc:session", "template:polecat"], "metadata": meta})  # fmt: skip
        return sid

    def work(self, session_id: str) -> str:
        with self.store.transaction() as tx:
            return tx.create({"title": "w", "status": "in_progress", "assignee": session_id})["id"]

    def submit(self, work: str, sid: str, epoch: str = "1") -> subprocess.CompletedProcess:
        env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": epoch}
        return self.cli("submit", work, "--branch", "polecat/x", "--commit", SHA, env=env)

    def bead(self, bead_id: str) -> dict[str, Any]:
        return Store(self.root).get(bead_id)

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()


@pytest.fixture
def shared_city(repo: Path, tmp_path: Path) -> Iterator[SharedCity]:
    c = SharedCity(repo, tmp_path)
    try:
        yield c
    finally:
        c.proc.kill()
        c.proc.wait()


def now_plus(seconds: float = 0.0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


# --- waits --------------------------------------------------------------------------------


def test_a_verdict_is_delivered_once_by_await_and_never_by_gc(shared_city: SharedCity) -> None:
    """gc's controller ticking on the same store does nothing to our wait: it does not ready
    it when the submission closes, and does not close it as delivered; `await` delivers it,
    once (a second `await` answers the same, writing nothing)."""
    gc = GcWaitPass(shared_city.store)
    sid = shared_city.ours()
    work = shared_city.work(sid)
    made = shared_city.submit(work, sid)
    assert made.returncode == 0, made.stderr
    sub, wait = submitted_ids(made.stdout)
    gc.tick(now_plus())
    judged = shared_city.cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
    assert judged.returncode == 0, judged.stderr
    assert shared_city.bead(sub)["status"] == "closed"  # the wait's dependency: gc would ready it
    for _ in range(3):
        gc.tick(now_plus())
    assert gc.touched == [] and gc.delivered == []
    env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}
    first = shared_city.cli("await", wait, "--json", env=env)
    assert first.returncode == 10, first.stderr
    delivered = shared_city.bead(wait)
    assert delivered["status"] == "closed" and delivered["metadata"]["state"] == "closed"
    assert delivered["metadata"]["delivered_to"].startswith(sid)
    assert delivered["metadata"]["closed_at"]  # gc's key for it
    head = shared_city.head()
    again = shared_city.cli("await", wait, "--json", env=env)
    assert again.returncode == 10 and shared_city.head() == head  # no second delivery
    log = git(shared_city.root, "log", "--format=%s").splitlines()
    assert sum(f"{wait}: delivered" in line for line in log) == 1
    assert shared_city.bead(wait)["labels"][:2] == ["polecat:wait", f"polecat:session:{sid}"]


def test_gc_never_cancels_or_expires_our_waits(shared_city: SharedCity) -> None:
    """Past its expiry, its session's epoch moved on, and gc's `CancelWaits` for the session:
    gc's pass leaves the wait pending; our controller is the one that ends it."""
    gc = GcWaitPass(shared_city.store)
    sid = shared_city.ours()
    _sub, wait = submitted_ids(shared_city.submit(shared_city.work(sid), sid).stdout)
    later = now_plus(10 * 86400)  # past any wait_ttl
    with shared_city.store.transaction() as tx:  # as gc's `gc handoff` bumps it
        s = tx.require(sid)
        tx.update(sid, {"metadata": {**s["metadata"], "continuation_epoch": "2"}})
    gc.tick(later)
    gc.cancel_waits(sid, later)
    assert gc.touched == []
    assert (shared_city.bead(wait)["status"], waits.state(shared_city.bead(wait))) == (
        "open",
        "pending",
    )
    done = shared_city.cli("controller", "run", "--once")
    assert done.returncode == 0 and f"{wait} canceled (continuation-stale)" in done.stdout
    assert shared_city.bead(wait)["metadata"]["last_error"] == "continuation-stale"


def _legacy_wait(shared_city: SharedCity, sid: str) -> str:
    """A wait as gc-polecat wrote it before this change: gc's labels."""
    with shared_city.store.transaction() as tx:
        sub = tx.create({"title": "Merge: w", "issue_type": "merge-request"})["id"]
        session = sessions.get(tx, sid)
        wait = waits.create(tx, session, sub, "gc-none", 3600)
        tx.update(wait["id"], {"labels": ["gc:wait", f"session:{sid}", "pool:polecats"]})
        tx.update(sub, {"status": "closed"})
    return wait["id"]


def test_a_wait_in_the_old_shape_is_read_and_relabelled_by_the_controller(
    shared_city: SharedCity,
) -> None:
    """Existing repositories hold waits with gc's labels, which gc drives (the stand-in
    readies one): our commands still find them; one controller pass gives every open one our
    labels, in one commit, and gc leaves it alone from then on."""
    sid = shared_city.ours()
    legacy, driven = _legacy_wait(shared_city, sid), _legacy_wait(shared_city, sid)
    gc = GcWaitPass(shared_city.store)
    gc.tick(now_plus())
    assert (driven, "ready") in gc.touched  # the stand-in does see gc's shape
    listed = shared_city.cli("wait", "list", "--session", sid, "--json")
    assert {w["id"] for w in json.loads(listed.stdout)} == {legacy, driven}
    head = shared_city.head()
    done = shared_city.cli("controller", "run", "--once")
    assert f"{legacy} relabelled polecat:wait" in done.stdout, done.stdout + done.stderr
    assert git(shared_city.root, "rev-list", "--count", f"{head}..HEAD").strip() != "0"
    for w in (legacy, driven):
        assert "gc:wait" not in shared_city.bead(w)["labels"]
        assert f"polecat:session:{sid}" in shared_city.bead(w)["labels"]
    gc.touched.clear()
    gc.tick(now_plus(10 * 86400))
    gc.cancel_waits(sid, now_plus())
    assert gc.touched == []


def test_gc_own_waits_stay_gc_own(shared_city: SharedCity) -> None:
    """A wait gc's `gc session wait` made (a fake of the Go program's output, modelled on
    cmd/gc/cmd_wait.go `cmdSessionWait`: gate, `gc:wait`, `session:<id>`, kind deps, no
    submission) on a session of gc's: our controller neither relabels, expires nor cancels it,
    and our wait commands refuse it; gc's pass still drives it."""
    sid = shared_city.gcs("awake")
    with shared_city.store.transaction() as tx:
        dep = tx.create({"title": "dep"})["id"]
        meta = {
            "session_id": sid, "session_name": f"s-{sid}", "kind": "deps", "state": "pending",
            "dep_ids": dep, "dep_mode": "all", "registered_epoch": "9", "delivery_attempt": "1",
            "created_by_session": sid, "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        labels = ["gc:wait", f"session:{sid}"]
        theirs = tx.create({"title": "wait:polecat", "issue_type": "gate", "description": "n",
                            "labels": labels, "metadata": meta})["id"]  # fmt: skip
    head = shared_city.head()
    done = shared_city.cli("controller", "run", "--once")
    assert done.returncode == 0 and theirs not in done.stdout, done.stdout
    assert shared_city.head() == head
    for verb in ("ready", "cancel"):
        assert shared_city.cli("wait", verb, theirs).returncode == 2
    gc = GcWaitPass(shared_city.store)
    gc.tick(now_plus())
    assert gc.touched == [(theirs, "canceled")]  # gc's epoch rule, on its own wait


def test_stopping_a_session_leaves_gc_own_waits_alone(shared_city: SharedCity) -> None:
    """`session stop` ends our waits on the session (lifecycle/routing.py `stop_session`), never
    a wait gc's `gc session wait` made on it (the shape of cmd/gc/cmd_wait.go, as above)."""
    sid = shared_city.gcs("awake")
    work = shared_city.work(sid)
    _sub, ours = submitted_ids(shared_city.submit(work, sid).stdout)
    with shared_city.store.transaction() as tx:
        dep = tx.create({"title": "dep"})["id"]
        meta = {"session_id": sid, "kind": "deps", "state": "pending", "dep_ids": dep,
                "registered_epoch": "1", "created_by_session": sid}  # fmt: skip
        labels = ["gc:wait", f"session:{sid}"]
        theirs = tx.create({"title": "wait:gc", "issue_type": "gate", "description": "n",
                            "labels": labels, "metadata": meta})["id"]  # fmt: skip
    stopped = shared_city.cli("session", "stop", sid)
    assert stopped.returncode == 0, stopped.stderr
    assert waits.state(shared_city.bead(ours)) == "canceled"
    left = shared_city.bead(theirs)
    assert (left["status"], waits.state(left)) == ("open", "pending")


# --- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize("gc_state", ["creating", "awake", "active"])
def test_a_session_gc_started_submits_and_awaits(shared_city: SharedCity, gc_state: str) -> None:
    """gc's session (its GC_SESSION_ID and GC_CONTINUATION_EPOCH, its own states) submits
    and awaits; its `state` stays gc's, our finer state goes to `polecat.state`."""
    sid = shared_city.gcs(gc_state)
    work = shared_city.work(sid)
    made = shared_city.submit(work, sid)
    assert made.returncode == 0, made.stderr
    sub, wait = submitted_ids(made.stdout)
    meta = shared_city.bead(sid)["metadata"]
    assert (meta["state"], meta["polecat.state"]) == (gc_state, "awaiting_verdict")
    shown = json.loads(shared_city.cli("session", "show", sid, "--json").stdout)
    assert shown["state"] == "awaiting_verdict"
    judged = shared_city.cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
    assert judged.returncode == 0, judged.stderr
    assert shared_city.bead(work)["assignee"] == sid  # a live waiter: the work stays with it
    env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}
    got = shared_city.cli("await", "--json", env=env)
    assert got.returncode == 10, got.stderr
    assert json.loads(got.stdout)["wait"] == wait
    meta = shared_city.bead(sid)["metadata"]
    assert (meta["state"], meta["polecat.state"]) == (gc_state, "active")
    assert shared_city.bead(sid)["status"] == "open"


@pytest.mark.parametrize("gc_state", ["asleep", "drained", "archived"])
def test_a_gc_session_gc_put_to_sleep_cannot_submit(shared_city: SharedCity, gc_state: str) -> None:
    sid = shared_city.gcs(gc_state)
    made = shared_city.submit(shared_city.work(sid), sid)
    assert made.returncode == 2 and "cannot submit" in made.stderr
    assert made.stderr.count("\n") == 1


def test_through_its_provider_gc_sees_no_wait_of_ours_and_only_states_it_knows(
    shared_city: SharedCity,
) -> None:
    """gc's own read path: `exec-beads list-by-label` as gc's exec store calls it
    (internal/beads/exec/exec.go; GC_STORE_ROOT finds the store): under `gc:wait` none of our
    waits, under `gc:session` every session in a state of gc's `knownSessionStates`."""
    ours, theirs = shared_city.ours(), shared_city.gcs("awake")
    for sid in (ours, theirs):
        assert shared_city.submit(shared_city.work(sid), sid).returncode == 0

    def listed(label: str) -> list[dict[str, Any]]:
        env = {
            "GC_STORE_ROOT": str(shared_city.root),
            "GC_STORE_SCOPE": "city",
            "GC_POLECAT_REPO": "",
        }
        proc = run_cli("exec-beads", "list-by-label", label, env=env, cwd=shared_city.root.parent)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert listed("gc:wait") == []
    found = {b["id"]: b["metadata"]["state"] for b in listed("gc:session")}
    assert found == {ours: "active", theirs: "awake"}
    assert set(found.values()) <= GC_KNOWN_SESSION_STATES


def test_stopping_a_gc_session_is_ours_only_and_lasts_one_incarnation(
    shared_city: SharedCity,
) -> None:
    """`session stop` on gc's session: its wait canceled, its work to the pool, but its bead
    stays open in gc's state (gc stops its runtime, not us). Stopped for us until gc starts it
    again: at the next `continuation_epoch` it submits again."""
    sid = shared_city.gcs("awake")
    work = shared_city.work(sid)
    _sub, wait = submitted_ids(shared_city.submit(work, sid).stdout)
    stopped = shared_city.cli("session", "stop", sid)
    assert stopped.returncode == 0, stopped.stderr
    bead = shared_city.bead(sid)
    assert (bead["status"], bead["metadata"]["state"]) == ("open", "awake")
    assert bead["metadata"]["polecat.state"] == "stopped"
    assert waits.state(shared_city.bead(wait)) == "canceled"
    other = shared_city.work(sid)
    refused = shared_city.submit(other, sid)
    assert refused.returncode == 2 and "stopped" in refused.stderr
    with shared_city.store.transaction() as tx:  # gc restarts it (a new continuation)
        s = tx.require(sid)
        tx.update(sid, {"metadata": {**s["metadata"], "continuation_epoch": "2"}})
    again = shared_city.submit(other, sid, epoch="2")
    assert again.returncode == 0, again.stderr


def test_our_sessions_only_ever_show_gc_states_it_knows(shared_city: SharedCity) -> None:
    """Through submit, verdict, await, and the controller finding the process gone, the
    bead's `state` is one of gc's known states; our own is in `polecat.state`."""
    sid = shared_city.ours()

    def states() -> tuple[str, str]:
        meta = shared_city.bead(sid)["metadata"]
        assert meta["state"] in GC_KNOWN_SESSION_STATES, meta["state"]
        return meta["state"], meta["polecat.state"]

    assert states() == ("active", "active")
    sub, wait = submitted_ids(shared_city.submit(shared_city.work(sid), sid).stdout)
    assert states() == ("active", "awaiting_verdict")
    shared_city.cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
    assert states() == ("active", "active")
    shared_city.submit(shared_city.bead(sub)["metadata"]["work"], sid)
    assert states() == ("active", "awaiting_verdict")
    shared_city.proc.kill()
    shared_city.proc.wait()
    done = shared_city.cli("controller", "run", "--once")
    assert done.returncode == 0, done.stderr
    assert states() == ("stopped", "dead")
    assert json.loads(shared_city.cli("session", "show", sid, "--json").stdout)["state"] == "dead"


def test_a_session_bead_in_the_old_shape_reads_as_before(shared_city: SharedCity) -> None:
    """Written before `polecat.state`: our states in `state` itself. Read as they were; the
    next change writes gc's name there and ours under `polecat.state`."""
    sid = shared_city.ours()
    with shared_city.store.transaction() as tx:
        s = tx.require(sid)
        meta = {k: v for k, v in s["metadata"].items() if k != "polecat.state"}
        tx.update(sid, {"metadata": {**meta, "state": "awaiting_verdict"}})
    assert sessions.get(shared_city.store, sid).state == "awaiting_verdict"
    with shared_city.store.transaction() as tx:
        sessions.set_state(tx, sessions.get(tx, sid), "active")
    meta = shared_city.bead(sid)["metadata"]
    assert (meta["state"], meta["polecat.state"]) == ("active", "active")


# --- `wait` commands, as gc's `gc wait` (cmd/gc/cmd_wait.go) --------------------------------


def test_wait_ready_and_cancel_follow_gc_wait(shared_city: SharedCity) -> None:
    """`ready` on a ready wait readies it again (exit 0); `ready` on a delivered wait makes a
    retry that starts `ready` at the session's current epoch, attempt 2; `cancel` on a closed
    wait exits 0 and writes nothing; `cancel` records why in `last_error`."""
    sid = shared_city.ours()
    sub, wait = submitted_ids(shared_city.submit(shared_city.work(sid), sid).stdout)
    shared_city.cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
    before = shared_city.bead(wait)["metadata"]["ready_at"]
    again = shared_city.cli("wait", "ready", wait)
    assert again.returncode == 0, again.stderr
    assert waits.state(shared_city.bead(wait)) == "ready"
    assert shared_city.bead(wait)["metadata"]["ready_at"] >= before
    env = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"}
    assert shared_city.cli("await", wait, env=env).returncode == 10
    with shared_city.store.transaction() as tx:  # a later incarnation of the same session
        s = tx.require(sid)
        tx.update(sid, {"metadata": {**s["metadata"], "continuation_epoch": "2"}})
    retried = shared_city.cli("wait", "ready", wait)
    assert retried.returncode == 0, retried.stderr
    new = retried.stdout.split()[2]
    meta = shared_city.bead(new)["metadata"]
    got = (meta["state"], meta["delivery_attempt"], meta["registered_epoch"])
    assert got == ("ready", "2", "2")
    assert meta["retried_from_wait"] == wait and "delivered_to" not in meta
    assert "polecat:wait" in shared_city.bead(new)["labels"]
    env2 = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "2"}
    assert shared_city.cli("await", new, env=env2).returncode == 10  # re-delivered to the later one
    head = shared_city.head()
    closed = shared_city.cli("wait", "cancel", wait)
    assert closed.returncode == 0 and "already closed" in closed.stdout
    assert shared_city.head() == head and waits.state(shared_city.bead(wait)) == "closed"


def test_a_canceled_wait_without_a_verdict_retries_pending(shared_city: SharedCity) -> None:
    """Our one difference from gc's retry: without a verdict to hand over, `ready` would be a
    promise we cannot keep (`await` would end 20), so the retry waits for it: `pending`."""
    sid = shared_city.ours()
    _sub, wait = submitted_ids(shared_city.submit(shared_city.work(sid), sid).stdout)
    canceled = shared_city.cli("wait", "cancel", wait, "--reason", "operator")
    assert canceled.returncode == 0, canceled.stderr
    meta = shared_city.bead(wait)["metadata"]
    assert meta["last_error"] == "operator" and "reason" not in meta
    retried = shared_city.cli("wait", "ready", wait)
    assert retried.returncode == 0, retried.stderr
    new = retried.stdout.split()[2]
    assert waits.state(shared_city.bead(new)) == "pending"
    assert "last_error" not in shared_city.bead(new)["metadata"]


def test_wait_commands_refuse_a_bead_that_is_not_a_wait(shared_city: SharedCity) -> None:
    with shared_city.store.transaction() as tx:
        task = tx.create({"title": "not a wait", "labels": ["polecat:wait"]})["id"]
    head = shared_city.head()
    for verb in ("ready", "cancel"):
        out = shared_city.cli("wait", verb, task)
        assert out.returncode == 2 and "not a wait" in out.stderr and "Traceback" not in out.stderr
    assert shared_city.head() == head
