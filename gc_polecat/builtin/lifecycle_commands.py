"""Commands of the polecat/refinery lifecycle: session, submit, verdict, await, wait, controller."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gc_polecat.cli import AppContext, Seconds, echo, emit_json, json_option, validate_ids
from gc_polecat.hookspecs import hookimpl


def _caller(session_opt: str | None) -> tuple[str | None, int | None]:
    from gc_polecat.lifecycle.session import caller_identity  # lazy: start-up

    sid, epoch = caller_identity()
    return session_opt or sid, epoch


# --- session --------------------------------------------------------------------------------


@click.group("session")
def session_group() -> None:
    """Run and track polecat sessions (tmux or process)."""


def _session_view(s: Any, alive: bool) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "pool": s.pool,
        "provider": s.provider,
        "state": s.state,
        "epoch": s.epoch,
        "alive": alive,
        "work_dir": s.work_dir,
        "handle": s.handle,
    }


@session_group.command("start", context_settings={"ignore_unknown_options": True})
@click.option("--pool", required=True, help="The pool the session belongs to.")
@click.option("--name", default=None, help="Session name (default: <pool>-<hash>).")
@click.option(
    "--provider",
    "provider_name",
    default="tmux",
    show_default=True,
    help="How the session runs: tmux or process (plugins may add providers).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    help="The directory the session starts in (it must exist).",
)
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD...")
@json_option
@click.pass_obj
def session_start(
    app: AppContext,
    pool: str,
    name: str | None,
    provider_name: str,
    work_dir: str,
    argv: tuple[str, ...],
) -> None:
    """Launch a session whose environment carries its identity (GC_SESSION_ID, ...)."""
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    started = sessions.start(
        app.store(),
        app.providers(),
        pool=pool,
        name=name,
        provider_name=provider_name,
        argv=argv,
        work_dir=Path(work_dir).resolve(),
    )
    emit_json(_session_view(started, True)) if app.json else click.echo(started.id)


@session_group.command("register")
@click.option("--pool", required=True, help="The pool the session belongs to.")
@click.option("--name", default=None, help="Session name (default: <pool>-<pid>).")
@click.option(
    "--pid",
    type=click.IntRange(min=1),
    default=None,
    help="The process to register (default: the caller, i.e. our parent process).",
)
@json_option
@click.pass_obj
def session_register(app: AppContext, pool: str, name: str | None, pid: int | None) -> None:
    """Register an already running process (e.g. the agent calling this) as a session."""
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    store = app.store()
    target = pid or os.getppid()
    with store.transaction() as tx:
        sid = tx.new_id({"title": f"session:{name or pool}"})
        handle = sessions.registered_handle(target, store.state_dir / "sessions" / f"{sid}.log")
        fields = sessions.session_fields(
            name or f"{pool.replace('/', '-')}-{target}", pool, "process", os.getcwd(), handle
        )
        fields["id"] = sid
        record = sessions.write_record(store.state_dir, sid, handle)  # liveness, never signals
        try:
            created = sessions.Session.of(tx.create(fields), store.state_dir)
        except BaseException:
            record.unlink(missing_ok=True)
            raise
    if app.json:
        emit_json({**_session_view(created, True), "env": created.env(store.root)})
    else:
        for key, value in created.env(store.root).items():
            click.echo(f"export {key}={value}")


@session_group.command("list")
@click.option("--pool", default=None, help="Only this pool's sessions.")
@click.option(
    "--state",
    type=click.Choice(("active", "awaiting_verdict", "stopped", "dead")),
    help="Only sessions in this state.",
)
@click.option("--all", "include_closed", is_flag=True, help="Include stopped sessions.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the session IDs.")
@json_option
@click.pass_obj
def session_list(
    app: AppContext, pool: str | None, state: str | None, include_closed: bool, quiet: bool
) -> None:
    """List sessions with their state and whether their process is alive."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    store = app.store()
    catalog = store.catalog
    catalog.refresh()
    labels = (sessions.SESSION_LABEL,) + ((f"pool:{pool}",) if pool else ())
    providers = app.providers()
    rows = []
    for bead in catalog.list(Query(labels=labels, include_closed=include_closed or bool(state))):
        s = sessions.Session.of(bead, store.state_dir)
        if state is None or s.state == state:
            rows.append(_session_view(s, sessions.is_alive(s, providers)))
    if app.json:
        emit_json(rows)
        return
    for r in rows:
        if quiet:
            click.echo(r["id"])
            continue
        echo(
            f"{r['id']}  {r['name']:<24} {r['pool']:<12} {r['state']:<17} "
            f"{'alive' if r['alive'] else 'gone':<6} epoch {r['epoch']}"
        )


