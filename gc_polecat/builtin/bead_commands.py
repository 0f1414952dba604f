"""`gc-polecat bead ...`: bd's core commands over the file store.

Every mutating command is one commit (or none, when it changes nothing). Reads answer from the
catalog when it is at HEAD, which needs neither dulwich nor YAML, and that is what keeps
`bead show` fast from a cold interpreter.
"""

from __future__ import annotations

import re
from typing import Any

import click

from ..bead import STATUSES, TYPES, Bead
from ..cli import AppContext, echo, emit_json, json_option
from ..errors import BadInput, InvalidBead, NotFound
from ..hookspecs import hookimpl

DURATION_RE = re.compile(r"^([0-9]{1,19})(ns|us|ms|s|m|h|d)?$")
MAX_NS = 2**63 - 1  # bd stores a gate timeout as a Go int64 of nanoseconds
_NS = {
    "ns": 1,
    "us": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}


class Priority(click.ParamType):
    """0..4, also written P0..P4 as bd accepts."""

    name = "priority"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removeprefix("P")
        if text in ("0", "1", "2", "3", "4"):  # not isdigit(): it takes '²' and 5000 digits
            return int(text)
        self.fail(f"{value!r} is not a priority (0..4 or P0..P4)", param, ctx)


class Duration(click.ParamType):
    """A duration such as 90s, 30m, 2h, 1d (a bare number is seconds); converted to nanoseconds."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        m = DURATION_RE.fullmatch(str(value).strip())
        ns = int(m.group(1)) * _NS[m.group(2) or "s"] if m else MAX_NS + 1
        if ns > MAX_NS:
            self.fail(f"{value!r} is not a duration up to 292 years (e.g. 2h)", param, ctx)
        return ns


class KeyValue(click.ParamType):
    name = "key=value"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        key, eq, val = str(value).partition("=")
        if not eq or not key:
            self.fail(f"{value!r} is not key=value", param, ctx)
        return key, val


def _split_csv(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def _parse_deps(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """bd's `--deps blocks:gc-1,gc-2` (type defaults to blocks) -> [(type, id)]."""
    out = []
    for spec in _split_csv(specs):
        dtype, colon, target = spec.rpartition(":")
        out.append((dtype if colon else "blocks", target))
    return out


# --- reading ---------------------------------------------------------------------------------


def _read(app: AppContext, bead_ids: tuple[str, ...]) -> list[Bead]:
    from ..ids import id_path, validate_id

    for bead_id in bead_ids:
        validate_id(bead_id)
    store = app.store()
    catalog = store.catalog
    store.recover_if_needed()
    if not catalog.is_fresh():
        catalog.refresh()
    found = []
    for bead_id in bead_ids:
        bead = catalog.get(bead_id)
        if bead is None:
            bad = dict(catalog.bad_files()).get(id_path(bead_id))
            if bad is not None:
                raise InvalidBead(bad)
            raise NotFound(f"no bead {bead_id}")
        found.append(bead)
    return found


def _print_bead(bead: Bead) -> None:
    echo(
        f"{bead['id']}  [{bead['issue_type']}] P{bead['priority']} {bead['status']}  "
        f"{bead['title']}"
    )
    for key, value in bead.items():
        if key in ("id", "title", "issue_type", "priority", "status"):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list) and key == "dependencies":
            value = ", ".join(f"{d['type']}:{d['depends_on_id']}" for d in value)
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        text = str(value)
        if "\n" in text:
            echo(f"  {key}:")
            for line in text.rstrip("\n").splitlines():
                echo(f"    {line}")
        else:
            echo(f"  {key}: {text}")


def _report(app: AppContext, beads: list[Bead], single: bool = False) -> None:
    if app.json:
        emit_json(beads)
        return
    for bead in beads:
        _print_bead(bead) if single else echo(
            f"{bead['id']}  [{bead['issue_type']}] P{bead['priority']} {bead['status']:<11} "
            f"{bead.get('assignee') or '-':<16} {bead['title']}"
        )


# --- commands --------------------------------------------------------------------------------


@click.group("bead")
def bead_group() -> None:
    """Create, show, list, update and close beads (bd's core, over git)."""


