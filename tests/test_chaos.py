"""Chaos: SIGKILL polecats, the refinery and the controller at random points of the lifecycle.

A city (a bare origin, the code clone the sandboxes hang off, the refinery's clone, a beads
repository with pool `cats`: 2 persistent polecats, `max_active` 3 so ephemeral ones appear,
`max_waiting` 2, sessions running `sleep` through the process provider) lives through a series
of small randomized runs; the work items of one run carry over into the next. The test acts as
the polecats with the library calls the CLI makes (commit and push in the sandbox,
`submit.submit`, `wait.await_verdict`, `cleanup.run`) and as a refinery (`record_verdict`).
Each run gives 0-2 new work items to the pool, takes 0-3 random lifecycle steps (submit,
verdict, await, cleanup, a wait's expiry, a controller pass) and, at one or two random points
among them, kills something with SIGKILL:

- `polecat`: the process group of a live pool session (working, waiting, woken, or idle);
- `controller`: a real `gc-polecat controller run` process (half the time right after a polecat
  died, so it has repairs under way), at a random moment or right after its 1st-3rd commit;
- `refinery`: a real `gc-polecat refinery process` process (a real merge queue: claim, rebase,
  push, verdict), likewise;
- `crash`: a real CLI writer (`submit`, `verdict`, `await`, `cleanup`, `sling`, `session stop`,
  `controller run --once`, `refinery process --once`) killed inside its commit at a random step
  of the store's write protocol (GC_POLECAT_TEST_CRASH_AT, see store.crash_point).

The CLI processes run the real click command. Most are forked from the test (an interpreter's
start-up is what would not fit 120 runs in the test's time budget); about one in seven is a fresh
`python -m gc_polecat`. Either way a separate process dies at an arbitrary instruction.

Then the controller restarts: `controller.one_pass` passes, with in-process refinery passes for
open submissions, until nothing changes. After convergence every work item is merged, held by a
live session whose polecat holds it (the very session that held it before, if that one is
alive, unless its wait was released for capacity or expired: resumed by its own session),
escalated, or in the pool with its resume metadata (branch, work_dir, gc.previous_session,
gc.attempt, and the failure fields once judged); no wait is open without its live session at
the same epoch; live waiters are within `max_waiting`; every busy polecat's session holds its
work, and no work has two; no process runs for a session the beads do not hold live (read from
/proc), no worktree belongs to no polecat; no cleanup finalizer that is due is still open, and
a merged work item's branches are gone (on origin; locally unless all they hold is already on
main: a killed `sling`'s, which the polecat's next cleanup prunes) once no finalizer for it is
open; `git status` is clean and `git fsck` finds every object the history reaches (every 10th
run and at each audit: a full `git fsck`). Every `CITY_RUNS` runs (and at the end) the city
finishes its work (the polecats submit, the refinery merges, the sessions clean up; an idle
polecat a killed `sling` left on a branch gets one more assignment, its documented remedy) and
the leak audit (`gc_polecat.demo.audit.audit`: waits, submissions, finalizers, polecats, worktrees,
branches local and on origin, sessions against /proc, git status and fsck) must come back
empty; then a fresh city takes the next runs. The runs are shared between two worker processes
(one per CPU, at most 2).

Reproduce a failure with the seed and run count it prints (GC_POLECAT_CHAOS_SEED,
GC_POLECAT_CHAOS_WORKERS=1, GC_POLECAT_CHAOS_RUNS): the same choices replay, though a kill at
"a random moment" lands where timing puts it. `benchmarks/chaos.py` runs the same engine
longer, with statistics. The tests after the chaos test pin down, one each, the defects it found.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store
from gc_polecat.demo.audit import audit, repository_problems, session_leaks
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
from gc_polecat.pool.sling import sling
from gc_polecat.pool.status import init_pool
from gc_polecat.refinery.queue import Refinery

from .conftest import code_origin

SEED_ENV = "GC_POLECAT_CHAOS_SEED"
RUNS_ENV = "GC_POLECAT_CHAOS_RUNS"
WORKERS_ENV = "GC_POLECAT_CHAOS_WORKERS"
POOL = "cats"
MAX_WAITING = 2
MAX_ATTEMPTS = 4
CITY_RUNS = 50  # runs per city, then it finishes its work, is audited and replaced
FSCK_EVERY = 10  # runs between full `git fsck`s (each run checks connectivity)
CRASH_POINTS = (
    "objects-written",
    "journal-written",
    "locked",
    "file-written",
    "index-written",
    "ref-moved",
)
KILLS = ("polecat", "controller", "refinery", "crash")
EXEC_SHARE = 0.15  # CLI processes started as `python -m gc_polecat` rather than forked


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ChaosFailure(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout


class ChaosFailure(AssertionError):
    pass


@dataclass
class Stats:
    """What the runs did: kills by kind and moment, outcomes, convergence times."""

    runs: int = 0
    cities: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    processes: Counter[str] = field(default_factory=Counter)  # forked / exec
    converge: list[float] = field(default_factory=list)  # seconds, per run
    passes: list[int] = field(default_factory=list)  # controller passes to converge, per run
    run_time: list[float] = field(default_factory=list)
    phases: Counter[str] = field(default_factory=Counter)  # seconds spent, by phase

    def merge(self, other: Stats) -> None:
        self.runs += other.runs
        self.cities += other.cities
        for mine, theirs in (
            (self.kills, other.kills),
            (self.outcomes, other.outcomes),
            (self.processes, other.processes),
            (self.phases, other.phases),
        ):
            mine.update(theirs)
        self.converge += other.converge
        self.passes += other.passes
        self.run_time += other.run_time


# --- CLI processes ----------------------------------------------------------------------------


class Proc:
    """A CLI process: forked from this one (the click command runs in the child), or a fresh
    interpreter. Either is its own session and process group."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid, self.popen, self.code = pid, popen, None

    def poll(self) -> int | None:
        if self.popen is not None:
            self.code = self.popen.poll()
        elif self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self, timeout: float) -> int | None:
        end = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < end:
            time.sleep(0.002)
        return self.code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.wait(30)


