"""The level-triggered controller: redoes whatever a missed hook or a dead process left undone.

Each pass reads the open waits from the repository and repairs each one in its own commit:

| finding | action |
|---|---|
| pending, past `expires_at` | expire the wait; the work falls back to the pool |
| pending or ready, session gone, dead or stopped | cancel (`session-dead`); the work falls back |
| pending or ready, session epoch moved on | cancel (`continuation-stale`); the work falls back |
| pending, its submission already has a verdict | make it ready (the verdict's routing was lost) |
| ready, not collected within `delivery_timeout` | ring and nudge again; count the attempt |
| unjudged after `submission_ttl`, its wait ended | withdraw the submission; the work is unblocked |
| a session process whose launcher died before its bead was committed | stop it; record it stopped |
| a configured pool is off its desired state | `pool reconcile` (pool/reconcile.py), every pass |
| anything a plugin adds | its `gc_polecat_controller_pass` hook, every pass |

"Falls back" means the work leaves the session: unassigned, routed to the session's pool with
every resume field (routing.py). A pass that finds nothing to do writes nothing, so a
second pass right after the first changes nothing; every action is one commit, so a controller
killed at any moment and restarted converges from the files alone.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import parse_time
from gc_polecat.beads.catalog import Query
from gc_polecat.beads.sync import ControllerSync
from gc_polecat.lifecycle import routing, wakeup
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.submit import SUBMISSION_LABEL, Submission

if TYPE_CHECKING:
    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider


def open_waits(store: Store) -> list[Bead]:
    store.catalog.refresh()
    return [w for w in waits.list_waits(store.catalog, open_only=True) if waits.is_wait(w)]


def _lost(
    session: sessions.Session | None, wait: Bead, providers: Mapping[str, SessionProvider]
) -> str | None:
    """Why the waiting session can no longer take a wake, or None if it can."""
    if session is None or session.state in ("stopped", "dead"):
        return "session-dead"
    if str(session.epoch) != waits.Wait.of(wait).registered_epoch:
        return "continuation-stale"
    if not sessions.is_alive(session, providers):
        return "session-dead"
    return None


def _repair(
    store: Store,
    wait_id: str,
    providers: Mapping[str, SessionProvider],
    delivery_timeout: float,
    now: dt.datetime,
) -> str | None:
    """One wait, one transaction; returns what was done, or None."""
    done: str | None = None
    redeliver: Bead | None = None
    with store.transaction() as tx:
        wait = tx.get(wait_id)
        if wait is None or wait["status"] == "closed":
            return None
        view = waits.Wait.of(wait)
        st = view.state
        session = routing.find_session(tx, view.session_id)
        if st == "pending" and waits.expired(wait, now):
            routing.end_wait_and_fall_back(tx, wait, "wait-expired", expire=True)
            if session is not None and session.state == "awaiting_verdict":
                sessions.set_state(tx, session, "active")
            done = "expired"
        elif (why := _lost(session, wait, providers)) is not None:
            routing.end_wait_and_fall_back(tx, wait, why)
            if (
                session is not None
                and session.state in sessions.LIVE_STATES
                and why == "session-dead"
            ):
                sessions.set_state(tx, session, "dead")
            done = f"canceled ({why})"
        elif st == "pending":
            found = tx.get(view.submission) if view.submission else None
            sub = Submission.of(found) if found is not None else None
            if sub is not None and not sub.open and sub.verdict:
                waits.make_ready(tx, wait, sub.verdict)
                done = "made ready"
        elif st == "ready":
            redeliver = wakeup.redeliver_if_overdue(tx, wait, delivery_timeout, now)
            done = "re-delivered" if redeliver is not None else None
        tx.message = f"controller: {wait_id} {done}" if done else None
    if redeliver is not None:
        wakeup.wake(store, redeliver)
    return done


def one_pass(store: Store, providers: Mapping[str, SessionProvider]) -> list[tuple[str, str]]:
    """One level-triggered pass over every open wait; returns (wait, action) for each change."""
    timeout = store.config()["delivery_timeout"]
    now = dt.datetime.now(dt.UTC)
    actions = [
        (sid, "stopped (launched, never recorded)")
        for sid in sessions.sweep_unrecorded(store, providers)
    ]
    actions += [(wid, "relabelled polecat:wait") for wid in waits.migrate_legacy(store)]
    for wait in open_waits(store):
        done = _repair(store, wait["id"], providers, timeout, now)
        if done:
            actions.append((wait["id"], done))
    ttl = store.config()["submission_ttl"]
    for sub in open_submissions(store):
        if _withdraw(store, sub["id"], ttl, now):
            actions.append((sub["id"], "withdrawn (no verdict)"))
    for found in store.pm.hook.gc_polecat_controller_pass(store=store, providers=providers):
        actions += found  # the pools' reconcile (builtin/pool_commands.py), and plugins'
    return actions


def open_submissions(store: Store) -> list[Bead]:
    store.catalog.refresh()
    return store.catalog.list(Query(labels=(SUBMISSION_LABEL,), include_closed=False))


def _withdraw(store: Store, submission_id: str, ttl: float, now: dt.datetime) -> bool:
    """The refinery never answered: once nobody waits any more and the submission is older
    than `submission_ttl`, close it so the work it blocks can be picked up from the pool.
    A verdict arriving later is refused (the submission is closed without one)."""
    with store.transaction(f"controller: {submission_id} withdrawn, no verdict") as tx:
        sub = tx.get(submission_id)
        if sub is None or sub["status"] == "closed":
            return False
        born = parse_time(sub["created_at"])  # any stored time: imports keep sub-seconds
        if (now - born).total_seconds() < ttl:
            return False
        view = Submission.of(sub)
        wait = tx.get(view.wait) if view.wait else None
        if wait is not None and wait["status"] != "closed":
            return False  # someone still waits: the wait's own expiry comes first
        tx.update(submission_id, {"status": "closed", "close_reason": "withdrawn: no verdict"})
        work = tx.get(view.work) if view.work else None
        if work is not None:
            deps = [d for d in work.get("dependencies", []) if d["depends_on_id"] != submission_id]
            tx.update(work["id"], {"dependencies": deps})
    return True


def run(
    store: Store,
    providers: Mapping[str, SessionProvider],
    *,
    once: bool,
    interval: float,
    report=print,
    sync: str | None = None,
    heartbeat: float = 60.0,
) -> None:  # noqa: ANN001 - a print-like callable
    """Pass after pass; with `sync` (a remote, "" for the default one) each pass first pulls
    and pushes the beads repository (sync.py), and pushes again after a pass that wrote.

    Every line is `HH:MM:SS SUBJECT WHAT` (UTC): one per repair, and, unless `once`, a start
    line and a heartbeat every `heartbeat` seconds (0: none), so a quiet controller is seen
    to run."""

    def say(line: str) -> None:
        report(f"{dt.datetime.now(dt.UTC):%H:%M:%S} {line}")

    syncer = None
    if sync is not None:
        syncer = ControllerSync(store, sync or None, say, strict=once)
    if not once:
        say(f"controller: started on {store.root}, a pass every {interval:g}s (pid {os.getpid()})")
    passes, repairs, last, beat = 0, 0, "none yet", time.monotonic()
    while True:
        if syncer is not None:
            syncer()
        actions = one_pass(store, providers)
        for subject, done in actions:
            say(f"{subject} {done}")
            last = f"{subject} {done}"
        if syncer is not None and actions:
            syncer()
        passes, repairs = passes + 1, repairs + len(actions)
        if once:
            return
        if heartbeat and time.monotonic() - beat >= heartbeat:
            say(f"controller: alive, {passes} passes, {repairs} repairs, last: {last}")
            beat = time.monotonic()
        time.sleep(interval)
