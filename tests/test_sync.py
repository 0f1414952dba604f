"""Multi-machine sync: a bare repository stands in for the hosted remote, clones in temporary
directories stand in for machines. Real git, real processes, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.ids import id_path
from gc_polecat.beads.store import CommitResult, Store
from gc_polecat.beads.sync import merge_beads, resolve_remote, sync
from gc_polecat.errors import BadInput, GcPolecatError
from gc_polecat.hookspecs import hookimpl
from gc_polecat.lifecycle import doorbell as wake
from gc_polecat.plugins import make_plugin_manager

from .conftest import ROOT, Cli, assert_clean, git, run_cli, submitted_ids

T0 = "2030-01-01T00:00:00Z"


def at(second: int) -> str:
    return f"2030-01-01T00:00:{second:02d}Z"


class Recorder:
    """An observer plugin: what a machine's local observers are told."""

    def __init__(self) -> None:
        self.results: list[CommitResult] = []

    @hookimpl
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
        self.results.append(result)


@dataclass
class Machine:
    root: Path
    store: Store
    seen: Recorder

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD").strip()

    def titles(self) -> set[str]:
        fresh = Store(self.root, pm=make_plugin_manager(load_entrypoints=False))
        fresh.catalog.refresh()
        return {b["title"] for b in fresh.catalog.list(Query())}

    def bead(self, bead_id: str) -> dict[str, Any]:
        return Store(self.root, pm=make_plugin_manager(load_entrypoints=False)).get(bead_id)


def machine(root: Path) -> Machine:
    seen = Recorder()
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(seen, name="recorder")
    return Machine(root, Store(root, pm=pm), seen)


