"""`gc-polecat demo`: a real walkthrough on a temporary beads repository.

Each step runs the actual `gc-polecat` command in a child process and prints it with its
output, then shows the history git recorded. It exits 0 only if every step did what it should
and the repository is left clean (git status empty, git fsck clean).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from ..hookspecs import hookimpl


class DemoFailed(click.ClickException):
    exit_code = 1


def _run(argv: list[str], cwd: Path, show: str) -> str:
    click.secho(f"$ {show}", bold=True)
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    click.echo(out.rstrip("\n") if out.strip() else "")
    if proc.returncode != 0:
        raise DemoFailed(f"step failed (exit {proc.returncode}): {show}")
    return proc.stdout


def _polecat(cwd: Path, *args: str) -> str:
    return _run(
        [sys.executable, "-m", "gc_polecat", *args],
        cwd,
        "gc-polecat " + " ".join(a if a and " " not in a else repr(a) for a in args),
    ).strip()


def _git(cwd: Path, *args: str) -> str:
    return _run(["git", *args], cwd, "git " + " ".join(args))


def walkthrough(root: Path) -> None:
    _polecat(root, "init", "--prefix", "gc")
    bead_id = _polecat(root, "bead", "create", "Fix the flaky login test", "-p", "1", "-l", "tests")
    _polecat(root, "bead", "update", bead_id, "--status", "in_progress", "--assignee", "furiosa")
    _polecat(root, "bead", "show", bead_id)
    _polecat(root, "bead", "close", bead_id, "--reason", "fixed in polecat/furiosa branch")
    _polecat(root, "--json", "bead", "list", "--all")
    shown = _git(root, "log", "--format=%h %an: %s", "--stat")
    if shown.count(f"{bead_id}:") != 3:
        raise DemoFailed("expected one commit for each of create, update and close")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
    )
    fsck = subprocess.run(["git", "fsck"], cwd=root, capture_output=True, text=True)
    if status.stdout or fsck.returncode:
        raise DemoFailed(f"repository not clean: {status.stdout or fsck.stderr}")
    click.secho(
        "\nOK: every change is one commit; git status is empty and git fsck is clean.", fg="green"
    )


@click.command("demo")
@click.option(
    "--keep", is_flag=True, help="Leave the temporary repository on disk and print where."
)
def demo_command(keep: bool) -> None:
    """Walk through the bead store on a temporary repository (init, create, update, close, log)."""
    if shutil.which("git") is None:
        raise DemoFailed("the demo shows `git log`; install git first")
    tmp = Path(tempfile.mkdtemp(prefix="gc-polecat-demo-"))
    root = tmp / "beads"
    root.mkdir()
    try:
        walkthrough(root)
    finally:
        if keep:
            click.echo(f"kept the demo repository at {root}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(demo_command)
