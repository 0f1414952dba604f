"""bd users' command lines on `gc-polecat bead ...`: flags compared with bd's, and each verb's
behaviour through the real CLI.

The flag tables below were written by hand from bd's source (gastownhall/beads at 7e3c7fb):
`cmd/bd/create.go`, `update.go`, `close.go`, `ready.go`, `comments.go`, `search.go`,
`label.go`, `list.go`, `show.go`, and `cmd/bd/flags.go` (registerCommonIssueFlags,
registerPriorityFlag). They are data, not parsed from a checkout (CI has none): each bd flag is
either accepted by our click command, with the same one-letter form, or listed in LEFT_OUT with
the reason. bd's `--json` is a global flag (cmd/bd/main.go); every verb here takes it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from gc_polecat.cli import make_cli
from gc_polecat.plugins import make_plugin_manager

from .conftest import Cli, assert_clean, git, run_cli

# bd's flags per command: long name -> one-letter form ("" when bd has none).
_TEXT = {  # cmd/bd/flags.go registerCommonIssueFlags
    "assignee": "a", "description": "d", "body": "", "message": "m", "body-file": "",
    "description-file": "", "stdin": "", "design": "", "design-file": "", "acceptance": "",
    "notes": "", "append-notes": "", "external-ref": "",
}  # fmt: skip
_DATES = {f"{w}-{e}": "" for w in ("created", "updated", "closed") for e in ("after", "before")}
BD_FLAGS: dict[str, dict[str, str]] = {
    "create": {
        **_TEXT, "priority": "p", "file": "f", "graph": "", "title": "", "silent": "",
        "dry-run": "", "type": "t", "spec-id": "", "labels": "l", "skills": "", "context": "",
        "label": "", "id": "", "parent": "", "no-inherit-labels": "", "deps": "",
        "waits-for": "", "waits-for-gate": "", "force": "", "repo": "", "estimate": "e",
        "ephemeral": "", "no-history": "", "mol-type": "", "wisp-type": "", "validate": "",
        "event-category": "", "event-actor": "", "event-target": "", "event-payload": "",
        "due": "", "defer": "", "metadata": "",
    },
    "update": {
        **_TEXT, "status": "s", "priority": "p", "title": "", "type": "t",
        "allow-empty-description": "", "spec-id": "", "acceptance-criteria": "",
        "estimate": "e", "add-label": "", "remove-label": "", "set-labels": "", "parent": "",
        "claim": "", "session": "", "due": "", "defer": "", "await-id": "", "ephemeral": "",
        "persistent": "", "no-history": "", "history": "", "metadata": "", "set-metadata": "",
        "unset-metadata": "",
    },
    "close": {
        "reason": "r", "resolution": "", "message": "m", "comment": "", "reason-file": "",
        "force": "f", "continue": "", "no-auto": "", "suggest-next": "", "claim-next": "",
        "session": "",
    },
    "ready": {
        "limit": "n", "priority": "p", "assignee": "a", "unassigned": "u", "sort": "s",
        "label": "l", "label-any": "", "exclude-label": "", "type": "t", "mol": "",
        "parent": "", "mol-type": "", "pretty": "", "plain": "", "include-deferred": "",
        "include-ephemeral": "", "gated": "", "exclude-type": "", "explain": "", "claim": "",
        "metadata-field": "", "has-metadata-key": "",
    },
    "comments": {"local-time": ""},
    "comments add": {"file": "f", "author": "a"},
    "search": {
        **_DATES, "query": "", "status": "s", "assignee": "a", "type": "t", "label": "l",
        "label-any": "", "limit": "n", "long": "", "sort": "", "reverse": "r",
        "priority-min": "", "priority-max": "", "desc-contains": "", "notes-contains": "",
        "external-contains": "", "empty-description": "", "no-assignee": "", "no-labels": "",
        "metadata-field": "", "has-metadata-key": "",
    },
    "label add": {},
    "label remove": {},
    "label list": {},
    "label list-all": {},
    "list": {
        **_DATES, "status": "s", "state": "", "priority": "p", "assignee": "a", "type": "t",
        "label": "l", "label-any": "", "exclude-label": "", "label-pattern": "",
        "label-regex": "", "title": "", "spec": "", "id": "", "limit": "n", "format": "",
        "all": "", "long": "", "sort": "", "reverse": "r", "title-contains": "",
        "desc-contains": "", "notes-contains": "", "empty-description": "", "no-assignee": "",
        "no-labels": "", "priority-min": "", "priority-max": "", "pinned": "", "no-pinned": "",
        "include-templates": "", "include-gates": "", "include-infra": "", "exclude-type": "",
        "parent": "", "filter-parent": "", "no-parent": "", "mol-type": "", "wisp-type": "",
        "deferred": "", "defer-after": "", "defer-before": "", "due-after": "",
        "due-before": "", "overdue": "", "pretty": "", "tree": "", "flat": "", "watch": "w",
        "metadata-field": "", "has-metadata-key": "", "no-pager": "", "ready": "",
    },
    "show": {
        "thread": "", "short": "", "long": "", "refs": "", "children": "", "as-of": "",
        "id": "", "local-time": "", "watch": "w", "current": "",
    },
}  # fmt: skip
BD_LABEL_SUBCOMMANDS = ("add", "remove", "list", "list-all", "propagate")  # cmd/bd/label.go

_DOLT = "bd's Dolt history switches; every change here is one git commit"
_MOL = "molecule and wisp classes of bd's formula engine, which gc-polecat does not run"
_DATE = "bd's natural-language dates (+6h, tomorrow) are not parsed here"
_DISPLAY = "bd's terminal display modes; our human output is one plain line per bead"
LEFT_OUT: dict[str, dict[str, str]] = {
    "create": {
        "file": "bulk creation from markdown: use `gc-polecat import` of a JSONL file",
        "graph": "bulk creation from a JSON plan: use `gc-polecat import`",
        "dry-run": "no preview; a create is one commit that `git revert` undoes",
        "waits-for": "use --deps waits-for:ID",
        "waits-for-gate": "bd's fan-out gate kind goes with --waits-for",
        "force": "bd's prefix-mismatch guard: we accept any valid ID prefix, as bd's import does",
        "repo": "routing to another rig: use the global `gc-polecat --repo PATH bead create`",
        "no-history": _DOLT,
        "mol-type": _MOL,
        "wisp-type": _MOL,
        "validate": "bd's description templates per type are not modelled",
        "event-category": "bd's event beads (--type event) are not modelled",
        "event-actor": "bd's event beads (--type event) are not modelled",
        "event-target": "bd's event beads (--type event) are not modelled",
        "event-payload": "bd's event beads (--type event) are not modelled",
        "due": _DATE,
        "defer": _DATE,
    },
    "update": {
        "session": "closed_by_session: the commit records who closed it; imported values are kept",
        "due": _DATE,
        "defer": _DATE,
        "no-history": _DOLT,
        "history": _DOLT,
    },
    "close": {
        "force": "we have no close guards to override (bd refuses blocked beads, open epics)",
        "continue": _MOL,
        "no-auto": _MOL,
        "suggest-next": "run `bead ready` after closing",
        "claim-next": "run `bead ready --claim` after closing",
        "session": "closed_by_session: the commit records who closed it; imported values are kept",
    },
    "ready": {
        "mol": _MOL,
        "mol-type": _MOL,
        "gated": _MOL,
        "explain": "bd's blocker explanation; `bead show` lists the dependencies",
        "pretty": _DISPLAY,
        "plain": _DISPLAY,
    },
    "list": {
        "label-regex": "a regular expression over every label; --label-pattern takes a glob",
        "format": "digraph, dot and Go templates: use --json",
        "pinned": "use --status pinned",
        "no-pinned": "use --status with the statuses wanted",
        "include-templates": "we hide no types: every type is listed (use --exclude-type)",
        "mol-type": _MOL,
        "wisp-type": _MOL,
        "deferred": _DATE,
        "defer-after": _DATE,
        "defer-before": _DATE,
        "due-after": _DATE,
        "due-before": _DATE,
        "overdue": _DATE,
        "pretty": _DISPLAY,
        "tree": _DISPLAY,
        "flat": _DISPLAY,
        "watch": _DISPLAY,
        "no-pager": "we never page",
    },
    "show": {
        "thread": "bd's message threads are not modelled",
        "refs": "reverse lookup: `bead list --json` and the dependencies of each",
        "as-of": "use git: `git show REV:beads/<c1>/<c2>/<id>.yaml`",
        "local-time": "times are shown as stored, in UTC",
        "watch": _DISPLAY,
        "current": "bd's last-touched issue is not tracked",
    },
    "label": {"propagate": "copy a label to children with `bead label add CHILD... LABEL`"},
}


def _command(path: str) -> click.Command:
    group: Any = make_cli(make_plugin_manager(load_entrypoints=False)).commands["bead"]
    words = path.split()
    if words == ["comments"]:
        words = ["comments", "list-for"]  # `comments ID` runs the hidden listing command
    for word in words:
        group = group.get_command(click.Context(group), word)
    return group


def _options(cmd: click.Command) -> dict[str, set[str]]:
    """Our option names: long name -> the one-letter forms that reach the same parameter."""
    out: dict[str, set[str]] = {}
    for param in cmd.params:
        if not isinstance(param, click.Option):
            continue
        names = param.opts + param.secondary_opts
        shorts = {n[1:] for n in names if not n.startswith("--")}
        for name in names:
            if name.startswith("--"):
                out[name[2:]] = shorts
    return out


@pytest.mark.parametrize("path", sorted(BD_FLAGS))
def test_every_bd_flag_is_accepted_or_left_out_with_a_reason(path: str) -> None:
    ours = _options(_command(path))
    left_out = LEFT_OUT.get(path, {})
    for flag, short in BD_FLAGS[path].items():
        if flag in left_out:
            assert left_out[flag].strip(), f"{path} --{flag}: no reason given"
            assert flag not in ours, f"{path} --{flag} is accepted now: drop it from LEFT_OUT"
            continue
        assert flag in ours, f"bead {path}: bd's --{flag} is neither accepted nor left out"
        if short:
            assert short in ours[flag], f"bead {path}: bd's -{short} is --{flag}, ours is not"
    assert "json" in ours
    assert set(left_out) <= set(BD_FLAGS[path]), "LEFT_OUT names a flag bd does not have"


@pytest.mark.parametrize("path", sorted(BD_FLAGS))
def test_a_letter_bd_gives_a_meaning_means_the_same_here(path: str) -> None:
    """`-m` on create is bd's --message (the description), not our former --metadata."""
    bd_letters = {short: flag for flag, short in BD_FLAGS[path].items() if short}
    for flag, shorts in _options(_command(path)).items():
        for short in shorts & set(bd_letters):
            assert bd_letters[short] in _options(_command(path)), (path, short)
            assert short in _options(_command(path))[bd_letters[short]], (path, short, flag)


