"""`gc-polecat timeline WORK`: the life of one work item, from git history."""

from __future__ import annotations

import click

from gc_polecat.cli import AppContext, echo, emit_json, json_option
from gc_polecat.hookspecs import hookimpl


@click.command("timeline")
@click.argument("work_id", metavar="WORK")
@json_option
@click.pass_obj
def timeline_command(app: AppContext, work_id: str) -> None:
    """The life of WORK as git recorded it: slung, submitted, verdicts, wake-ups, fallbacks,
    resumptions and cleanup, each with its time, the gap since the step before, its author and
    commit (`--json`: the same events as objects)."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up
    from gc_polecat.lifecycle.timeline import lines, timeline  # lazy: start-up

    validate_id(work_id)
    events = timeline(app.store().root, work_id)
    if app.json:
        start = previous = events[0].at
        rows = []
        for e in events:
            rows.append(e.as_json(start, previous))
            previous = e.at
        emit_json({"work": work_id, "events": rows})
        return
    for line in lines(work_id, events):
        echo(line)


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(timeline_command)
