"""bd's import rules (issue 13): every record bd's import accepts is accepted, and export then
writes what bd would export after importing it.

bd's source is the specification; each test names the file it follows:
- `cmd/bd/import.go` (runImportFromReader) and `cmd/bd/import_shared.go` (parseJSONLFile): the
  `_type` line tag, memory lines, tombstones skipped, `wisp` read as `ephemeral`;
- `internal/types/types.go`: Issue/Dependency fields and `omitempty`, `priority` without
  omitempty (a missing one is Go's zero value 0), SetDefaults, status/type validation with
  `status.custom`/`types.custom`, time.Time parsing any RFC 3339 time;
- `internal/storage/issueops/create.go`: PrepareIssueForInsert (times to UTC, a closed issue
  without `closed_at` closes one second after its last timestamp) and PersistDependencies (a
  dependency whose target does not exist, such as an empty `depends_on_id`, is dropped);
- `cmd/bd/export.go`: memory lines written after the issues, sorted by key.

Every shared real export (`../shared/data/bd-exports/*.jsonl`, `../shared/data/bd-issues.jsonl`)
is round-tripped against a model of bd written here from those rules (skipped when `../shared`
is absent); the small tests prove each rule without the shared data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads import bead, ids
from gc_polecat.beads.store import CommitResult, Store, Transaction
from gc_polecat.errors import InvalidBead
from gc_polecat.interop import bd_jsonl as jsonl

from .conftest import ROOT, Cli, assert_clean, git

SHARED = ROOT.parent / "shared" / "data"
SHARED_FILES = sorted((SHARED / "bd-exports").glob("*.jsonl")) + [SHARED / "bd-issues.jsonl"]
T = "2026-04-18T16:19:12Z"
COMPUTED = ("dependency_count", "dependent_count", "comment_count", "parent")
TIME_FIELDS = ("created_at", "updated_at", "started_at", "closed_at")
_INSTANT = re.compile(r"^(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


# --- a model of bd, written from its source -------------------------------------------------


def instant(text: str) -> tuple[dt.datetime, int]:
    """(the UTC second, nanoseconds) of an RFC 3339 time, computed independently of our code."""
    m = _INSTANT.match(text)
    assert m, text
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    second = dt.datetime.fromisoformat(m.group(1) + zone).astimezone(dt.UTC)
    return second, int(((m.group(2) or "") + "0" * 9)[:9])


def _empty(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})


def bd_reads(record: dict[str, Any]) -> dict[str, Any] | None:
    """What bd's export writes for one imported line (computed keys aside): None when bd skips
    the line. Times are compared as instants by `assert_same_record`."""
    if record.get("_type") == "memory" or record.get("status") == "tombstone":
        return None
    out = {k: v for k, v in record.items() if k not in ("_type", "wisp", *COMPUTED)}
    if record.get("wisp") is True:
        out["ephemeral"] = True
    if out.get("priority") is None:
        out["priority"] = 0
    out = {
        k: v
        for k, v in out.items()
        if not _empty(v) and not (k in ("compaction_level", "original_size") and v == 0)
    }
    if "labels" in out:
        out["labels"] = list(dict.fromkeys(out["labels"]))
    deps = {}
    for dep in out.get("dependencies", []):
        if dep.get("depends_on_id"):
            deps[(dep["depends_on_id"], dep["type"])] = {
                k: v for k, v in dep.items() if not _empty(v)
            }
    if deps:
        out["dependencies"] = list(deps.values())
    else:
        out.pop("dependencies", None)
    return out


def assert_same_record(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Equal field by field; times equal as instants to the nanosecond and written in UTC."""
    mine = {k: v for k, v in mine.items() if k not in COMPUTED}
    assert set(mine) == set(theirs), (theirs["id"], set(mine) ^ set(theirs))
    for key, value in theirs.items():
        if key in TIME_FIELDS:
            assert mine[key].endswith("Z") and bead.TIME_RE.match(mine[key]), mine[key]
            assert instant(mine[key]) == instant(value), (theirs["id"], key)
        elif key == "dependencies":
            assert len(mine[key]) == len(value), theirs["id"]
            for a, b in zip(mine[key], value, strict=True):
                assert instant(a.pop("created_at")) == instant(b["created_at"])
                assert a == {k: v for k, v in b.items() if k != "created_at"}, theirs["id"]
        else:
            assert mine[key] == value, (theirs["id"], key, mine[key], value)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- helpers --------------------------------------------------------------------------------


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def record(bid: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"title of {bid}",
        "status": "open",
        "priority": 2,
        "issue_type": "task",
        "created_at": T,
        "updated_at": T,
        **fields,
    }


