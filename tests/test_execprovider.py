"""Gas City's exec beads provider, driven the way gc drives it.

gc runs `<script> <op> [args]` as a fresh process with JSON on stdin and stdout (nil stdin, i.e.
/dev/null, for operations without input) and `GC_STORE_ROOT`, `GC_STORE_SCOPE` and
`GC_BEADS_PREFIX` in the environment; it reads exit 0 as success, 1 as failure ("not found" in
the message means a missing bead) and 2 as "unknown operation" (success).

The first test runs every operation, and the error cases gc depends on, as real
`python -m gc_polecat exec-beads ...` processes with exactly the argv and stdin gc builds. The
others pin the semantics through the same command in process (no interpreter start-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads.store import Store

from .conftest import Cli, assert_clean, git

WIRE_KEYS = {
    "id", "title", "status", "type", "priority", "created_at", "updated_at", "assignee", "from",
    "parent_id", "ref", "needs", "description", "labels", "metadata", "dependencies",
}  # fmt: skip


def gc_exec(
    root: Path, op: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One provider call as gc makes it: a new process, GC_* environment, stdin only when the
    operation has input (conftest's run_cli cannot pass stdin)."""
    full_env = {**os.environ, "GC_STORE_ROOT": str(root), "GC_STORE_SCOPE": "city"}
    full_env["GC_BEADS_PREFIX"] = "gc"
    full_env.pop("GC_POLECAT_REPO", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gc_polecat", "exec-beads", op, *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=root.parent,  # not the repository: GC_STORE_ROOT is what finds it
        timeout=30,
    )


