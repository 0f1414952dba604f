"""The cold rebuild gives exactly what the incremental catalog gives (issue 17, point 3).

A rebuild reads every file in one pass, with executemany, and reads files in `bead.dump`'s
layout without YAML (gc_polecat.beads.canonical); the incremental path applies tree diffs file by
file. Both must end with the same rows, for a repository that went through every kind of
change, and the YAML-free reader must return what the YAML parser returns or decline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gc_polecat.beads import bead, canonical
from gc_polecat.beads.catalog import Catalog
from gc_polecat.beads.ids import id_path
from gc_polecat.beads.store import Store
from gc_polecat.errors import InvalidBead

from .conftest import examples, git
from .test_bead_yaml import BD_EXPORT, adversarial, beads, fast_path, ordered

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(catalog: Catalog) -> Snapshot:
    """Every row the catalog holds (the build token aside), in a fixed order."""
    catalog.refresh()
    db = catalog.db
    return {
        "beads": list(db.execute("SELECT * FROM beads ORDER BY id")),
        "labels": list(db.execute("SELECT * FROM labels ORDER BY id, label")),
        "bad": list(db.execute("SELECT * FROM bad ORDER BY path")),
        "meta": list(db.execute("SELECT * FROM meta WHERE key != 'built' ORDER BY key")),
    }


def rebuilt(repo: Path) -> Snapshot:
    """A catalog built from nothing, in its own file, by a fresh Store."""
    state = repo / ".git" / "gc-polecat"
    saved = {p.name: p.read_bytes() for p in state.glob("catalog.sqlite*")}
    for name in saved:
        (state / name).unlink()
    try:
        fresh = Store(repo).catalog
        rows = snapshot(fresh)
        fresh.close()
    finally:
        for p in state.glob("catalog.sqlite*"):
            p.unlink()
        for name, data in saved.items():
            (state / name).write_bytes(data)
    return rows


def commit_file(repo: Path, path: str, data: bytes | None, message: str) -> None:
    """A change made with plain git, as a person or another tool would."""
    target = repo / path
    if data is None:
        git(repo, "rm", "-q", path)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        git(repo, "add", path)
    git(repo, "commit", "-qm", message)


def test_a_rebuilt_catalog_equals_the_incremental_one(
    store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creates, updates, deletes, children, labels, moves, hand-written YAML and bad files,
    each followed by an incremental refresh; then a cold rebuild (fast reader) and a cold
    rebuild through the YAML parser alone must hold the very same rows."""
    catalog = store.catalog
    with store.transaction() as tx:
        made = [
            tx.create({"title": f"b{i}", "labels": [f"l{i % 3}", "all"], "issue_type": "gate"})
            for i in range(8)
        ]
        tx.create({"title": "child", "description": "two\nlines\n"}, parent=made[0]["id"])
    snapshot(catalog)
    ids = [b["id"] for b in made]
    with store.transaction() as tx:
        tx.update(ids[1], {"status": "in_progress", "assignee": "toast", "labels": ["x"]})
        tx.update(ids[2], {"metadata": {"k": "v: w", "n": "007"}, "priority": 0})
        tx.delete(ids[3])
        tx.close(ids[4], "done")
    snapshot(catalog)
    paths = [id_path(i) for i in ids]
    # hand-written YAML: another layout of a valid bead (flow style, comments, quoting)
    commit_file(
        repo,
        paths[5],
        f'# edited by hand\n{{id: {ids[5]}, title: "hand", priority: 1,\n'
        f" created_at: '2026-11-21T14:00:00Z', updated_at: '2026-11-21T14:00:00Z',"
        f" labels: [a, b]}}\n".encode(),
        "a person rewrites a bead in flow style",
    )
    snapshot(catalog)
    bad_files = {
        id_path("gc-zz"): b"id: gc-zz\ntitle: [unclosed\n",  # malformed YAML
        id_path("gc-zy"): b"id: gc-other\ntitle: t\n",  # holds another ID
        id_path("gc-zx"): b"id: gc-zx\ntitle: t\nstatus: 'no such'\n",  # invalid bead
        id_path("gc-zw"): b"id: gc-zw\ntitle: \xff\n",  # not UTF-8
        "beads/z/not-a-bead.txt": b"hello\n",  # not a bead file name
        "beads/README.md": b"a side file: never indexed\n",
    }
    for path, data in bad_files.items():
        commit_file(repo, path, data, f"add {path}")
        snapshot(catalog)
    # a bead moved to a wrong path (delete + add, no rename), then a bad file fixed
    text = (repo / paths[6]).read_bytes()
    (repo / id_path("gc-qq")).parent.mkdir(parents=True)
    git(repo, "mv", paths[6], id_path("gc-qq"))  # holds another ID there
    git(repo, "commit", "-qm", "move a bead file to another name")
    commit_file(repo, id_path("gc-zz"), text.replace(ids[6].encode(), b"gc-zz"), "fix")
    commit_file(repo, id_path("gc-zy"), None, "remove a bad file")
    incremental = snapshot(catalog)
    assert len(incremental["bad"]) == 4 and len(incremental["beads"]) == 8

    assert rebuilt(repo) == incremental
    monkeypatch.setattr(canonical, "read", lambda data: None)  # YAML parser for every file
    assert rebuilt(repo) == incremental


