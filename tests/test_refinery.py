"""The refinery against real repositories: a bare origin, polecat sandboxes (worktrees) that
push branches, and the refinery's own clone running real gate scripts. Sessions run `sleep`
(the test submits on their behalf, as `submit` would)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gc_polecat.pool.sling import sling
from gc_polecat.pool.status import init_pool
from gc_polecat.refinery.queue import Refinery, queue

from .conftest import assert_clean, configure, git
from .test_pool_ops import Pool

# A gate script committed in the code repository, as `make test` would be: it fails when the
# tree holds a file named after the gate (BROKEN-tests, BROKEN-build), and, when asked through
# MOVE_TARGET_ONCE, pushes a commit to origin/main the first time it runs (a target that moves
# between the rebase and the push).
GATE = """#!/bin/sh
gate=$1
echo "running $gate on $(git rev-parse --short HEAD)"
if [ -n "${MOVE_TARGET_ONCE:-}" ] && [ ! -e "$MOVE_TARGET_ONCE" ]; then
  touch "$MOVE_TARGET_ONCE"
  git -C "$MOVER" pull -q && echo moved >> "$MOVER/moved.txt" && git -C "$MOVER" add moved.txt \\
    && git -C "$MOVER" commit -qm "someone else lands first" && git -C "$MOVER" push -q origin main
fi
if [ -e "SLOW-$gate" ]; then sleep 30; fi
if [ -e "BROKEN-$gate" ]; then echo "FAIL: $gate is broken (BROKEN-$gate)"; exit 1; fi
echo "ok"
"""


class Yard(Pool):
    """A pool plus the refinery's clone and a person's clone of the same origin."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        super().__init__(repo, tmp)
        (self.code / "gate.sh").write_text(GATE)
        (self.code / "app.txt").write_text("line 1\nline 2\n")
        git(self.code, "add", "-A")
        git(self.code, "commit", "-qm", "gate and app")
        git(self.code, "push", "-q", "origin", "main")
        self.refinery_clone = tmp / "refinery"
        self.person = tmp / "person"
        git(tmp, "clone", "-q", str(self.origin), str(self.refinery_clone))
        git(tmp, "clone", "-q", str(self.origin), str(self.person))
        configure(
            self.beads,
            f"pools:\n  cats:\n    max_active: 3\n    repo: {self.code}\n    provider: process\n"
            "    command: [sleep, '300']\n"
            f"refinery:\n  repo: {self.refinery_clone}\n  build: [sh, gate.sh, build]\n"
            "  test: [sh, gate.sh, tests]\n  test_timeout: 2s\n",
        )
        init_pool(self.store, "cats", 2)

    def submit_change(self, title: str, files: dict[str, str]) -> tuple[str, str]:
        """A polecat's work: sling, write files in its sandbox, commit, push, submit."""
        work = self.work(title)
        done = sling(self.store, self.providers, work, "cats")
        for name, text in files.items():
            (Path(done.sandbox) / name).write_text(text)
        sub, _ = self.submit(work)
        return work, sub

    def person_commits(self, name: str, text: str) -> str:
        git(self.person, "pull", "-q")
        (self.person / name).write_text(text)
        git(self.person, "add", "-A")
        git(self.person, "commit", "-qm", f"person edits {name}")
        git(self.person, "push", "-q", "origin", "main")
        return git(self.person, "rev-parse", "HEAD").strip()

    def refinery(self) -> Refinery:
        return Refinery(self.store, self.providers, self.store.config()["refinery"])

    def origin_main(self) -> str:
        return git(self.origin, "rev-parse", "main").strip()

    def verdict_of(self, sub: str) -> dict:
        return self.store.get(self.store.get(sub)["metadata"]["verdict"])


@pytest.fixture
def yard(repo: Path, tmp_path: Path):  # noqa: ANN201 - a generator fixture
    y = Yard(repo, tmp_path)
    yield y
    y.stop_all()


def test_clean_merge_fast_forwards_pushes_and_deletes_the_branch(yard: Yard) -> None:
    work, sub = yard.submit_change("feature", {"feature.txt": "new\n"})
    branch = yard.store.get(sub)["metadata"]["branch"]
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "merged"
    verdict = yard.verdict_of(sub)
    assert verdict["metadata"]["merge_commit"] == yard.origin_main()
    assert git(yard.origin, "show", "main:feature.txt") == "new\n"
    assert git(yard.origin, "branch", "--list", branch) == ""  # the remote branch is gone
    assert yard.store.get(work)["status"] == "closed"
    assert yard.store.get(sub)["metadata"]["claimed_by"].startswith("refinery@")
    assert yard.refinery().pass_once() == []  # nothing left
    assert_clean(yard.beads)


def test_conflict_names_the_files_and_the_target_commit(yard: Yard) -> None:
    work, sub = yard.submit_change("edit", {"app.txt": "line 1 by the polecat\nline 2\n"})
    tip = yard.person_commits("app.txt", "line 1 by a person\nline 2\n")
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "fix_needed"
    v = yard.verdict_of(sub)
    assert v["metadata"]["failure_type"] == "conflict"
    assert "app.txt" in v["description"] and tip[:12] in v["description"]
    assert yard.origin_main() == tip  # nothing pushed
    branch = yard.store.get(sub)["metadata"]["branch"]
    assert git(yard.origin, "branch", "--list", branch).strip()  # the branch is kept for the fix
    assert yard.store.get(work)["metadata"]["gc.failure_type"] == "conflict"


