"""bd JSONL export and import (gc_polecat/interop/bd_jsonl.py), on real repositories with real git.

The real 704-line export of the beads project (`../shared/data/bd-issues.jsonl`) is the oracle
for bd's shape: it must import in one commit, export back record for record (same JSON object,
same key order), and re-import without a commit. Beads made by our own CLI must export in bd's
shape and import back unchanged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gc_polecat.beads import bead
from gc_polecat.beads.ids import id_path
from gc_polecat.beads.store import Store
from gc_polecat.cli import make_cli
from gc_polecat.errors import InvalidBead
from gc_polecat.interop import bd_jsonl as jsonl
from gc_polecat.plugins import make_plugin_manager

from .conftest import ROOT, Cli, assert_clean, git, run_cli

BD_EXPORT = ROOT.parent / "shared" / "data" / "bd-issues.jsonl"
T = "2026-04-18T16:19:12Z"
T2 = "2026-04-19T08:00:00Z"


# --- helpers -------------------------------------------------------------------------------


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def bead_files(repo: Path) -> list[str]:
    return [p for p in git(repo, "ls-files", "beads").split() if p.endswith(".yaml")]


def record(bid: str, **fields: Any) -> dict[str, Any]:
    """A minimal bd line."""
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


def jsonl_text(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def export(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli("export", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def create(cli: Cli, *args: str) -> str:
    result = cli("bead", "create", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def import_file(cli: Cli, tmp_path: Path, text: str, *args: str) -> Any:
    src = tmp_path / "in.jsonl"
    src.write_text(text, encoding="utf-8")
    return cli("import", str(src), *args)


def error_line(result: Any) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gc-polecat: error: "), lines
    return lines[0]


# --- the real export -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real export imported once into a fresh repository (shared: it costs a few seconds)."""
    if not BD_EXPORT.exists():
        pytest.skip(f"{BD_EXPORT} not present (the shared bd export is test data, not shipped)")
    base = tmp_path_factory.mktemp("bd-real")
    with pytest.MonkeyPatch.context() as mp:
        home = base / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = t@example.com\n")
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for var in ("GC_AGENT", "BD_ACTOR", "GC_POLECAT_REPO", "GC_POLECAT_LOAD_PLUGINS"):
            mp.delenv(var, raising=False)
        repo = base / "beads"
        Store.init(repo, prefix="bd", pm=make_plugin_manager(load_entrypoints=False))
        before = commits(repo)
        cli = Cli(repo)
        started = time.perf_counter()
        result = cli("import", str(BD_EXPORT), "--json")
        elapsed = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        yield {
            "repo": repo,
            "cli": cli,
            "summary": json.loads(result.stdout),
            "elapsed": elapsed,
            "before": before,
            "lines": BD_EXPORT.read_text(encoding="utf-8").splitlines(),
        }