def test_a_rebuild_is_observable_and_a_catch_up_is_not(store: Store, repo: Path) -> None:
    """The build token the crash tests rely on: new with each rebuild, kept by catch-ups."""
    with store.transaction() as tx:
        tx.create({"title": "one"})
    token = store.catalog.build_id()
    assert token
    commit_file(repo, id_path("gc-zz"), b"id: gc-zz\ntitle: x\n", "by hand")
    store.catalog.refresh()
    assert store.catalog.build_id() == token
    store.catalog.invalidate()
    store.catalog.refresh()
    assert store.catalog.build_id() not in (None, token)


def yaml_value(data: bytes) -> Any:
    """What the YAML parser makes of a file (with bead.py's limits), or None if it refuses."""
    try:
        return ordered(bead._parse(data, "x.yaml"))
    except InvalidBead:
        return None


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beads())
def test_the_fast_reader_reads_every_file_dump_writes(b: dict[str, Any]) -> None:
    data = bead.dump(b)
    got = canonical.read(data)
    if fast_path(b):
        assert got is not None, data
    assert got is None or ordered(got) == yaml_value(data) == ordered(b)


@settings(max_examples=500, deadline=None)
@given(adversarial)
def test_the_fast_reader_reads_every_string_in_every_position(s: str) -> None:
    for value in ({"k": s}, {s: "v", "n": 1}, {"l": [s, "x"]}, {"m": {"a": s}}, {"d": [{"k": s}]}):
        data = bead.dump(value)
        got = canonical.read(data)
        assert (got is not None) == fast_path(value)
        assert got is None or ordered(got) == yaml_value(data), data


SNIPPETS = [
    " ",
    "  ",
    "\n",
    "\n\n",
    "#",
    " #x",
    "- ",
    ": ",
    "'",
    '"',
    "|",
    "|-",
    "\t",
    "&a ",
    "*a",
    "---\n",
    "? ",
    "\\",
    "\\x4",
    "0",
    "-1",
    "true",
    "null",
    "~",
    "\r",
    ":",
    "",
]


@settings(max_examples=examples(800), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beads(), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), st.sampled_from(SNIPPETS))))
def test_an_edited_file_is_read_as_yaml_reads_it_or_declined(
    b: dict[str, Any], edits: list[tuple[float, int, str]]
) -> None:
    """Hand edits of a dumped file: the fast reader never returns anything but the YAML
    parser's own value, and declines whatever the parser refuses."""
    text = bead.dump(b).decode()
    for where, cut, snippet in edits:
        at = int(where * len(text))
        text = text[:at] + snippet + text[at + cut :]
    data = text.encode()
    got = canonical.read(data)
    assert got is None or ordered(got) == yaml_value(data), data