def run_import(cli: Cli, tmp_path: Path, *records: dict[str, Any]) -> dict[str, Any]:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = cli("import", str(src), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def exported(cli: Cli) -> list[dict[str, Any]]:
    result = cli("export")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def by_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in lines if "id" in r}


# --- every shared real export ---------------------------------------------------------------


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.stem)
def test_every_shared_bd_export_round_trips(cli: Cli, repo: Path, path: Path) -> None:
    """Import, export: what bd would export after importing the file; import again: no commit."""
    if not path.exists():
        pytest.skip(f"{path} not present (shared test data, not shipped)")
    lines = read_jsonl(path)
    expected: dict[str, dict[str, Any]] = {}
    memories: dict[str, str] = {}
    for line in lines:
        if line.get("_type") == "memory" and line.get("key") and line.get("value"):
            memories[line["key"]] = line["value"]
        model = bd_reads(line)
        if model is not None:
            expected[model["id"]] = model  # a later line for the same ID wins
    first = cli("import", str(path), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["created"] == len(expected) and summary["commit"] == head(repo)
    out = exported(cli)
    ours = by_id(out)
    assert sorted(ours) == sorted(expected)
    for bid, theirs in expected.items():
        assert_same_record(ours[bid], theirs)
    assert [(m["key"], m["value"]) for m in out if m.get("_type") == "memory"] == sorted(
        memories.items()
    )
    before = head(repo)
    again = cli("import", str(path), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["commit"] is None and head(repo) == before
    assert_clean(repo)


# --- 1. timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2025-12-23T00:14:08.420722-08:00", "2025-12-23T08:14:08.420722Z"),
        ("2026-01-05T23:30:00.123456789+05:30", "2026-01-05T18:00:00.123456789Z"),
        ("2026-01-05T10:00:00.1000Z", "2026-01-05T10:00:00.1Z"),  # Go drops trailing zeros
        ("2026-01-05T10:00:00.000000000Z", "2026-01-05T10:00:00Z"),
        ("2026-12-31T23:59:59.99999-01:00", "2027-01-01T00:59:59.99999Z"),
        ("2026-01-05T10:00:00.1234567891Z", "2026-01-05T10:00:00.123456789Z"),  # Go keeps 9
        (T, T),
    ],
)
def test_any_rfc3339_time_is_stored_in_utc_with_its_instant(
    cli: Cli, repo: Path, tmp_path: Path, given: str, stored: str
) -> None:
    """bd parses any RFC 3339 time (Go's time.Time) and stores it in UTC (bd:
    `internal/storage/issueops/create.go`, PrepareIssueForInsert)."""
    dep = {"issue_id": "bd-t1", "depends_on_id": "bd-t0", "type": "blocks", "created_at": given}
    run_import(
        cli,
        tmp_path,
        record("bd-t0"),
        record("bd-t1", created_at=given, updated_at=given, dependencies=[dep]),
    )
    text = (repo / ids.id_path("bd-t1")).read_text()
    assert f"created_at: '{stored}'" in text
    out = by_id(exported(cli))["bd-t1"]
    assert out["created_at"] == out["updated_at"] == stored
    assert out["dependencies"][0]["created_at"] == stored
    assert instant(stored)[0] == instant(given)[0]