def test_label_subcommands_follow_bd() -> None:
    ours = set(_command("label").commands)  # type: ignore[attr-defined]
    for name in BD_LABEL_SUBCOMMANDS:
        assert name in ours or name in LEFT_OUT["label"], name


def test_every_option_has_help_text() -> None:
    for path in BD_FLAGS:
        for param in _command(path).params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (path, param.opts)


# --- behaviour: create -----------------------------------------------------------------------


def _ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _json(cli: Cli, *args: str) -> Any:
    return json.loads(_ok(cli(*args, "--json")))


def _new(cli: Cli, *args: str) -> str:
    return _ok(cli("bead", "create", *args, "--silent")).strip()


def _commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def test_create_takes_bd_spellings_of_title_and_description(cli: Cli, repo: Path) -> None:
    """bd: cmd/bd/create.go, cmd/bd/flags.go. `-m` is the description (git's commit habit)."""
    a = _new(cli, "--title", "By flag", "-m", "from -m")
    b = _new(cli, "Same", "--title", "Same", "--body", "from --body")
    (repo / "d.txt").write_text("from a file\n")
    c = _new(cli, "Filed", "--body-file", str(repo / "d.txt"))
    d = _ok(cli("bead", "create", "Piped", "--stdin", "--silent", input="from stdin")).strip()
    e = _new(cli, "Sections", "-d", "base", "--skills", "go", "--context", "ctx")
    shown = {x["id"]: x for x in _json(cli, "bead", "show", a, b, c, d, e)}
    assert shown[a]["title"] == "By flag" and shown[a]["description"] == "from -m"
    assert shown[b]["description"] == "from --body"
    assert shown[c]["description"] == "from a file\n"
    assert shown[d]["description"] == "from stdin"
    assert shown[e]["description"] == "base\n\n## Required Skills\ngo\n\n## Context\nctx"
    (repo / "d.txt").unlink()
    assert_clean(repo)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["A", "--title", "B"], "the argument and --title differ"),
        ([], "a title is required"),
        (["T", "-d", "x", "-m", "y"], "give the description once"),
        (["T", "--metadata", "{bad"], "invalid JSON in --metadata"),
        (["T", "--metadata", "k=v"], "(for KEY=VALUE use --set-metadata)"),
        (["T", "--metadata", "[1, 2]"], "--metadata must be a JSON object"),
        (["T", "--metadata", "@/nonexistent/m.json"], "cannot read /nonexistent/m.json"),
        (["T", "--body-file", "/nonexistent/d.txt"], "cannot read /nonexistent/d.txt"),
        (["T", "--parent", "gc-zzzz"], "no bead gc-zzzz"),
        (["T", "--id", "../x"], "invalid bead ID"),
        (["T", "-e", "-5"], "-5 is not in the range"),
    ],
)
def test_create_refuses_bad_input_in_one_line_exit_2_without_a_commit(
    repo: Path, args: list[str], needle: str
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("--repo", str(repo), "bead", "create", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert git(repo, "rev-parse", "HEAD") == head


def test_create_metadata_json_labels_parent_and_deps(cli: Cli, repo: Path) -> None:
    (repo.parent / "meta.json").write_text('{"from": "file"}')
    parent = _new(cli, "Epic", "-t", "epic", "-l", "team,ui")
    blocker = _new(cli, "Blocker")
    child = _new(cli, "Child", "--parent", parent, "--labels", "extra", "--label", "more",
                 "--metadata", '{"branch": "b1", "k": "v"}', "--set-metadata", "k=override",
                 "--deps", blocker, "-a", "nux", "-e", "30", "--external-ref", "gh-9",
                 "--spec-id", "docs/spec.md")  # fmt: skip
    bare = _new(cli, "Bare", "--parent", parent, "--no-inherit-labels")
    from_file = _new(cli, "Meta file", "--metadata", f"@{repo.parent / 'meta.json'}")
    got = {b["id"]: b for b in _json(cli, "bead", "show", child, bare, from_file)}
    assert child == f"{parent}.1" and got[child]["labels"] == ["team", "ui", "extra", "more"]
    assert got[child]["metadata"] == {"branch": "b1", "k": "override"}
    assert {(d["type"], d["depends_on_id"]) for d in got[child]["dependencies"]} == {
        ("parent-child", parent),
        ("blocks", blocker),
    }
    assert (got[child]["estimated_minutes"], got[child]["external_ref"]) == (30, "gh-9")
    assert got[child]["spec_id"] == "docs/spec.md" and got[child]["assignee"] == "nux"
    assert "labels" not in got[bare]
    assert got[from_file]["metadata"] == {"from": "file"}
    assert_clean(repo)


def test_create_with_an_explicit_id_and_assignee(cli: Cli, repo: Path) -> None:
    made = _new(cli, "Chosen", "--id", "gc-abc12", "--assignee", "nux")
    assert made == "gc-abc12" and _json(cli, "bead", "show", made)[0]["assignee"] == "nux"
    head = git(repo, "rev-parse", "HEAD")
    again = cli("bead", "create", "Twice", "--id", "gc-abc12")
    assert again.exit_code == 2 and "bead gc-abc12 already exists" in again.output
    assert git(repo, "rev-parse", "HEAD") == head


def test_an_id_given_twice_to_update_is_changed_once(cli: Cli) -> None:
    bead_id = _new(cli, "Once", "--notes", "a")
    updated = _json(cli, "bead", "update", bead_id, bead_id, "--append-notes", "b")
    assert [u["notes"] for u in updated] == ["a\nb"]


def test_create_prints_the_id_the_path_or_the_bead_with_its_path(cli: Cli, repo: Path) -> None:
    """Issue 16: `bead create` can print the bead's file; `--json` is bd's issue object plus
    one key, `path` (repository-relative, as `docs/formats.md` derives it from the ID)."""
    plain = _ok(cli("bead", "create", "Plain")).strip()
    silent = _ok(cli("bead", "create", "Quiet", "--silent", "--path")).strip()
    line = _ok(cli("bead", "create", "With path", "--path")).strip()
    record = _json(cli, "bead", "create", "As JSON")
    for bead_id in (plain, silent):
        assert "\t" not in bead_id and (repo / _path_of(bead_id)).is_file()
    bead_id, path = line.split("\t")
    assert path == _path_of(bead_id) and (repo / path).read_text().startswith(f"id: {bead_id}\n")
    assert record["path"] == _path_of(record["id"]) and (repo / record["path"]).is_file()
    assert record["title"] == "As JSON" and record["status"] == "open"
    assert "path" not in (repo / record["path"]).read_text()  # the file holds the bead only


def _path_of(bead_id: str) -> str:
    from gc_polecat.beads.ids import id_path

    return id_path(bead_id)


def test_silent_output_is_what_a_shell_variable_captures(repo: Path) -> None:
    """`work=$(gc-polecat bead create ... --silent)` as issue 16's README writes it."""
    script = 'work=$("$PY" -m gc_polecat bead create "Fix it" -p 1 --silent) && echo "[$work]"'
    env = {**os.environ, "PY": sys.executable, "GC_POLECAT_REPO": str(repo)}
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    work = out.stdout.strip()[1:-1]
    shown = run_cli("--repo", str(repo), "bead", "show", work, "--json")
    assert json.loads(shown.stdout)[0]["priority"] == 1


# --- update and claim (bd: cmd/bd/update.go, internal/storage/issueops/claim.go) ------------


def test_claim_takes_an_open_bead_for_the_actor_in_one_commit(cli: Cli, repo: Path) -> None:
    bead_id = _new(cli, "Work")
    before = _commits(repo)
    os.environ["GC_AGENT"] = "furiosa"
    try:
        [claimed] = _json(cli, "bead", "update", bead_id, "--claim")
        again = _ok(cli("bead", "update", bead_id, "--claim"))
    finally:
        del os.environ["GC_AGENT"]
    assert (claimed["assignee"], claimed["status"]) == ("furiosa", "in_progress")
    assert claimed["started_at"] == claimed["updated_at"]
    assert again.strip() == f"{bead_id} unchanged"  # bd: idempotent for the holder
    assert _commits(repo) == before + 1
    assert git(repo, "log", "-1", "--format=%an").strip() == "furiosa"


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (["-a", "nux"], "is already claimed by nux"),
        (["-s", "blocked"], "cannot be claimed: its status is blocked"),
        (["-s", "closed"], "cannot be claimed: its status is closed"),
    ],
)
def test_claim_refuses_what_another_holds_or_what_is_not_open(
    cli: Cli, repo: Path, setup: list[str], needle: str
) -> None:
    bead_id = _new(cli, "Work")
    _ok(cli("bead", "update", bead_id, *setup))
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("--repo", str(repo), "bead", "update", bead_id, "--claim", "--title", "x",
                   env={"GC_AGENT": "furiosa"})  # fmt: skip
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and git(repo, "rev-parse", "HEAD") == head


