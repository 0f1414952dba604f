"""The Gas City pack: `pack.toml` declares the commands `gc polecat ...` runs, every declared
script exists, is executable, passes its arguments through untouched, and really works against a
beads repository; the formulas it ships are the repository's formulas.

gc runs a pack command as the script with the user's arguments and stdio; so do these tests,
with `gc-polecat` on PATH as a shim for this interpreter.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT, Cli, assert_clean, git

PACK = ROOT / "pack"
COMMANDS = {"submit", "await", "verdict", "wait", "pool"}
PROVIDER = PACK / "scripts" / "gc-beads-polecat"


def manifest() -> dict:
    return tomllib.loads((PACK / "pack.toml").read_text())


def scripts() -> dict[str, Path]:
    return {c["name"]: PACK / c["script"] for c in manifest()["commands"]}


@pytest.fixture
def path_with_gc_polecat(tmp_path: Path) -> str:
    """A PATH where `gc-polecat` is this interpreter's gc_polecat, as an install provides."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "gc-polecat"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gc_polecat "$@"\n')
    shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def run(
    script: Path, *args: str, path: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PATH": path, **(env or {})}
    for var in ("GC_SESSION_ID", "GC_CONTINUATION_EPOCH"):
        full.pop(var, None)
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=full, timeout=30
    )


# --- the manifest and the files ------------------------------------------------------------


def test_pack_toml_declares_every_command() -> None:
    data = manifest()
    assert data["pack"]["name"] == "polecat"  # `gc polecat <command>`
    names = [c["name"] for c in data["commands"]]
    assert sorted(names) == sorted(COMMANDS) and len(names) == len(set(names))
    for command in data["commands"]:
        assert set(command) == {"name", "description", "script"}, command
        assert command["description"].strip()
        assert re.fullmatch(r"commands/[a-z-]+\.sh", command["script"]), command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_script_is_a_safe_passthrough(name: str) -> None:
    script = scripts()[name]
    assert script.is_file() and script.resolve().is_relative_to(PACK.resolve())
    mode = script.stat().st_mode
    assert mode & stat.S_IXUSR and os.access(script, os.X_OK), f"{script} is not executable"
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert f'exec gc-polecat {name} "$@"' in code  # the one command it runs
    body = "\n".join(code)
    assert "eval" not in body and "$*" not in body and "sh -c" not in body
    assert re.findall(r'"?\$@"?', body) == ['"$@"']  # "$@" quoted, exactly once


def test_provider_script_is_a_safe_passthrough() -> None:
    assert os.access(PROVIDER, os.X_OK)
    code = [ln for ln in PROVIDER.read_text().splitlines() if ln.strip() and ln[0] != "#"]
    assert 'exec gc-polecat exec-beads "$@"' in code and "eval" not in "\n".join(code)


def test_formulas_shipped_are_the_repository_formulas() -> None:
    shipped = PACK / "formulas"
    ours = sorted(p.name for p in (ROOT / "formulas").glob("*.toml"))
    assert ours and sorted(p.name for p in shipped.glob("*.toml")) == ours
    for name in ours:
        assert (shipped / name).samefile(ROOT / "formulas" / name)
        assert tomllib.loads((shipped / name).read_text())["steps"]


# --- running every script -----------------------------------------------------------------


def test_every_command_script_runs(path_with_gc_polecat: str) -> None:
    for name, script in sorted(scripts().items()):
        proc = run(script, "--help", path=path_with_gc_polecat)
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"Usage: gc-polecat {name}" in proc.stdout, (name, proc.stdout)


def test_commands_do_real_work(
    repo: Path, cli: Cli, path_with_gc_polecat: str, tmp_path: Path
) -> None:
    """One real operation per command group, with gc-polecat's exit statuses."""
    s = scripts()
    env = {"GC_POLECAT_REPO": str(repo)}

    def pack(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run(s[name], *args, path=path_with_gc_polecat, env=env)

    session = json.loads(
        cli("--json", "session", "register", "--pool", "p", "--pid", str(os.getpid())).stdout
    )["id"]
    work = cli("bead", "create", "Fix the login test").stdout.strip()
    assert cli("bead", "update", work, "--status", "in_progress", "-a", session).exit_code == 0
    head = git(repo, "rev-parse", "HEAD")

    refused = pack("submit", "gc-zzzz", "--branch", "b", "--commit", "a" * 40, "--session", session)
    assert refused.returncode == 2 and "gc-zzzz" in refused.stderr
    unknown = pack("verdict", "gc-zzzz", "--merged")
    assert unknown.returncode == 2 and "no submission gc-zzzz" in unknown.stderr
    assert git(repo, "rev-parse", "HEAD") == head  # refusals write nothing

    submitted = pack(
        "submit", work, "--branch", f"polecat/nux/{work}", "--commit", "a" * 40,
        "--session", session,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    submission, wait = re.fullmatch(
        r"submission (\S+), wait (\S+) \(attempt 1\)", submitted.stdout.splitlines()[0]
    ).groups()
    listed = pack("wait", "list", "--session", session)
    assert listed.returncode == 0 and wait in listed.stdout and "pending" in listed.stdout
    pending = pack("await", wait, "--timeout", "0")
    assert pending.returncode == 30, pending.stderr
    status = pack("pool", "status", "p")
    assert status.returncode == 0 and "sessions alive 1" in status.stdout

    # an argument full of shell syntax reaches gc-polecat as one plain word
    canary = tmp_path / "pwned"
    reason = f"tests fail; $(touch {canary}) `touch {canary}` && rm -rf / ' \" $HOME"
    judged = pack("verdict", submission, "--fix-needed", "--type", "tests", "--reason", reason)
    assert judged.returncode == 0, judged.stderr
    assert judged.stdout.split()[-1] == "session"  # routed back to the waiting session
    fix = pack("await", wait, "--timeout", "0", "--json")
    assert fix.returncode == 10
    assert json.loads(fix.stdout)["work"]["metadata"]["rejection_reason"] == reason
    assert not canary.exists()
    assert_clean(repo)


def test_provider_script_speaks_the_exec_protocol(repo: Path, path_with_gc_polecat: str) -> None:
    env = {"GC_STORE_ROOT": str(repo), "GC_BEADS_PREFIX": "gc"}
    created = subprocess.run(
        [str(PROVIDER), "create"],
        input='{"title": "via the pack", "type": "task"}',
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path_with_gc_polecat, **env},
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    bead = json.loads(created.stdout)
    assert bead["type"] == "task" and bead["status"] == "open"
    assert run(PROVIDER, "no-such-op", path=path_with_gc_polecat, env=env).returncode == 2
    assert_clean(repo)


def test_scripts_say_when_gc_polecat_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = run(scripts()["await"], "--help", path=str(empty))
    assert proc.returncode == 127 and "gc-polecat is not on PATH" in proc.stderr
    proc = run(PROVIDER, "list", path=str(empty))
    assert proc.returncode == 1 and "gc-polecat is not on PATH" in proc.stderr
