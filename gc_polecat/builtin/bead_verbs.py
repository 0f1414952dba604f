"""The `bead` verbs beside `show`: create, list, update, close, ready, search, comments, label,
dep, with bd's flags (gastownhall/beads `cmd/bd/*.go`; `docs/interop.md`, "bd's command line").

They load on first use (`bead_commands.LazyGroup`), so `bead show`, the hot path, and every other
command's start-up pay nothing for their hundred-odd options. The rules they apply live in
`gc_polecat/interop/bd_verbs.py`; these adapters parse flags and print.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from gc_polecat.beads.bead import (
    AWAIT_TYPES,
    READY_SORTS,
    SORT_FIELDS,
    STATUSES,
    TYPE_ALIASES,
    TYPES,
    Bead,
    ready_statuses,
)
from gc_polecat.builtin.bead_commands import (
    Duration,
    KeyValue,
    Priority,
    all_beads,
    list_lines,
    print_comments,
    read_beads,
    report_beads,
    split_csv,
)
from gc_polecat.cli import AppContext, echo, emit_json, json_option, validate_ids
from gc_polecat.errors import BadInput
from gc_polecat.fast import list_selection

# --- bd's text options (cmd/bd/flags.go registerCommonIssueFlags) ---------------------------


class IssueType(click.Choice):
    """An issue type, taking bd's aliases (`feat`, `enhancement`, `mr`, `mol`, `dec`, `adr`)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str):
            value = TYPE_ALIASES.get(value.lower(), value)
        return super().convert(value, param, ctx)


def text_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The description, design, notes and reference flags `bd create` and `bd update` share."""
    options = [
        click.option("-d", "--description", default=None, help="Description ('-' reads stdin)."),
        click.option("--body", default=None, hidden=True, help="Alias for --description."),
        click.option(
            "-m", "--message", default=None, help="Alias for --description (bd's git habit)."
        ),
        click.option(
            "--body-file", default=None, help="Read the description from a file ('-': stdin)."
        ),
        click.option(
            "--description-file", default=None, hidden=True, help="Alias for --body-file."
        ),
        click.option(
            "--stdin", "from_stdin", is_flag=True, help="Read the description from stdin."
        ),
        click.option("--design", default=None, help="Design notes."),
        click.option(
            "--design-file", default=None, help="Read the design from a file ('-': stdin)."
        ),
        click.option("--acceptance", default=None, help="Acceptance criteria."),
        click.option("--notes", default=None, help="Notes."),
        click.option("--append-notes", default=None, help="Append a line to the notes."),
        click.option("--external-ref", default=None, help="External reference (gh-9, a URL)."),
        click.option("--spec-id", default=None, help="Link to a specification document."),
        click.option(
            "-e",
            "--estimate",
            type=click.IntRange(min=0),
            default=None,
            help="Estimate in minutes.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _description(opts: dict[str, Any]) -> tuple[str | None, bool]:
    """The description from whichever one of bd's spellings was given, and whether it came
    from a file or stdin (bd refuses to blank a description from those by accident)."""
    given = {
        flag: opts.pop(key)
        for flag, key in (
            ("--description", "description"),
            ("--body", "body"),
            ("--message", "message"),
            ("--body-file", "body_file"),
            ("--description-file", "description_file"),
        )
        if opts.get(key) is not None
    }
    if opts.pop("from_stdin", False):
        given["--stdin"] = "-"
    if len(given) > 1:
        raise BadInput(f"give the description once, not with {' and '.join(given)}")
    if not given:
        return None, False
    ((flag, value),) = given.items()
    if flag in ("--body-file", "--description-file", "--stdin") or value == "-":
        from gc_polecat.interop.bd_verbs import read_text_arg  # lazy: start-up (a file only)

        return read_text_arg(value, flag), True
    return value, False


def _text_changes(opts: dict[str, Any], current_notes: str = "") -> tuple[Bead, bool]:
    """bd's text flags as bead fields (popped from `opts`), plus whether the description was
    read from a file or stdin."""
    fields: Bead = {}
    description, from_file = _description(opts)
    if description is not None:
        fields["description"] = description
    design, design_file = opts.pop("design"), opts.pop("design_file")
    if design is not None and design_file is not None:
        raise BadInput("give --design or --design-file, not both")
    if design_file is not None:
        from gc_polecat.interop.bd_verbs import read_text_arg  # lazy: start-up (a file only)

        design = read_text_arg(design_file, "--design-file")
    if design is not None:
        fields["design"] = design
    notes, append = opts.pop("notes"), opts.pop("append_notes")
    if notes is not None and append is not None:
        raise BadInput("give --notes or --append-notes, not both")
    if append is not None:  # bd: existing notes, a newline, the new text
        notes = f"{current_notes}\n{append}" if current_notes else append
    if notes is not None:
        fields["notes"] = notes
    for key, field in (
        ("acceptance", "acceptance_criteria"),
        ("external_ref", "external_ref"),
        ("spec_id", "spec_id"),
        ("estimate", "estimated_minutes"),
    ):
        if opts.get(key) is not None:
            fields[field] = opts.pop(key)
        else:
            opts.pop(key, None)
    return fields, from_file


def _with_counts(beads: list[Bead], every: list[Bead], parent: bool = True) -> list[dict]:
    """bd's IssueWithCounts records (`bd ready --json`, `bd search --json`): the bead plus
    dependency_count, dependent_count, comment_count (and parent, for ready)."""
    from gc_polecat.interop.bd_jsonl import dependency_counts, to_bd  # lazy: start-up

    dependents = dependency_counts(every)
    records = [to_bd(b, dependents[b["id"]]) for b in beads]
    if not parent:
        for record in records:
            record.pop("parent", None)
    return records


def _parse_deps(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """bd's `--deps blocks:gc-1,gc-2` (type defaults to blocks) -> [(type, id)]."""
    out = []
    for spec in split_csv(specs):
        dtype, colon, target = spec.rpartition(":")
        out.append((dtype if colon else "blocks", target))
    return out


