"""A newcomer's view of the command line (issue 16): help that helps, output that says what it
is, a controller that shows it runs, pools at a glance. Real processes where the terminal
behaviour matters (exit codes, stdout versus stderr, a running controller)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from gc_polecat.cli import make_cli
from gc_polecat.plugins import make_plugin_manager

from .conftest import Cli, configure, git, run_cli, submitted_ids, wait_for

GROUPS = [
    [],
    ["bead"],
    ["session"],
    ["pool"],
    ["wait"],
    ["refinery"],
    ["controller"],
    ["hooks"],
]


def _commands(group: click.Command, path: tuple[str, ...] = ()):
    """Every command of the tree with its path, groups included."""
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        if not sub.hidden:  # hooks run-git: git runs it, people do not
            yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("words", GROUPS, ids=lambda w: " ".join(w) or "gc-polecat")
def test_a_group_without_a_subcommand_prints_its_help(words: list[str], tmp_path: Path) -> None:
    """As git and click users expect: the group's help on stdout, exit 0, nothing on stderr."""
    proc = run_cli(*words, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"Usage: gc-polecat {' '.join(words)}".rstrip())
    assert "Commands:" in proc.stdout


def test_command_lists_never_cut_a_description_mid_sentence() -> None:
    """click shortens a long first sentence to the terminal's width with `...`; every group's
    list must show it whole (wrapped instead)."""
    cli = make_cli(make_plugin_manager(load_entrypoints=False))
    for path, command in _commands(cli):
        if not isinstance(command, click.Group):
            continue
        text = click.testing.CliRunner().invoke(cli, [*path, "--help"], terminal_width=80).output
        listing = " ".join(text.split("Commands:", 1)[1].split())
        for name, sub in command.commands.items():
            if sub.hidden:
                continue
            whole = " ".join((sub.help or "").split("\n\n")[0].split())
            shown = sub.get_short_help_str(limit=45)
            assert whole.startswith(shown) and not shown.endswith("..."), (path, name, shown)
            assert shown.endswith(".") or shown == whole, (path, name, shown)  # a whole sentence
            assert f"{name} {shown}" in listing, (path, name)


def test_every_option_has_help_and_choices_are_listed() -> None:
    """`--help` of every command explains every option; a fixed set of values is listed."""
    cli = make_cli(make_plugin_manager(load_entrypoints=False))
    missing = []
    for path, command in _commands(cli):
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing.append(f"{' '.join(path) or 'gc-polecat'} {param.opts[0]}")
        text = click.testing.CliRunner().invoke(cli, [*path, "--help"]).output
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.Choice):
                assert "|".join(param.type.choices) in " ".join(text.split()), (path, param.name)
    assert missing == []