@session_group.command("show")
@click.argument("session_id", metavar="ID")
@json_option
@click.pass_obj
def session_show(app: AppContext, session_id: str) -> None:
    """One session, with liveness checked now."""
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    validate_ids(session_id)
    s = sessions.get(app.store(), session_id)
    view = _session_view(s, sessions.is_alive(s, app.providers()))
    if app.json:
        emit_json(view)
        return
    for key, value in view.items():
        if key == "handle":
            for name in sorted(value):
                echo(f"handle.{name}: {value[name]}")
        elif key == "alive":
            echo(f"alive: {'yes' if value else 'no'}")
        else:
            echo(f"{key}: {value}")
    how = _how_to_look(view["handle"])
    if how:
        echo(how)


def _how_to_look(handle: dict[str, str]) -> str | None:
    """The command a person runs to see the session: sessions live on a private tmux server
    (`tmux ls` on the default one shows nothing), so print its socket."""
    import shlex

    if handle.get("socket") and handle.get("session"):
        socket, target = shlex.quote(handle["socket"]), shlex.quote(handle["session"])
        return f"attach: tmux -S {socket} attach -t {target}"
    if handle.get("log"):
        return f"follow: tail -f {shlex.quote(handle['log'])}"
    return None


@session_group.command("stop")
@click.argument("session_id", metavar="ID")
@click.option("--reason", default="stopped", show_default=True, help="Recorded as stop_reason.")
@click.pass_obj
def session_stop(app: AppContext, session_id: str, reason: str) -> None:
    """Stop a session: its process ends, its waits are cancelled, its work goes to the pool."""
    from gc_polecat.lifecycle.routing import stop_session  # lazy: start-up

    validate_ids(session_id)
    why = stop_session(app.store(), session_id, reason, app.providers())
    if why:
        click.echo(f"warning: {session_id}: process not signalled ({why})", err=True)
    click.echo(f"stopped {session_id}")


# --- submit / verdict / await ------------------------------------------------------------------


def _default_ttl(store: Any, session_id: str | None) -> float:
    """The session's pool's wait_ttl, else the repository's."""
    from gc_polecat.errors import GcPolecatError  # lazy: start-up
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up
    from gc_polecat.pool.config import get_pool  # lazy: start-up

    try:
        pool = get_pool(store, sessions.get(store, session_id).pool) if session_id else None
    except GcPolecatError:
        pool = None  # submit itself reports the unknown session
    return pool.wait_ttl if pool and pool.wait_ttl else store.config()["wait_ttl"]


@click.command("submit")
@click.argument("work_id", metavar="WORK")
@click.option("--branch", required=True, help="The pushed branch the refinery merges.")
@click.option("--commit", "commit_sha", required=True, help="The commit submitted (its SHA).")
@click.option("--target", default="main", show_default=True, help="The branch to merge into.")
@click.option("--ttl", default=None, help="Wait lifetime, e.g. 2h (default: wait_ttl in config).")
@click.option("--worktree", default=None, help="The sandbox (default: the current directory).")
@click.option("--session", "session_opt", default=None, help="Default: $GC_SESSION_ID.")
@json_option
@click.pass_obj
def submit_command(
    app: AppContext,
    work_id: str,
    branch: str,
    commit_sha: str,
    target: str,
    ttl: str | None,
    worktree: str | None,
    session_opt: str | None,
) -> None:
    """Polecat: submit attempt N of WORK to the refinery and create the wait (one commit)."""
    from gc_polecat.beads.config import parse_duration  # lazy: start-up
    from gc_polecat.lifecycle.submit import submit  # lazy: start-up

    session_id, epoch = _caller(session_opt)
    validate_ids(work_id, session_id)
    store = app.store()
    seconds = parse_duration(ttl, "--ttl") if ttl else _default_ttl(store, session_id)
    with store.transaction() as tx:
        done = submit(
            tx,
            work_id,
            session_id=session_id,
            epoch=epoch,
            branch=branch,
            commit=commit_sha,
            target=target,
            ttl=seconds,
            worktree=str(Path(worktree or os.getcwd()).resolve()),
        )
        tx.message = (
            f"{work_id}: submitted attempt {done.attempt} as {done.submission['id']} "
            f"(wait {done.wait['id']})"
        )
    if app.json:
        emit_json({"submission": done.submission, "wait": done.wait, "attempt": done.attempt})
    else:
        sub, wait = done.submission["id"], done.wait["id"]
        click.echo(f"submission {sub}, wait {wait} (attempt {done.attempt})")
        click.echo(f"the refinery answers: gc-polecat verdict {sub} --merged | --fix-needed")
        click.echo(f"block until it does:  gc-polecat await {wait}")