@pytest.mark.parametrize("gate", ["tests", "build"])
def test_a_failing_gate_gives_fix_needed_with_the_log_tail(yard: Yard, gate: str) -> None:
    before = yard.origin_main()
    work, sub = yard.submit_change("breaks", {f"BROKEN-{gate}": "x"})
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "fix_needed"
    v = yard.verdict_of(sub)
    assert v["metadata"]["failure_type"] == gate
    assert f"FAIL: {gate} is broken" in v["notes"]
    assert yard.origin_main() == before
    assert yard.store.get(work)["status"] == "in_progress"  # back to the same live session


def test_a_failure_already_on_the_target_is_not_blamed_on_the_branch(yard: Yard) -> None:
    yard.person_commits("BROKEN-tests", "main is red")
    work, sub = yard.submit_change("innocent", {"innocent.txt": "fine\n"})
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "skipped" and "fails on the target" in outcome.detail
    meta = yard.store.get(sub)["metadata"]
    assert yard.store.get(sub)["status"] == "open" and "verdict" not in meta
    assert meta["target_broken"] == yard.origin_main() and "claimed_by" not in meta
    head = git(yard.beads, "rev-parse", "HEAD")
    assert yard.refinery().pass_once() == []  # waits for the target to change
    assert git(yard.beads, "rev-parse", "HEAD") == head
    git(yard.person, "rm", "-q", "BROKEN-tests")
    git(yard.person, "commit", "-qm", "fix main")
    git(yard.person, "push", "-q", "origin", "main")
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "merged"


def test_a_target_that_moves_during_the_push_is_rebased_and_retried(
    yard: Yard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVE_TARGET_ONCE", str(tmp_path / "moved-once"))
    monkeypatch.setenv("MOVER", str(yard.person))
    work, sub = yard.submit_change("racer", {"racer.txt": "mine\n"})
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "merged"
    assert (tmp_path / "moved-once").exists()
    log = git(yard.origin, "log", "--format=%s", "main")
    assert log.splitlines()[1] == "someone else lands first"  # ours landed on top of theirs
    assert git(yard.origin, "show", "main:racer.txt") == "mine\n"
    assert yard.verdict_of(sub)["metadata"]["merge_commit"] == yard.origin_main()


def test_two_refinery_processes_never_process_the_same_submission(
    yard: Yard, tmp_path: Path
) -> None:
    subs = [yard.submit_change(f"w{i}", {f"w{i}.txt": f"{i}\n"})[1] for i in range(2)]
    second = tmp_path / "refinery-2"
    git(tmp_path, "clone", "-q", str(yard.origin), str(second))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gc_polecat",
                "--repo",
                str(yard.beads),
                "refinery",
                "process",
                "--once",
                "--json",
                *(["--clone", str(c)] if c else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for c in (None, second)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    outcomes = [o for out, _ in results for o in json.loads(out)]
    judged = sorted(o["submission"] for o in outcomes if o["result"] == "merged")
    assert judged == sorted(subs)  # each exactly once, by one of the two
    for sub in subs:
        assert yard.store.get(sub)["status"] == "closed"
    assert len(git(yard.origin, "log", "--format=%H", "main").split()) == 4  # 2 + 2 merged


def test_bad_refinery_settings_and_a_missing_clone_are_exit_2(yard: Yard) -> None:
    configure(yard.beads, "refinery:\n  test: make test\n")
    result = yard.cli("refinery", "process", "--once")
    assert result.exit_code == 2 and "refinery.test must be a list" in result.stderr
    configure(yard.beads, "refinery:\n  repo: ../nowhere\n")
    result = yard.cli("refinery", "process", "--once")
    assert result.exit_code == 2 and "is not a git clone" in result.stderr


def test_queue_order_is_priority_plus_retry_penalty_then_age(yard: Yard) -> None:
    _, first = yard.submit_change("first", {"a.txt": "a\n"})
    w2, second = yard.submit_change("urgent", {"b.txt": "b\n"})
    with yard.store.transaction() as tx:
        tx.update(w2, {"priority": 0})
    assert [s["id"] for s in queue(yard.store)] == [second, first]
    listed = yard.cli("refinery", "queue", "--json")
    assert [s["id"] for s in json.loads(listed.output)] == [second, first]


def test_a_fresh_claim_is_respected_and_a_stale_one_expires(yard: Yard) -> None:
    _, sub = yard.submit_change("claimed", {"c.txt": "c\n"})
    with yard.store.transaction() as tx:
        meta = {**tx.require(sub)["metadata"], "claimed_by": "refinery@elsewhere:1"}
        tx.update(sub, {"metadata": {**meta, "claimed_at": tx.now}})
    head = git(yard.beads, "rev-parse", "HEAD")
    assert yard.refinery().pass_once() == []  # held by another refinery: not touched
    assert git(yard.beads, "rev-parse", "HEAD") == head
    with yard.store.transaction() as tx:  # that refinery died an hour ago
        meta = {**tx.require(sub)["metadata"], "claimed_at": "2026-01-01T00:00:00Z"}
        tx.update(sub, {"metadata": meta})
    (outcome,) = yard.refinery().pass_once()
    assert outcome.result == "merged"


def test_a_gate_past_its_time_limit_is_killed_and_blamed(yard: Yard) -> None:
    import time

    _, sub = yard.submit_change("slow", {"SLOW-tests": "x"})
    started = time.monotonic()
    (outcome,) = yard.refinery().pass_once()
    assert time.monotonic() - started < 20  # killed at 2 s, not waited out
    assert outcome.result == "fix_needed"
    v = yard.verdict_of(sub)
    assert v["metadata"]["failure_type"] == "tests" and "killed after 2 s" in v["notes"]
