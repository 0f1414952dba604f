"""The command line, driven in process with CliRunner and as a real process for exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Cli, assert_clean, git, run_cli


def create(cli: Cli, *args: str) -> str:
    result = cli("bead", "create", *args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_walkthrough_create_update_close(cli: Cli, repo: Path) -> None:
    bid = create(
        cli,
        "Fix the thing",
        "-p",
        "P1",
        "-l",
        "a,b",
        "--set-metadata",
        "branch=polecat/x",
        "-d",
        "two\nlines",
    )
    shown = json.loads(cli("bead", "show", bid, "--json").output)
    assert shown[0]["priority"] == 1 and shown[0]["labels"] == ["a", "b"]
    assert (
        shown[0]["metadata"] == {"branch": "polecat/x"} and shown[0]["description"] == "two\nlines"
    )
    assert cli("bead", "update", bid, "--status", "in_progress", "-a", "furiosa").exit_code == 0
    assert cli("bead", "close", bid, "-r", "merged").exit_code == 0
    final = json.loads(cli("--json", "bead", "show", bid).output)[0]
    assert (
        final["status"] == "closed"
        and final["close_reason"] == "merged"
        and final["assignee"] == "furiosa"
    )
    assert git(repo, "rev-list", "--count", "HEAD") == "4\n"
    assert_clean(repo)


def test_show_human_output(cli: Cli) -> None:
    bid = create(cli, "Readable", "-d", "first\nsecond")
    out = cli("bead", "show", bid).output
    assert out.splitlines()[0] == f"{bid}  [task] P2 open  Readable"
    assert "    second" in out


def test_list_filters(cli: Cli) -> None:
    gate = create(
        cli, "a gate", "-t", "gate", "--await-type", "bead", "--await-id", "gc-x", "--timeout", "2h"
    )
    create(cli, "a task")
    closed_gate = create(cli, "done gate", "-t", "gate")
    cli("bead", "close", closed_gate)
    ids = [
        b["id"]
        for b in json.loads(
            cli("bead", "list", "--type", "gate", "--status", "open", "--json").output
        )
    ]
    assert ids == [gate]
    assert len(json.loads(cli("bead", "list", "--json").output)) == 1  # closed and gates hidden
    assert len(json.loads(cli("bead", "list", "--include-gates", "--json").output)) == 2
    assert len(json.loads(cli("bead", "list", "--all", "--include-gates", "--json").output)) == 3
    got = json.loads(cli("bead", "show", gate, "--json").output)[0]
    assert got["timeout"] == 7_200_000_000_000


def test_update_labels_and_metadata(cli: Cli) -> None:
    bid = create(cli, "x", "-l", "one", "--set-metadata", "k=v")
    cli(
        "bead",
        "update",
        bid,
        "--add-label",
        "two",
        "--remove-label",
        "one",
        "--set-metadata",
        "z=1",
        "--unset-metadata",
        "k",
    )
    got = json.loads(cli("bead", "show", bid, "--json").output)[0]
    assert got["labels"] == ["two"] and got["metadata"] == {"z": "1"}


def test_dependencies(cli: Cli) -> None:
    a, b = create(cli, "a"), create(cli, "b")
    assert cli("bead", "dep", "add", a, b).exit_code == 0
    deps = json.loads(cli("bead", "show", a, "--json").output)[0]["dependencies"]
    assert [(d["depends_on_id"], d["type"]) for d in deps] == [(b, "blocks")]
    assert cli("bead", "dep", "remove", a, b).exit_code == 0
    assert "dependencies" not in json.loads(cli("bead", "show", a, "--json").output)[0]
    c = create(cli, "c", "--deps", f"blocks:{a},related:{b}")
    deps = json.loads(cli("bead", "show", c, "--json").output)[0]["dependencies"]
    assert sorted((d["depends_on_id"], d["type"]) for d in deps) == sorted(
        [(a, "blocks"), (b, "related")]
    )


def test_child_and_explicit_ids(cli: Cli) -> None:
    parent = create(cli, "epic", "-t", "epic")
    assert create(cli, "child", "--parent", parent) == f"{parent}.1"
    assert create(cli, "fixed", "--id", "gc-fixed1") == "gc-fixed1"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bead", "show", "../x"], "invalid bead ID '../x'"),
        (["bead", "show", "/etc/passwd"], "invalid bead ID"),
        (["bead", "show", ""], "invalid bead ID: empty"),
        (["bead", "show", "gc-zzzz"], "no bead gc-zzzz"),
        (["bead", "update", "gc-zzzz", "--status", "closed"], "no bead gc-zzzz"),
        (["bead", "update", "../../etc", "--status", "closed"], "invalid bead ID"),
        (["bead", "create", "x", "--status", "done"], "'done' is not one of"),
        (["bead", "create", "x", "--type", "wisp"], "'wisp' is not one of"),
        (["bead", "create", "x", "-p", "7"], "not a priority"),
        (["bead", "create", "x", "--timeout", "soon"], "not a duration"),
        (["bead", "create", "x", "--set-metadata", "novalue"], "not key=value"),
        (["bead", "create", "x", "--parent", "../p"], "invalid bead ID"),
        (["bead", "create", "x", "--deps", "blocks:gc-nope"], "no bead gc-nope"),
        (["bead", "create", "x" * 501], "longer than 500"),
        (["bead", "list", "--limit", "-1"], "-1 is not in the range"),
        (["bead", "close", "gc-zzzz"], "no bead gc-zzzz"),
        (["bead", "dep", "add", "gc-a1", "gc-a1"], "cannot depend on itself"),
        (["bead", "dep", "add", "gc-a1", "gc-b2"], "no bead gc-"),
        (["bead", "frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    repo: Path, args: list[str], needle: str
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("--repo", str(repo), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gc-polecat: error: "), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert_clean(repo)


def test_not_a_repository(tmp_path: Path) -> None:
    proc = run_cli("bead", "list", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(
        "gc-polecat: error: not a beads repository"
    )


def test_repo_found_from_env_and_from_a_subdirectory(repo: Path) -> None:
    sub = repo / "beads"
    assert run_cli("bead", "create", "from subdir", cwd=sub).returncode == 0
    proc = run_cli("bead", "list", "--json", cwd=Path("/"), env={"GC_POLECAT_REPO": str(repo)})
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["title"] == "from subdir"


def test_corrupt_bead_file(cli: Cli, repo: Path) -> None:
    """A bad file committed by hand: show names it; list prints the rest, names it, exits 2."""
    good = create(cli, "good")
    bad = create(cli, "bad")
    path = next((repo / "beads").glob(f"*/*/{bad}.yaml"))
    path.write_text("id: [unclosed\n")
    git(repo, "commit", "-qam", "break a bead by hand")
    rel = path.relative_to(repo).as_posix()

    proc = run_cli("--repo", str(repo), "bead", "list", "--json")
    assert proc.returncode == 2
    assert [b["id"] for b in json.loads(proc.stdout)] == [good]
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if rel in line]
    assert "malformed YAML" in proc.stderr

    proc = run_cli("--repo", str(repo), "bead", "show", bad)
    assert proc.returncode == 2 and rel in proc.stderr and len(proc.stderr.splitlines()) == 1
    # Updating a corrupt bead is refused and writes nothing.
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("--repo", str(repo), "bead", "update", bad, "--status", "closed")
    assert proc.returncode == 2 and rel in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head


def test_wrong_types_in_a_bead_file(cli: Cli, repo: Path) -> None:
    bid = create(cli, "typed")
    path = next((repo / "beads").glob(f"*/*/{bid}.yaml"))
    path.write_text(path.read_text().replace("priority: 2", "priority: high"))
    git(repo, "commit", "-qam", "bad priority")
    proc = run_cli("--repo", str(repo), "bead", "show", bid)
    assert proc.returncode == 2 and "priority must be an integer" in proc.stderr


def test_internal_errors_exit_1_without_traceback(repo: Path) -> None:
    (repo / ".git" / "gc-polecat").mkdir(exist_ok=True)
    lock = repo / ".git" / "gc-polecat" / "write.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # the lock file cannot be opened
    proc = run_cli("--repo", str(repo), "bead", "create", "x")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("gc-polecat: error: ") and "Traceback" not in proc.stderr


def test_help_and_version() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "bead" in proc.stdout and "init" in proc.stdout
    assert run_cli("--version").stdout.startswith("gc-polecat, version ")


@pytest.mark.parametrize(
    ("make", "args", "needle"),
    [
        (None, ["--prefix", "Bad.Prefix"], "invalid prefix"),  # upper case and _ are bd's
        (None, ["--prefix", "../x"], "invalid prefix"),
        ("file", [], "is a file"),
    ],
)
def test_init_bad_input(tmp_path: Path, make: str | None, args: list[str], needle: str) -> None:
    target = tmp_path / "target"
    if make == "file":
        target.write_text("a file, not a directory\n")
    proc = run_cli("init", str(target), *args)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and needle in proc.stderr
    if make is None:
        assert not (target / ".git").exists()
    else:
        assert target.read_text() == "a file, not a directory\n"


def test_init_then_cli_in_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "city" / "beads"
    proc = run_cli("init", str(target), "--prefix", "city", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["prefix"] == "city"
    made = run_cli("bead", "create", "first", cwd=target)
    assert made.returncode == 0 and made.stdout.startswith("city-")
    assert_clean(target)


def test_list_by_labels(cli: Cli) -> None:
    both = create(cli, "both", "-l", "a,b")
    only_a = create(cli, "only a", "-l", "a")
    create(cli, "none")
    listed = lambda *f: [b["id"] for b in json.loads(cli("bead", "list", *f, "--json").output)]  # noqa: E731
    assert sorted(listed("-l", "a")) == sorted([both, only_a])
    assert listed("-l", "a", "-l", "b") == [both]
    assert listed("-l", "zzz") == []


@pytest.mark.parametrize("flag", ["0", "P0"])
def test_create_keeps_priority_zero(cli, flag: str) -> None:  # noqa: ANN001
    """Priority 0 is the most urgent, not 'unset' (it once compared equal to False)."""
    created = cli("bead", "create", "urgent", "-p", flag)
    assert created.exit_code == 0, created.output
    shown = cli("bead", "show", created.output.strip(), "--json")
    assert json.loads(shown.output)[0]["priority"] == 0