@bead_group.command("create")
@click.argument("title")
@click.option("-d", "--description", default=None)
@click.option(
    "-t", "--type", "issue_type", type=click.Choice(TYPES), default="task", show_default=True
)
@click.option("-p", "--priority", type=Priority(), default=2, show_default=True)
@click.option("-s", "--status", type=click.Choice(STATUSES), default="open", show_default=True)
@click.option("-a", "--assignee", default=None)
@click.option("-l", "--label", "labels", multiple=True, help="A label (repeat, or comma-separate).")
@click.option("--labels", "labels_csv", multiple=True, hidden=True)
@click.option(
    "-m", "--metadata", "metadata", type=KeyValue(), multiple=True, help="key=value (repeat)."
)
@click.option("--parent", default=None, help="Make a child bead <parent>.<n>.")
@click.option("--id", "explicit_id", default=None, help="Use this ID instead of generating one.")
@click.option(
    "--deps", multiple=True, help="Dependencies: [type:]id,... (type defaults to blocks)."
)
@click.option("--ephemeral", is_flag=True, help="A wisp: short-lived bead.")
@click.option(
    "--await-type", type=click.Choice(("human", "timer", "gh:run", "gh:pr", "bead", "mail"))
)
@click.option("--await-id", default=None)
@click.option("--timeout", type=Duration(), default=None, help="Gate timeout, e.g. 2h.")
@click.option("--waiter", "waiters", multiple=True)
@json_option
@click.pass_obj
def create_command(
    app: AppContext,
    title: str,
    labels: tuple[str, ...],
    labels_csv: tuple[str, ...],
    metadata: tuple[tuple[str, str], ...],
    parent: str | None,
    explicit_id: str | None,
    deps: tuple[str, ...],
    **fields: Any,
) -> None:
    """Create a bead and print its ID."""
    from ..ids import validate_id

    # `v is False` / `v == ()`, not `v in (...)`: priority 0 == False would be dropped
    given = {k: v for k, v in fields.items() if v is not None and v is not False and v != ()}
    bead: Bead = {"title": title, **given}
    if fields.get("waiters"):
        bead["waiters"] = list(fields["waiters"])
    bead["labels"] = _split_csv(labels + labels_csv)
    bead["metadata"] = dict(metadata)
    for target in (explicit_id, parent):
        if target is not None:
            validate_id(target)
    if explicit_id:
        bead["id"] = explicit_id
    dep_list = _parse_deps(deps)
    for _, target in dep_list:
        validate_id(target)
    with app.store().transaction() as tx:
        created = tx.create(bead, parent=parent)
        for dtype, target in dep_list:
            created = tx.add_dependency(created["id"], target, dtype)
    if app.json:
        emit_json(created)
    else:
        click.echo(created["id"])


@bead_group.command("show")
@click.argument("bead_ids", nargs=-1, required=True, metavar="ID...")
@json_option
@click.pass_obj
def show_command(app: AppContext, bead_ids: tuple[str, ...]) -> None:
    """Show beads (JSON: an array, as bd prints it)."""
    _report(app, _read(app, bead_ids), single=True)


