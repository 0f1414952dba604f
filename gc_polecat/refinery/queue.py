"""The refinery: a merge queue over a code repository that turns git work into verdicts.

Its settings (`refinery:` in the settings file) are refinery/config.py's.

**Order.** Open submissions are taken by (work priority + retry penalty, age): the penalty is
the attempt number minus one, so a first attempt at priority 2 goes before a third attempt at
priority 1; ties go to the oldest submission.

**One submission.** Claimed first (a commit naming the refinery on the submission; a second
refinery sees the claim and skips it; a claim older than `claim_ttl` is stale). Then, in the
refinery's clone: fetch; check out the submitted commit; rebase onto `origin/<target>`. A
conflict gives fix needed (`conflict`, naming the files and the target commit). The build and
test gates run with their time limits; a failure gives fix needed (`build` / `tests`, with the
tail of the log), unless the same gate also fails on the target itself: a failure already
present on the target is not blamed on the branch. The submission is then left in the queue,
marked `target_broken` at that target commit, and retried once the target moves. Success pushes
the rebased commits to the target without force (after a rejected push: fetch, rebase, gates
again, up to `push_retries`), deletes the branch on origin, and records merged with the new
target commit.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.errors import BadInput, GcPolecatError
from gc_polecat.refinery.config import RefineryConfig

if TYPE_CHECKING:
    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider


class RefineryError(GcPolecatError):
    """The refinery's own clone or origin failed (not the submission's fault): exit 1."""


# --- the queue ---------------------------------------------------------------------------------


def me() -> str:
    return f"refinery@{socket.gethostname()}:{os.getpid()}"


def _at(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def queue(store: Store) -> list[Bead]:
    """Open submissions in processing order: (priority + attempt - 1, age, id)."""
    from gc_polecat.lifecycle.controller import open_submissions  # lazy: start-up

    subs = open_submissions(store)
    works = {s["id"]: store.catalog.get(s["metadata"].get("work", "")) for s in subs}

    def key(sub: Bead) -> tuple[int, str, str]:
        work = works.get(sub["id"]) or {}
        attempt = int(sub["metadata"].get("attempt", "1") or 1)
        return (int(work.get("priority", 2)) + attempt - 1, sub["created_at"], sub["id"])

    return sorted(subs, key=key)


def claim(store: Store, sub_id: str, who: str, ttl: float) -> bool:
    """Take the submission for this refinery (one commit); False if another holds it."""
    now = dt.datetime.now(dt.UTC)
    with store.transaction(f"{sub_id}: claimed by {who}") as tx:
        sub = tx.get(sub_id)
        if sub is None or sub["status"] == "closed":
            return False
        meta = dict(sub.get("metadata", {}))
        holder, since = meta.get("claimed_by"), meta.get("claimed_at")
        if holder and holder != who and since and (now - _at(since)).total_seconds() < ttl:
            return False
        meta.update({"claimed_by": who, "claimed_at": tx.now})
        tx.update(sub_id, {"metadata": meta})
    return True


def _release(store: Store, sub_id: str, **meta: str) -> None:
    with store.transaction(f"{sub_id}: released by the refinery") as tx:
        sub = tx.get(sub_id)
        if sub is None or sub["status"] == "closed":
            return
        fields = {k: v for k, v in sub.get("metadata", {}).items() if k != "claimed_by"}
        fields.pop("claimed_at", None)
        tx.update(sub_id, {"metadata": {**fields, **meta}})


# --- git in the refinery's clone -----------------------------------------------------------------


class Clone:
    """The refinery's working clone; every command is argv (no shell), errors one line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_EDITOR": "true"}
        proc = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, env=env
        )
        if check and proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[0]
            raise RefineryError(f"git {args[0]} failed in {self.path}: {why}")
        return proc

    def sha(self, ref: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None

    def fresh(self) -> None:
        """Throw away whatever a killed run left (a rebase in progress, a dirty tree)."""
        self.git("rebase", "--abort", check=False)
        self.git("reset", "-q", "--hard")
        self.git("clean", "-qfdx")
        self.git("fetch", "-q", "--prune", "origin")

    def rebase(self, commit: str, onto: str) -> list[str]:
        """Rebase `commit` onto `onto` (detached); [] on success, else the conflicting files."""
        self.git("checkout", "-q", "--detach", commit)
        # --reapply-cherry-picks: test exactly the submitted changes; by default git drops a
        # commit whose patch is already upstream, which can resurrect what it had undone
        if self.git("rebase", "-q", "--reapply-cherry-picks", onto, check=False).returncode == 0:
            return []
        files = self.git("diff", "--name-only", "--diff-filter=U", check=False).stdout.split()
        self.git("rebase", "--abort", check=False)
        return files or ["(unknown)"]


@dataclass(frozen=True)
class Outcome:
    submission: str
    result: str  # merged | fix_needed | skipped | lost
    detail: str = ""
    verdict: str = ""


def run_gate(
    argv: Sequence[str], cwd: Path, timeout: float, log: Path, env: Mapping[str, str]
) -> bool:
    """One gate in its own process group, output to `log`; killed whole at the time limit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, **env}, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            out.write(f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
            return False
        try:
            return proc.wait(timeout=timeout) == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[gc-polecat refinery: killed after {timeout:g} s]\n".encode())
            return False


class Refinery:
    def __init__(
        self,
        store: Store,
        providers: Mapping[str, SessionProvider],
        cfg: RefineryConfig,
        report: Callable[[str], None] = lambda line: None,
        clone: Path | None = None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.cfg = cfg
        self.clone = Clone(clone.resolve() if clone else cfg.clone(store.root))
        self.report = report
        self.who = me()
        self.logs = store.state_dir / "refinery"
        self._target_gate: dict[tuple[str, str], bool] = {}  # (gate, target sha) -> passes

    def gates(self) -> list[tuple[str, tuple[str, ...], float]]:
        c = self.cfg
        return [g for g in (("build", c.build, c.build_timeout), ("tests", c.test, c.test_timeout))
                if g[1]]  # fmt: skip

    def pass_once(self, take: Callable[[Bead], bool] = lambda sub: True) -> list[Outcome]:
        """One pass over the queue: every submission this refinery can claim (and `take`
        accepts: a refinery may serve part of the queue, e.g. one target)."""
        self.clone.fresh()
        done = []
        for sub in queue(self.store):
            if not take(sub):
                continue
            meta = sub.get("metadata", {})
            tip = self.clone.sha(f"origin/{meta.get('target', 'main')}")
            if meta.get("target_broken") and meta.get("target_broken") == tip:
                continue  # waits for the target to be fixed
            if not claim(self.store, sub["id"], self.who, self.cfg.claim_ttl):
                continue
            try:
                outcome = self.process(sub["id"])
            except RefineryError:
                _release(self.store, sub["id"])
                raise
            self.report(f"{outcome.submission}: {outcome.result} {outcome.detail}".rstrip())
            done.append(outcome)
        return done

    def process(self, sub_id: str) -> Outcome:
        sub = self.store.get(sub_id)
        meta = sub["metadata"]
        commit, branch, target = meta["commit"], meta["branch"], meta.get("target", "main")
        self.clone.fresh()
        if self.clone.sha(commit) is None:
            self.clone.git("fetch", "-q", "origin", f"refs/heads/{branch}", check=False)
        if self.clone.sha(commit) is None:
            why = f"commit {commit[:12]} is not on origin (was {branch} pushed?)"
            return self._verdict(sub_id, "fix_needed", "review", why)
        for _ in range(self.cfg.push_retries):
            tip = self.clone.sha(f"origin/{target}")
            if tip is None:
                raise RefineryError(f"origin has no branch {target}")
            conflicts = self.clone.rebase(commit, f"origin/{target}")
            if conflicts:
                why = f"conflicts with {target} at {tip[:12]}: {', '.join(conflicts)}"
                return self._verdict(sub_id, "fix_needed", "conflict", why)
            failed = self._run_gates(sub_id, tip)
            if failed is not None:
                return failed
            push = self.clone.git("push", "-q", "origin", f"HEAD:refs/heads/{target}", check=False)
            if push.returncode == 0:
                merged = self.clone.sha("HEAD") or ""
                self.clone.git("push", "-q", "origin", f":refs/heads/{branch}", check=False)
                self.clone.git("fetch", "-q", "--prune", "origin")
                return self._verdict(sub_id, "merged", None, "", merge_commit=merged)
            self.report(f"{sub_id}: {target} moved during the push; rebasing again")
            self.clone.git("fetch", "-q", "--prune", "origin")
        _release(self.store, sub_id)
        return Outcome(sub_id, "skipped", f"{target} kept moving; retried {self.cfg.push_retries}x")

    def _run_gates(self, sub_id: str, tip: str) -> Outcome | None:
        env = {"GC_REFINERY_SUBMISSION": sub_id}
        for name, argv, timeout in self.gates():
            log = self.logs / f"{sub_id}-{name}.log"
            if run_gate(argv, self.clone.path, timeout, log, env):
                continue
            if not self._target_passes(name, argv, timeout, tip):
                _release(self.store, sub_id, target_broken=tip)
                return Outcome(sub_id, "skipped", f"{name} fails on the target {tip[:12]} too")
            return self._verdict(sub_id, "fix_needed", name, f"{name} failed", log=log)
        return None

    def _target_passes(self, name: str, argv: Sequence[str], timeout: float, tip: str) -> bool:
        """Whether the gate passes on the target alone (cached per target commit)."""
        key = (name, tip)
        if key not in self._target_gate:
            head = self.clone.sha("HEAD") or tip
            self.clone.git("checkout", "-q", "--detach", tip)
            log = self.logs / f"target-{tip[:12]}-{name}.log"
            self._target_gate[key] = run_gate(argv, self.clone.path, timeout, log, {})
            self.clone.git("reset", "-q", "--hard")
            self.clone.git("clean", "-qfdx")
            self.clone.git("checkout", "-q", "--detach", head)
        return self._target_gate[key]

    def _verdict(
        self,
        sub_id: str,
        outcome: str,
        failure: str | None,
        reason: str,
        *,
        log: Path | None = None,
        merge_commit: str | None = None,
    ) -> Outcome:
        from gc_polecat.lifecycle.verdict import record_verdict  # lazy: start-up

        try:
            with self.store.transaction() as tx:
                judged = record_verdict(
                    tx, sub_id, outcome, providers=self.providers, failure_type=failure,
                    reason=reason, log=log, merge_commit=merge_commit, refinery=self.who,
                    via="refinery",
                )  # fmt: skip
        except BadInput as exc:  # judged meanwhile (a git hook, a person), or superseded
            return Outcome(sub_id, "lost", str(exc))
        return Outcome(sub_id, outcome, reason, judged.verdict["id"])


def run(
    store: Store,
    providers: Mapping[str, SessionProvider],
    *,
    once: bool,
    interval: float,
    report: Callable[[str], None],
    clone: Path | None = None,
) -> list[Outcome]:
    """Process the queue (once, or every `interval` seconds). `clone` overrides
    `refinery.repo`, so several refineries, each with its own clone, can share one queue."""
    if clone is not None and not (clone / ".git").exists():
        raise BadInput(f"--clone {clone} is not a git clone")
    refinery = Refinery(store, providers, store.config()["refinery"], report, clone)
    outcomes: list[Outcome] = []
    while True:
        outcomes += refinery.pass_once()
        if once:
            return outcomes
        time.sleep(interval)