@click.command("verdict")
@click.argument("submission_id", metavar="SUBMISSION")
@click.option("--merged", "outcome", flag_value="merged", help="It landed: the work closes.")
@click.option(
    "--fix-needed",
    "outcome",
    flag_value="fix_needed",
    help="It did not land: the waiting session (else the pool) fixes it.",
)
@click.option(
    "--type",
    "failure_type",
    type=click.Choice(("conflict", "tests", "build", "review")),
    help="What failed (with --fix-needed).",
)
@click.option("--reason", default="", help="One line the polecat reads first.")
@click.option(
    "--log",
    "log",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A log file whose last 4 KiB become the verdict's notes.",
)
@click.option("--commit", "commit_sha", default=None, help="The commit judged (must match).")
@click.option("--merge-commit", default=None, help="The commit that landed it (with --merged).")
@json_option
@click.pass_obj
def verdict_command(
    app: AppContext,
    submission_id: str,
    outcome: str | None,
    failure_type: str | None,
    reason: str,
    log: str | None,
    commit_sha: str | None,
    merge_commit: str | None,
) -> None:
    """Refinery: record the verdict on SUBMISSION and route its work (one commit)."""
    from gc_polecat.errors import BadInput  # lazy: start-up
    from gc_polecat.lifecycle.verdict import record_verdict  # lazy: start-up

    validate_ids(submission_id)
    if outcome is None:
        raise BadInput("give --merged or --fix-needed")
    store = app.store()
    with store.transaction() as tx:
        judged = record_verdict(
            tx,
            submission_id,
            outcome,
            providers=app.providers(),
            failure_type=failure_type,
            reason=reason,
            log=Path(log) if log else None,
            commit=commit_sha,
            merge_commit=merge_commit,
            refinery=store.actor(),
        )
    if app.json:
        emit_json({"verdict": judged.verdict, "routed": judged.routed, "noop": judged.noop})
    else:
        click.echo(
            f"verdict {judged.verdict['id']}, work routed to {judged.routed}"
            f"{' (already recorded)' if judged.noop else ''}"
        )


@click.command("await")
@click.argument("wait_id", metavar="[WAIT]", required=False)
@click.option("--work", "work_id", default=None, help="Await the open wait of this work item.")
@click.option(
    "--timeout",
    type=Seconds(min=0),
    default=None,
    help="Give up after this many seconds (exit 30); default: until the wait settles.",
)
@json_option
@click.pass_obj
def await_command(
    app: AppContext, wait_id: str | None, work_id: str | None, timeout: float | None
) -> int:
    """Block until the verdict: exit 0 merged, 10 fix needed, 20 the wait ended without a
    verdict for this session, 30 still pending at --timeout."""
    import time

    from gc_polecat.beads.ids import id_path  # lazy: start-up
    from gc_polecat.cli import OWN_PROCESS  # lazy: start-up
    from gc_polecat.lifecycle.session import caller_identity  # lazy: start-up
    from gc_polecat.lifecycle.wait import await_verdict, find_wait, state  # lazy: start-up
    from gc_polecat.lifecycle.waiter import hand_over, slim_allowed, start_daemon  # lazy: start-up

    validate_ids(wait_id, work_id)
    session_id, epoch = caller_identity()
    store = app.store()
    wait = find_wait(store, wait_id, work_id, session_id)
    long_wait = timeout is None or timeout > 1.0
    if OWN_PROCESS and long_wait and state(wait) == "pending" and slim_allowed():
        # blocking for long: become the slim waiter (waiter.py), which execs us back to settle
        keys = [wait["id"]] + ([session_id] if session_id else [])
        deadline = None if timeout is None else time.monotonic() + timeout
        start_daemon(str(store.root), str(store.state_dir))  # settles it in milliseconds
        hand_over(str(store.root), str(store.state_dir / "wake"), wait["id"],
                  id_path(wait["id"]), deadline, app.json, keys)  # fmt: skip
    result = await_verdict(store, wait, timeout=timeout, epoch=epoch, session_id=session_id)
    emit_json(result.payload) if app.json else echo(result.summary())
    return result.code


# --- wait -----------------------------------------------------------------------------------


@click.group("wait")
def wait_group() -> None:
    """Inspect and steer waits (as Gas City's `gc wait`)."""


@wait_group.command("list")
@click.option(
    "--state",
    type=click.Choice(("pending", "ready", "closed", "canceled", "expired", "failed")),
    help="Only waits in this state.",
)
@click.option("--session", "session_id", default=None, help="Only this session's waits.")
@json_option
@click.pass_obj
def wait_list(app: AppContext, state: str | None, session_id: str | None) -> None:
    """WAIT SESSION STATE KIND NOTE."""
    from gc_polecat.lifecycle.wait import list_waits  # lazy: start-up
    from gc_polecat.lifecycle.wait import state as state_of  # lazy: start-up

    catalog = app.store().catalog
    catalog.refresh()
    rows = [w for w in list_waits(catalog, session_id=session_id) if state in (None, state_of(w))]
    if app.json:
        emit_json(rows)
        return
    for w in rows:
        m = w.get("metadata", {})
        echo(
            f"{w['id']}  {m.get('session_id', '-'):<12} {state_of(w):<9} "
            f"{m.get('kind', '-'):<5} {w.get('description', '')}"
        )