def test_two_processes_claiming_one_bead_one_wins(repo: Path) -> None:
    """The claim is a compare-and-swap under the store's lock: of two real processes racing
    for the same open bead, exactly one succeeds and the other names the winner."""
    made = run_cli("--repo", str(repo), "bead", "create", "Contested", "--silent")
    bead_id = made.stdout.strip()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gc_polecat", "--repo", str(repo), "bead", "update", bead_id,
             "--claim"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "GC_AGENT": name},
        )
        for name in ("furiosa", "nux")
    ]  # fmt: skip
    results = [(p.wait(timeout=120), p.communicate()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    shown = json.loads(run_cli("--repo", str(repo), "bead", "show", bead_id, "--json").stdout)[0]
    loser = next(err for code, (_, err) in results if code == 2)
    assert f"already claimed by {shown['assignee']}" in loser
    assert_clean(repo)


def test_update_takes_several_ids_and_bd_label_and_metadata_flags(cli: Cli, repo: Path) -> None:
    a = _new(cli, "A", "-l", "old,keep", "--set-metadata", "x=1")
    b = _new(cli, "B", "--notes", "first")
    parent = _new(cli, "Parent")
    before = _commits(repo)
    updated = _json(cli, "bead", "update", a, b, "--set-labels", "keep,new", "--remove-label",
                    "keep", "--metadata", '{"y": "2"}', "--append-notes", "more", "-m", "desc",
                    "--parent", parent)  # fmt: skip
    assert _commits(repo) == before + 1 and [u["id"] for u in updated] == [a, b]
    got = {u["id"]: u for u in updated}
    assert got[a]["labels"] == ["new"] and got[a]["metadata"] == {"x": "1", "y": "2"}
    assert got[b]["notes"] == "first\nmore" and got[a]["notes"] == "more"
    assert got[a]["description"] == got[b]["description"] == "desc"
    for u in updated:
        links = {(d["type"], d["depends_on_id"]) for d in u["dependencies"]}
        assert ("parent-child", parent) in links
    [moved] = _json(cli, "bead", "update", a, "--parent", "")
    assert "dependencies" not in moved
    [wisp] = _json(cli, "bead", "update", a, "--ephemeral")
    assert wisp["ephemeral"] is True
    [kept] = _json(cli, "bead", "update", a, "--persistent")
    assert "ephemeral" not in kept
    assert_clean(repo)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metadata", "{}", "--set-metadata", "a=b"], "cannot combine --metadata"),
        (["--metadata", "nope"], "invalid JSON in --metadata"),
        (["--stdin"], "the description read is empty"),
        (["--notes", "a", "--append-notes", "b"], "--notes or --append-notes"),
        (["--parent", "gc-zzzz"], "no bead gc-zzzz"),
    ],
)
def test_update_refuses_bad_input_without_a_commit(
    cli: Cli, repo: Path, args: list[str], needle: str
) -> None:
    bead_id = _new(cli, "Target", "-d", "keep me")
    head = git(repo, "rev-parse", "HEAD")
    proc = subprocess.run(
        [sys.executable, "-m", "gc_polecat", "--repo", str(repo), "bead", "update", bead_id,
         *args],
        input="", capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and git(repo, "rev-parse", "HEAD") == head


def test_update_of_several_ids_is_all_or_nothing(cli: Cli, repo: Path) -> None:
    a = _new(cli, "A")
    head = git(repo, "rev-parse", "HEAD")
    result = cli("bead", "update", a, "gc-zzzz", "-p", "0")
    assert result.exit_code == 2 and "no bead gc-zzzz" in result.output
    assert git(repo, "rev-parse", "HEAD") == head


# --- close (bd: cmd/bd/close.go) --------------------------------------------------------------


def test_close_several_ids_in_one_commit_with_bd_reason_spellings(cli: Cli, repo: Path) -> None:
    a, b, c = (_new(cli, t) for t in ("A", "B", "C"))
    before = _commits(repo)
    closed = _json(cli, "bead", "close", a, b, "-m", "merged")
    assert _commits(repo) == before + 1
    assert [(x["id"], x["status"], x["close_reason"]) for x in closed] == [
        (a, "closed", "merged"),
        (b, "closed", "merged"),
    ]
    (repo.parent / "why.txt").write_text("from a file\n")
    [filed] = _json(cli, "bead", "close", c, "--reason-file", str(repo.parent / "why.txt"))
    assert filed["close_reason"] == "from a file"


def test_closing_a_closed_bead_keeps_its_history_and_makes_no_commit(cli: Cli, repo: Path) -> None:
    a, b = _new(cli, "A"), _new(cli, "B")
    [first] = _json(cli, "bead", "close", a, "-r", "merged")
    before = _commits(repo)
    out = _ok(cli("bead", "close", a, "-r", "again"))
    assert out.strip() == f"{a} was already closed" and _commits(repo) == before
    mixed = _ok(cli("bead", "close", a, b)).splitlines()
    assert mixed == [f"{a} was already closed", f"closed {b}"]
    [again] = _json(cli, "bead", "show", a)
    assert (again["closed_at"], again["close_reason"]) == (first["closed_at"], "merged")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["gc-zzzz"], "no bead gc-zzzz"),
        (["../etc"], "invalid bead ID"),
        (["EXISTING", "-r", "a", "--reason-file", "/dev/null"], "--reason or --reason-file"),
        (["EXISTING", "--reason-file", "/nonexistent"], "cannot read /nonexistent"),
        (["EXISTING", "gc-zzzz"], "no bead gc-zzzz"),
    ],
)
def test_close_refuses_bad_input_and_closes_nothing(
    cli: Cli, repo: Path, args: list[str], needle: str
) -> None:
    bead_id = _new(cli, "Open")
    head = git(repo, "rev-parse", "HEAD")
    argv = [bead_id if a == "EXISTING" else a for a in args]
    proc = run_cli("--repo", str(repo), "bead", "close", *argv)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and git(repo, "rev-parse", "HEAD") == head
    assert _json(cli, "bead", "show", bead_id)[0]["status"] == "open"


