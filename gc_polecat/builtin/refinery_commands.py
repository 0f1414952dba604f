"""`refinery process` and `refinery queue`: the merge queue that writes verdicts."""

from __future__ import annotations

from pathlib import Path

import click

from gc_polecat.cli import AppContext, Seconds, echo, emit_json, json_option
from gc_polecat.hookspecs import hookimpl


@click.group("refinery")
def refinery_group() -> None:
    """The merge queue over the code repository (settings: `refinery:` in config.yaml)."""


@refinery_group.command("queue")
@click.option("-q", "--quiet", is_flag=True, help="Print only the submission IDs.")
@json_option
@click.pass_obj
def refinery_queue(app: AppContext, quiet: bool) -> None:
    """Open submissions in the order the refinery takes them (priority + retry penalty, age)."""
    from gc_polecat.refinery.queue import queue  # lazy: start-up

    subs = queue(app.store())
    if app.json:
        emit_json(subs)
        return
    for sub in subs:
        if quiet:
            click.echo(sub["id"])
            continue
        m = sub.get("metadata", {})
        claimed = f" claimed by {m['claimed_by']}" if m.get("claimed_by") else ""
        echo(
            f"{sub['id']}  {m.get('work', '-'):<10} attempt {m.get('attempt', '?')}  "
            f"{m.get('branch', '-')} -> {m.get('target', '-')}{claimed}"
        )


@refinery_group.command("process")
@click.option("--once", is_flag=True, help="One pass over the queue, then exit.")
@click.option(
    "--interval",
    type=Seconds(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between passes over the queue.",
)
@click.option(
    "--clone",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="This refinery's clone (default: refinery.repo).",
)
@json_option
@click.pass_obj
def refinery_process(app: AppContext, once: bool, interval: float, clone: str | None) -> None:
    """Claim, rebase, run the gates, push and record a verdict for each open submission."""
    from gc_polecat.refinery.queue import run  # lazy: start-up

    outcomes = run(
        app.store(),
        app.providers(),
        once=once,
        interval=interval,
        report=(lambda line: None) if app.json else click.echo,
        clone=Path(clone) if clone else None,
    )
    if app.json:
        emit_json([o.__dict__ for o in outcomes])


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(refinery_group)