@wait_group.command("inspect")
@click.argument("wait_id", metavar="ID")
@json_option
@click.pass_obj
def wait_inspect(app: AppContext, wait_id: str) -> None:
    """Every field of one wait."""
    from gc_polecat.builtin.bead_commands import read_beads, report_beads  # lazy: start-up

    validate_ids(wait_id)
    report_beads(app, read_beads(app, (wait_id,)), single=True)


@wait_group.command("cancel")
@click.argument("wait_id", metavar="ID")
@click.option(
    "--reason", default="canceled by hand", show_default=True, help="Recorded on the wait."
)
@click.pass_obj
def wait_cancel(app: AppContext, wait_id: str, reason: str) -> None:
    """Cancel a wait (`last_error` says why); its work falls back to the pool. A wait that
    already ended is left as it ended: exit 0, no write (as gc's `wait cancel` succeeds)."""
    from gc_polecat.errors import BadInput  # lazy: start-up
    from gc_polecat.lifecycle import wait as waits  # lazy: start-up
    from gc_polecat.lifecycle.routing import end_wait_and_fall_back  # lazy: start-up

    validate_ids(wait_id)
    with app.store().transaction(f"{wait_id}: canceled ({reason})") as tx:
        wait = tx.require(wait_id)
        if not waits.is_wait(wait):
            raise BadInput(f"{wait_id} is not a wait")
        if wait["status"] == "closed":
            click.echo(f"{wait_id} already {waits.state(wait)}: left as it is")
            return
        end_wait_and_fall_back(tx, wait, reason, fall_back_why="wait-canceled")
    click.echo(f"canceled {wait_id}")


@wait_group.command("ready")
@click.argument("wait_id", metavar="ID")
@click.pass_obj
def wait_ready(app: AppContext, wait_id: str) -> None:
    """Trigger a pending wait by hand; ready it again (a re-delivery) if it is ready; on a
    closed wait, make a new one (delivery_attempt + 1), as gc's `wait ready`."""
    from gc_polecat.errors import BadInput  # lazy: start-up
    from gc_polecat.lifecycle import wait as waits  # lazy: start-up
    from gc_polecat.lifecycle.wakeup import wake  # lazy: start-up

    validate_ids(wait_id)
    store = app.store()
    again = None
    with store.transaction(f"{wait_id}: made ready by hand") as tx:
        wait = tx.require(wait_id)
        if not waits.is_wait(wait):
            raise BadInput(f"{wait_id} is not a wait")
        if wait["status"] == "closed":
            made = waits.retry(tx, wait)
            click.echo(f"new wait {made['id']}")
            return
        meta = wait.get("metadata", {})
        verdict = meta.get("verdict") or waits.verdict_of(tx, meta.get("submission", ""))
        if waits.state(wait) == "ready":  # gc re-readies: ready_at now, delivered again
            again = tx.update(wait_id, {"metadata": {**meta, "ready_at": waits.at()}})
            tx.message = f"{wait_id}: ready again by hand"
        else:
            waits.make_ready(tx, wait, verdict)
        click.echo(f"ready {wait_id}")
    if again is not None:
        wake(store, again)


# --- controller ---------------------------------------------------------------------------


@click.group("controller")
def controller_group() -> None:
    """The level-triggered reconciler."""


@controller_group.command("run")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option(
    "--interval",
    type=Seconds(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between passes.",
)
@click.option(
    "--sync",
    "sync_remote",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[REMOTE]",
    help="Pull and push the beads repository against REMOTE (default: upstream, else origin) "
    "on every pass.",
)
@click.option(
    "--heartbeat",
    type=Seconds(min=0),
    default=60.0,
    show_default=True,
    help="Seconds between the lines that say the controller is alive (0: none).",
)
@click.pass_obj
def controller_run(
    app: AppContext, once: bool, interval: float, sync_remote: str | None, heartbeat: float
) -> None:
    """Expire, cancel, ready and re-deliver waits until the repository agrees with the world.

    Prints `HH:MM:SS SUBJECT WHAT` (UTC) per repair; a running controller also prints a start
    line and a heartbeat (passes, repairs, the last repair)."""
    from gc_polecat.lifecycle.controller import run  # lazy: start-up

    run(
        app.store(),
        app.providers(),
        once=once,
        interval=interval,
        report=lambda line: echo(line),
        sync=sync_remote,
        heartbeat=heartbeat,
    )


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    for command in (
        session_group,
        submit_command,
        verdict_command,
        await_command,
        wait_group,
        controller_group,
    ):
        cli.add_command(command)