# --- ready (bd: cmd/bd/ready.go, internal/storage/issueops/ready_work.go) --------------------


def test_ready_lists_open_unblocked_work_in_bd_json_shape(cli: Cli, repo: Path) -> None:
    blocker = _new(cli, "Blocker", "-p", "1")
    blocked = _new(cli, "Blocked", "--deps", blocker)
    child = _new(cli, "Child", "--parent", blocked)
    _new(cli, "Gate", "-t", "gate")
    _new(cli, "Wisp", "--ephemeral")
    _new(cli, "Doing", "-s", "in_progress")
    low = _new(cli, "Low", "-p", "3", "-l", "ui")
    ready = _json(cli, "bead", "ready")
    assert [r["id"] for r in ready] == [blocker, low]
    assert ready[0]["dependent_count"] == 1 and ready[0]["comment_count"] == 0
    assert {"dependency_count", "dependent_count", "comment_count"} <= set(ready[1])
    assert [r["id"] for r in _json(cli, "bead", "ready", "-l", "ui")] == [low]
    assert [r["id"] for r in _json(cli, "bead", "ready", "-t", "gate")] != []
    assert len(_json(cli, "bead", "ready", "--include-ephemeral")) == 3
    _ok(cli("bead", "close", blocker))
    after = [r["id"] for r in _json(cli, "bead", "ready")]
    assert blocked in after and child in after  # a closed blocker frees the child too
    under = _json(cli, "bead", "ready", "--parent", blocked)
    assert [r["id"] for r in under] == [child] and under[0]["parent"] == blocked