@dataclass
class World:
    tmp: Path
    origin: Path
    a: Machine
    b: Machine

    def clone(self, name: str) -> Machine:
        root = self.tmp / name
        git(self.tmp, "clone", "-q", str(self.origin), str(root))
        Store.init(root, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
        return machine(root)


@pytest.fixture
def world(tmp_path: Path) -> World:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    a = tmp_path / "a"
    Store.init(a, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    git(a, "remote", "add", "origin", str(origin))
    first = machine(a)
    sync(first.store)
    w = World(tmp_path, origin, first, first)
    w.b = w.clone("b")
    return w


def converged(*machines: Machine) -> None:
    """Same commit everywhere, and every invariant holds in every clone."""
    heads = {m.head() for m in machines}
    assert len(heads) == 1, heads
    for m in machines:
        assert_clean(m.root)


def base_bead(world: World, **fields: Any) -> str:
    """A bead made on A at T0 and synced to both machines; returns its ID."""
    with world.a.store.transaction() as tx:
        made = tx.create({"title": "shared", "created_at": T0, "updated_at": T0, **fields})
    sync(world.a.store)
    sync(world.b.store)
    return made["id"]


def put(m: Machine, bead_id: str, **changes: Any) -> None:
    """Rewrite a bead with exact fields (timestamps included), one commit."""
    with m.store.transaction() as tx:
        current = tx.require(bead_id)
        tx.put({**current, **changes})


# --- converging ---------------------------------------------------------------------------------


def test_concurrent_creates_on_two_clones_converge(world: World) -> None:
    a, b = world.a, world.b
    for n in range(3):
        with a.store.transaction() as tx:
            tx.create({"title": f"a-{n}"})
        with b.store.transaction() as tx:
            tx.create({"title": f"b-{n}"})
    local_b = git(b.root, "log", "--format=%s", "-3").splitlines()

    first = sync(a.store)
    assert first.pushed == a.head() and first.replayed == 0
    done = sync(b.store)
    assert (done.replayed, done.attempts, done.pushed) == (3, 1, b.head())
    assert len(done.incoming) == 3 and done.conflicts == []
    last = sync(a.store)
    assert last.pushed is None and len(last.incoming) == 3

    converged(a, b)
    wanted = {f"{side}-{n}" for side in "ab" for n in range(3)}
    assert a.titles() == b.titles() == wanted
    # B's three commits were replayed on top of A's, each with its own message and author
    assert git(b.root, "log", "--format=%s", "-3").splitlines() == local_b
    assert int(git(b.root, "rev-list", "--count", "HEAD")) == 1 + 6
    # each machine's observers were told about the beads that arrived from the other one
    arrived = [c for r in b.seen.results for c in r.changes if c.event == "create"]
    assert {c.after["title"] for c in arrived if c.after} >= {f"a-{n}" for n in range(3)}
    assert b.seen.results[-1].commit == b.head()


def test_cli_sync_reports_and_pulls_only_with_no_push(world: World) -> None:
    a, b = Cli(world.a.root), Cli(world.b.root)
    made_a = a("bead", "create", "via cli on a").stdout.strip()
    made_b = b("bead", "create", "via cli on b").stdout.strip()

    shown = a("sync")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("sync origin master: pushed ")
    pulled = b("sync", "--no-push", "--json")
    assert pulled.exit_code == 0, pulled.output
    report = json.loads(pulled.stdout)
    assert report["incoming"] == [made_a] and report["pushed"] is None
    assert report["replayed"] == 1 and report["remote"] == "origin"
    assert git(world.origin, "rev-parse", "master").strip() == world.a.head()  # not pushed

    pushed = json.loads(b("sync", "origin", "--json").stdout)
    assert pushed["pushed"] == world.b.head() and pushed["replayed"] == 0
    again = b("sync")
    assert again.stdout.strip() == f"sync origin master: up to date at {world.b.head()[:12]}"
    assert a("sync").exit_code == 0
    converged(world.a, world.b)
    assert a("bead", "show", made_b, "--json").exit_code == 0
    assert b("bead", "show", made_a, "--json").exit_code == 0


def test_a_path_or_url_works_as_the_remote(world: World) -> None:
    with world.b.store.transaction() as tx:
        tx.create({"title": "by path"})
    done = sync(world.b.store, str(world.origin))
    assert done.pushed == world.b.head() and done.remote == str(world.origin)
    done = sync(world.a.store, f"file://{world.origin}")
    assert done.incoming and world.a.head() == world.b.head()
    converged(world.a, world.b)


# --- precedence ---------------------------------------------------------------------------------


def test_closed_wins_over_a_later_content_edit(world: World) -> None:
    bid = base_bead(world, description="old text")
    put(world.a, bid, status="closed", closed_at=at(1), close_reason="done", updated_at=at(1))
    put(world.b, bid, title="renamed later", description="new text", updated_at=at(5))

    sync(world.a.store)
    done = sync(world.b.store)
    sync(world.a.store)

    converged(world.a, world.b)
    merged = world.a.bead(bid)
    assert (merged["status"], merged["closed_at"], merged["close_reason"]) == (
        "closed",
        at(1),
        "done",
    )
    assert (merged["title"], merged["description"]) == ("renamed later", "new text")
    assert merged["updated_at"] == at(5)
    assert done.merged == [bid] and done.conflicts == []
    log = git(world.b.root, "log", "-1", "--format=%B")
    assert f"sync: merged with the remote's changes to {bid}" in log


def test_later_updated_at_wins_content_whichever_side_syncs_first(world: World) -> None:
    bid = base_bead(world, labels=["keep", "drop"], metadata={"k": "base", "x": "1"})
    put(world.a, bid, title="later title", priority=0, updated_at=at(9), labels=["keep"])
    put(
        world.b,
        bid,
        title="earlier title",
        priority=4,
        updated_at=at(3),
        labels=["keep", "drop", "new"],
        metadata={"k": "base", "x": "2", "y": "b"},
    )

    sync(world.b.store)  # the earlier edit reaches the remote first ...
    sync(world.a.store)  # ... and the later one still wins the content
    sync(world.b.store)

    converged(world.a, world.b)
    merged = world.b.bead(bid)
    assert (merged["title"], merged["priority"], merged["updated_at"]) == ("later title", 0, at(9))
    assert merged["labels"] == ["keep", "new"]  # a removed "drop", b added "new"
    assert merged["metadata"] == {"k": "base", "x": "2", "y": "b"}  # only b changed metadata


def test_a_dependency_removed_on_one_side_stays_removed(world: World) -> None:
    with world.a.store.transaction() as tx:
        d1, d2, d3 = (tx.create({"title": f"dep {n}"})["id"] for n in range(3))
    bid = base_bead(world)
    with world.a.store.transaction() as tx:
        tx.add_dependency(bid, d1)
        tx.add_dependency(bid, d2)
    sync(world.a.store)
    sync(world.b.store)

    deps = world.a.bead(bid)["dependencies"]
    put(world.a, bid, dependencies=deps[1:], updated_at=at(3))  # a removes d1
    added = {**deps[0], "depends_on_id": d3, "created_at": at(7)}
    # b adds d3 and edits later: it wins the content, yet not the dependency a removed
    put(world.b, bid, dependencies=[*deps, added], title="b edited later", updated_at=at(7))

    sync(world.a.store)
    sync(world.b.store)
    sync(world.a.store)

    converged(world.a, world.b)
    merged = world.a.bead(bid)
    assert [d["depends_on_id"] for d in merged["dependencies"]] == [d2, d3]
    assert merged["title"] == "b edited later"


def verdict_fields(reason: str, created: str) -> dict[str, Any]:
    return {
        "id": "gc-vvv",
        "title": "verdict",
        "issue_type": "decision",
        "labels": ["gc:verdict"],
        "status": "closed",
        "description": reason,
        "created_at": created,
        "updated_at": created,
        "closed_at": created,
    }


def test_verdicts_are_immutable_the_earlier_is_kept_and_reported(world: World) -> None:
    with world.a.store.transaction() as tx:
        tx.create(verdict_fields("merged by a", at(20)))
    with world.b.store.transaction() as tx:
        tx.create(verdict_fields("fix needed by b", at(10)))

    sync(world.a.store)
    done = sync(world.b.store)
    sync(world.a.store)

    converged(world.a, world.b)
    assert world.a.bead("gc-vvv")["description"] == "fix needed by b"  # recorded first
    [note] = done.conflicts
    assert "gc-vvv: verdicts are immutable" in note and at(10) in note


def test_same_id_created_on_both_sides_is_merged_not_a_crash(world: World) -> None:
    with world.a.store.transaction() as tx:
        tx.create({"id": "gc-dup", "title": "from a", "labels": ["a"], "created_at": at(1)})
    with world.b.store.transaction() as tx:
        tx.create({"id": "gc-dup", "title": "from b", "labels": ["b"], "created_at": at(2)})

    sync(world.b.store)
    done = sync(world.a.store)
    sync(world.b.store)

    converged(world.a, world.b)
    merged = world.a.bead("gc-dup")
    assert merged["labels"] == ["b", "a"] or merged["labels"] == ["a", "b"]
    assert merged["created_at"] == at(1)  # the earlier moment
    assert any("gc-dup: created on both sides" in note for note in done.conflicts)


def test_delete_against_change_keeps_the_bead_and_config_remote_wins(world: World) -> None:
    bid = base_bead(world)
    with world.a.store.transaction() as tx:
        tx.delete(bid)
        tx.write_file(".beads/config.yaml", b"prefix: gc\nmax_attempts: 5\n")
    with world.b.store.transaction() as tx:
        tx.update(bid, {"title": "still wanted"})
        tx.write_file(".beads/config.yaml", b"prefix: gc\nmax_attempts: 7\n")

    sync(world.a.store)
    done = sync(world.b.store)
    sync(world.a.store)

    converged(world.a, world.b)
    assert world.a.bead(bid)["title"] == "still wanted"
    assert (world.b.root / ".beads/config.yaml").read_text().endswith("max_attempts: 5\n")
    assert world.b.store.config()["max_attempts"] == 5
    assert any(f"{bid}: deleted on one side" in n for n in done.conflicts)
    assert any(".beads/config.yaml: changed on both sides" in n for n in done.conflicts)


def test_a_bead_file_broken_on_one_side_loses_to_the_readable_one(world: World) -> None:
    bid = base_bead(world)
    path = world.b.root / id_path(bid)
    path.write_text("id: [not a bead\n")  # a hand edit gone wrong, committed with plain git
    git(world.b.root, "commit", "-qam", "oops")
    sync(world.b.store)
    put(world.a, bid, title="edited on a", updated_at=at(4))
    done = sync(world.a.store)
    sync(world.b.store)
    converged(world.a, world.b)
    assert world.b.bead(bid)["title"] == "edited on a"
    assert done.conflicts == [f"{bid}: unreadable on one side; the local file is kept"]


def test_files_committed_with_plain_git_arrive_with_their_mode(world: World) -> None:
    hook = world.a.root / ".beads" / "hooks" / "on_create"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    git(world.a.root, "add", ".beads/hooks/on_create")
    git(world.a.root, "commit", "-qm", "a bead hook")
    sync(world.a.store)
    done = sync(world.b.store)
    assert done.fast_forwards == 1
    assert os.access(world.b.root / ".beads" / "hooks" / "on_create", os.X_OK)
    converged(world.a, world.b)


def test_a_sync_killed_while_writing_files_recovers_them_with_their_mode(world: World) -> None:
    """`sync` on B is SIGKILLed after its first work-tree file (GC_POLECAT_TEST_CRASH_AT),
    which is before its commit point (the work tree and index are written before the ref
    moves): the next reader undoes the write from the journal (`git status` clean), and the
    next sync brings the hook executable and the link a symlink, as git recorded them."""
    hooks = world.a.root / ".beads" / "hooks"
    hooks.mkdir(parents=True)
    for name in ("on_create", "on_update"):
        (hooks / name).write_text("#!/bin/sh\nexit 0\n")
        (hooks / name).chmod(0o755)
    (hooks / "on_close").symlink_to("on_create")
    git(world.a.root, "add", ".beads/hooks")
    git(world.a.root, "commit", "-qm", "bead hooks")
    sync(world.a.store)
    killed = run_cli(
        "--repo", str(world.b.root), "sync",
        env={**os.environ, "GC_POLECAT_TEST_CRASH_AT": "file-written"},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recovered = Store(world.b.root, pm=make_plugin_manager(load_entrypoints=False))
    assert recovered.recover_if_needed()
    b_hooks = world.b.root / ".beads" / "hooks"
    assert not b_hooks.exists() and git(world.b.root, "status", "--porcelain") == ""
    sync(world.b.store)
    assert os.access(b_hooks / "on_create", os.X_OK) and os.access(b_hooks / "on_update", os.X_OK)
    assert (b_hooks / "on_close").is_symlink()
    assert os.readlink(b_hooks / "on_close") == "on_create"
    converged(world.a, world.b)


def test_merge_beads_is_symmetric() -> None:
    base = {
        "id": "gc-sym",
        "title": "t",
        "status": "open",
        "priority": 2,
        "issue_type": "task",
        "created_at": T0,
        "updated_at": T0,
        "metadata": {"state": "pending"},
    }
    closing = {
        **base,
        "status": "closed",
        "closed_at": at(1),
        "updated_at": at(1),
        "metadata": {"state": "expired"},
    }
    readying = {**base, "title": "later", "updated_at": at(2), "metadata": {"state": "ready"}}
    same_time = {**base, "title": "other", "updated_at": at(2)}
    for ours, theirs in ((closing, readying), (readying, same_time), (closing, same_time)):
        assert merge_beads(base, ours, theirs) == merge_beads(base, theirs, ours)
        assert merge_beads(None, ours, theirs) == merge_beads(None, theirs, ours)
    merged, _ = merge_beads(base, closing, readying)
    # closed wins, and the closing side's state comes with it; the later title is kept
    assert (merged["status"], merged["metadata"]["state"], merged["title"]) == (
        "closed",
        "expired",
        "later",
    )


# --- lost races ---------------------------------------------------------------------------------


def test_a_lost_push_race_is_retried_and_converges(world: World) -> None:
    c = world.clone("c")
    with world.a.store.transaction() as tx:
        tx.create({"title": "from a"})
    rounds: list[int] = []

    def meanwhile(attempt: int) -> None:
        """Between A's fetch and A's push, C pushes first."""
        rounds.append(attempt)
        if attempt == 1:
            with c.store.transaction() as tx:
                tx.create({"title": "from c, pushed first"})
            assert sync(c.store).pushed

    done = sync(world.a.store, before_push=meanwhile)
    assert rounds == [1, 2] and done.attempts == 2
    # round 1: A was ahead, its push lost; round 2: A's commit replayed on C's, then pushed
    assert done.pushed == world.a.head() and done.replayed == 1
    sync(c.store)
    sync(world.b.store)
    converged(world.a, world.b, c)
    assert world.b.titles() == {"from a", "from c, pushed first"}


def test_a_remote_that_keeps_moving_gives_up_with_the_merge_kept(world: World) -> None:
    c = world.clone("c")
    with world.a.store.transaction() as tx:
        tx.create({"title": "from a"})

    def always(attempt: int) -> None:
        with c.store.transaction() as tx:
            tx.create({"title": f"c round {attempt}"})
        sync(c.store)

    with pytest.raises(GcPolecatError, match="rejected 3 times"):
        sync(world.a.store, attempts=3, before_push=always)
    assert_clean(world.a.root)
    assert "c round 2" in world.a.titles()  # merged locally, nothing lost
    sync(world.a.store)
    sync(c.store)
    converged(world.a, c)
    assert world.a.titles() == {"from a"} | {f"c round {n}" for n in (1, 2, 3)}


WORKER = """
import sys
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.beads.store import Store
from gc_polecat.beads.sync import sync

store = Store(sys.argv[1], pm=make_plugin_manager(load_entrypoints=False))
name, cycles = sys.argv[2], int(sys.argv[3])
rounds = 0
for i in range(cycles):
    with store.transaction() as tx:
        tx.create({"title": f"{name}-{i}", "prefix": name})  # prefixes: IDs cannot collide
    rounds = max(rounds, sync(store).attempts)
store.git.repo.close()
print(rounds)  # the most rounds one sync needed
"""


def test_two_processes_creating_and_syncing_concurrently_lose_nothing(world: World) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(m.root), name, "20"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m, name in ((world.a, "wa"), (world.b, "wb"))
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    sync(world.a.store)
    sync(world.b.store)
    converged(world.a, world.b)
    wanted = {f"{name}-{i}" for name in ("wa", "wb") for i in range(20)}
    assert world.a.titles() == world.b.titles() == wanted
    assert int(git(world.a.root, "rev-list", "--count", "HEAD")) == 1 + 40


# --- the controller: a refinery on one machine wakes a polecat on another -------------------------


def polecat(root: Path, *args: str) -> str:
    """`gc-polecat --repo ROOT ARGS...` in process (the await and the controller run apart)."""
    result = Cli(root)(*args)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.stdout.strip()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_controller_with_sync_wakes_an_await_blocked_on_the_other_machine(
    world: World, sleeper: subprocess.Popen[bytes]
) -> None:
    a, b = world.a.root, world.b.root
    # machine B: a polecat session (a real process) submits its work and blocks in `await`
    work = polecat(b, "bead", "create", "Fix the flaky test")
    registered = json.loads(
        polecat(b, "session", "register", "--pool", "polecats", "--pid", str(sleeper.pid), "--json")
    )
    sid = registered["id"]
    polecat(b, "bead", "update", work, "--status", "in_progress", "--assignee", sid)
    me = {"GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1", "GC_POLECAT_REPO": str(b)}
    sub, wait_id = submitted_ids(
        polecat(
            b, "submit", work, "--branch", f"polecat/x/{work}", "--commit", "a" * 40,
            "--session", sid,
        )
    )  # fmt: skip
    polecat(b, "sync")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "await", wait_id, "--timeout", "60"],
        env={**os.environ, **me},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sockets = Path(wake._key_dir(wake._real(b / ".git" / "gc-polecat" / "wake"), wait_id))
    deadline = time.monotonic() + 20
    while not list(sockets.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(sockets.glob("*.sock")) and waiter.poll() is None  # blocked, listening

    # machine A: the refinery pulls the submission, records its verdict and pushes it
    polecat(a, "sync")
    polecat(a, "verdict", sub, "--fix-needed", "--type", "tests", "--reason", "flaky on A")
    polecat(a, "sync")
    assert world.b.bead(wait_id)["metadata"]["state"] == "pending"  # B has not heard yet

    # machine B: one controller pass with sync brings the verdict in and rings the doorbell
    with wake.Doorbell(b / ".git" / "gc-polecat" / "wake", [wait_id]) as bell:
        ran = run_cli("controller", "run", "--once", "--sync", env={"GC_POLECAT_REPO": str(b)})
        assert ran.returncode == 0, ran.stderr
        finished = time.monotonic()
        assert "sync origin master:" in ran.stdout
        assert bell.wait(5.0), "the sync's observers rang no doorbell on B"
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 10, err
    assert time.monotonic() - finished < 4.0  # woken, not found by its 5 s re-check
    assert "fix needed (tests): flaky on A" in out

    polecat(b, "sync")  # the delivery recorded on B goes back to A
    polecat(a, "sync")
    converged(world.a, world.b)
    delivered = world.a.bead(wait_id)
    assert delivered["status"] == "closed" and delivered["metadata"]["state"] == "closed"
    assert delivered["metadata"]["delivered_to"].startswith(f"{sid}:")


# --- bad input ----------------------------------------------------------------------------------


def test_bad_remotes_exit_2_with_one_line_and_write_nothing(world: World, tmp_path: Path) -> None:
    b = world.b.root
    not_a_repo = tmp_path / "plain-dir"
    not_a_repo.mkdir()
    lonely = tmp_path / "lonely"
    Store.init(lonely, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))

    def snapshot(root: Path) -> tuple[str, str]:
        return git(root, "for-each-ref"), git(root, "status", "--porcelain")

    cases = [
        (b, ("sync", "nosuch"), "no git remote named 'nosuch'"),
        (b, ("sync", str(not_a_repo)), "is not a git repository"),
        (b, ("sync", "--no-push", str(tmp_path / "missing" / "x.git")), "not a git repository"),
        (b, ("controller", "run", "--once", "--sync", "nosuch"), "no git remote named"),
        (lonely, ("sync",), "sync needs a remote"),
    ]
    for n, (root, args, message) in enumerate(cases):
        before = snapshot(root)
        if n == 0:  # the real entry point once, then in process
            proc = run_cli(*args, env={"GC_POLECAT_REPO": str(root)})
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            result = Cli(root)(*args)
            code, out, err = result.exit_code, result.stdout, result.stderr
        assert code == 2, (args, err)
        assert out == "" and len(err.splitlines()) == 1, err
        assert message in err
        assert snapshot(root) == before
    assert "refs/gc-polecat" not in git(b, "for-each-ref")
    with pytest.raises(BadInput):
        resolve_remote(world.b.store, "-uhoh")


def test_an_unrelated_repository_is_refused(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other"  # (a different prefix: an init identical to A's is A's commit)
    Store.init(other, prefix="zz", pm=make_plugin_manager(load_entrypoints=False))
    head = git(other, "rev-parse", "HEAD")
    with pytest.raises(BadInput, match="shares no commit"):
        sync(Store(other, pm=make_plugin_manager(load_entrypoints=False)), str(world.origin))
    assert git(other, "rev-parse", "HEAD") == head
    assert_clean(other)
