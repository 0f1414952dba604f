"""Bead hooks another local user could have written are not run (issue 12, "also seen").

A hook is a program run on every bead change. One that is world-writable, owned by another
user (root excepted), or sits in a directory any user may write without the sticky bit could
have been replaced by anyone on the machine; the runner names it on stderr and skips it, and
the write goes on. Real hook processes (`beadhooks.fire(..., wait=True)`), real files and modes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gc_polecat.interop.bd_hooks_out import fire, runnable_hooks

BEAD = {"id": "gp-1", "title": "t", "status": "open"}


@pytest.fixture(autouse=True)
def _hooks_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BD_NO_HOOKS", raising=False)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True)
    hooks.chmod(0o755)
    out = tmp_path / "ran"
    hook = hooks / "on_create"
    hook.write_text(f'#!/bin/sh\necho ran >> "{out}"\n')
    hook.chmod(0o755)
    return repo, hook, out


def runs(repo: Path, out: Path) -> bool:
    out.unlink(missing_ok=True)
    fire(repo, [("gp-1", "create", BEAD)], wait=True)
    return out.exists()


def test_a_world_writable_hook_is_not_run(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, hook, out = setup
    assert runs(repo, out)  # trusted: it runs
    hook.chmod(0o777)
    assert not runs(repo, out)
    err = capsys.readouterr().err
    assert f"not running {hook}: it is writable by every user" in err
    hook.chmod(0o775)  # group write is allowed: the group can commit to the repository anyway
    assert runs(repo, out)


def test_a_hook_owned_by_another_user_is_not_run(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, hook, out = setup
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    os.chown(hook, 65534, 65534)
    assert not runs(repo, out)
    assert "owned by another user (uid 65534)" in capsys.readouterr().err
    os.chown(hook, 0, 0)
    assert runs(repo, out)


def test_a_hook_in_a_directory_anyone_may_write_is_not_run(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, hook, out = setup
    hooks = hook.parent
    hooks.chmod(0o777)
    assert runnable_hooks(hooks) == {}
    assert not runs(repo, out)
    assert f"{hooks} is writable by every user" in capsys.readouterr().err
    hooks.chmod(0o1777)  # sticky: others cannot replace our file
    assert runs(repo, out)


def test_a_symlinked_hook_is_judged_by_the_file_it_runs(setup: tuple[Path, Path, Path]) -> None:
    repo, hook, out = setup
    target = repo.parent / "shared-hook"
    target.write_text(hook.read_text())
    target.chmod(0o777)
    hook.unlink()
    hook.symlink_to(target)
    assert not runs(repo, out)
    target.chmod(0o755)
    assert runs(repo, out)