def _hand_edit(repo: Path, bead_id: str, old: str, new: str) -> None:
    """Change a bead's file with plain git, as a person or another tool would."""
    path = repo / _path_of(bead_id)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    git(repo, "commit", "-qam", f"edit {bead_id} by hand")


def test_ready_sort_policies_and_limit(cli: Cli, repo: Path) -> None:
    """bd: ready_work.go ORDER BY for priority, oldest and hybrid (the last 48 h first)."""
    old = _new(cli, "Old P0", "-p", "0")
    new_low = _new(cli, "New P3", "-p", "3")
    new_high = _new(cli, "New P1", "-p", "1")
    stamp = _json(cli, "bead", "show", old)[0]["created_at"]
    _hand_edit(repo, old, f"created_at: '{stamp}'", "created_at: '2020-01-01T00:00:00Z'")
    ids = lambda *f: [r["id"] for r in _json(cli, "bead", "ready", *f)]  # noqa: E731
    assert ids() == [old, new_high, new_low]
    assert ids("-s", "oldest")[0] == old
    assert ids("-s", "hybrid") == [new_high, new_low, old]
    assert ids("-n", "1") == [old] and len(ids("-n", "0")) == 3


def test_ready_human_output_and_nothing_ready(cli: Cli) -> None:
    assert _ok(cli("bead", "ready")).strip() == "no ready work"
    bead_id = _new(cli, "Work")
    assert _ok(cli("bead", "ready")) == f"{bead_id}  [task]  P2  open  -  Work\n"