def ok(proc: Any) -> Any:
    """The JSON stdout of a successful call (None for operations that print nothing)."""
    code = getattr(proc, "returncode", getattr(proc, "exit_code", None))
    assert code == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def failed(proc: Any, *needles: str) -> str:
    """A protocol failure: exit 1, one line on stderr, no traceback, nothing on stdout."""
    code = getattr(proc, "returncode", getattr(proc, "exit_code", None))
    assert code == 1, (code, proc.stdout, proc.stderr)
    err = proc.stderr
    assert proc.stdout == ""
    assert err.startswith("gc-polecat: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err.lower(), err
    return err


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


class Gc:
    """The provider in process: `gc(op, *args, stdin=...)` -> click's result."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    def __call__(self, op: str, *args: str, stdin: str = "") -> Any:
        return self.cli("exec-beads", op, *args, input=stdin)

    def ok(self, op: str, *args: str, stdin: str = "") -> Any:
        return ok(self(op, *args, stdin=stdin))

    def create(self, **fields: Any) -> dict[str, Any]:
        return self.ok("create", stdin=json.dumps(fields))


@pytest.fixture
def gc(cli: Cli) -> Gc:
    return Gc(cli)


def native(store: Store, **fields: Any) -> str:
    """A bead written straight through our store (statuses gc cannot set, fixtures)."""
    with store.transaction() as tx:
        return tx.create(fields)["id"]


# --- every operation as a real process ---------------------------------------------------


def test_gc_drives_every_operation_as_a_process(repo: Path, tmp_path: Path) -> None:
    n = commits(repo)

    def wrote(count: int) -> None:
        nonlocal n
        assert commits(repo) == n + count
        n += count

    # writes, one after the other, as gc's controller makes them
    mol = ok(gc_exec(repo, "create", stdin='{"title": "Molecule", "type": "molecule"}'))
    assert set(mol) == WIRE_KEYS and "issue_type" not in mol and "parent" not in mol
    assert (mol["type"], mol["status"], mol["labels"], mol["metadata"]) == ("molecule", "open",
                                                                           [], {})  # fmt: skip
    step_in = {
        "title": "Fix the login test",
        "type": "bug",
        "priority": 1,
        "labels": ["gc:queue"],
        "parent_id": mol["id"],
        "ref": "implement",
        "needs": ["related:" + mol["id"]],  # gc's `<type>:<id>` form: a dependency too
        "description": "fails one run in ten",
        "assignee": "",
        "from": "mayor",
        "metadata": {"gc.routed_to": "rig/polecat"},
    }
    step = ok(gc_exec(repo, "create", stdin=json.dumps(step_in)))
    assert step["id"] == mol["id"] + ".1" and step["parent_id"] == mol["id"]
    assert {k: step[k] for k in step_in} == step_in
    assert step["created_at"].endswith("Z")
    wrote(2)  # one commit per create
    ok(gc_exec(repo, "update", step["id"], stdin='{"status": "in_progress", "assignee": "nux"}'))
    ok(gc_exec(repo, "set-metadata", step["id"], "gc.step", stdin="implement"))
    other = ok(gc_exec(repo, "create", stdin='{"title": "Review"}'))
    ok(gc_exec(repo, "dep-add", other["id"], step["id"], "blocks"))
    wrote(4)

    # reads, several at once (readers take no lock)
    got, deps, listed, ready, children, labelled, empty = concurrently(
        (repo, "get", step["id"]),
        (repo, "dep-list", other["id"], "down"),
        (repo, "list", "--status=in_progress", "--assignee=nux", "--limit=5"),
        (repo, "ready"),
        (repo, "children", mol["id"]),
        (repo, "list-by-label", "gc:queue", "0"),
        (repo, "list", "--status=closed"),
    )
    assert ok(got)["metadata"] == {"gc.routed_to": "rig/polecat", "gc.step": "implement"}
    assert ok(deps) == [{"issue_id": other["id"], "depends_on_id": step["id"], "type": "blocks"}]
    assert [b["id"] for b in ok(listed)] == [step["id"]]
    assert ok(ready) == []  # the step is taken, the review blocked by it
    assert [b["id"] for b in ok(children)] == [step["id"]]
    assert [b["id"] for b in ok(labelled)] == [step["id"]]
    assert empty.returncode == 0 and empty.stdout == "[]\n"  # never null
    wrote(0)

    ok(gc_exec(repo, "close", step["id"]))
    assert [b["id"] for b in ok(gc_exec(repo, "ready"))] == [other["id"]]
    ok(gc_exec(repo, "reopen", step["id"]))
    ok(gc_exec(repo, "dep-remove", other["id"], step["id"]))
    ok(gc_exec(repo, "delete", "--force", other["id"]))
    wrote(4)
    city = tmp_path / "city"
    city.mkdir()
    ok(gc_exec(repo, "init", str(city), "mc", "hq", env={"GC_CITY_PATH": str(city)}))
    store_dir = city / ".gc" / "runtime" / "packs" / "polecat" / "stores" / "city"
    assert "prefix: mc" in (store_dir / ".beads" / "config.yaml").read_text()
    assert [p.name for p in city.iterdir()] == [".gc"]  # nothing beside gc's runtime directory
    assert_clean(store_dir)

    # the failures gc tells apart, each writing nothing
    gone, bad_json, bad_status, trick, trick_write, elsewhere, unknown = concurrently(
        (repo, "get", other["id"]),
        (repo, "create", '{"title": "x",'),
        (repo, "update", step["id"], '{"status": "done"}'),
        (repo, "get", "../x"),
        (repo, "set-metadata", "../../etc/passwd", "k", "v"),
        (tmp_path, "list"),  # GC_STORE_ROOT outside any beads repository
        (repo, "mol-cook", "x"),
    )
    failed(gone, f"bead {other['id']} not found")
    failed(bad_json, "invalid json")
    assert "not found" not in failed(bad_status, "invalid status")  # only a missing bead says so
    failed(trick, "invalid bead id")
    failed(trick_write, "invalid bead id")
    failed(elsewhere, "not a beads repository")  # exit 1: never 2
    assert unknown.returncode == 2 and unknown.stdout == ""  # gc: unknown op, treated as fine
    wrote(0)
    assert_clean(repo)


STDIN_OPS = {"create": 0, "update": 1, "set-metadata": 2}  # op -> arguments before its stdin


def concurrently(*calls: tuple[Any, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run gc_exec calls in parallel; for create, update and set-metadata the last item of
    a call is its stdin."""

    def one(call: tuple[Any, ...]) -> subprocess.CompletedProcess[str]:
        root, op, *args = call
        if op in STDIN_OPS and len(args) > STDIN_OPS[op]:
            return gc_exec(root, op, *args[:-1], stdin=args[-1])
        return gc_exec(root, op, *args)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


# --- the semantics, in process -----------------------------------------------------------


def test_minimal_create_has_empty_lists_not_null(gc: Gc) -> None:
    result = gc("create", stdin='{"title": "bare"}')
    bead = ok(result)
    assert set(bead) == WIRE_KEYS and "null" not in result.stdout
    assert (bead["type"], bead["priority"], bead["labels"], bead["needs"]) == ("task", 2, [], [])
    assert (bead["assignee"], bead["from"], bead["parent_id"], bead["metadata"]) == ("", "", "", {})


def test_bead_file_keeps_bd_keys_and_gc_fields(gc: Gc, cli: Cli) -> None:
    bead = gc.create(title="t", type="bug", metadata={"n": 3, "flag": True}, **{"from": "mayor"})
    assert bead["metadata"] == {"n": "3", "flag": "true"}  # gc's strings
    on_disk = json.loads(cli("bead", "show", bead["id"], "--json").output)[0]
    assert on_disk["issue_type"] == "bug" and "type" not in on_disk
    assert on_disk["from"] == "mayor"
    text = gc.create(title="Fix ünïcode ✓", description="naïve\nzweite Zeile")
    assert gc.ok("get", text["id"])["title"] == "Fix ünïcode ✓"
    assert gc.ok("get", text["id"])["description"] == "naïve\nzweite Zeile"


def test_parent_id_local_foreign_and_prefix(
    gc: Gc, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mol = gc.create(title="Molecule", type="molecule")
    steps = [gc.create(title=f"s{i}", parent_id=mol["id"])["id"] for i in range(2)]
    assert steps == [mol["id"] + ".1", mol["id"] + ".2"]
    foreign = gc.create(title="Rig step", parent_id="hq-zzz")  # a weak reference, carried
    assert foreign["parent_id"] == "hq-zzz" and foreign["dependencies"][0]["type"] == "parent-child"
    assert [b["id"] for b in gc.ok("children", "hq-zzz")] == [foreign["id"]]
    monkeypatch.setenv("GC_BEADS_PREFIX", "fe-")
    assert gc.create(title="rig work")["id"].startswith("fe-")
    pinned = gc.create(title="pinned id", id="fe-pin1", parent_id=mol["id"])
    assert pinned["id"] == "fe-pin1" and pinned["parent_id"] == mol["id"]
    assert {b["id"] for b in gc.ok("children", mol["id"])} == {*steps, "fe-pin1"}
    assert_clean(repo)


def test_update_applies_fields_in_one_commit(gc: Gc, repo: Path) -> None:
    parent = gc.create(title="Epic", type="epic")
    bead = gc.create(title="Work", labels=["a", "b"], metadata={"keep": "1", "drop": "x"})
    before = commits(repo)
    change = {
        "title": "Work, renamed",
        "status": "in_progress",
        "type": "feature",
        "priority": 0,
        "description": "now described",
        "assignee": "nux",
        "parent_id": parent["id"],
        "labels": ["c", "a"],  # appends
        "remove_labels": ["b"],
        "metadata": {"new": "y", "drop": ""},  # merges; '' is a value, not a removal
        "ref": None,  # null: skipped
        "future_field": 1,  # unknown keys are ignored (forward compatible)
    }
    assert gc.ok("update", bead["id"], stdin=json.dumps(change)) is None
    assert commits(repo) == before + 1
    got = gc.ok("get", bead["id"])
    assert (got["title"], got["status"], got["type"], got["priority"]) == (
        "Work, renamed", "in_progress", "feature", 0,
    )  # fmt: skip
    assert (got["assignee"], got["parent_id"], got["labels"]) == ("nux", parent["id"], ["a", "c"])
    assert got["metadata"] == {"keep": "1", "new": "y", "drop": ""}
    gc.ok("update", bead["id"], stdin='{"assignee": "", "parent_id": ""}')
    got = gc.ok("get", bead["id"])
    assert (got["assignee"], got["parent_id"], got["dependencies"]) == ("", "", [])
    gc.ok("update", bead["id"], stdin="{}")
    gc.ok("update", bead["id"], stdin='{"title": "Work, renamed", "labels": ["a"]}')
    assert commits(repo) == before + 2  # changing nothing commits nothing
    assert_clean(repo)


def test_status_mapping_both_ways(gc: Gc, repo: Path, store: Store) -> None:
    ids = {s: native(store, title=s, status=s) for s in ("blocked", "deferred", "pinned", "hooked")}
    wire = {b["id"]: b for b in gc.ok("list")}
    assert {s: (wire[i]["status"], wire[i]["status_detail"]) for s, i in ids.items()} == {
        "blocked": ("open", "blocked"),
        "deferred": ("open", "deferred"),
        "pinned": ("open", "pinned"),
        "hooked": ("in_progress", "hooked"),
    }
    opened = {b["id"] for b in gc.ok("list", "--status=open")}
    assert opened == {ids["blocked"], ids["deferred"], ids["pinned"]}
    assert [b["id"] for b in gc.ok("list", "--status", "in_progress")] == [ids["hooked"]]
    # gc writing back the status it read changes nothing: the finer status survives
    before = head(repo)
    gc.ok("update", ids["hooked"], stdin='{"status": "in_progress"}')
    gc.ok("reopen", ids["blocked"])
    assert head(repo) == before and store.get(ids["hooked"])["status"] == "hooked"
    gc.ok("update", ids["hooked"], stdin='{"status": "open"}')
    gc.ok("update", ids["deferred"], stdin='{"status": "closed"}')
    assert store.get(ids["hooked"])["status"] == "open"
    assert store.get(ids["deferred"])["status"] == "closed"
    assert [b["id"] for b in gc.ok("list", "--status=closed")] == [ids["deferred"]]
    gc.ok("reopen", ids["deferred"])
    assert "closed_at" not in store.get(ids["deferred"])


def test_list_filters(gc: Gc, store: Store) -> None:
    assert gc("list").stdout == "[]\n"
    a = native(store, title="a", assignee="furiosa", issue_type="bug")
    native(store, title="b", assignee="nux")
    native(store, title="c", status="closed")
    assert len(gc.ok("list")) == 3  # closed beads too: gc filters itself
    mine = gc.ok("list", "--assignee=furiosa", "--type=bug", "--status=open")
    assert [b["id"] for b in mine] == [a]
    assert len(gc.ok("list", "--limit=2")) == 2 and len(gc.ok("list", "--limit=0")) == 3
    assert gc.ok("list", "--type=gate") == []


def test_ready_lists_open_unblocked_work(gc: Gc, store: Store) -> None:
    blocker = native(store, title="blocker")
    with store.transaction() as tx:
        blocked = tx.create({"title": "blocked"})["id"]
        tx.add_dependency(blocked, blocker, "blocks")
        molecule = tx.create({"title": "molecule", "issue_type": "molecule"})["id"]
        step = tx.create({"title": "step"}, parent=molecule)["id"]  # an open parent blocks not
        chained = tx.create({"title": "child of blocked"}, parent=blocked)["id"]
        waiting = tx.create({"title": "waits on a missing bead"})["id"]
        tx.update(
            waiting,
            {
                "dependencies": [
                    {
                        "issue_id": waiting,
                        "depends_on_id": "gc-gone",
                        "type": "waits-for",
                        "created_at": tx.now,
                    }
                ]
            },  # fmt: skip
        )
        for kind in ("gate", "merge-request", "message", "session", "agent", "role", "rig"):
            tx.create({"title": kind, "issue_type": kind})
        for status in ("in_progress", "deferred", "pinned", "hooked", "closed"):
            tx.create({"title": status, "status": status})
    assert {b["id"] for b in gc.ok("ready")} == {blocker, step}
    gc.ok("close", blocker)
    assert {b["id"] for b in gc.ok("ready", "--include-ephemeral")} == {blocked, step, chained}


def test_list_by_label_newest_first(gc: Gc, store: Store) -> None:
    for n in range(3):
        native(
            store, title=f"mail {n}", labels=["gc:mail"], created_at=f"2026-01-0{n + 1}T00:00:00Z"
        )
    native(store, title="other", labels=["x"])
    native(store, title="mail 3", labels=["gc:mail"], status="closed")
    titles = [b["title"] for b in gc.ok("list-by-label", "gc:mail", "0")]
    assert titles == ["mail 3", "mail 2", "mail 1", "mail 0"]
    assert [b["title"] for b in gc.ok("list-by-label", "gc:mail", "2")] == ["mail 3", "mail 2"]
    assert len(gc.ok("list-by-label", "gc:mail")) == 4
    assert gc("list-by-label", "nothing", "0").stdout == "[]\n"


def test_set_metadata_value_on_stdin(gc: Gc, repo: Path) -> None:
    bead = gc.create(title="Routed")["id"]
    gc.ok("set-metadata", bead, "gc.routed_to", stdin="rig/polecat")
    gc.ok("set-metadata", bead, "note", stdin="two words; $(not run) `nor this`\n")
    meta = gc.ok("get", bead)["metadata"]
    assert meta == {"gc.routed_to": "rig/polecat", "note": "two words; $(not run) `nor this`\n"}
    before = commits(repo)
    gc.ok("set-metadata", bead, "gc.routed_to", stdin="rig/polecat")  # the same: no commit
    gc.ok("set-metadata", bead, "gc.routed_to", stdin="")  # '' is kept as a value
    assert gc.ok("get", bead)["metadata"]["gc.routed_to"] == ""
    assert commits(repo) == before + 1
    assert_clean(repo)


def test_dependencies_add_list_remove(gc: Gc, repo: Path) -> None:
    a, b, c = (gc.create(title=t)["id"] for t in "abc")
    gc.ok("dep-add", a, b, "blocks")
    gc.ok("dep-add", c, b)  # type defaults to blocks
    gc.ok("dep-add", a, c, "related")
    added = head(repo)
    gc.ok("dep-add", a, b, "blocks")
    assert head(repo) == added  # already there: no commit
    down = gc.ok("dep-list", a, "down")
    assert down == [
        {"issue_id": a, "depends_on_id": b, "type": "blocks"},
        {"issue_id": a, "depends_on_id": c, "type": "related"},
    ]
    assert gc.ok("dep-list", a) == down  # down is the default
    assert {d["issue_id"] for d in gc.ok("dep-list", b, "up")} == {a, c}
    assert gc("dep-list", b, "down").stdout == "[]\n"
    gc.ok("dep-remove", a, b)
    assert [d["depends_on_id"] for d in gc.ok("dep-list", a, "down")] == [c]
    removed = head(repo)
    gc.ok("dep-remove", a, b)  # not there: nothing to do
    assert head(repo) == removed
    assert_clean(repo)


def test_delete_needs_force_and_unlinks_dependents(gc: Gc, repo: Path) -> None:
    target = gc.create(title="doomed")["id"]
    child = gc.create(title="child", parent_id=target)["id"]
    blocked = gc.create(title="blocked")["id"]
    gc.ok("dep-add", blocked, target)
    before = commits(repo)
    failed(gc("delete", target), "--force")
    gc.ok("delete", target, "--force")
    assert commits(repo) == before + 1  # the bead and every link to it: one commit
    failed(gc("get", target), f"bead {target} not found")
    assert gc.ok("get", child)["parent_id"] == "" and gc.ok("get", blocked)["dependencies"] == []
    assert_clean(repo)


def test_init_with_an_explicit_repository_makes_only_that(
    tmp_path: Path, cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--repo / GC_POLECAT_REPO name one store for every scope: `init <dir>` makes it if it is
    missing, keeps it (whatever prefix it has) if not, and never touches <dir>."""
    city = tmp_path / "city"
    city.mkdir()
    before = head(repo)
    assert cli("exec-beads", "init", str(city), "mc", "hq").exit_code == 0
    assert head(repo) == before and list(city.iterdir()) == []
    monkeypatch.setenv("GC_POLECAT_REPO", str(tmp_path / "shared"))
    gc = Gc(Cli(None))
    gc.ok("init", str(city), "mc", "hq")
    gc.ok("init", str(city / "rig"), "fe", "fe")  # another scope, the same store
    assert "prefix: mc" in (tmp_path / "shared" / ".beads" / "config.yaml").read_text()
    assert list(city.iterdir()) == []


def test_store_root_finds_the_enclosing_repository(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = repo / "rigs" / "frontend"
    rig.mkdir(parents=True)
    monkeypatch.setenv("GC_STORE_ROOT", str(rig))  # a rig inside the city's repository
    monkeypatch.setenv("GC_STORE_SCOPE", "rig")
    gc = Gc(Cli(None))
    assert gc.create(title="from the rig")["id"].startswith("gc-")
    assert len(gc.ok("list")) == 1


BAD_CALLS = [
    # (argv, stdin, what the one-line message says)
    (["get", "../x"], "", "invalid bead id"),
    (["get", "gc-abc/../../x"], "", "invalid bead id"),
    (["get", "gc-a\\b"], "", "invalid bead id"),
    (["get", ""], "", "invalid bead id"),
    (["get", "gc-abc\n"], "", "invalid bead id"),
    (["get"], "", "usage: get"),
    (["get", "gc-a", "gc-b"], "", "usage: get"),
    (["get", "gc-zzzz"], "", "bead gc-zzzz not found"),
    (["update", "../x"], '{"title": "t"}', "invalid bead id"),
    (["update", "gc-zzzz"], '{"title": "t"}', "not found"),
    (["update", "EXISTING"], "[1, 2]", "json object"),
    (["update", "EXISTING"], "{nope", "invalid json"),
    (["update", "EXISTING"], '{"status": "blocked"}', "invalid status"),
    (["update", "EXISTING"], '{"status": 3}', "invalid status"),
    (["update", "EXISTING"], '{"priority": 9}', "priority"),
    (["update", "EXISTING"], '{"priority": "high"}', "priority"),
    (["update", "EXISTING"], '{"priority": true}', "priority"),
    (["update", "EXISTING"], '{"type": "wisp"}', "invalid type"),
    (["update", "EXISTING"], '{"title": ""}', "title"),
    (["update", "EXISTING"], '{"labels": "a"}', "labels"),
    (["update", "EXISTING"], '{"metadata": {"k": {"x": 1}}}', "metadata"),
    (["update", "EXISTING"], '{"metadata": {"": "v"}}', "metadata key"),
    (["update", "EXISTING"], '{"parent_id": "../up"}', "invalid bead id"),
    (["update", "EXISTING"], '{"parent_id": "EXISTING"}', "own parent"),
    (["create"], "", "expected a json object"),
    (["create"], '{"description": "no title"}', "title"),
    (["create"], '{"title": "t", "type": "nonsense"}', "invalid type"),
    (["create"], '{"title": "t", "parent_id": "a/b"}', "invalid bead id"),
    (["create"], '{"title": "t", "id": "../../x"}', "invalid bead id"),
    (["create"], '{"title": "t", "id": "EXISTING"}', "already exists"),
    (["create"], '{"title": "' + "x" * 501 + '"}', "500"),
    (["create"], '{"title": "t", "ephemeral": "yes"}', "ephemeral"),
    (["close", "../x"], "", "invalid bead id"),
    (["close", "gc-zzzz"], "", "not found"),
    (["reopen", "gc-zzzz"], "", "not found"),
    (["list", "--status=blocked"], "", "invalid status"),
    (["list", "--colour=red"], "", "unexpected argument"),
    (["list", "--status"], "", "needs a value"),
    (["list", "--limit=-1"], "", "invalid limit"),
    (["list", "--limit=²"], "", "invalid limit"),
    (["list", "--type=wisp"], "", "invalid type"),
    (["ready", "--all"], "", "unexpected argument"),
    (["list-by-label", "x", "many"], "", "invalid limit"),
    (["list-by-label", ""], "", "label is empty"),
    (["set-metadata", "EXISTING", "bad\nkey"], "v", "invalid metadata key"),
    (["set-metadata", "gc-zzzz", "k"], "v", "not found"),
    (["set-metadata", "EXISTING"], "v", "usage: set-metadata"),
    (["delete", "--force", "gc-zzzz"], "", "not found"),
    (["delete", "--force", "../x"], "", "invalid bead id"),
    (["delete", "EXISTING"], "", "--force"),
    (["dep-add", "EXISTING", "EXISTING"], "", "itself"),
    (["dep-add", "EXISTING", "gc-zzzz"], "", "not found"),
    (["dep-add", "EXISTING", "gc-zzzz", "Blocks!"], "", "dependency type"),
    (["dep-add", "EXISTING", "../x"], "", "invalid bead id"),
    (["dep-list", "EXISTING", "sideways"], "", "direction"),
    (["init", "/dev/null"], "", "not a directory"),
    (["init", "DIR", "Bad.Prefix"], "", "invalid prefix"),
    ([""], "", "usage"),
]


def test_bad_input_exits_1_and_writes_nothing(
    gc: Gc, repo: Path, store: Store, tmp_path: Path
) -> None:
    existing = native(store, title="existing")
    before = head(repo)
    for argv, stdin, needle in BAD_CALLS:
        argv = [{"EXISTING": existing, "DIR": str(tmp_path / "x")}.get(a, a) for a in argv]
        result = gc(*argv, stdin=stdin.replace("EXISTING", existing))
        try:
            err = failed(result, needle)
        except AssertionError as exc:
            raise AssertionError(f"{argv} {stdin[:40]!r}: {exc}") from None
        if "not found" not in needle:
            assert "not found" not in err, (argv, err)  # only a missing bead says so
        assert head(repo) == before, argv
    assert not (tmp_path / "x").exists()
    assert_clean(repo)


def test_stdin_must_be_utf8(cli: Cli) -> None:
    failed(cli("exec-beads", "create", input=b'{"title": "\xff"}'), "not utf-8")


def test_unknown_operations_exit_2_for_gc(gc: Gc) -> None:
    for op in ("purge", "config-set", "ensure-ready", "shutdown", "list-by-status", "mol-cook"):
        result = gc(op, "x")
        assert result.exit_code == 2 and result.stdout == "", result.output
    assert gc("--help").exit_code == 0


def test_a_molecule_the_way_gc_builds_it(gc: Gc, repo: Path) -> None:
    """The calls gc makes for a molecule and its steps; one commit per changing call."""
    start = commits(repo)
    root = gc.create(title="mol", type="molecule")["id"]
    steps = [gc.create(title=f"s{n}", parent_id=root, ref=f"s{n}")["id"] for n in range(3)]
    gc.ok("dep-add", steps[1], steps[0], "blocks")
    gc.ok("update", steps[0], stdin='{"status": "in_progress", "assignee": "nux"}')
    gc.ok("set-metadata", steps[0], "gc.step", stdin="1")
    gc.ok("close", steps[0])
    assert commits(repo) == start + 8
    assert [b["id"] for b in gc.ok("children", root)] == steps
    assert {b["id"] for b in gc.ok("ready")} == {steps[1], steps[2]}
    assert_clean(repo)


def test_layout_constants_read_without_the_store_match_it() -> None:
    """The click-free read path opens the catalog by these names; they must be the store's."""
    from gc_polecat.beads import catalog, store
    from gc_polecat.interop import gc_exec as execprovider

    assert execprovider.CONFIG_PATH == store.CONFIG_PATH
    assert execprovider.STATE_DIR == store.STATE_DIR
    assert execprovider.CATALOG_FILE == catalog.FILENAME
    assert execprovider.CATALOG_SCHEMA == catalog.SCHEMA_VERSION


# --- the warm server's `ready` view never answers stale ------------------------------------


def _plain_commit(repo: Path, path: str, old: str, new: str) -> None:
    """A hand edit committed with plain git under the store's write lock (as a person or
    another tool may do): no gc-polecat code runs, the catalog is behind HEAD afterwards."""
    from gc_polecat.beads.locks import FileLock

    with FileLock(repo / ".git" / "gc-polecat" / "write.lock", timeout=10):
        file = repo / path
        text = file.read_text()
        assert old in text, text
        file.write_text(text.replace(old, new, 1))
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "by hand")


def _both_answers(gc: Gc, monkeypatch: pytest.MonkeyPatch, *call: str) -> tuple[str, str]:
    """(warm, cold) stdout of one call: through the process-wide `ReadyView` as the warm
    server keeps it, and through the SQL path a fresh process takes."""
    from gc_polecat.interop import gc_exec as execprovider

    monkeypatch.setattr(execprovider, "WARM", True)
    warm = gc(*call)
    monkeypatch.setattr(execprovider, "WARM", False)
    cold = gc(*call)
    assert warm.exit_code == 0 and cold.exit_code == 0, (warm.output, cold.output)
    return warm.output, cold.output


def test_warm_ready_follows_every_kind_of_write(
    gc: Gc, store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm server's `ReadyView` is brought to the catalog's commit by a tree diff on each
    call: after writes through the store, a plain `git commit` under the write lock, a file
    deleted by hand and a history rewrite (`git reset --hard`, as a sync that moves HEAD back),
    its `ready` is byte for byte the cold one, in the same order (priority, creation, ID)."""
    from gc_polecat.beads.ids import id_path
    from gc_polecat.interop import gc_exec as execprovider

    monkeypatch.setattr(execprovider, "_READY_VIEWS", {})
    with store.transaction() as tx:
        blocker = tx.create({"title": "blocker", "priority": 3})["id"]
        blocked = tx.create({"title": "blocked", "priority": 0})["id"]
        tx.add_dependency(blocked, blocker, "blocks")
        parent = tx.create({"title": "parent"})["id"]
        child = tx.create({"title": "child"}, parent=parent)["id"]
        tx.create({"title": "gate", "issue_type": "gate"})
        for priority in (2, 1, 2, 0):
            tx.create({"title": f"p{priority}", "priority": priority})
    steps: list[str] = []

    def same(label: str) -> list[str]:
        warm, cold = _both_answers(gc, monkeypatch, "ready")
        assert warm == cold, label
        steps.append(label)
        return [b["id"] for b in json.loads(warm)]

    assert blocked not in same("first call: the view is built")
    first = head(repo)
    gc.ok("close", blocker)
    assert blocked in same("a write through the provider")
    gc.ok("update", child, stdin='{"priority": 0}')
    assert child in same("a priority change")[:3]
    _plain_commit(repo, id_path(child), "status: open", "status: in_progress")
    assert child not in same("a plain git commit under the write lock")
    with store.transaction() as tx:
        tx.add_dependency(parent, blocked, "blocks")
    before_rm = same("a new dependency")
    assert parent not in before_rm
    git(repo, "rm", "-q", id_path(blocked))
    git(repo, "-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "rm")
    assert blocked not in same("a bead file deleted by hand")
    git(repo, "reset", "-q", "--hard", first)
    assert blocked not in same("history moved back") and child in same("again, unchanged")
    assert list(execprovider._READY_VIEWS.values())[0].commit == first
    assert len(steps) == 8


def test_warm_ready_and_list_see_a_cli_write_and_a_git_commit(tmp_path: Path) -> None:
    """Real processes as a city runs them: gc's `start` leaves the warm server; another
    process writes (the CLI, then a plain `git commit` under the write lock); the very next
    warm `ready` and `list` through the pack's script see it, byte for byte as a cold call."""
    from gc_polecat.beads.ids import id_path
    from gc_polecat.plugins import make_plugin_manager

    from .conftest import run_cli
    from .gc_exec_store import SCRIPT, city_runtime_env

    repo = tmp_path / "beads"
    city = tmp_path / "city"
    city.mkdir()
    Store.init(repo, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    env = {**os.environ, "GC_POLECAT_REPO": str(repo), "GC_STORE_ROOT": str(city)}
    env.update(city_runtime_env(city))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cold_env = {k: v for k, v in env.items() if not k.startswith("GC_CITY")}

    def call(*argv: str, cold: bool = False) -> str:
        proc = subprocess.run(
            [str(SCRIPT), *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=cold_env if cold else env,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def ready_ids() -> list[str]:
        warm, listed = call("ready"), call("list", "--status=open")
        assert warm == call("ready", cold=True)
        assert listed == call("list", "--status=open", cold=True)
        return [b["id"] for b in json.loads(warm)]

    made = [run_cli("--repo", str(repo), "bead", "create", f"t{i}", env=env) for i in range(3)]
    assert all(p.returncode == 0 for p in made), [p.stderr for p in made]
    call("start")
    try:
        before = ready_ids()
        assert len(before) == 3
        closed = run_cli("--repo", str(repo), "bead", "close", before[0], env=env)
        assert closed.returncode == 0, closed.stderr
        assert before[0] not in ready_ids()
        bid = before[1]
        _plain_commit(repo, id_path(bid), "status: open", "status: in_progress")
        assert ready_ids() == [before[2]]
    finally:
        call("stop")


def test_the_warm_protocol_carries_megabytes_and_refuses_a_short_or_bad_body() -> None:
    """A warm `ready` answer at 10,000 beads is 1.3 MB: the client receives it into one
    buffer, byte for byte; a connection that ends early, or a header with a negative size, is
    a failure (the caller prints one line and exits 1), never a short answer."""
    import socket
    import threading

    from gc_polecat.interop.gc_exec_client import receive, send

    body = bytes(range(256)) * 12_000  # 3 MB
    left, right = socket.socketpair()
    with left, right:
        sender = threading.Thread(target=send, args=(left, {"status": 0, "body": len(body)}, body))
        sender.start()
        header, got = receive(right)
        sender.join()
        assert header["body"] == len(body) and got == body
        left.sendall(b'{"body": 10}\nshort')
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError):
            receive(right)
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b'{"body": -5}\n')
        with pytest.raises(ValueError):
            receive(right)


def test_a_large_answer_widens_the_pipe_gc_reads_and_nothing_else() -> None:
    """`widen_pipe` asks the kernel for a pipe that holds a large answer (F_SETPIPE_SZ, at
    most 1 MiB); stdout that is a file, or an answer that fits, is left as it is."""
    import fcntl
    import tempfile

    from gc_polecat.interop.gc_exec_client import widen_pipe

    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if get_size is None:
        pytest.skip("no F_GETPIPE_SZ here (not Linux)")
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb") as writer:
        before = fcntl.fcntl(writer.fileno(), get_size)
        widen_pipe(writer, 1000)
        assert fcntl.fcntl(writer.fileno(), get_size) == before
        widen_pipe(writer, 1_300_000)
        assert fcntl.fcntl(writer.fileno(), get_size) >= 1 << 20 or before >= 1 << 20
        assert reader.readable()
    with tempfile.TemporaryFile() as file:
        widen_pipe(file, 1_300_000)  # not a pipe: no error, nothing changed
        assert file.tell() == 0


def test_warm_ready_sees_a_settings_edit_that_keeps_size_and_mtime(
    gc: Gc, store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ready` lists custom statuses of category `active` (bd's ready_issues view). The warm
    server parses the settings only when their bytes change: an in-place edit of the same
    size with the old mtime put back (which a stamp of size and mtime would miss) is seen."""
    from gc_polecat.beads.config import settings_path
    from gc_polecat.interop import gc_exec as execprovider

    monkeypatch.setattr(execprovider, "_READY_STATES", {})
    path = settings_path(repo)
    original = path.read_text()
    path.write_text(original + 'status.custom: "triage:frozen"\n')
    bid = native(store, title="triaged", status="triage")
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold and bid not in warm
    st = path.stat()
    with path.open("r+b") as file:  # the same inode, the same size
        file.write(path.read_bytes().replace(b"triage:frozen", b"triage:active"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold and bid in warm


def test_warm_ready_rebuilds_when_its_commit_is_gone(
    gc: Gc, store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """History rewritten and the view's commit pruned (`git reset --hard`, then `git gc
    --prune=now` packs what is left): the tree diff cannot be made, so the view is rebuilt
    from the catalog, on a freshly opened repository, and answers as a cold call."""
    from gc_polecat.interop import gc_exec as execprovider

    monkeypatch.setattr(execprovider, "_READY_VIEWS", {})
    kept = native(store, title="kept")
    first = head(repo)
    gone = native(store, title="gone")
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold and gone in warm
    view = next(iter(execprovider._READY_VIEWS.values()))
    old_git = view.git
    git(repo, "reset", "-q", "--hard", first)
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    assert git(repo, "cat-file", "-t", view.commit or "", check=False).strip() != "commit"
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold and kept in warm and gone not in warm
    assert view.commit == first and view.git is not old_git


def test_warm_ready_sees_what_a_sync_brings(
    gc: Gc, cli: Cli, store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another clone creates a bead and blocks an existing one; `gc-polecat sync --no-push`
    merges that into this store: the next warm `ready` lists the new bead, drops the blocked
    one, and equals the cold answer byte for byte."""
    from gc_polecat.interop import gc_exec as execprovider
    from gc_polecat.plugins import make_plugin_manager

    monkeypatch.setattr(execprovider, "_READY_VIEWS", {})
    here = native(store, title="here")
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold and here in warm
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    theirs = Store(other, pm=make_plugin_manager(load_entrypoints=False))
    with theirs.transaction() as tx:
        new = tx.create({"title": "from the other clone"})["id"]
        tx.add_dependency(here, new, "blocks")
    synced = cli("sync", "--no-push", str(other))
    assert synced.exit_code == 0, synced.output
    warm, cold = _both_answers(gc, monkeypatch, "ready")
    assert warm == cold
    listed = [b["id"] for b in json.loads(warm)]
    assert new in listed and here not in listed
