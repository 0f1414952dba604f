"""`hooks`: install the hooks through which merges made outside the refinery reach the beads.

`hooks install --git PATH` / `hooks uninstall --git PATH` manage the code repository's hook
(githooks.py says which one and why); git runs `hooks run-git` from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gc_polecat.cli import AppContext, emit_json, json_option
from gc_polecat.hookspecs import hookimpl

if TYPE_CHECKING:
    from gc_polecat.refinery.githooks import CodeRepo, Report

GIT_HOOKS = ("post-receive", "reference-transaction")  # githooks.GIT_HOOKS, kept off start-up
_GIT_HELP = "A code repository: a bare origin (post-receive) or a working clone."


@click.group("hooks")
def hooks_group() -> None:
    """Hooks that record merged verdicts for branches landed by any route."""


def _code_repo(git_path: str | None) -> CodeRepo:
    from gc_polecat.errors import BadInput  # lazy: start-up
    from gc_polecat.refinery.githooks import code_repository  # lazy: start-up

    if git_path is None:
        raise BadInput("give --git PATH (the code repository)")
    return code_repository(git_path)


def _show(app: AppContext, report: Report, idle: str) -> None:
    if app.json:
        emit_json(
            {
                "repository": report.repository,
                "bare": report.bare,
                "hooks_dir": report.hooks_dir,
                "changes": report.changes,
            }
        )
        return
    for change in report.changes:
        to = f" -> {change['to']}" if change["to"] else ""
        click.echo(f"{change['action']} {change['path']}{to}")
    if not report.changes:
        click.echo(idle)


_BEADS_HELP = "The beads repository's .beads/hooks/on_* (bd's event hooks), chained."


def _beads_report(app: AppContext, changes: list[dict[str, str]]) -> None:
    if app.json:
        emit_json({"repository": str(app.store().root), "changes": changes})
        return
    for change in changes:
        click.echo(f"{change['action']} {change['path']}")
    if not changes:
        click.echo("nothing to do")


@hooks_group.command("install")
@click.option("--git", "git_path", metavar="PATH", default=None, help=_GIT_HELP)
@click.option("--beads", "beads", is_flag=True, help=_BEADS_HELP)
@json_option
@click.pass_obj
def hooks_install(app: AppContext, git_path: str | None, beads: bool) -> None:
    """--git PATH: the hook that records `merged` when a submitted branch lands on its target
    (an existing hook is kept as <hook>.legacy and still runs). --beads: our section in
    .beads/hooks/on_create, on_update, on_close, keeping their content. Idempotent."""
    from gc_polecat.errors import BadInput  # lazy: start-up

    if beads and git_path is None:
        from gc_polecat.interop.bd_hooks_in import install as install_beads  # lazy: start-up

        _beads_report(app, install_beads(app.store().root))
        return
    if beads:
        raise BadInput("give either --git PATH or --beads, not both")
    from gc_polecat.refinery.githooks import install  # lazy: start-up

    repo = _code_repo(git_path)
    _show(app, install(repo, app.store().root), "nothing to do")


@hooks_group.command("uninstall")
@click.option("--git", "git_path", metavar="PATH", default=None, help=_GIT_HELP)
@click.option("--beads", "beads", is_flag=True, help=_BEADS_HELP)
@json_option
@click.pass_obj
def hooks_uninstall(app: AppContext, git_path: str | None, beads: bool) -> None:
    """Remove our hook (restoring <hook>.legacy) or our section of the bd hooks; what is not
    ours is left alone."""
    if beads and git_path is None:
        from gc_polecat.interop.bd_hooks_in import uninstall as uninstall_beads  # lazy: start-up

        _beads_report(app, uninstall_beads(app.store().root))
        return
    from gc_polecat.refinery.githooks import uninstall  # lazy: start-up

    _show(app, uninstall(_code_repo(git_path)), "nothing to do")


@hooks_group.command("run")
@click.argument("hook", type=click.Choice(("on_create", "on_update", "on_close")))
@click.argument("bead_id", metavar="ID")
@click.argument("event", type=click.Choice(("create", "update", "close")))
@json_option
@click.pass_obj
def hooks_run(app: AppContext, hook: str, bead_id: str, event: str) -> int:
    """bd's hook protocol: the bead's JSON on stdin. A verdict written with bd (gc.verdict,
    merge_result, rejection_reason, gc.failure_type) becomes our verdict and wakes the waiting
    session. Never fails the bd write: errors are one line on stderr, exit 0."""
    from gc_polecat.beads.safejson import loads  # lazy: start-up
    from gc_polecat.interop.bd_hooks_in import ingest  # lazy: start-up

    try:
        payload = loads(sys.stdin.buffer.read() or b"null", "stdin")
        verdict = ingest(app.store(), app.providers(), payload)
    except Exception as exc:  # noqa: BLE001 - a hook must never fail the write that fired it
        why = str(exc).strip() or type(exc).__name__
        line = f"gc-polecat: error: bead hook {hook} {bead_id}: {why}"
        click.echo(" ".join(line.split()), err=True)  # one line, whatever the ID holds
        return 0
    if app.json:
        emit_json({"verdict": verdict})
    elif verdict:
        click.echo(f"gc-polecat: recorded verdict {verdict} from bd's write on {bead_id}")
    return 0


@hooks_group.command("run-git", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("hook", type=click.Choice(GIT_HOOKS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
@click.pass_obj
def hooks_run_git(app: AppContext, hook: str, args: tuple[str, ...]) -> int:
    """Run by git from our hook with the ref updates on stdin. Never fails git: any error is
    one line on stderr and exit 0."""
    import gc_polecat.refinery.githooks as githooks  # lazy: start-up

    try:
        # git runs hooks in the working tree's top (GIT_DIR unset) or in a bare GIT_DIR
        code_repo = Path(os.environ.get("GIT_DIR") or ".").resolve()
        for var in githooks.REPO_ENV:  # nothing we start may take the code repo for its own
            os.environ.pop(var, None)
        if hook == githooks.CLONE_HOOK and args[:1] != ("committed",):
            return 0
        updates = githooks.parse_updates(sys.stdin.read())
        store = app.store()
        recorded = githooks.record_landed(store, app.providers(), code_repo, updates, hook)
    except Exception as exc:  # noqa: BLE001 - a hook must never fail the git command
        why = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"gc-polecat: error: git hook {hook}: {why}", err=True)
        return 0
    if app.json:
        emit_json(recorded)
    else:
        for verdict in recorded:
            click.echo(f"gc-polecat: recorded merged verdict {verdict} (git hook {hook})")
    return 0


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(hooks_group)
