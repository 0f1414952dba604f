"""Plugins, the way llm and datasette test theirs.

1. A real distribution (tests/plugin_dist) is built and installed with pip into a private
   directory, and the real `gc-polecat` runs in child processes with that directory on
   PYTHONPATH, so the `gc_polecat` entry point is found exactly as it is for a user.
2. Plugin objects are registered on a fresh manager and the CLI is driven in process.
3. Every built-in command comes through the same hook as a third-party plugin's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
from click.testing import CliRunner, Result

from gc_polecat.beads.ids import id_path
from gc_polecat.beads.locks import FileLock, LockTimeout
from gc_polecat.beads.store import CommitResult, Store
from gc_polecat.cli import AppContext, make_cli
from gc_polecat.hookspecs import hookimpl
from gc_polecat.plugins import DEFAULT_PLUGINS, make_plugin_manager

from .conftest import assert_clean, git, run_cli

PLUGIN_DIST = Path(__file__).resolve().parent / "plugin_dist"
DIST_NAME = "gc-polecat-hello"


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def listed_commands(help_text: str) -> set[str]:
    """The command names in the `Commands:` section of click's --help output."""
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")}


# --- 1. a real installed distribution ------------------------------------------------------


@dataclass(frozen=True)
class PipInstall:
    site: Path
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def pip_install(tmp_path_factory: pytest.TempPathFactory) -> PipInstall:
    """Build and install tests/plugin_dist once per module; each test checks the outcome
    itself (see `plugin_env`)."""
    root = tmp_path_factory.mktemp("hello-plugin")
    dist = root / "dist"  # a copy: pip builds in place and would leave build/ in the repo
    shutil.copytree(
        PLUGIN_DIST, dist, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = root / "site"
    argv = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    argv += ["--no-index", "--no-cache-dir", "--disable-pip-version-check"]
    argv += ["--target", str(site), str(dist)]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no user pip.conf (user=1 breaks it)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    return PipInstall(site, proc)


def plugin_env(install: PipInstall, tmp_path: Path) -> dict[str, str]:
    """Environment for child processes that see the installed plugin. Called in the test body,
    not a fixture, so that a failed install is reported as a test FAILURE with pip's output."""
    proc = install.proc
    output = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"pip could not install {PLUGIN_DIST}:\n{output}"
    path = [str(install.site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        "PYTHONPATH": os.pathsep.join(path),
        "HELLO_EVENTS_FILE": str(tmp_path / "hello-events.jsonl"),
    }


def events(env: dict[str, str]) -> list[dict[str, str]]:
    path = Path(env["HELLO_EVENTS_FILE"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_installed_plugin_adds_a_working_command(
    pip_install: PipInstall, repo: Path, tmp_path: Path
) -> None:
    env = plugin_env(pip_install, tmp_path)
    shown = run_cli("--help", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "hello" in listed_commands(shown.stdout)

    greeted = run_cli("hello", "furiosa", "nux", cwd=repo, env=env)
    assert (greeted.returncode, greeted.stdout) == (0, "Hello, furiosa and nux!\n"), greeted.stderr

    for title in ("one", "two"):
        assert run_cli("bead", "create", title, cwd=repo, env=env).returncode == 0
    counted = run_cli("hello", "--count", cwd=repo, env=env)
    assert (counted.returncode, counted.stdout) == (0, "Hello, world!\n2 beads\n"), counted.stderr


def test_installed_plugin_observes_each_commit(
    pip_install: PipInstall, repo: Path, tmp_path: Path
) -> None:
    env = plugin_env(pip_install, tmp_path)

    def polecat(*args: str) -> str:
        proc = run_cli(*args, cwd=repo, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert events(env) == []
    bid = polecat("bead", "create", "Observed")
    expected = [{"commit": head(repo), "id": bid, "event": "create"}]
    assert events(env) == expected

    polecat("bead", "update", bid, "--status", "in_progress")
    expected.append({"commit": head(repo), "id": bid, "event": "update"})
    assert events(env) == expected

    polecat("bead", "close", bid, "--reason", "done")
    expected.append({"commit": head(repo), "id": bid, "event": "close"})
    assert events(env) == expected
    assert len({e["commit"] for e in expected}) == 3
    assert_clean(repo)


@pytest.mark.parametrize(
    ("allowed", "loaded"),
    [
        ("", False),
        (DIST_NAME, True),
        ("some-other-plugin", False),
        (f"some-other-plugin, {DIST_NAME}", True),
    ],
)
def test_load_plugins_env_selects_distributions(
    pip_install: PipInstall, repo: Path, tmp_path: Path, allowed: str, loaded: bool
) -> None:
    env = {**plugin_env(pip_install, tmp_path), "GC_POLECAT_LOAD_PLUGINS": allowed}
    greeted = run_cli("hello", cwd=repo, env=env)
    created = run_cli("bead", "create", "x", cwd=repo, env=env)
    assert created.returncode == 0, created.stderr
    if loaded:
        assert (greeted.returncode, greeted.stdout) == (0, "Hello, world!\n"), greeted.stderr
        assert [e["event"] for e in events(env)] == ["create"]
    else:
        assert greeted.returncode == 2
        assert "no such command" in greeted.stderr.lower()
        assert events(env) == []  # its observer is not loaded either
        listed = listed_commands(run_cli("--help", env=env).stdout)
        assert "hello" not in listed and "bead" in listed  # the built-ins stay


# --- 2. plugin objects registered in process ----------------------------------------------


class Recorder:
    """A plugin object: one command that uses the store, and an observer that keeps results."""

    def __init__(self) -> None:
        self.results: list[CommitResult] = []

    @hookimpl
    def gc_polecat_register_commands(self, cli: click.Group) -> None:
        @cli.command("where")
        @click.pass_obj
        def where(app: AppContext) -> None:
            """Print the beads repository's root."""
            click.echo(app.store().root)

    @hookimpl
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
        self.results.append(result)


class Exploding:
    """An observer with a bug."""

    @hookimpl
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
        raise RuntimeError("observer exploded")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def pm(recorder: Recorder) -> pluggy.PluginManager:
    manager = make_plugin_manager(load_entrypoints=False)
    manager.register(recorder, name="recorder")
    return manager


def invoke(pm: pluggy.PluginManager, repo: Path, *args: str) -> Result:
    return CliRunner().invoke(make_cli(pm), ["--repo", str(repo), *args], catch_exceptions=False)


def test_plugin_command_is_registered(pm: pluggy.PluginManager, repo: Path) -> None:
    assert "where" in make_cli(pm).commands
    assert "where" in listed_commands(invoke(pm, repo, "--help").output)
    result = invoke(pm, repo, "where")
    assert (result.exit_code, result.output) == (0, f"{repo.resolve()}\n")


def test_observer_sees_create_update_close(
    pm: pluggy.PluginManager, recorder: Recorder, repo: Path
) -> None:
    store = Store(repo, pm=pm)

    def step(*args: str) -> CommitResult:
        before = len(recorder.results)
        result = invoke(pm, repo, *args)
        assert result.exit_code == 0, result.output
        assert len(recorder.results) == before + 1
        seen = recorder.results[-1]
        assert seen.commit == head(repo)
        assert seen.message == git(repo, "log", "-1", "--format=%B").strip()
        return seen

    created = step("bead", "create", "Watched", "-p", "1")
    [change] = created.changes
    bid = change.id
    assert (change.event, change.before) == ("create", None)
    assert change.after == store.get(bid) and change.after["title"] == "Watched"

    [change] = step("bead", "update", bid, "--status", "in_progress").changes
    assert (change.id, change.event) == (bid, "update")
    assert change.before is not None and change.before["status"] == "open"
    assert change.after == store.get(bid) and change.after["status"] == "in_progress"

    [change] = step("bead", "close", bid, "--reason", "merged").changes
    assert (change.id, change.event) == (bid, "close")
    assert change.before is not None and change.before["status"] == "in_progress"
    assert change.after is not None and change.after["close_reason"] == "merged"

    invoke(pm, repo, "bead", "update", bid, "--status", "closed")  # no change, no commit
    assert len(recorder.results) == 3


def test_observer_runs_after_commit_is_durable_and_unlocked(
    pm: pluggy.PluginManager, repo: Path
) -> None:
    seen: dict[str, Any] = {}

    class Inspector:
        @hookimpl
        def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
            seen["head"] = head(repo)
            seen["status"] = git(repo, "status", "--porcelain")
            seen["journal"] = store.journal_pending()
            try:  # a separate lock object: the store's own lock is re-entrant
                with FileLock(store.state_dir / "write.lock", timeout=0):
                    seen["lock_free"] = True
            except LockTimeout:
                seen["lock_free"] = False
            seen["commit"] = result.commit

    pm.register(Inspector(), name="inspector")
    assert invoke(pm, repo, "bead", "create", "durable").exit_code == 0
    assert seen == {
        "head": seen["commit"],
        "status": "",
        "journal": False,
        "lock_free": True,
        "commit": head(repo),
    }


def test_raising_observer_neither_fails_nor_undoes_the_write(
    pm: pluggy.PluginManager, repo: Path
) -> None:
    pm.register(Exploding(), name="exploding")
    commits = git(repo, "rev-list", "--count", "HEAD")

    result = invoke(pm, repo, "bead", "create", "Survives")

    assert result.exit_code == 0, result.output
    bid = result.stdout.strip()  # stdout stays just the ID, for `id=$(gc-polecat bead create)`
    assert "observer exploded" in result.stderr  # reported, not swallowed
    assert int(git(repo, "rev-list", "--count", "HEAD")) == int(commits) + 1
    assert "title: Survives" in git(repo, "show", f"HEAD:{id_path(bid)}")
    assert_clean(repo)


def test_raising_observer_does_not_fail_store_transaction(
    pm: pluggy.PluginManager, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pm.register(Exploding(), name="exploding")
    store = Store(repo, pm=pm)
    with store.transaction() as tx:
        bead = tx.create({"title": "From the API"})
    assert tx.result is not None and tx.result.commit == head(repo)
    assert store.get(bead["id"])["title"] == "From the API"
    assert "observer exploded" in capsys.readouterr().err


def test_raising_observer_does_not_starve_other_observers(
    pm: pluggy.PluginManager, recorder: Recorder, repo: Path
) -> None:
    pm.register(Exploding(), name="exploding")  # registered last, so pluggy calls it first
    result = invoke(pm, repo, "bead", "create", "Still observed")
    assert result.exit_code == 0, result.output
    assert [r.commit for r in recorder.results] == [head(repo)]


# --- 3. built-ins are plugins like any other ----------------------------------------------

BUILTIN_COMMANDS: dict[str, set[str]] = {
    "gc_polecat.builtin.init_command": {"init"},
    "gc_polecat.builtin.exec_commands": {"exec-beads"},
    "gc_polecat.builtin.bead_commands": {"bead"},
    "gc_polecat.builtin.jsonl_commands": {"export", "import"},
    "gc_polecat.builtin.bead_hooks": set(),  # an observer only: runs .beads/hooks/on_*
    "gc_polecat.builtin.demo": {"demo"},
    "gc_polecat.builtin.providers_plugin": set(),  # session providers: tmux, process
    "gc_polecat.builtin.lifecycle_commands": {
        "session",
        "submit",
        "verdict",
        "await",
        "wait",
        "controller",
    },
    "gc_polecat.builtin.sync_commands": {"sync"},
    "gc_polecat.builtin.pool_commands": {"pool", "sling", "next", "cleanup"},
    "gc_polecat.builtin.hooks_commands": {"hooks"},
    "gc_polecat.builtin.refinery_commands": {"refinery"},
    "gc_polecat.builtin.timeline_command": {"timeline"},
    "gc_polecat.builtin.wake_plugin": set(),  # an observer only: wakes waiting sessions
    "gc_polecat.builtin.settings_sections": set(),  # the pools and refinery settings sections
}


def builtin_manager(*without: str) -> pluggy.PluginManager:
    manager = make_plugin_manager(load_entrypoints=False)
    for name in without:
        manager.unregister(name=name)
    return manager


def test_builtin_table_matches_default_plugins() -> None:
    assert set(BUILTIN_COMMANDS) == set(DEFAULT_PLUGINS)


@pytest.mark.parametrize("name", DEFAULT_PLUGINS)
def test_builtin_commands_come_through_the_hook(name: str, repo: Path) -> None:
    everything = set(make_cli(builtin_manager()).commands)
    without = builtin_manager(name)
    assert set(make_cli(without).commands) == everything - BUILTIN_COMMANDS[name]
    for command in BUILTIN_COMMANDS[name]:
        result = invoke(without, repo, command)
        assert result.exit_code == 2 and "no such command" in result.stderr.lower()


def test_cli_without_plugins_has_no_commands() -> None:
    assert make_cli(builtin_manager(*DEFAULT_PLUGINS)).commands == {}


def test_builtins_implement_the_public_hooks() -> None:
    manager = builtin_manager()
    hooks = manager.hook
    registrars = {i.plugin_name for i in hooks.gc_polecat_register_commands.get_hookimpls()}
    observers = {i.plugin_name for i in hooks.gc_polecat_bead_committed.get_hookimpls()}
    assert registrars == {name for name, commands in BUILTIN_COMMANDS.items() if commands}
    assert observers == {"gc_polecat.builtin.bead_hooks", "gc_polecat.builtin.wake_plugin"}