def test_the_fast_reader_declines_what_bead_load_refuses_unparsed() -> None:
    big = b"id: gc-a\ntitle: t\ndescription: '" + b"x" * bead.MAX_FILE_BYTES + b"'\n"
    assert canonical.read(big) is None
    assert canonical.read(b"id: gc-a\ntitle: \xff\n") is None
    assert canonical.read(b"id: gc-a\ntitle: t") is None  # no final newline: not dump's
    with pytest.raises(InvalidBead, match="larger than"):
        canonical.load(big, "beads/a/x/gc-a.yaml")


def test_the_fast_reader_agrees_on_the_real_bd_export() -> None:
    """Every record of the real bd export (`/work/shared/data/bd-issues.jsonl`), dumped as
    gc-polecat writes it, reads back to the YAML parser's value, and `canonical.load` gives
    `bead.load`'s bead."""
    if not BD_EXPORT.exists():
        pytest.skip(f"{BD_EXPORT} not present")
    fast = 0
    for line in BD_EXPORT.read_text(encoding="utf-8").splitlines():
        try:
            b = bead.normalize(json.loads(line))
        except (InvalidBead, ValueError):
            continue
        data = bead.dump(b)
        got = canonical.read(data)
        fast += got is not None
        assert got is None or ordered(got) == yaml_value(data)
        assert canonical.load(data, "x.yaml") == bead.load(data, "x.yaml")
    assert fast > 0


@pytest.mark.parametrize(
    "data",
    [
        b"id: gc-a\ntitle: t\nstatus: no such\n",  # dump's layout, not a valid bead
        b"id: gc-a\ntitle: t\npriority: 9\n",
        b"id: gc-a\ntitle: t\nlabels:\n- 'true'\n- x\nmetadata:\n  k: v\n",  # lists, a mapping
        b"id: gc-a\ntitle: t\nstatus: 'no such'\n",  # not dump's layout: the YAML parser
    ],
)
def test_the_fast_loader_fails_and_succeeds_as_bead_load_does(data: bytes) -> None:
    """Whether or not the fast reader takes the file, `canonical.load` returns `bead.load`'s
    bead or raises its very message."""
    where = "beads/a/x/gc-a.yaml"
    try:
        expected: Any = bead.load(data, where)
    except InvalidBead as exc:
        expected = str(exc)
    try:
        got: Any = canonical.load(data, where)
    except InvalidBead as exc:
        got = str(exc)
    assert got == expected
    assert (canonical.read(data) is None) == data.endswith(b"'no such'\n")


def test_one_commit_of_many_changes_leaves_the_rows_a_rebuild_builds(
    store: Store, repo: Path
) -> None:
    """The writer's shortcut applies a whole commit with one statement per table (executemany,
    issue 13's import): creates, updates and deletes of top-level beads and of children in one
    transaction must leave the rows, labels and top-level count a cold rebuild finds."""
    with store.transaction() as tx:
        top = [tx.create({"title": f"t{i}", "labels": ["a", f"l{i}"]})["id"] for i in range(6)]
        kids = [tx.create({"title": f"k{i}"}, parent=top[0])["id"] for i in range(3)]
    with store.transaction() as tx:
        tx.update(top[1], {"labels": ["b"], "status": "in_progress"})
        tx.update(kids[0], {"labels": ["c", "a"]})
        tx.delete(top[2])
        tx.delete(kids[1])
        tx.delete(kids[2])
        tx.create({"title": "new top", "labels": ["a"]})
        tx.create({"title": "new child"}, parent=top[1])
    incremental = snapshot(store.catalog)
    assert store.catalog.count_top_level() == 6  # 6 - 1 deleted + 1 new
    assert len(incremental["beads"]) == 8
    assert rebuilt(repo) == incremental