@click.command("create")
@click.argument("title", required=False)
@click.option("--title", "title_flag", default=None, help="The title (instead of the argument).")
@text_options
@click.option(
    "-t",
    "--type",
    "issue_type",
    type=IssueType(TYPES),
    default="task",
    show_default=True,
    help="Issue type.",
)
@click.option(
    "-p", "--priority", type=Priority(), default=2, show_default=True, help="0..4 or P0..P4."
)
@click.option(
    "-s", "--status", type=click.Choice(STATUSES), default="open", show_default=True, help="Status."
)
@click.option("-a", "--assignee", default=None, help="Who works on it.")
@click.option(
    "-l", "--labels", "--label", "labels", multiple=True, help="Labels (repeat, or comma-separate)."
)
@click.option(
    "--metadata", "metadata_json", default=None, help="Metadata as a JSON object, or @FILE."
)
@click.option(
    "--set-metadata", "set_metadata", type=KeyValue(), multiple=True, help="key=value (repeat)."
)
@click.option("--parent", default=None, help="Make a child bead <parent>.<n>.")
@click.option("--no-inherit-labels", is_flag=True, help="Do not copy the parent's labels.")
@click.option("--skills", default=None, help="Required skills (a section of the description).")
@click.option("--context", default=None, help="Context (a section of the description).")
@click.option("--id", "explicit_id", default=None, help="Use this ID instead of generating one.")
@click.option(
    "--deps", multiple=True, help="Dependencies: [type:]id,... (type defaults to blocks)."
)
@click.option("--ephemeral", is_flag=True, help="A wisp: short-lived bead.")
@click.option("--await-type", type=click.Choice(AWAIT_TYPES), help="Gate: what the gate waits for.")
@click.option("--await-id", default=None, help="Gate: the ID of what it waits for.")
@click.option("--timeout", type=Duration(), default=None, help="Gate timeout, e.g. 2h.")
@click.option("--waiter", "waiters", multiple=True, help="Gate: an address to tell (repeat).")
@click.option("--silent", is_flag=True, help="Print only the ID (for scripts).")
@click.option("--path", "show_path", is_flag=True, help="Also print the bead's file path.")
@json_option
@click.pass_obj
def create_command(
    app: AppContext,
    title: str | None,
    title_flag: str | None,
    labels: tuple[str, ...],
    metadata_json: str | None,
    set_metadata: tuple[tuple[str, str], ...],
    parent: str | None,
    no_inherit_labels: bool,
    explicit_id: str | None,
    deps: tuple[str, ...],
    silent: bool,
    show_path: bool,
    **opts: Any,
) -> None:
    """Create a bead and print its ID.

    bd: cmd/bd/create.go.
    """
    from gc_polecat.beads.ids import id_path  # lazy: start-up

    if title is not None and title_flag is not None and title != title_flag:
        raise BadInput("give the title once: the argument and --title differ")
    title = title if title is not None else title_flag
    if title is None:
        raise BadInput("a title is required (argument or --title)")
    skills, context = opts.pop("skills"), opts.pop("context")
    texts, _ = _text_changes(opts)
    sections = [texts.get("description", "")]  # bd: cmd/bd/create.go appends these sections
    sections += [
        f"## {name}\n{text}"
        for name, text in (("Required Skills", skills), ("Context", context))
        if text
    ]
    if skills or context:
        texts["description"] = "\n\n".join(x for x in sections if x)
    # `v is False` / `v == ()`, not `v in (...)`: priority 0 == False would be dropped
    given = {k: v for k, v in opts.items() if v is not None and v is not False and v != ()}
    bead: Bead = {"title": title, **given, **texts}
    bead["waiters"] = list(opts["waiters"])
    metadata: dict[str, Any] = {}
    if metadata_json is not None:
        from gc_polecat.interop.bd_verbs import parse_metadata_json  # lazy: start-up

        metadata = parse_metadata_json(metadata_json)
    bead["metadata"] = {**metadata, **dict(set_metadata)}
    validate_ids(*(explicit_id, parent))
    if explicit_id:
        bead["id"] = explicit_id
    dep_list = _parse_deps(deps)
    validate_ids(*(target for _, target in dep_list))
    with app.store().transaction() as tx:
        inherited = (
            [] if parent is None or no_inherit_labels else tx.require(parent).get("labels", [])
        )
        bead["labels"] = list(dict.fromkeys([*inherited, *split_csv(labels)]))
        created = tx.create(bead, parent=parent)
        for dtype, target in dep_list:
            created = tx.add_dependency(created["id"], target, dtype)
    path = id_path(created["id"])
    if app.json:
        emit_json({**created, "path": path})
    elif silent or not show_path:
        click.echo(created["id"])
    else:
        click.echo(f"{created['id']}\t{path}")


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """bd's filters shared by `bd list` and `bd search` (cmd/bd/list.go, search.go)."""
    options = [
        click.option("--label-any", multiple=True, help="Beads with at least one of these labels."),
        click.option("--exclude-label", multiple=True, help="Leave out beads with any of these."),
        click.option("--no-labels", is_flag=True, help="Only beads without labels."),
        click.option("--no-assignee", is_flag=True, help="Only unassigned beads."),
        click.option("--title-contains", default=None, help="Title substring (any case)."),
        click.option("--desc-contains", default=None, help="Description substring (any case)."),
        click.option("--notes-contains", default=None, help="Notes substring (any case)."),
        click.option("--external-contains", default=None, help="External ref substring."),
        click.option("--empty-description", is_flag=True, help="Only beads with no description."),
        click.option(
            "--priority-min", type=Priority(), default=None, help="Lowest priority number."
        ),
        click.option(
            "--priority-max", type=Priority(), default=None, help="Highest priority number."
        ),
        *(
            click.option(f"--{field}-{edge}", default=None, help=f"{field.title()} {edge} a date.")
            for field in ("created", "updated", "closed")
            for edge in ("after", "before")
        ),
        click.option(
            "--metadata-field", type=KeyValue(), multiple=True, help="key=value the metadata holds."
        ),
        click.option("--has-metadata-key", default=None, help="Metadata key that must be set."),
        click.option("--sort", type=click.Choice(SORT_FIELDS), default=None, help="Sort by field."),
        click.option("-r", "--reverse", is_flag=True, help="Reverse the sort order."),
        click.option("--long", "long_format", is_flag=True, help="Every field of each bead."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(statuses: tuple[str, ...] = (), **opts: Any) -> Any:
    """A bead_ops.Filter from the parsed filter flags (popped from `opts`)."""
    from gc_polecat.interop.bd_verbs import Filter, parse_time_flag  # lazy: start-up

    def span(field: str) -> tuple[Any, Any]:
        return tuple(  # type: ignore[return-value]
            parse_time_flag(v, f"--{field}-{edge}") if (v := opts.pop(f"{field}_{edge}")) else None
            for edge in ("after", "before")
        )

    return Filter(
        statuses=statuses,
        labels_any=tuple(split_csv(opts.pop("label_any"))),
        exclude_labels=tuple(split_csv(opts.pop("exclude_label"))),
        no_labels=opts.pop("no_labels"),
        no_assignee=opts.pop("no_assignee"),
        title_contains=opts.pop("title_contains"),
        desc_contains=opts.pop("desc_contains"),
        notes_contains=opts.pop("notes_contains"),
        external_contains=opts.pop("external_contains"),
        empty_description=opts.pop("empty_description"),
        priority_min=opts.pop("priority_min"),
        priority_max=opts.pop("priority_max"),
        created=span("created"),
        updated=span("updated"),
        closed=span("closed"),
        meta=tuple(opts.pop("metadata_field")),
        has_meta_key=opts.pop("has_metadata_key"),
        **opts,
    )


def _print_list(app: AppContext, beads: list[Bead], long_format: bool) -> None:
    report_beads(app, beads, single=long_format)


@click.command("list")
@click.option(
    "-s",
    "--status",
    "--state",
    "statuses",
    multiple=True,
    help="Status (repeat or comma-separate).",
)
@click.option("-t", "--type", "types", multiple=True, help="Type (repeat or comma-separate).")
@click.option("--exclude-type", multiple=True, help="Leave out these types.")
@click.option("-a", "--assignee", default=None, help="Only this assignee's beads.")
@click.option("-l", "--label", "labels", multiple=True, help="Only beads with every label given.")
@click.option("--all", "include_closed", is_flag=True, help="Include closed beads.")
@click.option("--id", "id_list", multiple=True, help="Only these IDs (repeat or comma-separate).")
@click.option("--title", "title_search", default=None, help="Title substring (any case).")
@click.option("-p", "--priority", type=Priority(), default=None, help="Only this priority.")
@click.option("--label-pattern", default=None, help="Beads with a label matching this glob.")
@click.option("--spec", "spec_prefix", default=None, help="Beads whose spec_id starts so.")
@click.option("--parent", "--filter-parent", default=None, help="Only children of this bead.")
@click.option("--no-parent", is_flag=True, help="Only beads without a parent.")
@click.option("--ready", "only_ready", is_flag=True, help="Only ready beads (as `bead ready`).")
@click.option("--include-gates", is_flag=True, help="List gates too (waits; hidden as in bd).")
@click.option(
    "--include-infra", is_flag=True, help="List agent, rig, role and message beads too (as bd)."
)
@filter_options
@click.option("-n", "--limit", type=click.IntRange(min=0), default=None, help="At most N (0: all).")
@json_option
@click.pass_obj
def list_command(
    app: AppContext,
    statuses: tuple[str, ...],
    types: tuple[str, ...],
    exclude_type: tuple[str, ...],
    assignee: str | None,
    labels: tuple[str, ...],
    include_closed: bool,
    id_list: tuple[str, ...],
    title_search: str | None,
    only_ready: bool,
    sort: str | None,
    reverse: bool,
    long_format: bool,
    limit: int | None,
    include_gates: bool,
    include_infra: bool,
    **opts: Any,
) -> int:
    """List beads (closed ones only with --all or --status closed).

    As bd's `list` (cmd/bd/list.go), gates and the infrastructure types agent, rig, role and
    message are left out unless --type names one of them or --include-gates / --include-infra
    asks for them: a work listing shows work, not the pool's polecats and waits. A bead file
    that cannot be read is named on stderr and the exit status is 2; the readable beads are
    still listed.
    """
    from gc_polecat.interop.bd_verbs import canonical_types, ready, sort_beads  # lazy: start-up

    opts["title_contains"] = opts["title_contains"] or title_search
    query, hidden = list_selection(  # shared with the click-free `bead list` (fast.py)
        statuses, types, assignee, labels, include_closed, include_gates, include_infra
    )
    validate_ids(*split_csv(id_list))
    flt = _filter(
        query.statuses,
        include_closed=include_closed,
        exclude_types=canonical_types(split_csv(exclude_type)) + hidden,
        ids=tuple(split_csv(id_list)),
        **opts,
    )
    beads, status = all_beads(app, query)
    found = [b for b in beads if flt.matches(b)]
    if only_ready:
        every, _ = all_beads(app)
        statuses = ready_statuses(app.store().config())
        ready_ids = {b["id"] for b in ready(every, flt, statuses=statuses)}
        found = [b for b in found if b["id"] in ready_ids]
    found = sort_beads(found, sort, reverse)
    _print_list(app, found[:limit] if limit else found, long_format)
    return status


@click.command("update")
@click.argument("bead_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--title", default=None, help="New title.")
@text_options
@click.option("--acceptance-criteria", default=None, hidden=True, help="Alias for --acceptance.")
@click.option(
    "--allow-empty-description", is_flag=True, help="Let --body-file/--stdin blank the description."
)
@click.option("-s", "--status", type=click.Choice(STATUSES), default=None, help="New status.")
@click.option("-p", "--priority", type=Priority(), default=None, help="0..4 or P0..P4.")
@click.option(
    "-t", "--type", "issue_type", type=IssueType(TYPES), default=None, help="New issue type."
)
@click.option("-a", "--assignee", default=None, help="Assignee ('' clears it).")
@click.option("--owner", default=None, help="Owner ('' clears it).")
@click.option("--claim", is_flag=True, help="Take it: assignee you, status in_progress, if open.")
@click.option("--add-label", "add_labels", multiple=True, help="Add labels (repeat).")
@click.option("--remove-label", "remove_labels", multiple=True, help="Remove labels (repeat).")
@click.option("--set-labels", "set_labels", multiple=True, help="Replace all labels (repeat).")
@click.option("--parent", default=None, help="Move under this parent ('' removes the parent).")
@click.option("--await-id", default=None, help="Gate: the ID of what it waits for.")
@click.option("--ephemeral", "wisp", flag_value=True, default=None, help="Make it a wisp.")
@click.option("--persistent", "wisp", flag_value=False, help="Make a wisp a lasting bead.")
@click.option("--metadata", "metadata_json", default=None, help="Merge a JSON object, or @FILE.")
@click.option(
    "--set-metadata", "set_metadata", type=KeyValue(), multiple=True, help="key=value (repeat)."
)
@click.option("--unset-metadata", "unset_metadata", multiple=True, help="Remove a key (repeat).")
@json_option
@click.pass_obj
def update_command(app: AppContext, bead_ids: tuple[str, ...], **opts: Any) -> None:
    """Change fields of beads, or claim them, in one commit.

    bd: cmd/bd/update.go.
    """
    from gc_polecat.interop.bd_verbs import parse_metadata_json  # lazy: start-up

    validate_ids(*bead_ids)
    validate_ids(*(opts["parent"] or None,))
    if opts["metadata_json"] is not None and (opts["set_metadata"] or opts["unset_metadata"]):
        raise BadInput("cannot combine --metadata with --set-metadata or --unset-metadata")
    metadata_json = opts.pop("metadata_json")
    merge = parse_metadata_json(metadata_json) if metadata_json is not None else None
    if opts["acceptance"] is None:
        opts["acceptance"] = opts.pop("acceptance_criteria")
    else:
        opts.pop("acceptance_criteria")
    with app.store().transaction() as tx:
        updated = [_update_one(tx, bid, dict(opts), merge) for bid in dict.fromkeys(bead_ids)]
    if app.json:
        emit_json(updated)
        return
    changed = {c.id for c in tx.changes()} if tx.has_changes() else set()
    for bead in updated:
        click.echo(f"updated {bead['id']}" if bead["id"] in changed else f"{bead['id']} unchanged")


def _update_one(tx: Any, bead_id: str, opts: dict[str, Any], merge: dict | None) -> Bead:
    """One bead's share of `bead update`, staged in the caller's transaction."""
    from gc_polecat.interop.bd_verbs import claim  # lazy: start-up

    current = tx.require(bead_id)
    if opts.pop("claim"):
        current = claim(tx, bead_id, tx.store.actor())
    texts, from_file = _text_changes(opts, current.get("notes", ""))
    allow_empty = opts.pop("allow_empty_description")
    if from_file and not allow_empty and not texts.get("description", "x").strip():
        raise BadInput("the description read is empty; --allow-empty-description to clear it")
    changes: Bead = {**texts}
    for key in ("title", "status", "priority", "issue_type", "assignee", "owner", "await_id"):
        if opts.get(key) is not None:
            changes[key] = opts[key]
    if opts["wisp"] is not None:
        changes["ephemeral"] = opts["wisp"]
    labels = _new_labels(current.get("labels", []), opts)
    if labels is not None:
        changes["labels"] = labels
    meta = dict(current.get("metadata", {}))
    meta.update(merge or {})
    meta.update(dict(opts["set_metadata"]))
    for key in opts["unset_metadata"]:
        meta.pop(key, None)
    if meta != current.get("metadata", {}):
        changes["metadata"] = meta
    if opts["parent"] is not None:
        changes["dependencies"] = _reparent(tx, current, opts["parent"])
    return tx.update(bead_id, changes)


def _new_labels(labels: list[str], opts: dict[str, Any]) -> list[str] | None:
    """bd's order (cmd/bd/show_unit_helpers.go applyLabelUpdates): set, then add, then remove."""
    if not (opts["set_labels"] or opts["add_labels"] or opts["remove_labels"]):
        return None
    if opts["set_labels"]:
        labels = split_csv(opts["set_labels"])
    labels = labels + [x for x in split_csv(opts["add_labels"]) if x not in labels]
    removed = set(split_csv(opts["remove_labels"]))
    return [x for x in labels if x not in removed]


def _reparent(tx: Any, bead: Bead, parent: str) -> list[dict[str, Any]]:
    """bd's `update --parent`: drop the parent-child dependency, add one on the new parent."""
    deps = [d for d in bead.get("dependencies", []) if d["type"] != "parent-child"]
    if parent:
        if parent == bead["id"]:
            raise BadInput(f"{parent} cannot be its own parent")
        tx.require(parent)
        deps.append(
            {
                "issue_id": bead["id"],
                "depends_on_id": parent,
                "type": "parent-child",
                "created_at": tx.now,
                "created_by": tx.store.actor(),
            }
        )
    return deps


@click.command("close")
@click.argument("bead_ids", nargs=-1, required=True, metavar="ID...")
@click.option("-r", "--reason", default=None, help="Why it was closed.")
@click.option("-m", "--message", default=None, hidden=True, help="Alias for --reason.")
@click.option("--resolution", default=None, hidden=True, help="Alias for --reason.")
@click.option("--comment", default=None, hidden=True, help="Alias for --reason.")
@click.option("--reason-file", default=None, help="Read the reason from a file ('-': stdin).")
@json_option
@click.pass_obj
def close_command(
    app: AppContext,
    bead_ids: tuple[str, ...],
    reason: str | None,
    message: str | None,
    resolution: str | None,
    comment: str | None,
    reason_file: str | None,
) -> None:
    """Close beads (several IDs: one commit).

    bd: cmd/bd/close.go.
    """
    from gc_polecat.interop.bd_verbs import close_beads, read_text_arg  # lazy: start-up

    validate_ids(*bead_ids)
    reason = reason or resolution or message or comment
    if reason_file is not None:
        if reason:
            raise BadInput("give --reason or --reason-file, not both")
        reason = read_text_arg(reason_file, "--reason-file").strip()
    with app.store().transaction() as tx:
        closed = close_beads(tx, bead_ids, reason)
    if app.json:
        emit_json(closed)
        return
    changed = {c.id for c in tx.changes()} if tx.has_changes() else set()
    for bead in closed:
        click.echo(
            f"closed {bead['id']}" if bead["id"] in changed else f"{bead['id']} was already closed"
        )


@click.command("ready")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most N (0: all).",
)
@click.option("-p", "--priority", type=Priority(), default=None, help="Only this priority.")
@click.option("-a", "--assignee", default=None, help="Only this assignee's beads.")
@click.option("-u", "--unassigned", is_flag=True, help="Only unassigned beads.")
@click.option(
    "-s",
    "--sort",
    "policy",
    type=click.Choice(READY_SORTS),
    default="priority",
    show_default=True,
    help="hybrid: the last 48 h by priority, then oldest.",
)
@click.option("-l", "--label", "labels", multiple=True, help="Beads with every label given.")
@click.option("--label-any", multiple=True, help="Beads with at least one of these labels.")
@click.option("--exclude-label", multiple=True, help="Leave out beads with any of these.")
@click.option("-t", "--type", "issue_type", default=None, help="Only this type.")
@click.option("--exclude-type", multiple=True, help="Leave out these types.")
@click.option("--parent", default=None, help="Only children of this bead.")
@click.option("--include-deferred", is_flag=True, help="Also beads deferred into the future.")
@click.option("--include-ephemeral", is_flag=True, help="Also wisps.")
@click.option("--metadata-field", type=KeyValue(), multiple=True, help="key=value it holds.")
@click.option("--has-metadata-key", default=None, help="Metadata key that must be set.")
@click.option("--claim", is_flag=True, help="Claim the first ready bead, in one commit.")
@json_option
@click.pass_obj
def ready_command(
    app: AppContext,
    limit: int,
    unassigned: bool,
    policy: str,
    labels: tuple[str, ...],
    label_any: tuple[str, ...],
    exclude_label: tuple[str, ...],
    issue_type: str | None,
    exclude_type: tuple[str, ...],
    include_deferred: bool,
    include_ephemeral: bool,
    metadata_field: tuple[tuple[str, str], ...],
    claim: bool,
    **opts: Any,
) -> int:
    """Open beads with nothing blocking them.

    bd: cmd/bd/ready.go; JSON as `bd ready --json`.
    """
    from gc_polecat.interop.bd_verbs import Filter, canonical_types, ready  # lazy: start-up

    if claim and opts["assignee"]:
        raise BadInput("--claim cannot be combined with --assignee")
    validate_ids(*(opts["parent"],))
    flt = Filter(
        types=canonical_types([issue_type] if issue_type else []),
        exclude_types=canonical_types(split_csv(exclude_type)),
        labels=tuple(split_csv(labels)),
        labels_any=tuple(split_csv(label_any)),
        exclude_labels=tuple(split_csv(exclude_label)),
        no_assignee=unassigned,
        meta=metadata_field,
        has_meta_key=opts.pop("has_metadata_key"),
        **opts,
    )
    every, status = all_beads(app)
    statuses = ready_statuses(app.store().config())
    found = ready(every, flt, policy, include_deferred, include_ephemeral, statuses=statuses)
    found = found[:limit] if limit else found
    if claim:
        return _claim_first(app, found) or status
    if app.json:
        emit_json(_with_counts(found, every))
    elif not found:
        click.echo("no ready work")
    else:
        for line in list_lines(found):  # one column width for the whole listing, as `bead list`
            echo(line)
    return status


def _claim_first(app: AppContext, candidates: list[Bead]) -> int:
    """`ready --claim`: claim the first candidate; prints `[]` / a note when there is none."""
    from gc_polecat.interop.bd_verbs import claim  # lazy: start-up

    if not candidates:
        emit_json([]) if app.json else click.echo("no ready work to claim")
        return 0
    with app.store().transaction() as tx:
        claimed = claim(tx, candidates[0]["id"], tx.store.actor())
    if app.json:
        every, _ = all_beads(app)
        emit_json(_with_counts([claimed], every))
    else:
        echo(f"claimed {claimed['id']}  {claimed['title']}")
    return 0


@click.command("search")
@click.argument("words", nargs=-1, metavar="[QUERY]...")
@click.option("--query", default=None, help="The query (instead of the arguments).")
@click.option("-s", "--status", default=None, help="Only this status; 'all' includes closed.")
@click.option("-a", "--assignee", default=None, help="Only this assignee's beads.")
@click.option("-t", "--type", "issue_type", default=None, help="Only this type.")
@click.option("-l", "--label", "labels", multiple=True, help="Beads with every label given.")
@filter_options
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most N (0: all).",
)
@json_option
@click.pass_obj
def search_command(
    app: AppContext,
    words: tuple[str, ...],
    query: str | None,
    status: str | None,
    issue_type: str | None,
    labels: tuple[str, ...],
    sort: str | None,
    reverse: bool,
    long_format: bool,
    limit: int,
    **opts: Any,
) -> int:
    """Search titles and IDs, any case.

    Beads whose title or ID holds QUERY (bd: cmd/bd/search.go); closed ones only with
    --status closed or all.
    """
    from gc_polecat.interop.bd_verbs import canonical_types, search, sort_beads  # lazy: start-up

    text = " ".join(words) or query or ""
    if not text:
        raise BadInput("a search query is required (argument or --query)")
    flt = _filter(
        (status,) if status and status != "all" else (),
        include_closed=status == "all",
        types=canonical_types([issue_type] if issue_type else []),
        labels=tuple(split_csv(labels)),
        **opts,
    )
    every, code = all_beads(app)
    found = sort_beads(search(every, text, flt), sort, reverse)
    found = found[:limit] if limit else found
    if app.json:
        emit_json(_with_counts(found, every, parent=False))
    elif not found:
        echo(f"no beads match '{text}'")
    else:
        _print_list(app, found, long_format)
    return code


