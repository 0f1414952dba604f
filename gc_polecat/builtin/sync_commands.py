"""`gc-polecat sync [REMOTE]`: pull and push the beads repository against a git remote."""

from __future__ import annotations

import click

from gc_polecat.cli import AppContext, emit_json, json_option
from gc_polecat.hookspecs import hookimpl


@click.command("sync")
@click.argument("remote", required=False, metavar="[REMOTE]")
@click.option(
    "--no-push", is_flag=True, help="Only fetch and merge the remote's changes into this clone."
)
@json_option
@click.pass_obj
def sync_command(app: AppContext, remote: str | None, no_push: bool) -> None:
    """Fetch REMOTE's branch (default: the upstream remote, else origin), merge it bead by bead
    into the local one (local commits are replayed on top: history stays linear) and push,
    retrying when another clone pushed first. REMOTE is a configured remote, a URL or a path."""
    from gc_polecat.beads.sync import summary, sync  # lazy: start-up

    done = sync(app.store(), remote, push_changes=not no_push)
    if app.json:
        emit_json(done.as_json())
        return
    for line in summary(done):
        click.echo(line)


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(sync_command)