def _registered(cli: Cli) -> str:
    """A session for this test process (alive as long as the test runs)."""
    out = cli("session", "register", "--pool", "p", "--pid", str(__import__("os").getpid()),
              "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["id"]


def test_submit_and_verdict_say_what_they_printed(cli: Cli, repo: Path) -> None:
    """`submit` labels the submission and the wait and prints the two commands that answer
    and collect it; `verdict` labels the verdict and where the work went."""
    sid = _registered(cli)
    work = cli("bead", "create", "w").output.strip()
    cli("bead", "update", work, "--status", "in_progress", "--assignee", sid)
    out = cli("submit", work, "--branch", "b", "--commit", "a" * 40, "--session", sid)
    assert out.exit_code == 0, out.output
    sub, wait = submitted_ids(out.output)
    lines = out.output.splitlines()
    assert lines[0] == f"submission {sub}, wait {wait} (attempt 1)"
    assert f"gc-polecat verdict {sub} --merged | --fix-needed" in lines[1]
    assert lines[2].endswith(f"gc-polecat await {wait}")
    judged = cli("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red")
    assert re.fullmatch(r"verdict \S+, work routed to session\n", judged.output), judged.output


def test_session_show_prints_plain_values_and_how_to_attach(
    repo: Path, tmp_path: Path, short_tmp: Path
) -> None:
    """No Python reprs (`{'host': ...}`, `True`); for tmux, the exact command that attaches
    to the session's private server, which `tmux ls` on the default server would not show."""
    env = {"GC_POLECAT_REPO": str(repo), "GC_POLECAT_TMUX_SOCKET": str(short_tmp / "t.sock")}
    started = run_cli("session", "start", "--pool", "p", "--work-dir", str(tmp_path), "--",
                      "sleep", "60", env=env)  # fmt: skip
    assert started.returncode == 0, started.stderr
    sid = started.stdout.strip()
    try:
        shown = run_cli("session", "show", sid, env=env)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        assert "{" not in text and "'" not in text and "True" not in text, text
        assert "alive: yes" in text and "handle.socket: " in text
        attach = [line for line in text.splitlines() if line.startswith("attach: ")]
        assert len(attach) == 1, text
        argv = shlex.split(attach[0][len("attach: ") :])
        assert argv[:2] == ["tmux", "-S"] and argv[3:5] == ["attach", "-t"]
        # the printed socket and target name a live session (has-session, as attach would)
        probe = subprocess.run(["tmux", "-S", argv[2], "has-session", "-t", argv[5]])
        assert probe.returncode == 0
    finally:
        run_cli("session", "stop", sid, env=env)
    gone = run_cli("session", "show", sid, env=env)
    assert "alive: no" in gone.stdout


def test_a_running_controller_says_it_started_and_beats(repo: Path) -> None:
    """Quiet is not dead: a start line at once, then heartbeats with passes, repairs and the
    last repair, each line `HH:MM:SS SUBJECT WHAT`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "--repo", str(repo), "controller", "run",
         "--interval", "0.1", "--heartbeat", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while len([x for x in lines if "alive," in x]) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
    finally:
        proc.terminate()
        proc.wait(10)
    stamp = r"\d\d:\d\d:\d\d"
    assert re.fullmatch(
        stamp + r" controller: started on \S+, a pass every 0\.1s \(pid \d+\)", lines[0]
    ), lines
    beats = [x for x in lines if "alive," in x]
    assert len(beats) == 2, lines
    first = re.fullmatch(stamp + r" controller: alive, (\d+) passes, 0 repairs, last: none yet",
                         beats[0])  # fmt: skip
    second = re.fullmatch(stamp + r" controller: alive, (\d+) passes, 0 repairs, last: none yet",
                          beats[1])  # fmt: skip
    assert first and second and int(second.group(1)) > int(first.group(1)) >= 1


def test_controller_repairs_use_the_documented_line(cli: Cli, repo: Path) -> None:
    """`--once` prints only repairs, each `HH:MM:SS SUBJECT WHAT`; nothing when there is none."""
    sid = _registered(cli)
    work = cli("bead", "create", "w").output.strip()
    cli("bead", "update", work, "--status", "in_progress", "--assignee", sid)
    _, wait = submitted_ids(
        cli(
            "submit", work, "--branch", "b", "--commit", "a" * 40, "--session", sid, "--ttl", "0s"
        ).output  # fmt: skip
    )
    out = cli("controller", "run", "--once").output
    assert re.fullmatch(rf"\d\d:\d\d:\d\d {wait} expired\n", out), out
    assert cli("controller", "run", "--once").output == ""


def test_pool_status_at_a_glance(repo: Path, tmp_path: Path) -> None:
    """Polecats in name order with state and age; an unconfigured pool says so instead of
    showing `0/-`; `--watch` redraws until stopped."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(origin), str(seed))
    (seed / "README").write_text("x\n")
    git(seed, "add", "README")
    git(seed, "commit", "-qm", "init")
    git(seed, "push", "-q", "origin", "HEAD:main")
    configure(
        repo,
        f"pools:\n  cats:\n    max_active: 3\n    max_waiting: 2\n    repo: {seed}\n"
        f"    names: [zed, amy, kit]\n",
    )
    env = {"GC_POLECAT_REPO": str(repo)}
    made = run_cli("pool", "init", "cats", "--size", "3", env=env)
    assert made.returncode == 0, made.stderr
    assert [line.split()[1] for line in made.stdout.splitlines()] == ["amy", "kit", "zed"]
    text = run_cli("pool", "status", "cats", env=env).stdout
    lines = text.splitlines()
    assert lines[0] == (
        "cats: 3 polecats, sessions alive 0 of max_active 3, waiting 0/2 (max_waiting), cleanups 0"
    )
    assert lines[1].split() == ["NAME", "ID", "STATE", "FOR", "SESSION", "WORK"]
    rows = [line.split() for line in lines[2:5]]
    assert [r[0] for r in rows] == ["amy", "kit", "zed"] and {r[2] for r in rows} == {"idle"}
    assert all(re.fullmatch(r"\d+m\d\ds", r[3]) for r in rows), rows
    assert lines[5] == "  queue: empty (0 ready, 0 blocked)"
    js = json.loads(run_cli("pool", "status", "cats", "--json", env=env).stdout)[0]
    assert [p["name"] for p in js["polecats"].values()] == ["amy", "kit", "zed"]

    # a pool only a hand-started session names: no caps to show, and it says why
    hand = run_cli("session", "start", "--pool", "dogs", "--provider", "process",
                   "--work-dir", str(tmp_path), "--", "sleep", "60", env=env)  # fmt: skip
    assert hand.returncode == 0, hand.stderr
    try:
        dogs = run_cli("pool", "status", "dogs", env=env).stdout
        assert "/-" not in dogs and "waiting 0," in dogs
        assert "(not configured: no pools.dogs settings)" in dogs.splitlines()[0]
    finally:
        run_cli("session", "stop", hand.stdout.strip(), env=env)

    watch = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "pool", "status", "cats", "--watch",
         "--interval", "0.2"],
        stdout=subprocess.PIPE, text=True, env={**__import__("os").environ, **env},
    )  # fmt: skip
    try:
        seen = []

        def two_frames() -> bool:
            seen.append(watch.stdout.readline())
            return sum(line.startswith("cats: ") for line in seen) >= 2

        wait_for(two_frames, "two redraws of pool status --watch", timeout=30)
    finally:
        watch.terminate()
        watch.wait(10)