def start_cli(
    repo: Path, args: list[str], env: dict[str, str], crash_at: str | None, fresh: bool
) -> Proc:
    argv = ["--repo", str(repo), *args]
    child_env = {**os.environ, **env}
    child_env.pop("GC_POLECAT_TEST_CRASH_AT", None)
    if crash_at:
        child_env["GC_POLECAT_TEST_CRASH_AT"] = crash_at
    if fresh:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gc_polecat", *argv], env=child_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        return Proc(popen.pid, popen)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.environ.clear()
            os.environ.update(child_env)
            from gc_polecat.beads import store as store_module
            from gc_polecat.cli import make_cli

            store_module._CRASH_AT = crash_at  # read from the environment at import time
            make_cli(make_plugin_manager(load_entrypoints=False)).main(
                args=argv, prog_name="gc-polecat"
            )
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the child must never return into pytest
            code = 1
        finally:
            os._exit(code)
    return Proc(pid)


def _group_alive(pgid: int) -> bool:
    """Any non-zombie process left in the group (a git the killed CLI had started)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _is_ancestor(repo: Path, commit: str, of: str) -> bool:
    args = ["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, of]
    return subprocess.run(args, capture_output=True).returncode == 0


def _processes_of(beads: Path) -> list[tuple[int, dict[str, str]]]:
    """Live processes whose environment names this beads repository: pool sessions."""
    found = []
    want = f"GC_POLECAT_REPO={beads}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "environ").read_bytes()
            if want not in raw.split(b"\0"):
                continue
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            items = (
                i.decode(errors="replace").split("=", 1) for i in raw.split(b"\0") if b"=" in i
            )
            found.append((int(entry.name), dict(items)))
    return found


def _wait_for(probe: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > end:
            raise ChaosFailure(f"timed out waiting for {what}")
        time.sleep(0.005)


# --- the city ---------------------------------------------------------------------------------


class ChaosCity:
    """One city and everything the test does to it."""

    def __init__(self, tmp: Path, rng: random.Random, stats: Stats) -> None:
        self.tmp, self.rng, self.stats = tmp, rng, stats
        self.beads = tmp / "beads"
        self.origin, self.code = tmp / "origin.git", tmp / "code"
        self.refinery_clone = tmp / "refinery"
        code_origin(self.origin, self.code, self.refinery_clone)
        self.pm = make_plugin_manager(load_entrypoints=False)
        Store.init(self.beads, prefix="gc", pm=self.pm)
        (self.beads / ".beads" / "config.yaml").write_text(
            f"prefix: gc\nmax_attempts: {MAX_ATTEMPTS}\n"
            f"pools:\n  {POOL}:\n    max_active: 3\n    max_waiting: {MAX_WAITING}\n"
            f"    repo: {self.code}\n    provider: process\n    command: [sleep, '900']\n"
            f"refinery:\n  repo: {self.refinery_clone}\n"
            # a killed refinery's claim must not hold its restart off for 15 minutes
            "  claim_ttl: 0s\n"
        )
        git(self.beads, "commit", "-qam", "configure the chaos city")
        self.store = Store(self.beads, pm=self.pm)
        self.providers = get_providers(self.pm)
        self.refinery = Refinery(self.store, self.providers, self.store.config()["refinery"])
        init_pool(self.store, POOL, 2)
        self.works: list[str] = []
        self.last_pass_at = dt.datetime.now(dt.UTC)
        self.procs: list[Proc] = []  # CLI processes started
        self.log: list[str] = []  # what the current run did, for a failure message
        self.number = 0

    # --- reading ------------------------------------------------------------------------------

    def get(self, bead_id: str) -> dict[str, Any]:
        return self.store.get(bead_id)

    def open_beads(self, label: str) -> list[dict[str, Any]]:
        self.store.catalog.refresh()
        return self.store.catalog.list(Query(labels=(label,), include_closed=False))

    def session(self, session_id: str) -> sessions.Session | None:
        if not session_id:
            return None
        try:
            return sessions.get(self.store, session_id)
        except Exception:  # noqa: BLE001 - a missing or foreign bead is no session
            return None

    def alive(self, session_id: str) -> bool:
        s = self.session(session_id)
        return s is not None and sessions.is_alive(s, self.providers)

    def live_sessions(self) -> list[sessions.Session]:
        self.store.catalog.refresh()
        beads = self.store.catalog.list(
            Query(labels=(sessions.SESSION_LABEL,), include_closed=False)
        )
        live = (sessions.Session.of(b) for b in beads)
        return [s for s in live if sessions.is_alive(s, self.providers)]

    def commit(self) -> str:
        return (self.store.head()[1] or b"").decode()

    def final(self, work_id: str) -> bool:
        work = self.get(work_id)
        return work["status"] == "closed" or ESCALATED_LABEL in work.get("labels", [])

    def active(self) -> list[str]:
        return [w for w in self.works if not self.final(w)]

    def held(self, work_id: str) -> str:
        """The live session the work is assigned to ("" if none)."""
        work = self.get(work_id)
        sid = work.get("assignee", "")
        return sid if sid and work["status"] != "closed" and self.alive(sid) else ""

    def ready_to_submit(self, work_id: str) -> str:
        """The holding session if the work is in progress with no submission open."""
        sid = self.held(work_id)
        work = self.get(work_id)
        sub = work.get("metadata", {}).get("gc.submission")
        if not sid or work["status"] != "in_progress":
            return ""
        if sub and self.get(sub)["status"] != "closed":
            return ""
        return sid

    # --- the polecat's side (what tests/polecat_agent.sh does through the CLI) ---------------

    def push_work(self, work_id: str) -> tuple[Path, str, str]:
        """The polecat's edit: commit in its sandbox and push its branch."""
        meta = self.get(work_id)["metadata"]
        tree, branch = Path(meta["work_dir"]), meta["branch"]
        with open(tree / f"{work_id}.txt", "a") as f:
            f.write(f"{work_id} {time.monotonic_ns()}\n")
        script = (
            'git add -A && git commit -qm "polecat: $1" && '
            'git push -q origin "HEAD:refs/heads/$2" && git rev-parse HEAD'
        )
        proc = subprocess.run(
            ["sh", "-c", script, "push", work_id, branch], cwd=tree, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ChaosFailure(f"the polecat could not push {work_id} from {tree}: {proc.stderr}")
        return tree, branch, proc.stdout.strip()

    def polecat_submit(self, work_id: str) -> str:
        sid = self.ready_to_submit(work_id)
        if not sid:
            return ""
        s = self.session(sid)
        assert s is not None
        tree, branch, commit = self.push_work(work_id)
        with self.store.transaction() as tx:
            done = submit(
                tx, work_id, session_id=sid, epoch=s.epoch, branch=branch, commit=commit,
                target="main", ttl=3600, worktree=str(tree),
            )  # fmt: skip
            tx.message = f"{work_id}: submitted attempt {done.attempt} as {done.submission['id']}"
        self.log.append(f"submit {work_id} attempt {done.attempt} by {sid}")
        return done.submission["id"]

    def polecat_await(self, wait_id: str) -> None:
        """`await` by the waiting session; after a merge the session runs its cleanup."""
        wait = self.get(wait_id)
        sid = wait["metadata"].get("session_id", "")
        s = self.session(sid)
        if s is None or not sessions.is_alive(s, self.providers):
            return
        result = waits.await_verdict(self.store, wait, timeout=0, epoch=s.epoch, session_id=sid)
        self.log.append(f"await {wait_id} by {sid}: {result.code}")
        if result.code == waits.EXIT_MERGED:
            self.session_cleanup(sid)

    def session_cleanup(self, session_id: str) -> None:
        """`gc-polecat cleanup` in the session (after `await` exits 0, or run again by an
        agent whose first try was killed)."""
        s = self.session(session_id)
        p = polecats.get(self.store, s.bead.get("metadata", {}).get("polecat", "")) if s else None
        fin = p.bead.get("metadata", {}).get("cleanup", "") if p and p.session == s.id else ""
        if fin:
            out = cleanup.run(self.store, fin, self.providers)
            self.log.append(f"cleanup {fin} by {session_id}: {out.result} {out.detail}")

    def cleaning(self) -> list[str]:
        """Live sessions whose polecat has a cleanup pending."""
        return [
            p.session
            for p in polecats.of_pool(self.store, POOL)
            if p.state == "done" and self.alive(p.session)
        ]

    # --- the refinery's side, by hand --------------------------------------------------------

    def judge(self, sub_id: str, outcome: str) -> None:
        failure = "tests" if outcome == "fix_needed" else None
        with self.store.transaction() as tx:
            judged = record_verdict(
                tx, sub_id, outcome, providers=self.providers, failure_type=failure,
                reason="tests failed" if failure else "", refinery="chaos",
            )  # fmt: skip
            tx.message = f"{sub_id}: verdict {outcome}, work routed to {judged.routed}"
        self.log.append(f"verdict {sub_id} {outcome} -> {judged.routed}")

    # --- chaos --------------------------------------------------------------------------------

    def cli(self, args: list[str], env: dict[str, str] | None = None, crash_at: str = "") -> Proc:
        fresh = self.rng.random() < EXEC_SHARE
        self.stats.processes["python -m gc_polecat" if fresh else "forked"] += 1
        proc = start_cli(self.beads, args, env or {}, crash_at or None, fresh)
        self.procs.append(proc)
        return proc

    def kill_running(self, args: list[str]) -> str:
        """Start a long-running CLI process and SIGKILL it (not its children: a git it runs
        finishes, as when one process of a machine dies) at a random moment, or right after
        its first, second or third commit."""
        proc = self.cli(args)
        before = self.commit()
        startup = 0.25 if proc.popen else 0.0  # an interpreter's start-up and imports
        if self.rng.random() < 0.5:
            proc.wait(startup + self.rng.uniform(0.0, 0.2))
            moment = "at a random moment"
        else:
            commits = self.rng.randint(1, 3)
            seen, last, end = 0, before, time.monotonic() + startup + 0.25
            while seen < commits and time.monotonic() < end and proc.poll() is None:
                now = self.commit()
                if now != last:
                    seen, last = seen + 1, now
                else:
                    time.sleep(0.001)
            time.sleep(self.rng.uniform(0.0, 0.02))
            moment = f"after commit {seen}" if seen else "idle"
        exited = proc.poll() is not None
        proc.kill()
        _wait_for(lambda: not _group_alive(proc.pid), "the killed process's children", 30)
        wrote = "wrote" if self.commit() != before else "wrote nothing"
        self.log.append(f"KILL {' '.join(args)}: {moment}, {wrote}{', exited' if exited else ''}")
        return f"{moment} ({wrote})" if not exited else "exited before the kill"

    def kill_polecat(self) -> str:
        live = [s for s in self.live_sessions() if s.pool == POOL]
        if not live:
            return ""
        s = self.rng.choice(live)
        p = polecats.get(self.store, s.bead.get("metadata", {}).get("polecat", ""))
        stage = p.state if p is not None and p.session == s.id else "idle"
        if stage == "awaiting_verdict" and p is not None:
            wid = self.get(p.work).get("metadata", {}).get("gc.wait", "")
            if wid and waits.state(self.get(wid)) == "ready":
                stage = "woken"
        os.killpg(int(s.handle["pgid"]), signal.SIGKILL)
        _wait_for(lambda: not sessions.is_alive(s, self.providers), "the killed session to die")
        self.log.append(f"KILL polecat session {s.id} ({stage})")
        return stage

    def kill_controller(self) -> str:
        """Half the time a polecat dies first, so the controller has repairs under way."""
        first = ""
        if self.rng.random() < 0.5 and (stage := self.kill_polecat()):
            first = f", with a polecat killed first ({stage})"
        return self.kill_running(["controller", "run", "--interval", "0.05"]) + first

    def kill_refinery(self) -> str:
        if not self.open_beads(SUBMISSION_LABEL):
            for w in self.active():
                if self.polecat_submit(w):
                    break
        return self.kill_running(["refinery", "process", "--interval", "0.05"])

    def crash_writer(self) -> str:
        """A real CLI writer killed inside its commit, at a random step of the protocol."""
        point = self.rng.choice(CRASH_POINTS)
        name, prepare = self.rng.choice(self.writers())
        args, env = prepare()
        before = self.commit()
        built = self.catalog_build()
        proc = self.cli(args, env, crash_at=point)
        if proc.wait(60) is None:
            raise ChaosFailure(f"{' '.join(args)} did not finish")
        _wait_for(lambda: not _group_alive(proc.pid), "the crashed writer's children", 30)
        killed = proc.code == -signal.SIGKILL
        moved = self.commit() != before
        self.log.append(f"CRASH {' '.join(args)} at {point}: exit {proc.code}, moved={moved}")
        if self.catalog_build() != built:  # issue 17, point 3: recovery catches up
            raise ChaosFailure(f"recovering from {name} killed at {point} rebuilt the catalog")
        if killed:
            return f"{name} at {point}"
        return f"{name} (no write: exit {proc.code})"

    def catalog_build(self) -> str | None:
        """The catalog's build token after a refresh (which recovers a killed writer first):
        it changes only when the catalog is rebuilt from nothing."""
        self.store.catalog.refresh()
        return self.store.catalog.build_id()

    def writers(self) -> list[tuple[str, Callable[[], tuple[list[str], dict[str, str]]]]]:
        """Every CLI write that applies right now, each prepared only if chosen."""
        found: list[tuple[str, Callable[[], tuple[list[str], dict[str, str]]]]] = [
            ("controller run --once", lambda: (["controller", "run", "--once"], {})),
        ]
        for w in self.active():
            work = self.get(w)
            sid = self.ready_to_submit(w)
            if sid:
                found.append(("submit", lambda w=w, sid=sid: self._submit_args(w, sid)))
            sub = work.get("metadata", {}).get("gc.submission", "")
            if sub and self.get(sub)["status"] != "closed":
                found.append(
                    ("refinery process --once", lambda: (["refinery", "process", "--once"], {}))
                )
                merged = ["verdict", sub, "--merged"]
                fix = ["verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red"]
                found.append(("verdict", lambda m=merged, f=fix: (self.rng.choice((m, f)), {})))
            if work["status"] == "open" and not work.get("assignee"):
                found.append(("sling", lambda w=w: (["sling", w, "--pool", POOL], {})))
        for s in self.live_sessions():
            found.append(("session stop", lambda s=s: (["session", "stop", s.id], {})))
        for wait in self.open_beads(waits.WAIT_LABEL):
            s = self.session(wait["metadata"].get("session_id", ""))
            if waits.state(wait) == "ready" and s is not None:
                env = {"GC_SESSION_ID": s.id, "GC_CONTINUATION_EPOCH": str(s.epoch)}
                args = ["await", wait["id"], "--timeout", "0"]
                found.append(("await", lambda a=args, e=env: (a, e)))
        for fin in self.open_beads(cleanup.CLEANUP_LABEL):
            found.append(("cleanup", lambda f=fin["id"]: (["cleanup", f], {})))
        return found

    def _submit_args(self, work_id: str, sid: str) -> tuple[list[str], dict[str, str]]:
        s = self.session(sid)
        assert s is not None
        tree, branch, commit = self.push_work(work_id)
        args = ["submit", work_id, "--branch", branch, "--commit", commit,
                "--worktree", str(tree), "--ttl", "1h"]  # fmt: skip
        return args, {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": str(s.epoch)}

    def chaos(self) -> None:
        kind = self.rng.choice(KILLS)
        what = {
            "polecat": self.kill_polecat,
            "controller": self.kill_controller,
            "refinery": self.kill_refinery,
            "crash": self.crash_writer,
        }[kind]()
        if what:
            self.stats.kills[f"{kind}: {what}"] += 1
            self.stats.kills[f"{kind} (all)"] += 1

    # --- ordinary progress ---------------------------------------------------------------------

    def step(self) -> None:
        """One random move of the lifecycle, by whoever can make one."""
        moves: list[tuple[str, str]] = [("controller", "")]
        for w in self.active():
            if self.ready_to_submit(w):
                moves.append(("submit", w))
        for sub in self.open_beads(SUBMISSION_LABEL):
            moves.append(("verdict", sub["id"]))
        for wait in self.open_beads(waits.WAIT_LABEL):
            moves.append(("await" if waits.state(wait) == "ready" else "expire", wait["id"]))
        moves += [("cleanup", sid) for sid in self.cleaning()]
        kind, target = self.rng.choice(moves)
        if kind == "submit":
            self.polecat_submit(target)
        elif kind == "verdict":
            self.judge(target, "merged" if self.rng.random() < 0.6 else "fix_needed")
        elif kind == "await":
            self.polecat_await(target)
        elif kind == "cleanup":
            self.session_cleanup(target)
        elif kind == "expire" and self.rng.random() < 0.3:
            with self.store.transaction(f"{target}: expiry moved to the past (chaos)") as tx:
                wait = tx.require(target)
                meta = {**wait["metadata"], "expires_at": waits.at(-1)}
                tx.update(target, {"metadata": meta})
            self.log.append(f"expire {target}")
        else:
            self.log.append(f"controller: {controller_pass(self.store, self.providers)}")

    # --- convergence and the invariants --------------------------------------------------------

    def converge(self, limit: int = 40) -> int:
        """The restarted controller, with the refinery judging what is still open."""
        for n in range(1, limit + 1):
            self.last_pass_at = dt.datetime.now(dt.UTC)  # the time the quiet pass judged by
            actions = controller_pass(self.store, self.providers)
            judged: list[Any] = []
            if self.open_beads(SUBMISSION_LABEL):
                judged = [o for o in self.refinery.pass_once() if o.result != "skipped"]
            self.log.append(f"converge {n}: {actions} {[(o.submission, o.result) for o in judged]}")
            if not actions and not judged:
                return n
        raise ChaosFailure("the controller never converged")

    def check(self, before: dict[str, str]) -> list[str]:
        """The chaos invariants, read from the beads, git and /proc."""
        problems = []
        for w in self.works:
            outcome, why = self.classify(w, before.get(w, ""))
            if why:
                problems.append(f"{w}: {why}")
            elif w in before:
                self.stats.outcomes[outcome] += 1
        waiting = 0
        for wait in self.open_beads(waits.WAIT_LABEL):
            meta = wait["metadata"]
            s = self.session(meta.get("session_id", ""))
            if s is None or not sessions.is_alive(s, self.providers):
                problems.append(f"wait {wait['id']} is open without a live session")
            elif str(s.epoch) != meta.get("registered_epoch"):
                problems.append(f"wait {wait['id']} is open for a stale epoch")
            waiting += waits.state(wait) == "pending"
        if waiting > MAX_WAITING:
            problems.append(f"{waiting} live waiters > max_waiting {MAX_WAITING}")
        problems += self.polecat_problems()
        problems += session_leaks(self.store, self.providers)
        problems += self.stray_processes()
        problems += self.stray_worktrees()
        problems += self.finalizer_and_branch_leaks()
        problems += self.repository_problems(full=self.number % FSCK_EVERY == 0)
        return problems

    def repository_problems(self, full: bool) -> list[str]:
        """`git status` clean and `git fsck` clean: every run checks that every object the
        history reaches is there; every FSCK_EVERY runs (and the audit) also every object's
        content."""
        if full:
            return repository_problems(self.beads)
        problems = []
        if git(self.beads, "status", "--porcelain").strip():
            problems.append("the beads repository has uncommitted changes")
        fsck = subprocess.run(
            ["git", "-C", str(self.beads), "fsck", "--connectivity-only", "--no-dangling"],
            capture_output=True,
            text=True,
        )
        if fsck.returncode != 0 or "error" in fsck.stderr.lower():
            problems.append(f"git fsck --connectivity-only: {fsck.stderr.strip()[:300]}")
        return problems

    def classify(self, w: str, held_before: str) -> tuple[str, str]:
        """(outcome, "") when the work item is where the contract allows, else ("", why)."""
        work = self.get(w)
        meta = work.get("metadata", {})
        sid = work.get("assignee", "")
        if work["status"] == "closed":
            if meta.get("merge_result") == "merged":
                return "merged", ""
            return "", f"closed without a merge ({work.get('close_reason')})"
        if ESCALATED_LABEL in work.get("labels", []):
            ok = work["status"] == "blocked" and not sid
            return ("escalated", "") if ok else ("", "escalated but still assigned")
        if (
            held_before
            and self.alive(held_before)
            and sid != held_before
            and meta.get("gc.fallback_reason") not in ("released-capacity", "wait-expired")
        ):  # a live session keeps its work unless its wait was released or expired
            return "", f"taken from its live session {held_before} (now {sid or 'nobody'})"
        if sid:
            s = self.session(sid)
            if s is None or not sessions.is_alive(s, self.providers):
                return "", f"assigned to {sid}, which is not a live session"
            p = polecats.get(self.store, s.bead.get("metadata", {}).get("polecat", ""))
            if p is None or p.work != w or p.session != sid or p.state not in polecats.BUSY_STATES:
                return "", f"assigned to {sid} but its polecat does not hold it"
            if sid == held_before:
                verdict = self.get(meta["gc.verdict"]) if meta.get("gc.verdict") else {}
                fixing = verdict.get("metadata", {}).get("session") == sid
                return f"resumed by its own session{' after fix needed' if fixing else ''}", ""
            if meta.get("gc.previous_session"):
                return "resumed from the pool's metadata by another session", ""
            return "slung from the pool's queue", ""
        if work["status"] != "open" or meta.get("gc.routed_to") != POOL:
            return "", f"owned by nobody: {work['status']}, routed to {meta.get('gc.routed_to')}"
        if not meta.get("gc.polecat"):
            return "queued in the pool", ""
        missing = [k for k in ("branch", "work_dir", "gc.previous_session") if not meta.get(k)]
        if meta.get("gc.submission") and not meta.get("gc.attempt"):
            missing.append("gc.attempt")
        verdict = meta.get("gc.verdict")
        if verdict and self.get(verdict)["metadata"].get("outcome") == "fix_needed":
            missing += [
                k for k in ("rejection_reason", "gc.failure_type", "gc.failed_commit")
                if not meta.get(k)
            ]  # fmt: skip
        if missing:
            return "", f"in the pool without {', '.join(missing)}"
        return "in the pool with its resume metadata", ""

    def polecat_problems(self) -> list[str]:
        """One owner each: a busy polecat's live session is its work's assignee, and no
        two polecats hold the same work."""
        problems, holders = [], Counter[str]()
        for p in polecats.of_pool(self.store, POOL):
            if p.state in ("working", "awaiting_verdict"):
                holders[p.work] += 1
                work = self.get(p.work)
                if work.get("assignee") != p.session or not self.alive(p.session):
                    problems.append(
                        f"polecat {p.name} is {p.state} on {p.work}, which is assigned to "
                        f"{work.get('assignee') or 'nobody'} (its session {p.session})"
                    )
            elif p.state == "done":
                fin = p.bead.get("metadata", {}).get("cleanup", "")
                if not fin or self.get(fin)["status"] == "closed":
                    problems.append(f"polecat {p.name} is done without an open finalizer")
        problems += [f"{w} is held by {n} polecats" for w, n in holders.items() if n > 1]
        return problems

    def stray_processes(self) -> list[str]:
        """A process started for a session of this city whose bead is not live: a launcher
        killed between starting it and recording it would leave one."""
        problems = []
        for pid, env in _processes_of(self.beads):
            s = self.session(env.get("GC_SESSION_ID", ""))
            if s is None or s.state not in sessions.LIVE_STATES:
                state = "no session bead" if s is None else s.state
                problems.append(
                    f"process {pid} runs for session {env.get('GC_SESSION_ID')} ({state})"
                )
        return problems

    def finalizer_and_branch_leaks(self) -> list[str]:
        """After convergence a cleanup finalizer is open only while it is not due yet (a merge
        whose live session has `delivery_timeout` to clean up itself); a merged work item's
        polecat branches, local or on origin, are gone once no finalizer for it is open.
        "Due" is judged at the start of the last, quiet, controller pass: one that fell due
        while these checks ran (slow under load) had no pass to run it yet."""
        problems, cleaning = [], set()
        grace = self.store.config()["delivery_timeout"]
        now = self.last_pass_at
        for fin in self.open_beads(cleanup.CLEANUP_LABEL):
            meta = fin["metadata"]
            cleaning.add(meta.get("work", ""))
            if cleanup.due(fin, self.alive(meta.get("session", "")), grace, now):
                problems.append(f"finalizer {fin['id']} is due but open after convergence")
        fmt = "--format=%(refname) %(objectname)"
        local = git(self.code, "for-each-ref", fmt, "refs/heads/polecat/").splitlines()
        remote = git(self.origin, "for-each-ref", fmt, "refs/heads/polecat/").splitlines()
        base = git(self.code, "rev-parse", "refs/remotes/origin/main").strip()
        for where, listing in (("in the code clone", local), ("on origin", remote)):
            for ref, tip in (line.split() for line in listing):
                work = ref.rsplit("/", 1)[1].split("@", 1)[0]
                if work in cleaning or self.get(work)["status"] != "closed":
                    continue
                if where != "on origin" and _is_ancestor(self.code, tip, base):
                    continue  # no commits of its own: a killed sling's, its polecat's next
                    # cleanup prunes it (docs/pool.md)
                problems.append(f"branch {ref} of merged {work} left {where}")
        return problems

    def stray_worktrees(self) -> list[str]:
        from gc_polecat.lifecycle import sandbox

        owned = {Path(p.sandbox).resolve() for p in polecats.of_pool(self.store, POOL) if p.sandbox}
        found = set(sandbox.worktrees(self.code))
        return [f"worktree {t} belongs to no polecat" for t in sorted(found - owned)]

    def finish(self, limit: int = 100) -> None:
        """Everything left is driven to a merge: the polecats submit, the refinery merges,
        the sessions collect their verdicts and clean up, the controller passes."""
        for _ in range(limit):
            for w in self.active():
                self.polecat_submit(w)
            for sub in self.open_beads(SUBMISSION_LABEL):
                self.judge(sub["id"], "merged")
            for wait in self.open_beads(waits.WAIT_LABEL):
                if waits.state(wait) == "ready":
                    self.polecat_await(wait["id"])
            for sid in self.cleaning():
                self.session_cleanup(sid)
            actions = controller_pass(self.store, self.providers)
            self.log.append(f"finish: {actions}")
            settled = not self.active() and not self.open_beads(cleanup.CLEANUP_LABEL)
            if settled and not actions and not self.live_sessions():
                return
        raise ChaosFailure("the city never finished its work:\n  " + self.describe())

    def describe(self) -> str:
        """Where everything stands, for a failure message."""
        lines = []
        for w in self.active():
            b = self.get(w)
            m = b.get("metadata", {})
            lines.append(
                f"{w} {b['status']} assignee={b.get('assignee', '')} attempt={m.get('gc.attempt')}"
                f" sub={m.get('gc.submission')} polecat={m.get('gc.polecat')}"
                f" routed={m.get('gc.routed_to')} labels={b.get('labels')}"
                f" deps={[d['depends_on_id'] for d in b.get('dependencies', [])]}"
            )
        for p in polecats.of_pool(self.store, POOL, include_retired=True):
            lines.append(f"polecat {p.name} {p.state} work={p.work} session={p.session}")
        for f in self.open_beads(cleanup.CLEANUP_LABEL):
            lines.append(f"finalizer {f['id']} {f['metadata']}")
        for s in self.live_sessions():
            lines.append(f"live session {s.id} {s.state} {s.bead['metadata'].get('work')}")
        return "\n  ".join(lines)

    def audit(self) -> None:
        self.log = ["(finishing the city's work)"]
        self.finish()
        if self.unsynced():  # a `sling` killed after its branch, before its commit
            self.log.append(f"unsynced idle sandboxes {self.unsynced()}: one more round of work")
            made = [self.new_work(f"last round {i}") for i in range(len(self.idle()))]
            for w in made:
                sling(self.store, self.providers, w, POOL)
            self.finish()
        _wait_for(lambda: not session_leaks(self.store, self.providers), "stopped sessions", 10)
        escalated = [w for w in self.works if ESCALATED_LABEL in self.get(w).get("labels", [])]
        problems = [  # an escalated work item's branch stays on origin for a person
            p
            for p in audit(self.store, self.providers) + self.stray_processes()
            if not any(p.endswith(" left on origin") and f"/{w}@" in p for w in escalated)
        ]
        if problems:
            raise ChaosFailure("the audit after finishing:\n  " + "\n  ".join(problems))

    def idle(self) -> list[polecats.Polecat]:
        return [p for p in polecats.of_pool(self.store, POOL) if p.state == "idle"]

    def unsynced(self) -> list[str]:
        """Idle polecats whose sandbox is on a branch: what a `sling` killed between its git
        side and its commit leaves (docs/pool.md), until the polecat's next assignment is
        cleaned up."""
        from gc_polecat.lifecycle import sandbox

        return [
            p.name
            for p in self.idle()
            if sandbox.state(Path(p.sandbox), p.name, "main").branch is not None
        ]

    def new_work(self, title: str) -> str:
        with self.store.transaction() as tx:
            work = tx.create({"title": title})["id"]
        self.works.append(work)
        return work

    # --- one run ----------------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        self.log = []
        rng, phases = self.rng, self.stats.phases
        new = rng.choice((0, 0, 1, 1, 2)) if len(self.active()) < 3 else 0
        if new:
            with self.store.transaction() as tx:
                made = [tx.create({"title": f"chaos {self.number}.{i}"})["id"] for i in range(new)]
                tx.message = f"chaos run {self.number}: {new} work items"
            self.works += made
            for w in made:
                slung = sling(self.store, self.providers, w, POOL)
                self.log.append(f"sling {w}: {slung.session or 'queued'}")
        phases["new work"] += time.monotonic() - started
        steps = rng.randint(0, 3)
        kills = set(rng.sample(range(steps + 2), rng.choice((1, 1, 1, 2))))
        for i in range(steps + 2):
            t0 = time.monotonic()
            if i in kills:
                self.chaos()
                phases["kills"] += time.monotonic() - t0
            elif i <= steps:
                self.step()
                phases["lifecycle steps"] += time.monotonic() - t0
        before = {w: self.held(w) for w in self.active()}
        t0 = time.monotonic()
        self.stats.passes.append(self.converge())
        self.stats.converge.append(time.monotonic() - t0)
        phases["convergence"] += self.stats.converge[-1]
        t0 = time.monotonic()
        problems = self.check(before)
        phases["checks"] += time.monotonic() - t0
        if problems:
            raise ChaosFailure("after convergence:\n  " + "\n  ".join(problems))
        self.number += 1
        self.stats.runs += 1
        self.stats.run_time.append(time.monotonic() - started)

    def teardown(self) -> None:
        """Stop every process this city started (sessions, and any a killed CLI left)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for s in self.live_sessions():
            with contextlib.suppress(Exception):
                self.providers[s.provider].stop(s.handle, grace=0.1)
        for pid, _env in _processes_of(self.beads):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def run_chaos(
    tmp: Path,
    seed: int,
    runs: int,
    *,
    workers: int = 1,
    city_runs: int = CITY_RUNS,
    report: Callable[[int, Stats], None] | None = None,
) -> Stats:
    """`runs` randomized runs, `city_runs` per city, shared among `workers` processes (worker
    i uses seed `seed + i`, so worker 0 of any run repeats a one-worker run with the same
    seed); a ChaosFailure names the worker's seed and the run."""
    if workers <= 1:
        return _serial(tmp, seed, runs, city_runs, report)
    import pickle

    children = []
    for i in range(workers):
        share = runs // workers + (i < runs % workers)
        out = tmp / f"worker-{i}.pickle"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                os.setpgid(0, 0)
                signal.signal(signal.SIGTERM, _interrupt)  # a sibling failed: tear down
                (tmp / f"worker-{i}").mkdir()
                result: Any = _serial(tmp / f"worker-{i}", seed + i, share, city_runs, None)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                result = ChaosFailure(str(exc))
            finally:
                with contextlib.suppress(BaseException):
                    out.write_bytes(pickle.dumps(result))
                os._exit(code)
        children.append((pid, out))
    total, failures, running = Stats(), [], dict(children)
    while running:
        for pid in [pid for pid in running if os.waitpid(pid, os.WNOHANG)[0]]:
            out = running.pop(pid)
            result = pickle.loads(out.read_bytes()) if out.exists() else ChaosFailure("died")
            if not isinstance(result, BaseException):
                total.merge(result)
                continue
            if not failures:  # fail fast: the others stop (and clean up) now
                for other in running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(other, signal.SIGTERM)
            if "another worker failed" not in str(result):
                failures.append(str(result))
        time.sleep(0.05)
    if failures:
        raise ChaosFailure("\n".join(failures))
    return total


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("stopped: another worker failed")


def _serial(
    tmp: Path,
    seed: int,
    runs: int,
    city_runs: int,
    report: Callable[[int, Stats], None] | None,
) -> Stats:
    rng = random.Random(seed)
    stats = Stats()
    n = 0
    while n < runs:
        home = Path(tempfile.mkdtemp(prefix=f"city{stats.cities}-", dir=tmp))
        t0 = time.monotonic()
        chaos_city = ChaosCity(home, rng, stats)
        stats.phases["city set-up and final audit"] += time.monotonic() - t0
        stats.cities += 1
        try:
            for _ in range(min(city_runs, runs - n)):
                _attempt(chaos_city, chaos_city.run, seed, n)
                n += 1
                if report is not None:
                    report(n, stats)
            t0 = time.monotonic()
            _attempt(chaos_city, chaos_city.audit, seed, n)
            stats.phases["city set-up and final audit"] += time.monotonic() - t0
        finally:
            chaos_city.teardown()
    return stats


def _attempt(chaos_city: ChaosCity, what: Callable[[], None], seed: int, n: int) -> None:
    try:
        what()
    except Exception as exc:
        log = "\n    ".join(chaos_city.log[-80:])
        raise ChaosFailure(
            f"chaos seed {seed}, run {n}: reproduce with {SEED_ENV}={seed} {WORKERS_ENV}=1 "
            f"{RUNS_ENV}={n + 1}: {exc}\n  the run did:\n    {log}"
        ) from exc


def summary(stats: Stats) -> str:
    def pct(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0

    lines = [f"{stats.runs} runs on {stats.cities} cities", "kills:"]
    lines += [f"  {k:<70} {v:>6}" for k, v in sorted(stats.kills.items())]
    lines.append("CLI processes:")
    lines += [f"  {k:<70} {v:>6}" for k, v in sorted(stats.processes.items())]
    lines.append("work items after convergence (one count per item per run):")
    lines += [f"  {k:<70} {v:>6}" for k, v in sorted(stats.outcomes.items())]
    conv = stats.converge
    lines.append(
        f"convergence: p50 {pct(conv, 0.5) * 1e3:.0f} ms, p99 {pct(conv, 0.99) * 1e3:.0f} ms, "
        f"max {max(conv, default=0) * 1e3:.0f} ms; controller passes p50 "
        f"{pct(stats.passes, 0.5):.0f}, max {max(stats.passes, default=0)}"
    )
    lines.append("time by phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in stats.phases.items()))
    rt = stats.run_time
    lines.append(f"run time: p50 {pct(rt, 0.5) * 1e3:.0f} ms, p99 {pct(rt, 0.99) * 1e3:.0f} ms")
    return "\n".join(lines)


# --- the test ---------------------------------------------------------------------------------


def test_chaos_sigkill_at_random_points_converges_without_leaks(tmp_path: Path) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 32))
    runs = int(os.environ.get(RUNS_ENV, "120"))
    workers = int(os.environ.get(WORKERS_ENV) or min(2, os.cpu_count() or 1))
    print(f"\nchaos: {SEED_ENV}={seed}, {runs} runs, {workers} workers")
    started = time.monotonic()
    stats = run_chaos(tmp_path, seed, runs, workers=workers)
    print(summary(stats))
    print(f"chaos: {time.monotonic() - started:.1f} s")
    assert stats.runs == runs
    if runs >= 100:  # every kind of kill happened
        assert all(stats.kills[f"{kind} (all)"] for kind in KILLS), stats.kills


@pytest.fixture(autouse=True)
def _no_inherited_crash_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GC_POLECAT_TEST_CRASH_AT", raising=False)


# --- the defects the chaos found, each on its own --------------------------------------------


@pytest.fixture
def chaos_city(tmp_path: Path) -> Any:
    c = ChaosCity(tmp_path, random.Random(0), Stats())
    yield c
    c.teardown()


def _crashed(chaos_city: ChaosCity, args: list[str], point: str) -> None:
    """A real `python -m gc_polecat` writer, killed at `point` of its first commit."""
    proc = start_cli(chaos_city.beads, args, {}, point, fresh=True)
    assert proc.wait(60) == -signal.SIGKILL, f"{args} was not killed at {point}"


def test_a_launcher_killed_before_its_commit_leaves_no_session_running(
    chaos_city: ChaosCity,
) -> None:
    """`sling` starts the polecat's session before the commit that records it; killed in
    between, it used to leave a `sleep` running that no bead named, forever. The controller
    now stops it and records it (from the launch record `session.launch` writes first)."""
    work = chaos_city.new_work("slung by a launcher killed before its commit")
    _crashed(chaos_city, ["sling", work, "--pool", POOL], "objects-written")
    (orphan,) = _processes_of(chaos_city.beads)
    sid = orphan[1]["GC_SESSION_ID"]
    assert chaos_city.session(sid) is None  # nothing recorded it
    head = chaos_city.commit()
    actions = controller_pass(chaos_city.store, chaos_city.providers)
    assert (sid, "stopped (launched, never recorded)") in actions
    assert _processes_of(chaos_city.beads) == [] and chaos_city.stray_processes() == []
    s = chaos_city.session(sid)
    assert s is not None and s.state == "stopped" and s.bead["close_reason"] == "launcher-died"
    assert len(git(chaos_city.beads, "rev-list", f"{head}..HEAD").split()) == len(actions)
    assert [a for a in controller_pass(chaos_city.store, chaos_city.providers) if a[0] == sid] == []


def test_a_launcher_killed_while_starting_the_process_leaves_none_running(
    chaos_city: ChaosCity,
) -> None:
    """Killed inside the provider's start (no handle yet): found by its identity."""
    from gc_polecat.lifecycle.session import LAUNCHING, session_fields

    fields = session_fields("cats-ghost", POOL, "process", str(chaos_city.code), {})
    fields["id"] = "gc-ghost"
    record = chaos_city.store.state_dir / LAUNCHING / "gc-ghost.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(fields))
    env = {**os.environ, "GC_SESSION_ID": "gc-ghost", "GC_POLECAT_REPO": str(chaos_city.beads)}
    ghost = subprocess.Popen(["sleep", "900"], env=env, start_new_session=True)
    actions = controller_pass(chaos_city.store, chaos_city.providers)
    try:
        ghost.wait(10)  # one pass: nothing runs unknown
    except subprocess.TimeoutExpired:
        environ = Path(f"/proc/{ghost.pid}/environ").read_bytes().split(b"\0")
        seen = [e for e in environ if e.startswith((b"GC_SESSION_ID=", b"GC_POLECAT_REPO="))]
        why = (
            f"ghost still runs after {actions}; record left: {record.exists()}; its identity "
            f"{seen}; pgid {os.getpgid(ghost.pid)} vs ours {os.getpgrp()}; "
            f"repo {chaos_city.store.root}"
        )
        ghost.kill()
        raise AssertionError(why) from None
    assert not record.exists()
    if ("gc-ghost", "stopped (launched, never recorded)") in actions:  # (else: died meanwhile)
        assert ghost.returncode == -signal.SIGKILL
        assert chaos_city.get("gc-ghost")["close_reason"] == "launcher-died"


def test_a_retired_polecats_cleanup_killed_after_its_commit_leaves_no_session(
    chaos_city: ChaosCity,
) -> None:
    """The cleanup that retires an ephemeral polecat stopped its session after committing
    it stopped; killed in between, the process ran on under a stopped bead, which nothing
    looks at again. It now stops the process first."""
    works = [chaos_city.new_work(f"work {i}") for i in range(3)]
    slung = [sling(chaos_city.store, chaos_city.providers, w, POOL) for w in works]
    ephemeral = next(s for s in slung if s.allocated)
    sub = chaos_city.polecat_submit(ephemeral.work)
    chaos_city.judge(sub, "merged")
    fin = polecats.get(chaos_city.store, ephemeral.polecat).bead["metadata"]["cleanup"]
    _crashed(chaos_city, ["cleanup", fin], "ref-moved")
    s = chaos_city.session(ephemeral.session)
    assert s is not None and s.state == "stopped"  # the commit landed
    assert not sessions.is_alive(dataclasses_replace_state(s), chaos_city.providers)
    chaos_city.store.catalog.refresh()  # the crashed writer's commit, recovered
    assert session_leaks(chaos_city.store, chaos_city.providers) == []


def test_a_late_merge_of_released_work_deletes_its_branches_on_origin(
    chaos_city: ChaosCity,
) -> None:
    """Work released to the pool (its waiter died), then merged: no polecat held it at the
    merge, so nobody deleted its branch on origin. A finalizer without a polecat does now;
    and a merge that arrives before the release's cleanup ran upgrades that cleanup."""
    for cleanup_first in (True, False):
        work = chaos_city.new_work("released, then merged")
        slung = sling(chaos_city.store, chaos_city.providers, work, POOL)
        sub = chaos_city.polecat_submit(work)
        s = chaos_city.session(slung.session)
        assert s is not None
        os.killpg(int(s.handle["pgid"]), signal.SIGKILL)
        _wait_for(lambda s=s: not sessions.is_alive(s, chaos_city.providers), "the kill")
        with chaos_city.store.transaction() as tx:  # the controller's fallback, without its cleanup
            from gc_polecat.lifecycle.routing import fall_back

            wait = tx.require(chaos_city.get(sub)["metadata"]["wait"])
            waits.cancel(tx, wait, "session-dead")
            fall_back(tx, work, s.id, "session-dead")
        if cleanup_first:
            (fin,) = chaos_city.open_beads(cleanup.CLEANUP_LABEL)
            assert (
                cleanup.run(chaos_city.store, fin["id"], chaos_city.providers).result == "verified"
            )
        remote = git(chaos_city.origin, "for-each-ref", "--format=%(refname)", "refs/heads/polecat")
        assert slung.branch in remote  # kept for whoever resumes the work
        chaos_city.judge(sub, "merged")
        (fin,) = chaos_city.open_beads(cleanup.CLEANUP_LABEL)
        assert fin["metadata"]["reason"] == "merged"
        chaos_city.converge()
        assert git(chaos_city.origin, "for-each-ref", "refs/heads/polecat") == ""
        assert chaos_city.open_beads(cleanup.CLEANUP_LABEL) == []
    chaos_city.audit()


def dataclasses_replace_state(s: sessions.Session) -> sessions.Session:
    """The session as if its bead were still live: is its process running?"""
    import dataclasses

    return dataclasses.replace(s, state="active")


def test_a_writer_killed_inside_an_object_write_does_not_block_that_object(
    chaos_city: ChaosCity,
) -> None:
    """dulwich writes a loose object through `<object>.lock`; a writer killed there left the
    lock, and every later write of that same object (same content, same name: a retried
    change) failed on it. Objects are now written as git writes them (temporary + rename)."""
    from dulwich.objects import Blob

    content = b"the same change, retried after a crash\n"
    sha = Blob.from_string(content).id.decode()
    stale = chaos_city.beads / ".git" / "objects" / sha[:2] / f"{sha[2:]}.lock"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"")  # as left by the killed writer
    with chaos_city.store.transaction("retry") as tx:
        tx.write_file(".beads/README.md", content)
    assert git(chaos_city.beads, "cat-file", "-p", sha) == content.decode()
    assert chaos_city.repository_problems(full=True) == []