def test_real_export_imports_in_one_commit(
    real: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, summary = real["repo"], real["summary"]
    records = [json.loads(line) for line in real["lines"] if line.strip()]
    assert len(records) == 704
    assert summary["created"] == 704 and summary["updated"] == 0 and summary["skipped"] == 0
    assert summary["commit"] == head(repo)
    assert commits(repo) == real["before"] + 1
    assert len(bead_files(repo)) == 704
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("import: 704 beads from ") and "(704 created, 0 updated)" in message
    assert_clean(repo)
    listed = json.loads(
        real["cli"]("bead", "list", "--all", "--include-gates", "--include-infra", "--json").stdout
    )
    assert len(listed) == 704
    with capsys.disabled():
        print(f"\nbd export: 704 records imported in {real['elapsed']:.2f} s (in process)")


def test_real_export_round_trips_every_field(real: dict[str, Any]) -> None:
    """Export after import: for every record the same JSON object, keys in the same order."""
    ours = {r["id"]: r for r in export(real["cli"])}
    theirs = [json.loads(line) for line in real["lines"] if line.strip()]
    assert len(ours) == len(theirs)
    for rec in theirs:
        mine = ours[rec["id"]]
        assert mine == rec, {
            k: (rec.get(k), mine.get(k)) for k in set(rec) | set(mine) if rec.get(k) != mine.get(k)
        }
        assert list(mine) == list(rec), rec["id"]
        for dep_theirs, dep_mine in zip(
            rec.get("dependencies", []), mine.get("dependencies", []), strict=True
        ):
            assert list(dep_mine) == list(dep_theirs)
    # The two external targets are kept verbatim and never became files.
    external = [
        d["depends_on_id"]
        for r in ours.values()
        for d in r.get("dependencies", [])
        if d["depends_on_id"].startswith("external:")
    ]
    assert sorted(external) == ["external:gastown:gt-5kjn", "external:gastown:gt-nek89"]
    assert not any("external" in path for path in bead_files(real["repo"]))


def test_real_export_computed_keys_are_not_stored(real: dict[str, Any]) -> None:
    repo = real["repo"]
    child = (repo / id_path("bd-98c4e1fa.1")).read_text()  # two parent-child deps in bd
    for key in ("dependency_count", "dependent_count", "parent:", "comment_count"):
        assert key not in child
    commented = (repo / id_path("bd-6ie")).read_text()  # bd's comment_count 1, no comments
    assert "comment_count: 1" in commented and "dependency_count" not in commented


def test_real_export_imported_twice_changes_nothing(real: dict[str, Any]) -> None:
    repo, cli = real["repo"], real["cli"]
    before = head(repo)
    started = time.perf_counter()
    result = cli("import", str(BD_EXPORT), "--json")
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "source": str(BD_EXPORT),
        "created": 0,
        "updated": 0,
        "unchanged": 704,
        "skipped": 0,
        "custom_types": ["agent", "convoy"],  # bd needs them in types.custom (Gas City sets them)
        "commit": None,
    }
    assert head(repo) == before
    assert_clean(repo)
    assert elapsed < 5


def test_real_export_of_a_real_process_matches(real: dict[str, Any]) -> None:
    """The installed entry point writes the same bytes to stdout as to --jsonl FILE."""
    repo = real["repo"]
    target = repo.parent / "real-out.jsonl"
    env = {"HOME": str(repo.parent / "home"), "GIT_CONFIG_NOSYSTEM": "1"}
    to_file = run_cli("--repo", str(repo), "export", "--jsonl", str(target), env=env)
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == f"exported 704 beads to {target}\n"
    to_stdout = run_cli("--repo", str(repo), "export", env=env)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert target.read_text(encoding="utf-8") == to_stdout.stdout
    lines = to_stdout.stdout.splitlines()
    assert len(lines) == 704 and lines == sorted(lines, key=lambda line: json.loads(line)["id"])
    assert all(line.startswith('{"id":"') and ", " not in line[:20] for line in lines)


# --- export of our own beads ---------------------------------------------------------------


@pytest.fixture
def own(cli: Cli) -> dict[str, str]:
    """Beads made by our CLI: a gate, an epic with a child, blockers, a closed bead, a wisp."""
    ids = {
        "gate": create(
            cli,
            "Wait for CI",
            "-t",
            "gate",
            "--await-type",
            "gh:run",
            "--timeout",
            "2h",
            "--await-id",
            "812",
            "--waiter",
            "mayor",
        ),  # fmt: skip
        "epic": create(cli, "Epic <b> & co", "-t", "epic", "-p", "1"),
        "blocker": create(cli, "Blocker"),
    }
    ids["child"] = create(cli, "Child", "--parent", ids["epic"])
    ids["work"] = create(cli, "Work", "--deps", f"{ids['blocker']},related:{ids['gate']}")
    ids["wisp"] = create(cli, "Wisp", "--ephemeral", "--deps", ids["blocker"])
    ids["done"] = create(cli, "Done", "-l", "x,y", "--set-metadata", "k=v", "-a", "furiosa")
    assert cli("bead", "close", ids["done"], "-r", "merged").exit_code == 0
    assert cli("bead", "update", ids["work"], "-s", "in_progress").exit_code == 0
    return ids


