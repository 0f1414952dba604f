"""Bead hooks fired by real commands: the shipped hooks/log-event script, end to end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

from .conftest import ROOT, assert_clean, git, run_cli


def install_log_hook(repo: Path) -> Path:
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name in ("on_create", "on_update", "on_close"):
        shutil.copy(ROOT / "hooks" / "log-event", hooks / name)
    return repo / ".git" / "gc-polecat" / "events.log"


def wait_lines(log: Path, n: int, deadline: float = 20.0) -> list[str]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    got = log.read_text() if log.exists() else "none"
    raise AssertionError(f"expected {n} hook lines in {log}, got {got}")


def test_create_update_close_fire_their_hooks(repo: Path) -> None:
    log = install_log_hook(repo)
    git(repo, "add", ".beads/hooks")
    git(repo, "commit", "-qm", "install hooks")
    title = "hooked $(touch pwned) `id`"
    bid = run_cli("--repo", str(repo), "bead", "create", title).stdout.strip()
    assert run_cli("--repo", str(repo), "bead", "update", bid, "-p", "0").returncode == 0
    assert run_cli("--repo", str(repo), "bead", "close", bid).returncode == 0
    lines = wait_lines(log, 3)
    events = [line.split(" ", 3) for line in lines]
    assert {(e[1], e[2]) for e in events} == {("create", bid), ("update", bid), ("close", bid)}
    payloads = {e[1]: json.loads(e[3]) for e in events}
    assert payloads["create"]["title"] == "hooked $(touch pwned) `id`"  # never run by a shell
    assert payloads["update"]["priority"] == 0 and payloads["close"]["status"] == "closed"
    assert not (repo / "pwned").exists()
    assert_clean(repo)


def test_failing_and_hanging_hooks_never_fail_the_write(repo: Path, tmp_path: Path) -> None:
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True)
    pid_file = tmp_path / "hanging.pid"
    (hooks / "on_create").write_text("#!/bin/sh\nexit 3\n")
    (hooks / "on_update").write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    for h in hooks.iterdir():
        h.chmod(0o755)
    git(repo, "add", ".beads/hooks")
    git(repo, "commit", "-qm", "bad hooks")
    made = run_cli("--repo", str(repo), "bead", "create", "x")
    assert made.returncode == 0 and made.stderr == ""
    updated = run_cli("--repo", str(repo), "bead", "update", made.stdout.strip(), "-p", "1")
    assert updated.returncode == 0 and updated.stderr == ""
    # The command has returned while its hook still runs: it never waited for the hook.
    pid = int(wait_file(pid_file))
    try:
        os.kill(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert_clean(repo)


def wait_file(path: Path, deadline: float = 20.0) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_bd_no_hooks(repo: Path) -> None:
    log = install_log_hook(repo)
    run_cli("--repo", str(repo), "bead", "create", "quiet", env={"BD_NO_HOOKS": "1"})
    run_cli("--repo", str(repo), "bead", "create", "loud")
    lines = wait_lines(log, 1)
    time.sleep(0.5)
    assert len(log.read_text().splitlines()) == 1 and "loud" in lines[0]