def test_the_controller_never_drains_a_session_started_by_hand(repo: Path, tmp_path: Path) -> None:
    """A person's `session start --pool polecats` survives the controller: while the pool has
    no settings (nothing reconciles it), and after `pools.polecats` is configured with no
    `idle_timeout` and no `min_active` (the pool drains only sessions it launched)."""
    env = {"GC_POLECAT_REPO": str(repo)}
    started = run_cli("session", "start", "--pool", "polecats", "--provider", "process",
                      "--work-dir", str(tmp_path), "--", "sleep", "120", env=env)  # fmt: skip
    assert started.returncode == 0, started.stderr
    sid = started.stdout.strip()
    try:
        for settings in (None, "pools:\n  polecats:\n    max_active: 1\n"):
            if settings:
                configure(repo, settings)
            ran = run_cli("controller", "run", "--once", env=env)
            assert ran.returncode == 0 and ran.stdout == "", ran.stdout + ran.stderr
            shown = json.loads(run_cli("session", "show", sid, "--json", env=env).stdout)
            assert shown["state"] == "active" and shown["alive"] is True, settings
    finally:
        run_cli("session", "stop", sid, env=env)


def test_bead_list_keeps_columns_and_hides_gates_and_infra_as_bd(cli: Cli) -> None:
    """Titles line up whatever the type's length; gates and agent beads (the pool's waits and
    polecats) stay out of a work listing unless asked for, as bd's `list` (cmd/bd/list.go)."""
    ids = {}
    for title, kind in (("Fix it", "task"), ("Merge it", "merge-request"), ("A wait", "gate"),
                        ("A polecat", "agent"), ("Ship it", "epic")):  # fmt: skip
        ids[title] = cli("bead", "create", title, "-t", kind, "--silent").output.strip()
    lines = cli("bead", "list").output.splitlines()
    assert sorted(line.rsplit("  ", 1)[1] for line in lines) == ["Fix it", "Merge it", "Ship it"]
    assert len({line.index(line.rsplit("  ", 1)[1]) for line in lines}) == 1  # one title column
    assert "A wait" in cli("bead", "list", "--include-gates").output
    assert "A wait" in cli("bead", "list", "-t", "gate").output
    assert "A polecat" in cli("bead", "list", "--include-infra").output
    only = cli("bead", "list", "-t", "agent").output.splitlines()
    assert len(only) == 1 and only[0].startswith(ids["A polecat"])
