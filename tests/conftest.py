"""Shared fixtures: real git repositories in temporary directories, a fresh CLI per test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gc_polecat.beads.store import Store
from gc_polecat.cli import make_cli
from gc_polecat.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parent.parent


PROPERTY_SCALE = float(os.environ.get("GC_POLECAT_PROPERTY_SCALE", "1"))


def examples(count: int) -> int:
    """A property test's hypothesis examples in the suite's run; `GC_POLECAT_PROPERTY_SCALE=5`
    runs the CPU-bound ones longer (docs/testing.md)."""
    return max(1, round(count * PROPERTY_SCALE))


# The longest tests (seconds under `-n 4`, docs/testing.md "Time"), longest first. Each worker
# of pytest-xdist's work-stealing schedule starts on its own contiguous share of the
# collection; putting one long test at the head of each share starts them all at once, instead
# of leaving one to finish alone after the rest of the suite.
LONGEST = (
    "test_chaos.py::test_chaos_sigkill_at_random_points_converges_without_leaks",
    "test_bead_yaml.py::test_every_bead_loads_back_unchanged",
    "test_catalog_rebuild.py::test_an_edited_file_is_read_as_yaml_reads_it_or_declined",
    "test_model.py::test_random_pool_operations_keep_every_invariant",
    "test_security.py::test_an_id_is_either_refused_or_a_file_under_beads",
    "test_crash.py::test_random_kills",
    "test_concurrency.py::test_git_gc_prune_now_under_the_write_lock_loses_nothing",
    "test_pool_lifecycle.py::test_twenty_cycles_on_a_pool_of_three_leave_nothing_behind",
    "test_security.py::test_nothing_gc_polecat_creates_is_world_writable",
    "test_lifecycle.py::test_controller_killed_mid_flight_converges",
    "test_concurrency.py::test_hand_commits_under_the_write_lock_never_fail_or_lose_anything",
    "test_fuzz.py::test_fuzz_command_arguments",
)


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile the package once, as a regular (non-editable) install does, so each of the
    suite's thousands of `python -m gc_polecat` processes reads cached bytecode instead of
    compiling every module it imports. Without this, where PYTHONDONTWRITEBYTECODE is set (this
    sandbox and its CI set it) a fresh clone never gets a cache: every CLI process compiled
    40-140 modules (the suite's CPU: about 605 s before, 484-527 s after; docs/testing.md,
    "Time"). The cache goes
    where Python puts it, `__pycache__/` beside each source (git-ignored); a stale entry is
    recompiled, and Python checks each against its source's mtime on import anyway."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller compiled already
        return
    import compileall  # lazy: only the suite's controller needs it

    for tree in ("gc_polecat", "tests"):
        compileall.compile_dir(ROOT / tree, quiet=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n N`, one long test at the head of each worker's share (see LONGEST)."""
    workers = getattr(config.option, "numprocesses", None)
    if not isinstance(workers, int) or workers < 2 or len(items) < 2 * workers:
        return
    rank = {name: i for i, name in enumerate(LONGEST)}
    long = sorted(
        (item for item in items if item.nodeid.split("/")[-1] in rank),
        key=lambda item: rank[item.nodeid.split("/")[-1]],
    )
    rest = [item for item in items if item not in set(long)]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for i, item in enumerate(long):
        shares[i % workers].append(item)
    left = len(items)
    for k, share in enumerate(shares):  # the sizes xdist's first schedule sends each worker
        size = left // (workers - k)
        left -= size
        want = max(0, size - len(share))
        share.extend(rest[:want])
        del rest[:want]
    shares[-1].extend(rest)
    items[:] = [item for share in shares for item in share]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's identity, repository, city, tmux or hooks settings, nor
    another test's: each has its own HOME and git global config (tests run in parallel, in
    pytest-xdist workers, so nothing may be shared through them)."""
    for var in (
        "GC_AGENT",
        "BD_ACTOR",
        "GC_POLECAT_REPO",
        "BD_NO_HOOKS",
        "GC_SESSION_ID",
        "GC_CONTINUATION_EPOCH",
        "GC_POLECAT_LOAD_PLUGINS",
        *_OUTSIDE_ENV,
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Test User\n\temail = test@example.com\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))  # git reads its config there too
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # no command server (gc_polecat/cmdserver.py): each CLI process runs its command itself,
    # and no test leaves a server behind; tests/test_cmdserver.py turns it on in a directory
    # of its own
    monkeypatch.setenv("GC_POLECAT_SERVER", "0")


# Set when pytest runs inside a git hook, a Gas City session or tmux, or by a developer; each
# would steer the git, the store or the session provider of every test.
_OUTSIDE_ENV = (
    "GIT_CONFIG_GLOBAL", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GC_CITY", "GC_CITY_PATH",
    "GC_CITY_ROOT", "GC_CITY_RUNTIME_DIR", "GC_STORE_ROOT", "GC_POLECAT_TMUX_SOCKET",
    "GC_POLECAT_HOST", "GC_POLECAT_TEST_CRASH_AT", "GC_POLECAT_WRITER", "TMUX", "TMUX_PANE",
)  # fmt: skip


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run real git in `repo` and return its stdout."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def submitted_ids(output: str) -> tuple[str, str]:
    """(submission, wait) from `submit`'s human output: `submission S, wait W (attempt N)`."""
    m = re.match(r"submission (\S+), wait (\S+) \(attempt \d+\)\n", output)
    assert m, f"not submit's output: {output!r}"
    return m.group(1), m.group(2)


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `probe` until it returns something true (that value), or fail naming `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def code_origin(origin: Path, *clones: Path) -> None:
    """A code repository as the pool tests need it: a bare `origin` whose `main` holds one
    commit (a README), and each of `clones` cloned from it."""
    seed = origin.parent / "seed"
    git(origin.parent, "init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("code\n")
    git(seed, "add", "README")
    git(seed, "commit", "-qm", "initial")
    git(origin.parent, "clone", "-q", "--bare", str(seed), str(origin))
    for clone in clones:
        git(origin.parent, "clone", "-q", str(origin), str(clone))


@dataclass(frozen=True)
class Code:
    """The code side of a city: a bare `origin` whose `main` holds one commit (a README),
    `clone` (the clone polecats' sandboxes hang off) and `other` (a second clone, for a person
    or another tool pushing beside them)."""

    origin: Path
    clone: Path
    other: Path

    def head(self, rev: str = "HEAD") -> str:
        return git(self.clone, "rev-parse", rev).strip()


@pytest.fixture
def code(tmp_path: Path) -> Code:
    origin, clone, other = tmp_path / "origin.git", tmp_path / "code", tmp_path / "code2"
    code_origin(origin, clone, other)
    return Code(origin, clone, other)


def configure(repo: Path, settings: str) -> None:
    """Commit `.beads/config.yaml` as `prefix: gc` plus `settings`, with plain git, as a
    person editing the settings would. Each call replaces the previous settings."""
    (repo / ".beads" / "config.yaml").write_text("prefix: gc\n" + settings)
    git(repo, "commit", "-qam", f"configure: {settings.splitlines()[0]}")


def assert_clean(repo: Path) -> None:
    """The invariants every command must leave: clean status, clean fsck, linear history."""
    assert git(repo, "status", "--porcelain") == ""
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--no-dangling"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
    assert "error" not in fsck.stderr.lower() and "missing" not in fsck.stderr.lower(), fsck.stderr
    merges = git(repo, "rev-list", "--merges", "HEAD")
    assert merges == ""


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path under /tmp, for sockets (108 bytes of path at most) that
    must sit where a test says: a pytest-xdist worker's tmp_path is one level deeper."""
    path = Path(tempfile.mkdtemp(prefix="gcp", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "beads"
    Store.init(root, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    return root


@pytest.fixture
def store(repo: Path) -> Store:
    return Store(repo, pm=make_plugin_manager(load_entrypoints=False))


class Cli:
    """Drive the real click group in process, like `gc-polecat --repo REPO ...`."""

    def __init__(self, repo: Path | None) -> None:
        self.repo = repo
        self.pm = make_plugin_manager(load_entrypoints=False)

    def __call__(self, *args: str, input: str | None = None, repo: bool = True):  # noqa: A002
        cli = make_cli(self.pm)
        argv = (["--repo", str(self.repo)] if repo and self.repo else []) + list(args)
        return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


@pytest.fixture
def cli(repo: Path) -> Cli:
    return Cli(repo)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a real process (start-up, exit codes, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "gc_polecat", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture
def gitrun() -> Callable[..., str]:
    return git


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process (`sleep 300`) for a registered session to name."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc.pid
    proc.kill()
    proc.wait()


class City:
    """The beads side of a city: a live registered session to submit from, and bead reads
    (in process, through the `cli` fixture)."""

    def __init__(self, cli: Cli, pid: int) -> None:
        self.cli = cli
        self.session = self.json("session", "register", "--pool", "p", "--pid", str(pid))["id"]

    def run(self, *args: str, input: str | None = None) -> str:  # noqa: A002
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))

    def bead(self, bead_id: str) -> dict[str, Any]:
        return self.json("bead", "show", bead_id)[0]

    def submit(self, branch: str, sha: str, target: str = "main") -> tuple[str, str]:
        """A work item assigned to the session and submitted as `branch` at `sha`."""
        work = self.run("bead", "create", f"Work on {branch}").strip()
        self.run("bead", "update", work, "--status", "in_progress", "--assignee", self.session)
        sub, _ = submitted_ids(self.run(
            "submit", work, "--branch", branch, "--commit", sha, "--target", target,
            "--session", self.session,
        ))  # fmt: skip
        return work, sub

    def assert_merged(self, work: str, sub: str, merge_commit: str, hook: str) -> None:
        submission = self.bead(sub)
        assert submission["status"] == "closed" and submission["close_reason"] == "merged"
        verdict = self.bead(submission["metadata"]["verdict"])
        meta = verdict["metadata"]
        assert (meta["outcome"], meta["merge_commit"]) == ("merged", merge_commit)
        assert meta["refinery"] == f"git-hook:{hook}"
        finished = self.bead(work)
        assert finished["status"] == "closed"
        assert finished["metadata"]["merged_sha"] == merge_commit


@pytest.fixture
def city(cli: Cli, sleeper: int) -> City:
    """A beads repository with one live session of pool `p`."""
    return City(cli, sleeper)