def test_ready_claim_takes_the_first_ready_bead(cli: Cli, repo: Path) -> None:
    first = _new(cli, "First", "-p", "0")
    _new(cli, "Second")
    [claimed] = _json(cli, "bead", "ready", "--claim")
    assert claimed["id"] == first and claimed["status"] == "in_progress"
    assert claimed["assignee"] == "Test User" and "dependent_count" in claimed
    _ok(cli("bead", "close", *[r["id"] for r in _json(cli, "bead", "ready")]))
    assert _json(cli, "bead", "ready", "--claim") == []
    bad = cli("bead", "ready", "--claim", "-a", "x")
    assert bad.exit_code == 2 and "--claim cannot be combined with --assignee" in bad.output


def test_ready_leaves_out_beads_deferred_into_the_future(repo: Path, cli: Cli) -> None:
    """bd's `defer_until` (imported from bd): hidden from ready until then, and its children."""
    later, earlier = _new(cli, "Later"), _new(cli, "Earlier")
    kid = _new(cli, "Kid", "--parent", later)
    for bead_id, when in ((later, "2999-01-01T00:00:00Z"), (earlier, "2000-01-01T00:00:00Z")):
        kind = "issue_type: task\n"
        _hand_edit(repo, bead_id, kind, f"{kind}defer_until: '{when}'\n")
    ids = [r["id"] for r in _json(cli, "bead", "ready")]
    assert earlier in ids and later not in ids and kid not in ids
    assert later in [r["id"] for r in _json(cli, "bead", "ready", "--include-deferred")]


# --- search (bd: cmd/bd/search.go, internal/storage/issueops/filters.go) ----------------------