def test_export_of_own_beads_has_bd_shape(cli: Cli, repo: Path, own: dict[str, str]) -> None:
    lines = export(cli)
    by_id = {r["id"]: r for r in lines}
    assert [r["id"] for r in lines] == sorted(own.values())
    for rec in lines:
        assert isinstance(rec["priority"], int)
        assert ("closed_at" in rec) == (rec["status"] == "closed")
        keys = list(rec)
        assert keys[-4:-1] == ["dependency_count", "dependent_count", "comment_count"] or keys[
            -3:
        ] == ["dependency_count", "dependent_count", "comment_count"]
        for dep in rec.get("dependencies", []):
            assert list(dep)[:4] == ["issue_id", "depends_on_id", "type", "created_at"]
            assert set(dep) <= set(jsonl.DEP_KEY_ORDER) and dep["issue_id"] == rec["id"]
    gate, epic, child = by_id[own["gate"]], by_id[own["epic"]], by_id[own["child"]]
    assert gate["timeout"] == 7_200_000_000_000 and gate["await_type"] == "gh:run"
    assert gate["waiters"] == ["mayor"] and gate["dependent_count"] == 0
    assert epic["priority"] == 1 and "parent" not in epic
    assert child["parent"] == own["epic"] and child["dependency_count"] == 0
    work, blocker, wisp = by_id[own["work"]], by_id[own["blocker"]], by_id[own["wisp"]]
    assert work["dependency_count"] == 1 and "started_at" in work
    assert wisp["ephemeral"] is True and wisp["dependency_count"] == 0  # wisp edges: not counted
    assert blocker["dependent_count"] == 1
    done = by_id[own["done"]]
    assert done["close_reason"] == "merged" and done["closed_at"] >= done["created_at"]
    assert list(done)[list(done).index("metadata") + 1] == "labels"  # bd's order, not the file's
    assert "ephemeral" not in done and "parent" not in done


def test_export_escapes_like_go_and_imports_back_unchanged(
    cli: Cli, repo: Path, own: dict[str, str], tmp_path: Path
) -> None:
    result = cli("export")
    text = result.stdout
    line = next(x for x in text.splitlines() if own["epic"] in x[:30])
    assert '"title":"Epic \\u003cb\\u003e \\u0026 co"' in line
    assert json.loads(line)["title"] == "Epic <b> & co"
    before = head(repo)
    again = import_file(cli, tmp_path, text, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == len(own)
    assert head(repo) == before


def test_own_export_imports_into_a_fresh_repository_identically(
    cli: Cli, own: dict[str, str], tmp_path: Path
) -> None:
    text = cli("export").stdout
    other = tmp_path / "other"
    Store.init(other, prefix="zz", pm=make_plugin_manager(load_entrypoints=False))
    other_cli = Cli(other)
    result = import_file(other_cli, tmp_path, text)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"imported {tmp_path / 'in.jsonl'}: {len(own)} created, 0")
    assert other_cli("export").stdout == text  # byte for byte
    assert_clean(other)


def test_export_to_file_and_stdout(cli: Cli, repo: Path, own: dict[str, str], tmp_path: Path):
    stdout = cli("export").stdout
    assert cli("export", "--jsonl", "-").stdout == stdout
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "out.jsonl"
    target.write_text("old content\n")
    result = cli("export", "--jsonl", str(target))
    assert result.exit_code == 0 and result.stdout == f"exported {len(own)} beads to {target}\n"
    assert target.read_text(encoding="utf-8") == stdout and stdout.endswith("}\n")
    result = cli("--json", "export", "--jsonl", str(target))
    assert json.loads(result.stdout) == {"path": str(target), "exported": len(own)}
    assert os.listdir(tmp_path / "out") == ["out.jsonl"]  # no temporary file left behind
    assert_clean(repo)