# --- 2. IDs ---------------------------------------------------------------------------------


def test_ids_bd_accepts_are_imported_in_case_safe_files(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd's import takes any ID (bd: `cmd/bd/import.go`, SkipPrefixValidation). IDs that differ
    only in case are two beads in two files whose names differ even case-insensitively."""
    bids = [
        "sonpoGPT-05o",
        "gt-group-test-groupY",
        "gt-group-test-groupy",
        "deep_space_relay-024",
        "mol-polecat-arm",
        "mol-polecat-arm.assess",
        "a-project-prefix-longer-than-thirty-two-characters-k3x",
    ]
    summary = run_import(cli, tmp_path, *(record(b) for b in bids))
    assert summary["created"] == len(bids)
    files = [p for p in git(repo, "ls-files", "beads").split() if p.endswith(".yaml")]
    assert len(files) == len(bids) and len({f.lower() for f in files}) == len(bids)
    assert "beads/g/r/gt-group-test-group+y.yaml" in files
    assert sorted(by_id(exported(cli))) == sorted(bids)
    shown = cli("bead", "show", "gt-group-test-groupY", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)[0]["id"] == "gt-group-test-groupY"


@pytest.mark.parametrize("bad", ["../x-1", "gc-a/b", "gc-ab\x00", "gc-\x1b[2J", "gc-a\\b", ""])
def test_path_tricks_in_ids_are_still_refused(
    cli: Cli, repo: Path, tmp_path: Path, bad: str
) -> None:
    before = head(repo)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(record(bad)) + "\n", encoding="utf-8")
    result = cli("import", str(src))
    assert result.exit_code == 2 and "invalid bead ID" in result.stderr
    assert head(repo) == before


# --- 3. custom types and statuses -----------------------------------------------------------


def test_custom_types_and_statuses_are_kept_and_named_for_bd(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd keeps a type or status outside its built-in lists once configured (`types.custom`,
    `status.custom`; bd: `internal/types/types.go`, ValidateWithCustom): we keep any we meet,
    and the import names them with the `bd config set` line bd needs."""
    recs = [
        record("bd-c1", issue_type="perf"),
        record("bd-c2", issue_type="code-review", status="done"),
        record("bd-c3", issue_type="spec"),  # Gas City's, known to us, custom to bd
        record("bd-c4"),
    ]
    summary = run_import(cli, tmp_path, *recs)
    assert summary["custom_types"] == ["code-review", "perf", "spec"]
    assert summary["custom_statuses"] == ["done"]
    out = by_id(exported(cli))
    assert out["bd-c2"]["issue_type"] == "code-review" and out["bd-c2"]["status"] == "done"
    text = cli("import", str(tmp_path / "in.jsonl"))
    assert 'for bd: bd config set types.custom "code-review,perf,spec"' in text.stdout
    assert 'for bd: bd config set status.custom "done"' in text.stdout


def test_gas_city_types_are_known_out_of_the_box() -> None:
    """gascity: `internal/doctor/checks_custom_types.go`, RequiredCustomTypes."""
    required = {"molecule", "convoy", "message", "event", "gate", "merge-request", "agent"}
    required |= {"role", "rig", "session", "spec", "convergence"}
    assert set(bead.GASCITY_TYPES) == required and required <= set(bead.TYPES)


# --- 4. dependencies ------------------------------------------------------------------------


def test_thread_id_is_kept_and_an_empty_target_is_dropped(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd's Dependency has `thread_id` (omitempty: an empty one is absent); a dependency on an
    empty `depends_on_id` names no issue and bd drops it (bd: `internal/types/types.go`,
    `internal/storage/issueops/create.go` PersistDependencies)."""
    deps = [
        {"issue_id": "bd-d1", "depends_on_id": "bd-d0", "type": "replies-to", "created_at": T,
         "created_by": "x", "metadata": "{}", "thread_id": "bd-d0"},
        {"issue_id": "bd-d1", "depends_on_id": "bd-d2", "type": "blocks", "created_at": T,
         "thread_id": ""},
        {"issue_id": "bd-d1", "depends_on_id": "", "type": "blocks", "created_at": T},
        {"issue_id": "", "depends_on_id": "bd-d3", "type": "related", "created_at": T},
    ]  # fmt: skip
    run_import(cli, tmp_path, record("bd-d0"), record("bd-d1", dependencies=deps))
    out = by_id(exported(cli))["bd-d1"]["dependencies"]
    assert out == [
        {"issue_id": "bd-d1", "depends_on_id": "bd-d0", "type": "replies-to", "created_at": T,
         "created_by": "x", "metadata": "{}", "thread_id": "bd-d0"},
        {"issue_id": "bd-d1", "depends_on_id": "bd-d2", "type": "blocks", "created_at": T},
        {"issue_id": "bd-d1", "depends_on_id": "bd-d3", "type": "related", "created_at": T},
    ]  # fmt: skip
    assert "thread_id: ''" not in (repo / ids.id_path("bd-d1")).read_text()


# --- 5. memories ----------------------------------------------------------------------------


def test_memories_are_kept_beside_the_beads_and_exported_as_memory_lines(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd imports `{"_type":"memory"}` lines as memories (`bd remember`), skipping an empty key
    or value, and exports them after the issues sorted by key (bd: `cmd/bd/import.go`,
    `cmd/bd/export.go`). `_type` is a line tag: an issue line's `_type` is never stored."""
    lines = [
        {**record("bd-m1"), "_type": "issue"},
        {"_type": "memory", "key": "zeta", "value": "last"},
        {"_type": "memory", "key": "alpha", "value": "first <b>"},
        {"_type": "memory", "key": "empty", "value": ""},
    ]
    summary = run_import(cli, tmp_path, *lines)
    assert summary["created"] == 1 and summary["memories"] == 2
    assert "\n_type" not in (repo / ids.id_path("bd-m1")).read_text()
    side = (repo / jsonl.MEMORY_PATH).read_text()
    assert side == (
        '{"_type":"memory","key":"alpha","value":"first \\u003cb\\u003e"}\n'
        '{"_type":"memory","key":"zeta","value":"last"}\n'
    )
    out = exported(cli)
    assert out[0]["id"] == "bd-m1" and "_type" not in out[0]
    assert out[1:] == [
        {"_type": "memory", "key": "alpha", "value": "first <b>"},
        {"_type": "memory", "key": "zeta", "value": "last"},
    ]
    listed = json.loads(cli("bead", "list", "--all", "--json").stdout)
    assert [b["id"] for b in listed] == ["bd-m1"]  # memories are not beads
    before = head(repo)
    again = run_import(cli, tmp_path, *lines)
    assert again["commit"] is None and "memories" not in again and head(repo) == before
    # A changed value is an upsert of that key alone.
    run_import(cli, tmp_path, {"_type": "memory", "key": "zeta", "value": "changed"})
    assert '"key":"zeta","value":"changed"' in (repo / jsonl.MEMORY_PATH).read_text()
    assert '"key":"alpha"' in (repo / jsonl.MEMORY_PATH).read_text()
    assert_clean(repo)


def test_a_memory_line_with_a_non_string_key_is_refused(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    before = head(repo)
    src = tmp_path / "in.jsonl"
    src.write_text('{"_type":"memory","key":7,"value":"x"}\n', encoding="utf-8")
    result = cli("import", str(src))
    assert result.exit_code == 2 and "line 1: a memory's key and value must be strings" in (
        result.stderr
    )
    assert head(repo) == before


# --- 6. tombstones, wisp, priority, empty values, closed_at ---------------------------------


def test_tombstones_wisp_missing_priority_and_empty_values_read_as_bd_reads_them(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd skips `tombstone` rows, reads v0.35-v0.37's `wisp: true` as `ephemeral: true`
    (bd: `cmd/bd/import_shared.go`), reads a missing `priority` as 0 (Go's zero value;
    `priority` has no omitempty and SetDefaults leaves it, bd: `internal/types/types.go`), and
    writes empty values as absent (omitempty)."""
    bare = record("bd-p1")
    del bare["priority"]
    summary = run_import(
        cli,
        tmp_path,
        record("bd-gone", status="tombstone", deleted_at=T),
        {**record("bd-w1"), "wisp": True},
        bare,
        record("bd-p2", priority=None),
        record("bd-e1", description="", labels=[], assignee=None, compaction_level=0,
               original_size=0, pinned=False, estimated_minutes=0),
    )  # fmt: skip
    assert summary["created"] == 4 and summary["skipped"] == 1
    out = by_id(exported(cli))
    assert "bd-gone" not in out
    assert out["bd-w1"]["ephemeral"] is True and "wisp" not in out["bd-w1"]
    assert out["bd-p1"]["priority"] == 0 and out["bd-p2"]["priority"] == 0
    empty = {k: v for k, v in out["bd-e1"].items() if k not in COMPUTED}
    assert empty == {**record("bd-e1"), "estimated_minutes": 0}  # *int in bd: 0 is a value


def test_a_closed_issue_without_closed_at_closes_a_second_after_its_last_time(
    cli: Cli, tmp_path: Path
) -> None:
    """bd: `internal/storage/issueops/create.go`, PrepareIssueForInsert."""
    run_import(
        cli,
        tmp_path,
        record("bd-x1", status="closed", updated_at="2026-04-18T18:30:00.25+02:00"),
    )
    assert by_id(exported(cli))["bd-x1"]["closed_at"] == "2026-04-18T16:30:01.25Z"


# --- a large import is one pack ---------------------------------------------------------------


def test_a_large_import_writes_one_pack_git_reads(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """Hundreds of new objects go into one pack and its index (git's format, written by
    `gc_polecat/beads/git.py`), not one loose file each; git itself reads every object back."""
    loose_before = sum(1 for _ in (repo / ".git" / "objects").glob("??/*"))
    run_import(cli, tmp_path, *(record(f"bd-k{n:03d}") for n in range(300)))
    packs = sorted((repo / ".git" / "objects" / "pack").glob("pack-*"))
    assert [p.suffix for p in packs] == [".idx", ".pack"]
    assert sum(1 for _ in (repo / ".git" / "objects").glob("??/*")) == loose_before
    assert git(repo, "cat-file", "-p", f"HEAD:{ids.id_path('bd-k123')}").startswith("id: bd-k123\n")
    assert "\ngarbage: 0\n" in git(repo, "count-objects", "-v")
    assert_clean(repo)  # git fsck, clean status
    small = run_import(cli, tmp_path, record("bd-one"))  # a small write stays loose
    assert small["created"] == 1
    assert len(list((repo / ".git" / "objects" / "pack").glob("pack-*"))) == 2


def test_a_large_reimport_reads_every_stored_bead_from_the_catalog(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """The import reads the stored beads of all its records from the catalog in a few queries
    (500 IDs each, `Catalog.get_many`): across those chunks, with an ID repeated and new IDs
    mixed in, every stored bead is found and compared, so only what differs is written."""
    records = [record(f"bd-k{n:03d}") for n in range(620)]
    assert run_import(cli, tmp_path, *records)["created"] == 620
    changed = [
        *records[:600],
        record("bd-k611", title="retitled"),
        record("bd-k611", title="retitled twice"),  # the later line wins, as in bd
        record("bd-new"),
        *records[612:],
    ]
    again = run_import(cli, tmp_path, *changed)
    # bd-k600 to bd-k610 are not in the file: left alone, not counted
    assert (again["created"], again["updated"], again["unchanged"]) == (1, 1, 608)
    assert by_id(exported(cli))["bd-k611"]["title"] == "retitled twice"
    assert run_import(cli, tmp_path, *changed)["commit"] is None


@pytest.mark.parametrize("suffix", ["pack", "idx"])
def test_a_pack_the_writer_thread_cannot_write_is_one_line_and_no_commit(
    cli: Cli, repo: Path, tmp_path: Path, suffix: str
) -> None:
    """A large commit's pack is written by a worker thread while the work tree is written
    (`gc_polecat/beads/git.py`, `Git.batch(background=True)`); the ref moves only after it is
    done. When that thread fails (here a real one: a directory sits where the pack's or its
    index's temporary file goes), the error is one line, the work tree and the index are put
    back, no commit is made, no thread is left running, and the same import succeeds next."""
    records = [record(f"bd-k{n:03d}") for n in range(300)]
    before, threads = head(repo), threading.active_count()
    pack_dir = repo / ".git" / "objects" / "pack"
    blocker = pack_dir / f"tmp_{suffix}_{os.getpid()}"  # the Cli fixture runs in this process
    (blocker / "inside").mkdir(parents=True)
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    failed = cli("import", str(src))
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert f"cannot write {blocker}" in failed.stderr and "nothing was written" in failed.stderr
    assert threading.active_count() == threads
    assert head(repo) == before and not (repo / ids.id_path("bd-k123")).exists()
    assert not (repo / ".git" / "gc-polecat" / "journal.json").read_bytes()
    assert git(repo, "status", "--porcelain") == ""
    shutil.rmtree(blocker)
    assert run_import(cli, tmp_path, *records)["created"] == 300
    assert git(repo, "cat-file", "-p", f"HEAD:{ids.id_path('bd-k123')}").startswith("id: bd-k123\n")
    assert_clean(repo)


@pytest.mark.parametrize("where", ["new shard", "shard with a bead"])
def test_a_large_import_never_overwrites_an_untracked_file_at_one_of_its_paths(
    cli: Cli, repo: Path, tmp_path: Path, where: str
) -> None:
    """A large import checks the work tree per directory (a file cannot exist in a directory
    that does not), not per file: an untracked file at one of its 300 paths, in a directory
    git does not know or in one it does, is still refused (exit 2, named, nothing written)."""
    run_import(cli, tmp_path, record("bd-k000"))
    before = head(repo)
    victim = "bd-k001" if where == "shard with a bead" else "bd-k299"
    if where == "shard with a bead":  # bd-k000's shard directory exists and is tracked
        assert ids.id_path(victim).rpartition("/")[0] == ids.id_path("bd-k000").rpartition("/")[0]
    path = repo / ids.id_path(victim)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mine, not committed\n")
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps(record(f"bd-k{n:03d}")) + "\n" for n in range(300)))
    refused = cli("import", str(src))
    assert refused.exit_code == 2, refused.output
    assert ids.id_path(victim) in refused.stderr and "uncommitted" in refused.stderr
    assert head(repo) == before and path.read_text() == "mine, not committed\n"
    assert not (repo / ids.id_path("bd-k002")).exists()


# --- custom types and statuses: settings and `ready` -----------------------------------------


def test_custom_settings_read_as_bd_writes_them(repo: Path) -> None:
    """bd's syntax (bd: `docs/CONFIG.md`; `internal/types/types.go` ParseCustomStatusConfig;
    `internal/storage/issueops/config_helpers.go` parseTypesValue): comma-separated names, a
    JSON array for types, `name:category` for statuses; YAML lists too."""
    from gc_polecat.beads.config import load_config

    path = repo / ".beads" / "config.yaml"
    path.write_text(
        'prefix: gc\ntypes.custom: "perf, code-review,spec"\n'
        'status.custom: "in_review:active,qa_testing:wip,on_hold:frozen,archived:done,done"\n'
    )
    config = load_config(path)
    assert config["types.custom"] == ("perf", "code-review", "spec")
    assert config["status.custom"] == (
        ("in_review", "active"), ("qa_testing", "wip"), ("on_hold", "frozen"),
        ("archived", "done"), ("done", None),
    )  # fmt: skip
    path.write_text('types.custom: \'["gate","convoy"]\'\nstatus.custom: [review]\n')
    assert load_config(path)["types.custom"] == ("gate", "convoy")
    assert load_config(path)["status.custom"] == (("review", None),)
    path.write_text("prefix: gc\n")
    assert load_config(path)["types.custom"] == () == load_config(path)["status.custom"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('status.custom: "review:soon"', "invalid category 'soon'"),
        ('status.custom: "Review"', "invalid status name 'Review'"),
        ('status.custom: "closed"', "'closed' is built in"),
        ('status.custom: "a,a"', "listed twice"),
        ('status.custom: "' + ",".join(f"s{n}" for n in range(51)) + '"', "too many"),
        ('types.custom: "a b"', "invalid type name 'a b'"),
        ("types.custom: 7", "comma-separated string or a list"),
        ("types.custom: '[1'", "not a JSON array"),
    ],
)
def test_bad_custom_settings_are_named(cli: Cli, repo: Path, text: str, needle: str) -> None:
    (repo / ".beads" / "config.yaml").write_text("prefix: gc\n" + text + "\n")
    result = cli("exec-beads", "ready")
    assert result.exit_code != 0 and needle in result.stderr, result.stderr
    assert ".beads/config.yaml:" in result.stderr


def test_ready_lists_custom_statuses_of_category_active_only(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """bd's ready work is `open` plus custom statuses of category `active`; `wip`, `done`,
    `frozen` and uncategorized custom statuses are never ready (bd:
    `internal/storage/schema/views.go` ready_issues; `internal/types/types.go` categories)."""
    (repo / ".beads" / "config.yaml").write_text(
        'prefix: gc\nstatus.custom: "in_review:active,qa:wip,archived:done,on_hold:frozen,done"\n'
    )
    statuses = ("open", "in_review", "qa", "archived", "on_hold", "done", "unconfigured")
    run_import(cli, tmp_path, *(record(f"gc-{s.replace('_', '')}", status=s) for s in statuses))
    result = cli("exec-beads", "ready")
    assert result.exit_code == 0, result.output
    assert sorted(b["id"] for b in json.loads(result.stdout)) == ["gc-inreview", "gc-open"]


def test_parse_time_reads_every_stored_form() -> None:
    """The lifecycle reads `created_at` of its own beads; an imported or synced one may carry
    sub-seconds or an offset, which must not crash the controller, pool or cleanup."""
    assert bead.parse_time(T) == dt.datetime(2026, 4, 18, 16, 19, 12, tzinfo=dt.UTC)
    assert bead.parse_time("2025-12-23T00:14:08.4207229-08:00") == dt.datetime(
        2025, 12, 23, 8, 14, 8, 420722, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError):
        bead.parse_time("2026-04-18 16:19:12")


@pytest.mark.parametrize(
    "bad", ["\u0662026-04-18T16:19:12Z", "2026-04-18T16:19:12", "2026-04-18T16:19:12+2:00",
            "2026-04-18T16:19:12.Z", "2026-04-18T16:19:12+24:00", "0001-01-01T00:00:00+01:00"]
)  # fmt: skip
def test_times_go_would_not_parse_are_refused(bad: str) -> None:
    with pytest.raises(InvalidBead):
        bead.normalize(record("bd-t1", created_at=bad, updated_at=bad))


@pytest.mark.parametrize(
    ("given", "stored"),
    [("2026-04-18T16:19:12Z", "2026-04-18T16:19:12Z"),
     ("2026-04-18T16:19:12.123456789Z", "2026-04-18T16:19:12.123456789Z"),
     ("2026-04-18T16:19:12.1234567891Z", "2026-04-18T16:19:12.123456789Z"),
     ("2026-04-18T16:19:12.120Z", "2026-04-18T16:19:12.12Z"),
     ("2026-04-18T16:19:12.000Z", "2026-04-18T16:19:12Z"),
     ("2026-04-18T16:19:12.5+00:00", "2026-04-18T16:19:12.5Z")],
)  # fmt: skip
def test_a_time_already_in_the_stored_form_is_kept_and_others_are_rewritten(
    given: str, stored: str
) -> None:
    """A UTC time without trailing zeros is its own stored form (normalize returns it as it is);
    any other is rewritten as Go's RFC3339Nano writes it."""
    clean = bead.normalize(record("bd-t1", created_at=given, updated_at=given))
    assert clean["created_at"] == clean["updated_at"] == stored


@pytest.mark.parametrize(
    "bad", ["2026-02-30T00:00:00Z", "2026-04-18T24:00:00.5Z", "0000-01-01T00:00:00Z"]
)
def test_impossible_times_in_the_stored_form_are_refused(bad: str) -> None:
    with pytest.raises(InvalidBead, match="is not a real time"):
        bead.normalize(record("bd-t1", created_at=bad, updated_at=bad))


def test_stored_times_order_by_instant() -> None:
    """Sync picks the later `updated_at`: `12Z` must sort before `12.5Z` (as text it does not)."""
    times = ["2026-04-18T16:19:12.5Z", "2026-04-18T16:19:12Z", "2026-04-18T16:19:12.05Z"]
    assert sorted(times, key=bead.time_key) == [times[1], times[2], times[0]]
    assert max(times[:2], key=bead.time_key) == times[0]


def test_a_malformed_memories_file_is_named_not_a_crash(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """`beads/memories.jsonl` comes from a repository (a hand edit, a synced remote): a bad line
    there is one error naming the file; nothing is written, beads are unaffected."""
    run_import(cli, tmp_path, record("bd-a1"), {"_type": "memory", "key": "k", "value": "v"})
    (repo / jsonl.MEMORY_PATH).write_text('{"_type":"memory","key":"k","value":"v"}\n{"id":1\n')
    git(repo, "commit", "-qam", "hand edit")
    before = head(repo)
    result = cli("export")
    assert result.exit_code == 2 and "beads/memories.jsonl line 2: malformed JSON" in result.stderr
    src = tmp_path / "m.jsonl"
    src.write_text('{"_type":"memory","key":"x","value":"y"}\n')
    result = cli("import", str(src))
    assert result.exit_code == 2 and "beads/memories.jsonl line 2" in result.stderr
    assert head(repo) == before
    listed = cli("bead", "list", "--all", "--json")
    assert listed.exit_code == 0 and [b["id"] for b in json.loads(listed.stdout)] == ["bd-a1"]


def test_an_import_reads_no_stored_bead_twice_and_reports_each_as_it_was(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import reads each stored bead once (from the catalog at HEAD) and hands it to
    `Transaction.put`, which does not read it again; observers still get each bead's stored
    version as `before` (None for a new one) and the right event."""

    def lines(*records: dict[str, Any]) -> bytes:
        return "".join(json.dumps(r) + "\n" for r in records).encode()

    jsonl.import_jsonl(store, lines(record("bd-a"), record("bd-b")), "first")
    stored = store.get("bd-a")
    reads: list[str] = []
    real_get = Transaction.get
    monkeypatch.setattr(Transaction, "get", lambda tx, bid: reads.append(bid) or real_get(tx, bid))
    seen: list[CommitResult] = []
    monkeypatch.setattr(store, "notify", seen.append)
    changed = record("bd-a", title="a new title", updated_at="2026-04-19T00:00:00Z")
    result = jsonl.import_jsonl(store, lines(changed, record("bd-b"), record("bd-c")), "second")
    assert (result.created, result.updated, result.unchanged) == (["bd-c"], ["bd-a"], 1)
    assert reads == []
    changes = {c.id: c for c in seen[0].changes}
    assert sorted(changes) == ["bd-a", "bd-c"]
    assert changes["bd-a"].before == stored and changes["bd-a"].event == "update"
    assert changes["bd-a"].after == store.get("bd-a")
    assert changes["bd-c"].before is None and changes["bd-c"].event == "create"