def test_search_matches_title_and_id_any_case_and_hides_closed(cli: Cli, repo: Path) -> None:
    a = _new(cli, "Fix the LOGIN test", "-p", "1")
    b = _new(cli, "Login page", "-d", "has an endpoint")
    c = _new(cli, "Unrelated", "--external-ref", "gh-login-9")
    done = _new(cli, "Old login bug")
    _ok(cli("bead", "close", done))
    found = _json(cli, "bead", "search", "login")
    assert [f["id"] for f in found] == [a, b]
    assert "dependent_count" in found[0] and "parent" not in found[0]
    everything = [f["id"] for f in _json(cli, "bead", "search", "--query", "LOGIN", "-s", "all")]
    assert everything[0] == a and set(everything) == {a, b, done}  # P1 first, then P2s
    assert [f["id"] for f in _json(cli, "bead", "search", a)] == [a]
    assert [f["id"] for f in _json(cli, "bead", "search", "gh-login-9")] == [c]  # ID-like query
    assert [f["id"] for f in _json(cli, "bead", "search", "login", "--desc-contains", "END")] == [b]
    assert [f["id"] for f in _json(cli, "bead", "search", "login", "--priority-max", "1")] == [a]
    by_title = _json(cli, "bead", "search", "login", "--sort", "title", "-r")
    assert [f["id"] for f in by_title] == [b, a]
    assert (
        _ok(cli("bead", "search", "nothing-like-it")).strip() == "no beads match 'nothing-like-it'"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "a search query is required"),
        (["x", "--created-after", "yesterday"], "is not a date"),
        (["x", "--sort", "colour"], "'colour' is not one of"),
        (["x", "--priority-min", "9"], "is not a priority"),
    ],
)
def test_search_refuses_bad_input_in_one_line(repo: Path, args: list[str], needle: str) -> None:
    proc = run_cli("--repo", str(repo), "bead", "search", *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_list_takes_bd_filters(cli: Cli) -> None:
    a = _new(cli, "Alpha", "-l", "tech-debt", "-p", "0", "--spec-id", "specs/auth.md")
    b = _new(cli, "Beta", "-d", "")
    kid = _new(cli, "Kid", "--parent", a, "--no-inherit-labels")
    listed = lambda *f: [x["id"] for x in _json(cli, "bead", "list", *f)]  # noqa: E731
    assert listed("--label-pattern", "tech-*") == [a]
    assert listed("-p", "0") == [a] and listed("--spec", "specs/") == [a]
    assert listed("--no-labels", "--no-parent") == [b]
    assert listed("--parent", a) == [kid] and listed("--filter-parent", a) == [kid]
    assert listed("--id", f"{a},{b}", "--sort", "id", "-r") == sorted([a, b], reverse=True)
    assert listed("--title", "ALP") == [a] and listed("--state", "open", "-n", "1") == [a]
    assert kid in listed("--ready") and a in listed("--ready")


# --- comments (bd: cmd/bd/comments.go; internal/types Comment) --------------------------------


def test_comments_add_and_list_in_bd_shape(cli: Cli, repo: Path) -> None:
    bead_id = _new(cli, "Discussed")
    assert _ok(cli("bead", "comments", bead_id)).strip() == f"No comments on {bead_id}"
    assert _json(cli, "bead", "comments", bead_id) == []
    first = _json(cli, "bead", "comments", "add", bead_id, "Working on it")
    (repo.parent / "note.txt").write_text("line one\nline two\n")
    _ok(cli("bead", "comments", "add", bead_id, "-f", str(repo.parent / "note.txt"), "-a", "nux"))
    listed = _json(cli, "bead", "comments", bead_id)
    assert set(first) == {"id", "issue_id", "author", "text", "created_at"}
    assert listed[0] == first and first["author"] == "Test User"
    assert first["id"][14] == "7" and len(first["id"]) == 36  # a UUIDv7, as bd gives
    assert (listed[1]["author"], listed[1]["text"]) == ("nux", "line one\nline two\n")
    human = _ok(cli("bead", "comments", bead_id)).splitlines()
    assert human[0] == f"Comments on {bead_id}:" and human[1].startswith("  [Test User] at ")
    assert human[2:] == ["    Working on it", "  [nux] at " + human[3][len("  [nux] at "):],
                         "    line one", "    line two"]  # fmt: skip
    shown = _ok(cli("bead", "show", bead_id))
    assert "  comments:\n    [Test User] at " in shown and "{" not in shown
    stored = (repo / _path_of(bead_id)).read_text()
    assert "comments:\n- id: " in stored and "  text: Working on it\n" in stored
    assert_clean(repo)


def test_comments_travel_in_the_bd_export(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """bd's JSONL carries an issue's comments as `comments` with `comment_count`."""
    bead_id = _new(cli, "Exported")
    comment = _json(cli, "bead", "comments", "add", bead_id, "hello")
    out = tmp_path / "issues.jsonl"
    _ok(cli("export", "--jsonl", str(out)))
    [line] = [json.loads(x) for x in out.read_text().splitlines() if bead_id in x]
    assert line["comments"] == [comment] and line["comment_count"] == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "EXISTING"], "comment text required"),
        (["add", "EXISTING", "   "], "comment text cannot be empty"),
        (["add", "gc-zzzz", "hi"], "no bead gc-zzzz"),
        (["add", "EXISTING", "-f", "/nonexistent"], "cannot read /nonexistent"),
        (["gc-zzzz"], "no bead gc-zzzz"),
        (["list"], "invalid bead ID 'list'"),
    ],
)
def test_comments_refuse_bad_input_in_one_line(
    cli: Cli, repo: Path, args: list[str], needle: str
) -> None:
    bead_id = _new(cli, "Target")
    head = git(repo, "rev-parse", "HEAD")
    argv = [bead_id if a == "EXISTING" else a for a in args]
    proc = run_cli("--repo", str(repo), "bead", "comments", *argv)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and git(repo, "rev-parse", "HEAD") == head


def test_a_malformed_comment_list_is_bad_input_naming_the_bead(cli: Cli, repo: Path) -> None:
    bead_id = _new(cli, "Hand edited")
    path = repo / _path_of(bead_id)
    path.write_text(path.read_text() + "comments:\n- id: 1\n  text: [not, text]\n")
    git(repo, "commit", "-qam", "hand edit")
    for args in (("comments", bead_id), ("comments", "add", bead_id, "x"), ("show", bead_id)):
        proc = run_cli("--repo", str(repo), "bead", *args)
        assert proc.returncode == 2 and f"bead {bead_id}: comments[0].text" in proc.stderr


def test_imported_comments_with_integer_ids_read_as_bd_reads_them(cli: Cli, repo: Path) -> None:
    """bd before 1.0 exported comment IDs as numbers (internal/types Comment.UnmarshalJSON)."""
    bead_id = _new(cli, "Imported")
    path = repo / _path_of(bead_id)
    path.write_text(path.read_text() + "comments:\n- id: 1\n  author: jeff\n  text: old\n"
                    "  created_at: '2026-02-17T15:45:57.123-08:00'\n")  # fmt: skip
    git(repo, "commit", "-qam", "imported")
    [old] = _json(cli, "bead", "comments", bead_id)
    assert old == {"id": "1", "issue_id": bead_id, "author": "jeff", "text": "old",
                   "created_at": "2026-02-17T15:45:57.123-08:00"}  # fmt: skip
    new = _json(cli, "bead", "comments", "add", bead_id, "newer")
    assert [c["id"] for c in _json(cli, "bead", "comments", bead_id)] == ["1", new["id"]]
    assert "at 2026-02-17 23:45" in _ok(cli("bead", "comments", bead_id))


