"""Start-up (issue 17): the cached entry-point list and the click-free `bead show`.

What the speed relies on must never change what a command does:

1. Plugins still load. The `gc_polecat` entry points are cached, keyed on sys.path and the mtimes
   of its directories; a distribution installed (or removed) after the cache was written is seen
   at the next command. Plugins here are real distributions as importlib.metadata reads them: a
   `*.dist-info` directory (METADATA, entry_points.txt) and a module, on PYTHONPATH.
2. `bead show` answered without click prints byte for byte what the click command prints, and
   steps aside for everything it does not know: an error, another option, a plugin (which may
   override `bead show`), GC_POLECAT_LOAD_PLUGINS selecting one.

No timing is asserted here; the figures are `benchmarks/run_all.py --only show,startup`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gc_polecat import plugins
from gc_polecat.beads.store import Store
from gc_polecat.plugins import make_plugin_manager

from .conftest import Cli, git, run_cli, submitted_ids

OLD = time.time() - 3600  # an mtime long settled (the cache is only written for those)

HELLO_MODULE = '''
import click
from gc_polecat.hookspecs import hookimpl


@click.command("howdy")
def howdy() -> None:
    """Say howdy."""
    click.echo("howdy from a late plugin")


@hookimpl
def gc_polecat_register_commands(cli):
    cli.add_command(howdy)
'''

OVERRIDE_MODULE = '''
import click
from gc_polecat.hookspecs import hookimpl


@click.command("show")
@click.argument("ids", nargs=-1)
@click.option("--json", "json_flag", is_flag=True)
def show(ids, json_flag) -> None:
    """The plugin's own show."""
    click.echo("plugin show: " + " ".join(ids))


@hookimpl(trylast=True)  # after the built-ins have added the `bead` group
def gc_polecat_register_commands(cli):
    cli.commands["bead"].add_command(show, "show")