def test_export_of_an_empty_repository_is_empty(cli: Cli) -> None:
    result = cli("export")
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--jsonl", "{tmp}"], "is a directory"),
        (["--jsonl", "{tmp}/missing/dir/out.jsonl"], "no such directory"),
    ],
)
def test_export_target_errors(cli: Cli, tmp_path: Path, args: list[str], needle: str) -> None:
    result = cli("export", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and needle in error_line(result)
    assert not (tmp_path / "missing").exists()


def test_export_refuses_an_unreadable_bead_file(cli: Cli, repo: Path, tmp_path: Path) -> None:
    create(cli, "good")
    bad = create(cli, "bad")
    path = repo / id_path(bad)
    path.write_text("id: [unclosed\n")
    git(repo, "commit", "-qam", "break a bead by hand")
    target = tmp_path / "out.jsonl"
    result = cli("export", "--jsonl", str(target))
    assert result.exit_code == 2
    assert id_path(bad) in error_line(result) and "cannot export" in result.stderr
    assert not target.exists()


# --- import: upsert semantics --------------------------------------------------------------


def test_import_upserts_bd_content_in_one_commit(cli: Cli, repo: Path, tmp_path: Path) -> None:
    kept = create(cli, "kept as is")
    changed = create(cli, "will change", "-l", "local", "-a", "someone")
    lines = {r["id"]: r for r in export(cli)}
    new_changed = dict(lines[changed], title="bd's title", status="closed", closed_at=T2)
    new_changed.pop("labels")
    new_changed.pop("assignee")
    fresh = record("bd-a1b", priority=0, labels=["imported"], pinned=True, agent_state="idle")
    before = commits(repo)
    result = import_file(cli, tmp_path, jsonl_text(lines[kept], new_changed, fresh), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (1, 1, 1)
    assert commits(repo) == before + 1 and summary["commit"] == head(repo)
    shown = {b["id"]: b for b in json.loads(cli("bead", "list", "--all", "--json").stdout)}
    assert shown[changed]["title"] == "bd's title" and shown[changed]["status"] == "closed"
    assert "labels" not in shown[changed] and "assignee" not in shown[changed]  # bd's wins
    assert shown["bd-a1b"]["priority"] == 0 and shown["bd-a1b"]["pinned"] is True
    assert shown["bd-a1b"]["agent_state"] == "idle"  # a bd field we do not model: kept
    body = git(repo, "log", "-1", "--format=%B")
    assert "(1 created, 1 updated)" in body and "bd-a1b: created (task)" in body
    assert f"{changed}: replaced (" in body and "title" in body
    assert_clean(repo)


def test_import_from_stdin(cli: Cli, repo: Path) -> None:
    result = cli("import", "-", input=jsonl_text(record("bd-s1")))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported stdin: 1 created, 0 updated, 0 unchanged")
    again = cli("import", "-", input=jsonl_text(record("bd-s1")))
    assert again.stdout.rstrip().endswith("(no commit)")
    assert_clean(repo)


def test_schema_header_tombstones_and_blank_lines_are_skipped(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    text = (
        json.dumps({"_schema": {"version": 1}})
        + "\n\n   \n"
        + jsonl_text(record("bd-t1", status="tombstone"), record("bd-t2"))
    )
    result = import_file(cli, tmp_path, text, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["created"] == 1 and summary["skipped"] == 2
    assert [p.rsplit("/", 1)[1] for p in bead_files(repo)] == ["bd-t2.yaml"]


def test_a_later_line_for_the_same_id_wins(cli: Cli, repo: Path, tmp_path: Path) -> None:
    text = jsonl_text(record("bd-d1", title="first"), record("bd-d1", title="second"))
    assert import_file(cli, tmp_path, text).exit_code == 0
    assert json.loads(cli("bead", "show", "bd-d1", "--json").stdout)[0]["title"] == "second"
    before = head(repo)
    assert "(no commit)" in import_file(cli, tmp_path, text).stdout
    assert head(repo) == before


def test_missing_timestamps_make_a_repeatable_import(
    cli: Cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = jsonl_text({"id": "bd-m1", "title": "bare", "priority": 1})
    monkeypatch.setattr(bead, "now", lambda: T)
    assert import_file(cli, tmp_path, text).exit_code == 0
    first = json.loads(cli("bead", "show", "bd-m1", "--json").stdout)[0]
    assert first["created_at"] == first["updated_at"] == T and first["status"] == "open"
    before = head(repo)
    monkeypatch.setattr(bead, "now", lambda: T2)  # later: a new "now" would show as a change
    assert "(no commit)" in import_file(cli, tmp_path, text).stdout
    assert head(repo) == before
    changed = jsonl_text({"id": "bd-m1", "title": "bare, renamed", "priority": 1})
    assert import_file(cli, tmp_path, changed).exit_code == 0
    second = json.loads(cli("bead", "show", "bd-m1", "--json").stdout)[0]
    assert second["created_at"] == T and second["updated_at"] == T2


def test_comment_count_is_kept_only_when_bd_alone_knows_it(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    comments = [{"id": 1, "issue_id": "bd-c2", "author": "a", "text": "hi", "created_at": T}]
    text = jsonl_text(
        record("bd-c1", comment_count=3, dependency_count=9, dependent_count=9, parent="bd-x"),
        record("bd-c2", comments=comments, comment_count=7),
        record("bd-c3", comment_count=0),
    )
    assert import_file(cli, tmp_path, text).exit_code == 0
    files = {bid: (repo / id_path(bid)).read_text() for bid in ("bd-c1", "bd-c2", "bd-c3")}
    assert "comment_count: 3" in files["bd-c1"]
    assert "comment_count" not in files["bd-c2"] + files["bd-c3"]
    assert not any(k in "".join(files.values()) for k in ("dependency_count", "parent:"))
    out = {r["id"]: r for r in export(cli)}
    assert [out[b]["comment_count"] for b in ("bd-c1", "bd-c2", "bd-c3")] == [3, 1, 0]
    assert out["bd-c1"]["dependency_count"] == 0 and "parent" not in out["bd-c1"]


# --- import: all or nothing ----------------------------------------------------------------

GOOD = json.dumps(record("bd-g1"))


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"id": "bd-x1", "title": ', "malformed JSON"),
        ("[1, 2]", "expected a JSON object, not an array"),
        ('"just text"', "expected a JSON object, not a string"),
        (json.dumps(record("../x")), "invalid bead ID '../x'"),
        (json.dumps(record("bd-a/b")), "invalid bead ID"),
        (json.dumps(record("bd-a\\b")), "invalid bead ID"),
        (json.dumps(record("bd-\u00e9")), "invalid bead ID"),
        (json.dumps({"title": "no id"}), "invalid bead ID: empty"),
        (json.dumps(record("bd-p1", priority="high")), "priority must be an integer"),
        (json.dumps(record("bd-p2", priority=9)), "priority must be 0..4"),
        (json.dumps(record("bd-l1", labels="one")), "labels must be a list"),
        (json.dumps(record("bd-e1", ephemeral="yes")), "ephemeral must be true or false"),
        (json.dumps(record("bd-s1", status="Done now")), "status must be a status name"),
        (json.dumps(record("bd-s2", closed_at=T)), "closed_at must be set exactly"),
        (json.dumps(record("bd-y1", issue_type="a b")), "issue_type must be a type name"),
        (json.dumps(record("bd-c1", created_at="yesterday")), "created_at must be an RFC 3339"),
        (json.dumps(record("bd-c2", created_at="2026-02-30T00:00:00Z")), "is not a real time"),
        (json.dumps(record("bd-c3", created_at="2026-04-18 16:19:12Z")), "must be an RFC 3339"),
        (json.dumps(record("bd-t1", title="")), "title is required"),
        (json.dumps(record("bd-n1", dependency_count="3")), "dependency_count must be a whole"),
        (json.dumps(record("bd-n2", comment_count=-1)), "comment_count must be a whole"),
        (json.dumps(record("bd-n3", parent=7)), "parent must be a string"),
        (json.dumps(record("bd-m1", metadata={"k": 1})), "metadata"),
        (json.dumps(record("bd-u1", title="a\ud800b")), "unpaired surrogate"),
        (
            json.dumps(
                record(
                    "bd-d1",
                    dependencies=[
                        {
                            "issue_id": "bd-d1",
                            "depends_on_id": "../../etc",
                            "type": "blocks",
                            "created_at": T,
                        }  # fmt: skip
                    ],
                )
            ),
            "depends_on_id: invalid bead ID '../../etc'",
        ),
    ],
)
def test_a_bad_line_exits_2_naming_it_and_writes_nothing(
    cli: Cli, repo: Path, tmp_path: Path, line: str, needle: str
) -> None:
    before = head(repo)
    result = import_file(cli, tmp_path, f"{GOOD}\n\n{line}\n")
    assert result.exit_code == 2, result.output
    message = error_line(result)
    assert "in.jsonl line 3: " in message and needle in message, message
    assert head(repo) == before and bead_files(repo) == []
    assert_clean(repo)


def test_bad_input_in_a_real_process(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    for args in (["import", str(src)], ["--json", "import", str(src)]):
        proc = run_cli("--repo", str(repo), *args)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr == f"gc-polecat: error: {src} line 2: not UTF-8 text\n"
    proc = run_cli("--repo", str(repo), "import", str(tmp_path / "absent.jsonl"))
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("gc-polecat: error: cannot read ") and "No such file" in proc.stderr
    )
    assert bead_files(repo) == []


def test_a_byte_order_mark_and_crlf_line_ends_are_accepted(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "bom.jsonl"
    src.write_bytes(
        b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n" + json.dumps(record("bd-g2")).encode()
    )
    result = cli("import", str(src))
    assert result.exit_code == 0, result.output
    assert len(bead_files(repo)) == 2


def test_import_needs_a_file_argument(cli: Cli) -> None:
    result = cli("import")
    assert result.exit_code == 2 and "Missing argument 'FILE'" in error_line(result)


# --- external dependency targets (bead.normalize) ------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["external:gastown:gt-5kjn", "external:beads:mol-run", "external:My.Proj_2:cap:sub-1"],
)
def test_external_targets_are_accepted_verbatim(target: str) -> None:
    dep = {"issue_id": "gc-a1", "depends_on_id": target, "type": "tracks", "created_at": T}
    b = bead.normalize(record("gc-a1", dependencies=[dep]))
    assert b["dependencies"][0]["depends_on_id"] == target
    assert bead.is_external_ref(target)
    assert bead.load(bead.dump(b), "x.yaml") == b


@pytest.mark.parametrize(
    "target",
    [
        "external:",
        "external:gastown",
        "external:gastown:",
        "external::gt-1",
        "external:../x:gt-1",
        "external:gastown:../gt-1",
        "external:gastown:gt/1",
        "external:gas town:gt-1",
        "external:gastown:gt-1\n",
        "External:gastown:gt-1",
        "externals:gastown:gt-1",
        "/etc/passwd",
        7,
    ],
)
def test_malformed_external_targets_are_rejected(target: Any) -> None:
    dep = {"issue_id": "gc-a1", "depends_on_id": target, "type": "tracks", "created_at": T}
    with pytest.raises(InvalidBead, match="depends_on_id"):
        bead.normalize(record("gc-a1", dependencies=[dep]))
    assert not bead.is_external_ref(target)


def test_external_targets_are_never_looked_up(cli: Cli, repo: Path, tmp_path: Path) -> None:
    dep = {
        "issue_id": "bd-x1",
        "depends_on_id": "external:gastown:gt-5kjn",
        "type": "blocks",
        "created_at": T,
        "created_by": "mayor",
        "metadata": "{}",
    }
    text = jsonl_text(record("bd-x1", dependencies=[dep]))
    assert import_file(cli, tmp_path, text).exit_code == 0
    assert bead_files(repo) == [id_path("bd-x1")]
    out = export(cli)[0]
    assert out["dependencies"] == [dep] and out["dependency_count"] == 1
    assert json.loads(cli("bead", "show", "bd-x1", "--json").stdout)[0]["dependencies"] == [dep]


# --- plumbing ------------------------------------------------------------------------------


def test_commands_come_from_the_plugin() -> None:
    cli = make_cli(make_plugin_manager(load_entrypoints=False))
    assert {"export", "import"} <= set(cli.commands)
