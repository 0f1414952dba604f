"""`gc-polecat exec-beads OP [ARGS...]`: Gas City's exec beads provider (`interop/gc_exec.py`).

Gas City runs `<script> <op> [args]`; the pack's `scripts/gc-beads-polecat` is `exec gc-polecat
exec-beads "$@"`. Every failure exits 1 (never 2: gc reads 2 as "unknown operation, fine"), so
this command reports its own errors instead of leaving them to the group's exit-2 mapping.
"""

from __future__ import annotations

import click

from gc_polecat.cli import AppContext
from gc_polecat.hookspecs import hookimpl


@click.command(
    "exec-beads",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("op", required=False, metavar="OP")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[ARGS]...")
@click.pass_obj
def exec_beads_command(app: AppContext, op: str | None, args: tuple[str, ...]) -> int:
    """Gas City exec beads provider over this repository (GC_BEADS=exec:<script>).

    \b
    Operations (JSON on stdin and stdout):
      create                       bead JSON on stdin; prints the bead
      get ID                       prints the bead
      update ID                    fields JSON on stdin
      close ID / reopen ID
      list [--status= --assignee= --type= --limit=]
      ready [--include-ephemeral]  open, unblocked work
      children PARENT
      list-by-label LABEL [LIMIT]  newest first
      set-metadata ID KEY          value on stdin
      delete --force ID
      dep-add ID DEPENDS_ON [TYPE] / dep-remove ID DEPENDS_ON / dep-list ID [down|up]
      init DIR [PREFIX [DATABASE]] makes the scope's store (never writes into DIR)
      start / stop / health / probe / recover   gc's lifecycle: nothing to do, exit 0

    Exit 0 success; 1 failure (a missing bead says "not found"); 2 unknown operation.
    The store: --repo or GC_POLECAT_REPO (one for every scope), else, in a city (GC_CITY_PATH),
    <city>/.gc/runtime/packs/polecat/stores/{city,rigs/<rig>-<hash>}; else the beads
    repository at or above GC_STORE_ROOT or the working directory.
    """
    from gc_polecat.interop.gc_exec import read_stdin_utf8, run  # lazy: start-up

    status, out, err = run(app.repo, op, list(args), read_stdin_utf8, pm=app.pm)
    if out:
        click.echo(out)
    if err:
        click.echo(f"gc-polecat: error: {' '.join(err.split())}", err=True)
    return status


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(exec_beads_command)