'''


def install(site: Path, dist: str, module: str, source: str) -> None:
    """Install a distribution the way an installer leaves it: the module and its dist-info."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gc_polecat]\n{module} = {module}\n")


def settle(*dirs: Path) -> None:
    for d in dirs:
        os.utime(d, (OLD, OLD))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    return path


def env_for(site: Path, tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "gc-polecat").glob("entry-points-*.json"))


def cached_rows(tmp_path: Path) -> list[list[list[Any]]]:
    """The rows of each entry of the one cache file."""
    (cache,) = cache_files(tmp_path)
    return [entry["rows"] for entry in json.loads(cache.read_text())["entries"]]


def commands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")}


# --- 1. the entry-point cache --------------------------------------------------------------


def test_plugin_installed_after_the_cache_was_written_is_loaded(
    repo: Path, site: Path, tmp_path: Path
) -> None:
    env = env_for(site, tmp_path)
    settle(site, repo)
    before = run_cli("--help", cwd=repo, env=env)
    assert before.returncode == 0, before.stderr
    assert "howdy" not in commands(before.stdout)
    assert len(cache_files(tmp_path)) == 1  # written: every directory on sys.path had settled
    assert cached_rows(tmp_path) == [[]]

    install(site, "gc-polecat-howdy", "gc_polecat_howdy", HELLO_MODULE)
    after = run_cli("howdy", cwd=repo, env=env)
    assert (after.returncode, after.stdout) == (0, "howdy from a late plugin\n"), after.stderr

    settle(site)  # settled again with the plugin in place: the rewritten cache names it
    assert run_cli("howdy", cwd=repo, env=env).returncode == 0
    howdy = ["gc-polecat-howdy", "gc_polecat_howdy", "gc_polecat_howdy", True]
    assert cached_rows(tmp_path) == [[howdy]]
    cached = run_cli("howdy", cwd=repo, env=env)  # from the cache now
    assert (cached.returncode, cached.stdout) == (0, "howdy from a late plugin\n"), cached.stderr


def test_plugin_removed_after_the_cache_was_written_is_gone(
    repo: Path, site: Path, tmp_path: Path
) -> None:
    env = env_for(site, tmp_path)
    install(site, "gc-polecat-howdy", "gc_polecat_howdy", HELLO_MODULE)
    settle(site, repo)
    assert run_cli("howdy", cwd=repo, env=env).returncode == 0
    assert len(cache_files(tmp_path)) == 1

    for path in site.iterdir():  # what `pip uninstall` does: the module and its dist-info go
        if path.is_dir():
            for inner in path.iterdir():
                inner.unlink()
            path.rmdir()
        else:
            path.unlink()
    gone = run_cli("howdy", cwd=repo, env=env)
    assert gone.returncode == 2 and "no such command" in gone.stderr.lower(), gone.stderr


def test_a_racy_directory_is_not_cached(repo: Path, site: Path, tmp_path: Path) -> None:
    """A directory changed within RACY_SECONDS may change again in the same clock tick with
    the same mtime, so no cache is written while one is that fresh (git's racy-index rule)."""
    env = env_for(site, tmp_path)
    settle(repo)
    (site / "touched").write_text("")  # site's mtime: now
    assert run_cli("--help", cwd=repo, env=env).returncode == 0
    assert cache_files(tmp_path) == []


def test_commands_in_many_directories_share_one_cache_that_still_sees_each(
    repo: Path, site: Path, tmp_path: Path
) -> None:
    """`python -m` puts the working directory first on sys.path: it is not part of the cache's
    name (one file, not one per directory) but is part of its stamp, so a distribution that
    appears in the working directory is still found."""
    env = env_for(site, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    settle(site, repo, other)
    for cwd in (repo, other, repo):
        assert run_cli("--help", cwd=cwd, env=env).returncode == 0
    assert cached_rows(tmp_path) == [[], []]  # one entry per directory, in one file
    before = cache_files(tmp_path)[0].stat().st_mtime_ns
    for cwd in (other, repo, other):
        assert run_cli("--help", cwd=cwd, env=env).returncode == 0
    assert cache_files(tmp_path)[0].stat().st_mtime_ns == before  # taking turns: no rewrite

    install(other, "gc-polecat-howdy", "gc_polecat_howdy", HELLO_MODULE)
    here = run_cli("howdy", cwd=other, env=env)
    assert (here.returncode, here.stdout) == (0, "howdy from a late plugin\n"), here.stderr
    elsewhere = run_cli("howdy", cwd=repo, env=env)
    assert elsewhere.returncode == 2 and "no such command" in elsewhere.stderr.lower()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"entries": 1}',
        b'{"entries": [1, {"stamp": 1, "rows": []}]}',
        b'{"entries": [{"rows": [["a", "b", "c"]]}]}',
    ],
)
def test_a_damaged_cache_is_rescanned(
    content: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = plugins.entry_point_cache_file()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    assert plugins.entry_point_rows() == plugins.scan_entry_points()


def test_a_cache_from_another_sys_path_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The stamp names every sys.path entry: rows written under another path are not trusted."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = plugins.entry_point_cache_file()
    cache.parent.mkdir(parents=True)
    stale = [["elsewhere", 1, 2, 3]]
    ghost = {"stamp": stale, "rows": [["x", "ghost", "no_such_module", True]]}
    cache.write_text(json.dumps({"entries": [ghost]}))
    assert ("ghost", "no_such_module") not in plugins.selected_entry_points()


def test_an_unwritable_cache_directory_only_costs_a_scan(
    repo: Path, site: Path, tmp_path: Path
) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory would go")
    install(site, "gc-polecat-howdy", "gc_polecat_howdy", HELLO_MODULE)
    settle(site, repo)
    shown = run_cli("howdy", cwd=repo, env=env_for(site, tmp_path))
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "howdy from a late plugin\n", "")


# --- 2. the click-free `bead show` ---------------------------------------------------------


def test_a_plugin_overriding_bead_show_wins(repo: Path, site: Path, tmp_path: Path) -> None:
    env = env_for(site, tmp_path)
    created = run_cli("bead", "create", "Real", cwd=repo, env=env)
    bead_id = created.stdout.strip()
    plain = run_cli("bead", "show", bead_id, cwd=repo, env=env)
    assert plain.stdout.startswith(f"{bead_id}  [task] P2 open  Real\n"), plain.stderr

    install(site, "gc-polecat-override", "gc_polecat_override", OVERRIDE_MODULE)
    for argv in (("bead", "show", bead_id), ("--json", "bead", "show", bead_id)):
        shown = run_cli(*argv, cwd=repo, env=env)
        assert (shown.returncode, shown.stdout) == (0, f"plugin show: {bead_id}\n"), shown.stderr

    # ruled out by GC_POLECAT_LOAD_PLUGINS: the built-in show again (the fast one)
    ruled_out = run_cli(
        "bead", "show", bead_id, cwd=repo, env={**env, "GC_POLECAT_LOAD_PLUGINS": ""}
    )
    assert ruled_out.stdout == plain.stdout
    chosen = {**env, "GC_POLECAT_LOAD_PLUGINS": "gc-polecat-override"}
    assert run_cli("bead", "show", bead_id, cwd=repo, env=chosen).stdout.startswith("plugin show")


def rich_beads(cli: Cli) -> list[str]:
    """Beads with every kind of field show prints: multi-line text, terminal controls, labels,
    metadata, a dependency and a two-line comment."""
    first = cli("bead", "create", "Plain one").stdout.strip()
    second = cli(
        "bead", "create", "Ti\x1b]0;pwned\x07tle \u0085 é", "-d", "line one\nline \x1b[2J two",
        "-l", "ci,urgent", "--set-metadata", "k=v\x9b", "-t", "bug", "-p", "1",
    ).stdout.strip()  # fmt: skip
    assert cli("bead", "dep", "add", second, first).exit_code == 0
    assert cli("bead", "comments", "add", second, "a comment\nsecond line").exit_code == 0
    return [first, second]


@pytest.mark.parametrize(
    "form",
    [(), ("--json",), ("GLOBAL",)],
    ids=["text", "json", "global-json"],
)
def test_fast_show_prints_what_the_click_command_prints(
    cli: Cli, repo: Path, form: tuple[str, ...]
) -> None:
    ids = rich_beads(cli)
    local = [f for f in form if f != "GLOBAL"]
    front = ["--json"] if "GLOBAL" in form else []
    for wanted in ([ids[1]], ids, [ids[1], ids[0], ids[1]]):
        expected = cli(*front, "bead", "show", *wanted, *local)
        fast = run_cli("--repo", str(repo), *front, "bead", "show", *wanted, *local)
        assert (fast.returncode, fast.stderr) == (expected.exit_code, "")
        assert fast.stdout == expected.stdout
    assert "\x1b" not in fast.stdout and "\x9b" not in fast.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("bead", "show", "gc-zzzz"),  # no such bead
        ("bead", "show", "not an id"),  # malformed ID
        ("bead", "show"),  # no ID
        ("bead", "show", "ID", "--short"),  # an option only click knows
        ("bead", "show", "ID", "--bogus"),  # an option nobody knows
        ("bead", "show", "ID", "gc-zzzz"),  # one found, one missing: nothing printed
        ("--repo",),  # a global option without its value
    ],
)
def test_fast_show_steps_aside_with_the_click_commands_answer(
    cli: Cli, repo: Path, argv: tuple[str, ...]
) -> None:
    bead_id = cli("bead", "create", "Exists").stdout.strip()
    argv = tuple(bead_id if a == "ID" else a for a in argv)
    expected = cli(*argv)
    got = run_cli("--repo", str(repo), *argv)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.exit_code,
        expected.stdout,
        expected.stderr,
    )


def test_fast_show_outside_a_repository_fails_in_one_line(tmp_path: Path) -> None:
    elsewhere = tmp_path / "nothing-here"
    elsewhere.mkdir()
    got = run_cli("bead", "show", "gc-abc", cwd=elsewhere)
    assert got.returncode == 2 and got.stdout == ""
    assert len(got.stderr.splitlines()) == 1 and "not a beads repository" in got.stderr


def test_fast_show_of_an_unreadable_bead_file_is_the_click_commands_error(
    cli: Cli, repo: Path
) -> None:
    from .conftest import git

    bead_id = cli("bead", "create", "Soon broken").stdout.strip()
    from gc_polecat.beads.ids import id_path

    (repo / id_path(bead_id)).write_text("title: [unterminated\n")
    git(repo, "commit", "-qam", "break a bead with plain git")
    expected = cli("bead", "show", bead_id)
    got = run_cli("--repo", str(repo), "bead", "show", bead_id)
    assert got.returncode == expected.exit_code == 2
    assert (got.stdout, got.stderr) == (expected.stdout, expected.stderr)
    assert len(got.stderr.splitlines()) == 1


def test_fast_show_imports_neither_click_nor_pluggy_nor_the_metadata_scan(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """What keeps `bead show` fast, checked by what is imported (never by a stopwatch): with
    the entry-point cache warm, no click, no pluggy, no built-in command module and no
    importlib.metadata scan."""
    bead_id = cli("bead", "create", "Shown").stdout.strip()
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['gc-polecat', '--repo', {str(repo)!r}, 'bead', 'show', {bead_id!r}]\n"
        "try:\n    runpy.run_module('gc_polecat', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('click', 'pluggy', 'importlib.metadata', 'gc_polecat.cli',\n"
        "         'gc_polecat.builtin')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    here = tmp_path / "here"
    here.mkdir()
    settle(here)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=here, env=env
        )
        for _ in range(2)  # the first may scan (and write the cache), the second reads it
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert runs[-1].stdout.startswith(f"{bead_id}  [task]"), runs[-1].stdout
    assert runs[-1].stdout.endswith("\n[]\n"), runs[-1].stdout


def test_a_cold_exec_read_of_a_configured_repository_loads_no_click(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """gc spawns `exec-beads` per store call: reading the settings (here with a pool and a
    refinery section, which their plugin parses) must not load the command line
    (plugins.settings_plugin_manager), and a bad pool value is still refused."""
    settings = repo / ".beads" / "config.yaml"
    settings.write_text(
        settings.read_text() + "pools:\n  p:\n    max_active: 2\nrefinery:\n  push_retries: 2\n"
    )
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['gc-polecat', 'exec-beads', 'ready']\n"
        "try:\n    runpy.run_module('gc_polecat', run_name='__main__')\n"
        "except SystemExit as exc:\n    print('exit', exc.code)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('click', 'gc_polecat.cli',\n"
        "      'gc_polecat.builtin.pool_commands', 'gc_polecat.pool.config'))))\n"
    )
    env = {**os.environ, "GC_POLECAT_REPO": str(repo), "XDG_CACHE_HOME": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["exit 0", "['gc_polecat.pool.config']"], done.stdout
    settings.write_text(settings.read_text().replace("max_active: 2", "max_active: -1"))
    bad = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert "max_active" in bad.stderr and "exit 1" in bad.stdout, (bad.stdout, bad.stderr)


def test_a_write_loads_no_lock_package_no_dulwich_repo_and_no_idle_observer(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """What a cold `bead create` no longer pays for, checked by what it imports: filelock
    (our own flock lock replaced it), dulwich's whole Repo (a plain repository opens only its
    object store and config), the wake policy (no gate bead changed), the on_* runner (no
    .beads/hooks) and bd's verbs (the options' choices live in beads/bead.py). The write itself
    still happens, and a repository dulwich would refuse (an extension it does not know) is
    still refused."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['gc-polecat', 'bead', 'create', 'Made cold']\n"
        "try:\n    runpy.run_module('gc_polecat', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('filelock', 'dulwich.repo', 'dulwich.worktree', 'secrets',\n"
        "         'gc_polecat.lifecycle.wakeup', 'gc_polecat.interop')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "GC_POLECAT_REPO": str(repo), "XDG_CACHE_HOME": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    made, imported = done.stdout.splitlines()[-2:]
    assert imported == "[]", done.stdout
    assert cli("bead", "show", made, "--json").stdout.count('"Made cold"') == 1

    with open(repo / ".git" / "config", "a") as config:
        config.write("[extensions]\n\tnoSuchExtension = true\n")
    refused = run_cli("--repo", str(repo), "bead", "create", "never", env=env)
    assert refused.returncode == 1 and "noSuchExtension".lower() in refused.stderr.lower()
    assert len(refused.stderr.splitlines()) == 1, refused.stderr


# --- 3. the click-free settled `await` and `bead list` ---------------------------------------

FULL = {"GC_POLECAT_FAST": "0"}  # the documented switch: every command through the full CLI

PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['gc-polecat', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('gc_polecat', run_name='__main__')\n"
    "except SystemExit as exc:\n    code = exc.code\n"
    "sys.stdout.write('\\nexit %s click %s\\n' % (code, 'click' in sys.modules))\n"
)


def answered(repo: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, bool]:
    """(exit status, stdout, whether click was loaded) of one command run through __main__ in
    a fresh interpreter: click loaded means the full command line answered."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--repo", str(repo), *argv],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60,
    )  # fmt: skip
    out, _, tail = done.stdout.rpartition("\nexit ")
    code, _, click_loaded = tail.strip().partition(" click ")
    return int(code), out, click_loaded == "True"


def both(repo: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    """(fast, full): (exit status, stdout, stderr) of the same command line, the fast path
    allowed and the full command line forced, each a real process."""
    runs = [
        run_cli("--repo", str(repo), *argv, env={**(env or {}), **extra}) for extra in ({}, FULL)
    ]
    return tuple((r.returncode, r.stdout, r.stderr) for r in runs)  # type: ignore[return-value]


@pytest.fixture
def waiting(cli: Cli, sleeper: int) -> dict[str, str]:
    """A live registered session with two submitted work items: their submissions and waits."""
    out = cli("session", "register", "--pool", "p", "--pid", str(sleeper), "--json")
    sid = json.loads(out.output)["id"]
    ids = {"session": sid}
    for n in ("1", "2"):
        work = cli("bead", "create", f"work {n}").output.strip()
        cli("bead", "update", work, "--status", "in_progress", "--assignee", sid)
        ids[f"sub{n}"], ids[f"wait{n}"] = submitted_ids(
            cli("submit", work, "--branch", f"b{n}", "--commit", n * 40, "--session", sid).output
        )
        ids[f"work{n}"] = work
    return ids


def session_env(ids: dict[str, str], epoch: str = "1") -> dict[str, str]:
    return {"GC_SESSION_ID": ids["session"], "GC_CONTINUATION_EPOCH": epoch}


def test_fast_await_of_a_settled_wait_is_the_full_commands_answer(
    cli: Cli, repo: Path, waiting: dict[str, str]
) -> None:
    """Delivered (fix needed, merged), canceled, expired, a stale epoch, with and without
    --json and --timeout: the same stdout, stderr and exit status from both paths, and the
    fast path answered without click (and wrote nothing)."""
    from gc_polecat.lifecycle import session as sessions
    from gc_polecat.lifecycle import wait as waits

    env = session_env(waiting)
    wait1, wait2 = waiting["wait1"], waiting["wait2"]
    cli("verdict", waiting["sub1"], "--fix-needed", "--type", "tests", "--reason", "a\x1b[2Jb")
    first = run_cli("--repo", str(repo), "await", wait1, env=env)  # ready: delivers (a write)
    assert first.returncode == 10 and waits.state(Store(repo).get(wait1)) == "closed"
    cli("wait", "cancel", wait2, "--reason", "by hand")
    store = Store(repo, pm=make_plugin_manager(load_entrypoints=False))
    with store.transaction("an expired wait") as tx:
        session = sessions.get(tx, waiting["session"])
        expired = waits.create(tx, session, waiting["sub2"], waiting["work2"], 60.0)
        waits.expire(tx, expired)
    cases = [
        ((wait1,), env, 10), ((wait1, "--json"), env, 10), (("--json", "await", wait1), env, 10),
        ((wait1, "--timeout", "5"), env, 10), ((wait1,), {}, 10),
        ((wait1,), session_env(waiting, "2"), 20),  # a later incarnation: continuation-stale
        ((wait1, "--json"), session_env(waiting, "2"), 20),
        ((wait2,), env, 20), ((wait2, "--json"), env, 20),  # canceled
        ((expired["id"], "--json"), env, 20),  # expired
    ]  # fmt: skip
    head = git(repo, "rev-parse", "HEAD")
    for argv, case_env, code in cases:
        argv = argv if argv[0] == "--json" else ("await", *argv)
        fast, full = both(repo, *argv, env=case_env)
        assert fast == full, argv
        assert fast[0] == code and fast[2] == "", (argv, fast)
        assert answered(repo, *argv, env=case_env)[::2] == (code, False), argv
    assert "\x1b" not in fast[1]
    assert git(repo, "rev-parse", "HEAD") == head  # no answer above wrote


def test_fast_await_steps_aside_for_what_it_must_not_answer(
    cli: Cli, repo: Path, waiting: dict[str, str]
) -> None:
    """Not found, a malformed ID, a bead that is no wait, a malformed epoch, an option only
    click knows, no WAIT: the full command line's answer, byte for byte (click was loaded)."""
    env = session_env(waiting)
    task = cli("bead", "create", "not a wait").output.strip()
    cli("verdict", waiting["sub1"], "--merged")
    cases = [
        (("await", "gc-zzzz"), env), (("await", "not an id"), env), (("await", task), env),
        (("await", waiting["wait1"]), {**env, "GC_CONTINUATION_EPOCH": "x1"}),
        (("await", "--work", waiting["work1"]), env), (("await",), {}),
        (("await", waiting["wait1"], "--timeout", "nan"), env),
        (("await", waiting["wait1"], waiting["wait2"]), env),
    ]  # fmt: skip
    for argv, case_env in cases:
        fast, full = both(repo, *argv, env=case_env)
        assert fast == full, argv
        if argv[-1] != waiting["work1"]:
            assert fast[0] == 2 and len(fast[2].splitlines()) == 1, (argv, fast)


def test_fast_await_of_a_malformed_wait_file_is_the_full_commands_error(
    cli: Cli, repo: Path, waiting: dict[str, str]
) -> None:
    from gc_polecat.beads.ids import id_path

    cli("verdict", waiting["sub1"], "--merged")
    (repo / id_path(waiting["wait1"])).write_text("title: [unterminated\n")
    git(repo, "commit", "-qam", "break the wait with plain git")
    fast, full = both(repo, "await", waiting["wait1"], env=session_env(waiting))
    assert fast == full and fast[0] == 2 and len(fast[2].splitlines()) == 1


def test_a_ready_or_pending_wait_still_goes_through_the_full_command_line(
    cli: Cli, repo: Path, waiting: dict[str, str]
) -> None:
    """A pending wait is handed to the full command line (here: --timeout 0.2, exit 30, the
    same answer both ways); a ready one is delivered by it (the delivery is a commit that names
    the awaiting process), never answered as if it had been."""
    from gc_polecat.lifecycle import wait as waits

    env = session_env(waiting)
    wait1 = waiting["wait1"]
    fast, full = both(repo, "await", wait1, "--timeout", "0.2", "--json", env=env)
    assert fast == full and fast[0] == 30
    assert answered(repo, "await", wait1, "--timeout", "0.2", env=env)[::2] == (30, True)
    cli("verdict", waiting["sub1"], "--merged")
    assert waits.state(Store(repo).get(wait1)) == "ready"
    code, out, click_loaded = answered(repo, "await", wait1, env=env)
    assert (code, out, click_loaded) == (0, f"{wait1}: merged\n", True)
    delivered = Store(repo).get(wait1)
    assert waits.state(delivered) == "closed"
    assert delivered["metadata"]["delivered_to"].startswith(f"{waiting['session']}:")


def test_a_plugin_overriding_await_wins(
    cli: Cli, repo: Path, waiting: dict[str, str], site: Path, tmp_path: Path
) -> None:
    cli("verdict", waiting["sub1"], "--merged")
    env = {**env_for(site, tmp_path), **session_env(waiting)}
    wait1 = waiting["wait1"]
    assert run_cli("--repo", str(repo), "await", wait1, env=env).returncode == 0  # delivers
    install(site, "gc-polecat-await", "gc_polecat_await", AWAIT_MODULE)
    got = run_cli("--repo", str(repo), "await", wait1, env=env)
    assert (got.returncode, got.stdout) == (0, f"plugin await: {wait1}\n"), got.stderr
    ruled_out = run_cli("--repo", str(repo), "await", wait1,
                        env={**env, "GC_POLECAT_LOAD_PLUGINS": ""})  # fmt: skip
    assert (ruled_out.returncode, ruled_out.stdout) == (0, f"{wait1}: merged\n")


def override_module(word: str, register: str) -> str:
    """A plugin whose own `word` command replaces the built-in one (registered by `register`)."""
    return (
        "import click\nfrom gc_polecat.hookspecs import hookimpl\n\n\n"
        f"@click.command({word!r})\n@click.argument('ids', nargs=-1)\n"
        "@click.option('--json', 'json_flag', is_flag=True)\n"
        f"def own(ids, json_flag):\n    click.echo('plugin {word}: ' + ' '.join(ids))\n\n\n"
        f"@hookimpl(trylast=True)\ndef gc_polecat_register_commands(cli):\n    {register}\n"
    )


AWAIT_MODULE = override_module("await", "cli.add_command(own, 'await')")
LIST_MODULE = override_module("list", "cli.commands['bead'].add_command(own, 'list')")


def listed_beads(cli: Cli) -> None:
    """Beads of every kind `bead list` treats apart: hidden types, closed, labels, assignees,
    an alias type, terminal controls in a title, a long assignee widening its column."""
    made = [
        ("a task",), ("a gate", "-t", "gate"), ("a rig", "-t", "rig"),
        ("Ti\x1b]0;x\x07tle", "-l", "ci,urgent", "-a", "nux", "-t", "feat"),
        ("labelled", "-l", "ci", "-a", "someone-with-a-long-name"),
        ("p0 bug", "-t", "bug", "-p", "0"),
    ]  # fmt: skip
    for args in made:
        cli("bead", "create", *args)
    closed = cli("bead", "create", "done").output.strip()
    cli("bead", "close", closed)


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("--json",),
        ("--all",),
        ("-s", "closed"),
        ("--status", "open,closed"),
        ("--type", "gate", "--status", "open", "--json"),
        ("-t", "feat"),
        ("--type=bug",),
        ("-l", "ci"),
        ("--label", "ci", "-l", "urgent"),
        ("-a", "nux"),
        ("--assignee", "nobody"),
        ("--include-gates",),
        ("--include-infra", "--json"),
        ("-n", "2"),
        ("--limit", "0"),
        ("--state", "open", "--limit=1", "--json"),
    ],
    ids=lambda a: " ".join(a) or "plain",
)
def test_fast_bead_list_prints_what_the_click_command_prints(
    cli: Cli, repo: Path, argv: tuple[str, ...]
) -> None:
    listed_beads(cli)
    fast, full = both(repo, "bead", "list", *argv)
    assert fast == full
    assert fast[0] == 0 and fast[2] == "" and "\x1b" not in fast[1]
    code, out, click_loaded = answered(repo, "bead", "list", *argv)
    assert (code, out, click_loaded) == (0, fast[1], False)


@pytest.mark.parametrize(
    "argv",
    [
        ("--sort", "title"),
        ("--ready",),
        ("-n", "-1"),
        ("-n", "x"),
        ("--bogus",),
        ("extra",),
        ("-sopen",),
        ("--title", "a"),
        ("--long",),
    ],
    ids=lambda a: " ".join(a),
)
def test_fast_bead_list_steps_aside_for_what_it_does_not_know(
    cli: Cli, repo: Path, argv: tuple[str, ...]
) -> None:
    listed_beads(cli)
    fast, full = both(repo, "bead", "list", *argv)
    assert fast == full
    assert answered(repo, "bead", "list", *argv)[2] is True


def test_fast_bead_list_with_an_unreadable_bead_file_is_the_click_commands_answer(
    cli: Cli, repo: Path
) -> None:
    from gc_polecat.beads.ids import id_path

    listed_beads(cli)
    broken = cli("bead", "create", "soon broken").output.strip()
    (repo / id_path(broken)).write_text("title: [unterminated\n")
    git(repo, "commit", "-qam", "break a bead with plain git")
    fast, full = both(repo, "bead", "list", "--json")
    assert fast == full and fast[0] == 2 and "skipped unreadable bead file" in fast[2]


def test_a_plugin_overriding_bead_list_wins(
    cli: Cli, repo: Path, site: Path, tmp_path: Path
) -> None:
    listed_beads(cli)
    env = env_for(site, tmp_path)
    install(site, "gc-polecat-list", "gc_polecat_list", LIST_MODULE)
    got = run_cli("--repo", str(repo), "bead", "list", "--json", env=env)
    assert (got.returncode, got.stdout) == (0, "plugin list: \n"), got.stderr