@bead_group.command("list")
@click.option("-s", "--status", "statuses", type=click.Choice(STATUSES), multiple=True)
@click.option("-t", "--type", "types", type=click.Choice(TYPES), multiple=True)
@click.option("-a", "--assignee", default=None)
@click.option("-l", "--label", "labels", multiple=True, help="Only beads with every label given.")
@click.option("--all", "include_closed", is_flag=True, help="Include closed beads.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None)
@json_option
@click.pass_obj
def list_command(
    app: AppContext,
    statuses: tuple[str, ...],
    types: tuple[str, ...],
    assignee: str | None,
    labels: tuple[str, ...],
    include_closed: bool,
    limit: int | None,
) -> int:
    """List beads (closed ones only with --all or --status closed).

    A bead file that cannot be read is named on stderr and the exit status is 2; the
    readable beads are still listed.
    """
    from ..catalog import Query

    catalog = app.store().catalog
    catalog.refresh()
    query = Query(
        statuses=statuses,
        types=types,
        assignee=assignee,
        labels=tuple(_split_csv(labels)),
        include_closed=include_closed,
        limit=limit,
    )
    _report(app, catalog.list(query))
    bad = catalog.bad_files()
    for path, error in bad:
        click.echo(f"gc-polecat: warning: skipped unreadable bead file {path}: {error}", err=True)
    return 2 if bad else 0


@bead_group.command("update")
@click.argument("bead_id", metavar="ID")
@click.option("--title", default=None)
@click.option("-d", "--description", default=None)
@click.option("--design", default=None)
@click.option("--notes", default=None)
@click.option("--acceptance", "acceptance_criteria", default=None)
@click.option("-s", "--status", type=click.Choice(STATUSES), default=None)
@click.option("-p", "--priority", type=Priority(), default=None)
@click.option("-t", "--type", "issue_type", type=click.Choice(TYPES), default=None)
@click.option("-a", "--assignee", default=None, help="Assignee ('' clears it).")
@click.option("--owner", default=None)
@click.option("--add-label", "add_labels", multiple=True)
@click.option("--remove-label", "remove_labels", multiple=True)
@click.option("--set-metadata", "set_metadata", type=KeyValue(), multiple=True)
@click.option("--unset-metadata", "unset_metadata", multiple=True)
@json_option
@click.pass_obj
def update_command(
    app: AppContext,
    bead_id: str,
    add_labels: tuple[str, ...],
    remove_labels: tuple[str, ...],
    set_metadata: tuple[tuple[str, str], ...],
    unset_metadata: tuple[str, ...],
    **fields: Any,
) -> None:
    """Change fields of a bead in one commit."""
    from ..ids import validate_id

    validate_id(bead_id)
    changes: Bead = {k: v for k, v in fields.items() if v is not None}
    with app.store().transaction() as tx:
        current = tx.require(bead_id)
        if add_labels or remove_labels:
            removed = set(_split_csv(remove_labels))
            labels = [x for x in current.get("labels", []) if x not in removed]
            changes["labels"] = labels + [x for x in _split_csv(add_labels) if x not in labels]
        if set_metadata or unset_metadata:
            meta = dict(current.get("metadata", {}))
            meta.update(dict(set_metadata))
            for key in unset_metadata:
                meta.pop(key, None)
            changes["metadata"] = meta
        updated = tx.update(bead_id, changes)
    if app.json:
        emit_json(updated)
    else:
        click.echo(f"updated {bead_id}" if tx.result else f"{bead_id} unchanged")


@bead_group.command("close")
@click.argument("bead_ids", nargs=-1, required=True, metavar="ID...")
@click.option("-r", "--reason", default=None, help="Why it was closed.")
@json_option
@click.pass_obj
def close_command(app: AppContext, bead_ids: tuple[str, ...], reason: str | None) -> None:
    """Close beads (several IDs: one commit)."""
    from ..ids import validate_id

    for bead_id in bead_ids:
        validate_id(bead_id)
    with app.store().transaction() as tx:
        closed = [tx.close(bead_id, reason) for bead_id in bead_ids]
    if app.json:
        emit_json(closed)
    else:
        for bead in closed:
            click.echo(f"closed {bead['id']}")


@bead_group.group("dep")
def dep_group() -> None:
    """Add or remove dependencies (ID depends on / is blocked by DEPENDS_ON)."""


@dep_group.command("add")
@click.argument("bead_id", metavar="ID")
@click.argument("depends_on", metavar="DEPENDS_ON")
@click.option(
    "-t",
    "--type",
    "dep_type",
    default="blocks",
    show_default=True,
    help="blocks, parent-child, waits-for, related, discovered-from, ...",
)
@json_option
@click.pass_obj
def dep_add_command(app: AppContext, bead_id: str, depends_on: str, dep_type: str) -> None:
    """Record that ID depends on DEPENDS_ON."""
    from ..bead import DEP_TYPE_RE
    from ..ids import validate_id

    validate_id(bead_id)
    validate_id(depends_on)
    if not DEP_TYPE_RE.fullmatch(dep_type):
        raise BadInput(f"invalid dependency type {dep_type!r}")
    with app.store().transaction() as tx:
        bead = tx.add_dependency(bead_id, depends_on, dep_type)
    emit_json(bead) if app.json else click.echo(f"{bead_id} depends on {depends_on} ({dep_type})")


@dep_group.command("remove")
@click.argument("bead_id", metavar="ID")
@click.argument("depends_on", metavar="DEPENDS_ON")
@click.option("-t", "--type", "dep_type", default=None, help="Only this dependency type.")
@json_option
@click.pass_obj
def dep_remove_command(
    app: AppContext, bead_id: str, depends_on: str, dep_type: str | None
) -> None:
    """Remove ID's dependency on DEPENDS_ON."""
    from ..ids import validate_id

    validate_id(bead_id)
    validate_id(depends_on)
    with app.store().transaction() as tx:
        bead = tx.remove_dependency(bead_id, depends_on, dep_type)
    emit_json(bead) if app.json else click.echo(f"{bead_id} no longer depends on {depends_on}")


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(bead_group)