# --- labels (bd: cmd/bd/label.go) -------------------------------------------------------------


def test_label_add_remove_list_in_bd_shape(cli: Cli, repo: Path) -> None:
    a, b = _new(cli, "A", "-l", "keep"), _new(cli, "B")
    before = _commits(repo)
    rows = _json(cli, "bead", "label", "add", a, b, "urgent")
    assert rows == [{"status": "added", "issue_id": x, "label": "urgent"} for x in (a, b)]
    assert _commits(repo) == before + 1
    assert _json(cli, "bead", "label", "list", a) == ["keep", "urgent"]
    assert _ok(cli("bead", "label", "remove", b, "urgent")).strip() == (
        f"removed label 'urgent' from {b}"
    )
    assert _ok(cli("bead", "label", "list", b)).strip() == f"{b} has no labels"
    assert _json(cli, "bead", "label", "list-all") == [
        {"label": "keep", "count": 1},
        {"label": "urgent", "count": 1},
    ]
    again = _commits(repo)
    _ok(cli("bead", "label", "add", a, "urgent"))  # already there: nothing to commit
    assert _commits(repo) == again


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "EXISTING"], "give at least one ID and a label"),
        (["add", "EXISTING", " "], "label cannot be empty"),
        (["add", "EXISTING", "provides:x"], "are reserved"),
        (["add", "EXISTING", "a,b"], "holds a comma"),
        (["add", "EXISTING", "gc-zzzz", "x"], "no bead gc-zzzz"),
        (["remove", "../x", "x"], "invalid bead ID"),
        (["list", "gc-zzzz"], "no bead gc-zzzz"),
    ],
)
def test_label_refuses_bad_input_and_changes_nothing(
    cli: Cli, repo: Path, args: list[str], needle: str
) -> None:
    bead_id = _new(cli, "Target")
    head = git(repo, "rev-parse", "HEAD")
    argv = [bead_id if a == "EXISTING" else a for a in args]
    proc = run_cli("--repo", str(repo), "bead", "label", *argv)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and git(repo, "rev-parse", "HEAD") == head


# --- show ---------------------------------------------------------------------------------------


def test_show_takes_bd_id_short_and_children_flags(cli: Cli) -> None:
    parent = _new(cli, "Parent")
    kid = _new(cli, "Kid", "--parent", parent)
    assert [b["id"] for b in _json(cli, "bead", "show", "--id", parent)] == [parent]
    assert [b["id"] for b in _json(cli, "bead", "show", parent, "--children")] == [kid]
    short = _ok(cli("bead", "show", parent, kid, "--short")).splitlines()
    assert [line.split()[0] for line in short] == [parent, kid]
    assert cli("bead", "show").exit_code == 2


def test_human_output_never_shows_python_reprs(cli: Cli, repo: Path) -> None:
    """Nested values a bd import brings (lists of mappings, booleans) print as JSON or text."""
    bead_id = _new(cli, "Nested", "--ephemeral")
    path = repo / _path_of(bead_id)
    path.write_text(path.read_text() + "validations:\n- {kind: ok, by: 'x'}\npinned: true\n")
    git(repo, "commit", "-qam", "nested")
    out = _ok(cli("bead", "show", bead_id))
    assert "ephemeral: true" in out and "pinned: true" in out
    assert 'validations: [{"kind": "ok", "by": "x"}]' in out
    assert "True" not in out and "{'" not in out


def test_bead_show_loads_none_of_the_other_verbs(cli: Cli, repo: Path) -> None:
    """Start-up stays lean: `bead show` (the hot path, docs/performance.md) imports neither the
    other verbs' module nor their rules; `bead --help` still lists every verb."""
    bead_id = _new(cli, "Shown")
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['gc-polecat', '--repo', {str(repo)!r}, 'bead', 'show', {bead_id!r}]\n"
        "try:\n    runpy.run_module('gc_polecat', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in sys.modules if m.endswith(('bead_verbs', 'bead_ops'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{bead_id}  [task]") and out.stdout.endswith("\n[]\n")
    helped = run_cli("bead", "--help")
    for verb in ("comments", "create", "label", "ready", "search", "update", "close", "dep"):
        assert f"  {verb} " in helped.stdout, helped.stdout
    commands = helped.stdout.split("Commands:")[1]
    assert "..." not in commands  # each verb's one-line help is whole, not cut


def test_bd_type_aliases_are_taken_wherever_a_type_is(cli: Cli) -> None:
    """bd: internal/utils/strings.go issueTypeAliases (feat, enhancement, mr, mol, dec, adr)."""
    feature = _new(cli, "A feature", "-t", "feat")
    decision = _new(cli, "A decision", "--type", "ADR")
    assert [b["issue_type"] for b in _json(cli, "bead", "show", feature, decision)] == [
        "feature",
        "decision",
    ]
    [changed] = _json(cli, "bead", "update", decision, "-t", "enhancement")
    assert changed["issue_type"] == "feature"
    assert {b["id"] for b in _json(cli, "bead", "list", "-t", "feat")} == {feature, decision}
    assert {b["id"] for b in _json(cli, "bead", "ready", "-t", "feat")} == {feature, decision}
    assert _json(cli, "bead", "list", "--exclude-type", "enhancement") == []
    bad = cli("bead", "create", "x", "-t", "featur")
    assert bad.exit_code == 2 and "'featur' is not one of" in bad.output