# --- comments (bd: cmd/bd/comments.go) ------------------------------------------------------


class CommentsGroup(click.Group):
    """bd's shape: `comments ID` lists, `comments add ID TEXT` adds. A first word that is not
    a subcommand is the ID of the hidden listing command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["list-for", *args]
        return super().parse_args(ctx, args)


@click.group("comments", cls=CommentsGroup)
def comments_group() -> None:
    """List (`comments ID`) or add comments.

    `comments ID` lists a bead's comments, `comments add ID TEXT` adds one (bd: cmd/bd/comments.go).
    """


@comments_group.command("list-for", hidden=True)
@click.argument("bead_id", metavar="ID")
@click.option("--local-time", is_flag=True, help="Times in local time, not UTC.")
@json_option
@click.pass_obj
def comments_list(app: AppContext, bead_id: str, local_time: bool) -> None:
    """List a bead's comments, oldest first (JSON: bd's comment objects)."""
    from gc_polecat.interop.bd_verbs import comments_of  # lazy: start-up

    (bead,) = read_beads(app, (bead_id,))
    if app.json:
        emit_json(comments_of(bead))
    else:
        print_comments(bead, local=local_time)


@comments_group.command("add")
@click.argument("bead_id", metavar="ID")
@click.argument("text", required=False)
@click.option(
    "-f", "--file", "text_file", default=None, help="Read the text from a file ('-': stdin)."
)
@click.option("-a", "--author", default=None, help="Author (default: the actor).")
@json_option
@click.pass_obj
def comments_add(
    app: AppContext, bead_id: str, text: str | None, text_file: str | None, author: str | None
) -> None:
    """Add a comment to a bead, in one commit."""
    from gc_polecat.interop.bd_verbs import add_comment, read_text_arg  # lazy: start-up

    validate_ids(*(bead_id,))
    if text_file is not None:
        text = read_text_arg(text_file, "--file")
    if text is None:
        raise BadInput("comment text required (or -f FILE)")
    with app.store().transaction() as tx:
        comment = add_comment(tx, bead_id, author or tx.store.actor(), text)
    emit_json(comment) if app.json else click.echo(f"comment added to {bead_id}")


# --- labels (bd: cmd/bd/label.go) -----------------------------------------------------------


@click.group("label")
def label_group() -> None:
    """Add, remove and list labels."""


def _label_change(app: AppContext, args: tuple[str, ...], add: bool) -> None:
    """`label add|remove ID... LABEL` (bd's argument order: the label last)."""
    from gc_polecat.interop.bd_verbs import change_label  # lazy: start-up

    if len(args) < 2:
        raise BadInput("give at least one ID and a label")
    *bead_ids, label = args
    validate_ids(*bead_ids)
    with app.store().transaction() as tx:
        rows = change_label(tx, bead_ids, label, add)
    if app.json:
        emit_json(rows)
        return
    verb, prep = ("added", "to") if add else ("removed", "from")
    for row in rows:
        echo(f"{verb} label '{row['label']}' {prep} {row['issue_id']}")


@label_group.command("add")
@click.argument("args", nargs=-1, required=True, metavar="ID... LABEL")
@json_option
@click.pass_obj
def label_add(app: AppContext, args: tuple[str, ...]) -> None:
    """Add LABEL to each bead, in one commit."""
    _label_change(app, args, add=True)


@label_group.command("remove")
@click.argument("args", nargs=-1, required=True, metavar="ID... LABEL")
@json_option
@click.pass_obj
def label_remove(app: AppContext, args: tuple[str, ...]) -> None:
    """Remove LABEL from each bead, in one commit (a bead without it is left as it is)."""
    _label_change(app, args, add=False)


@label_group.command("list")
@click.argument("bead_id", metavar="ID")
@json_option
@click.pass_obj
def label_list(app: AppContext, bead_id: str) -> None:
    """A bead's labels (JSON: an array of strings)."""
    (bead,) = read_beads(app, (bead_id,))
    labels = bead.get("labels", [])
    if app.json:
        emit_json(labels)
    elif not labels:
        echo(f"{bead_id} has no labels")
    else:
        for label in labels:
            echo(label)


@label_group.command("list-all")
@json_option
@click.pass_obj
def label_list_all(app: AppContext) -> int:
    """Every label in use, with how many beads carry it (closed ones included)."""
    from collections import Counter

    beads, status = all_beads(app)
    counts = Counter(label for b in beads for label in b.get("labels", ()))
    rows = [{"label": label, "count": counts[label]} for label in sorted(counts)]
    if app.json:
        emit_json(rows)
    elif not rows:
        click.echo("no labels")
    else:
        width = max(len(r["label"]) for r in rows)
        for row in rows:
            echo(f"{row['label']:<{width}}  {row['count']}")
    return status


@click.group("dep")
def dep_group() -> None:
    """Add or remove dependencies.

    ID depends on (is blocked by) DEPENDS_ON.
    """


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
    from gc_polecat.beads.bead import DEP_TYPE_RE  # lazy: start-up
    from gc_polecat.beads.ids import validate_id  # lazy: start-up

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
    from gc_polecat.beads.ids import validate_id  # lazy: start-up

    validate_id(bead_id)
    validate_id(depends_on)
    with app.store().transaction() as tx:
        bead = tx.remove_dependency(bead_id, depends_on, dep_type)
    emit_json(bead) if app.json else click.echo(f"{bead_id} no longer depends on {depends_on}")
