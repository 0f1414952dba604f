"""Commands of the persistent pool: pool status/init/reconcile, sling, next, cleanup."""

from __future__ import annotations

from typing import Any

import click

from gc_polecat.cli import AppContext, Seconds, echo, emit_json, json_option, validate_ids
from gc_polecat.hookspecs import hookimpl


@click.group("pool")
def pool_group() -> None:
    """Pools of persistent polecats: status, init, reconcile."""


@pool_group.command("status")
@click.argument("pool", required=False)
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until interrupted.")
@click.option(
    "--interval",
    type=Seconds(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@json_option
@click.pass_obj
def pool_status(app: AppContext, pool: str | None, watch: bool, interval: float) -> None:
    """Each pool at a glance: polecats with state and age, waiters against the cap, the queue."""
    import time

    while True:
        rows = _status_rows(app, pool)
        if app.json:
            emit_json(rows)
        else:
            if watch and click.get_text_stream("stdout").isatty():
                click.clear()
            for line in status_lines(rows):
                echo(line)
        if not watch:
            return
        click.echo("", nl=True)
        time.sleep(interval)


def _status_rows(app: AppContext, pool: str | None) -> list[dict[str, Any]]:
    from gc_polecat.pool.status import status  # lazy: start-up

    rows = [r for r in status(app.store(), app.providers()) if pool in (None, r["pool"])]
    if pool is not None and not rows:
        from gc_polecat.errors import NotFound  # lazy: start-up

        raise NotFound(f"no pool {pool!r}")
    return rows


def status_lines(rows: list[dict[str, Any]], now: Any = None) -> list[str]:
    """`pool status` as a person reads it: a head line per pool, a row per polecat, the queue."""
    import datetime as dt

    now = now or dt.datetime.now(dt.UTC)
    lines = []
    for r in rows:
        if r["configured"]:
            cap = f"waiting {r['waiting']}/{r['max_waiting']} (max_waiting)"
            limit = f" of max_active {r['max_active']}"
        else:
            cap, limit = f"waiting {r['waiting']}", ""
        lines.append(
            f"{r['pool']}: {len(r['polecats'])} polecats, sessions alive {r['alive']}{limit}, "
            f"{cap}, cleanups {r['cleanups']}"
            + ("" if r["configured"] else " (not configured: no pools." + r["pool"] + " settings)")
        )
        if r["polecats"]:
            lines.append(f"  {'NAME':<12} {'ID':<10} {'STATE':<17} {'FOR':>7} {'SESSION':<7} WORK")
        for pid, p in r["polecats"].items():
            session = "alive" if p["alive"] else "-"
            work = f"{p['work']} {p['branch']}" if p["work"] else "-"
            lines.append(
                f"  {p['name']:<12} {pid:<10} {p['health']:<17} {_age(p['since'], now):>7} "
                f"{session:<7} {work}"
            )
        queue = ", ".join(r["queue"]) or "empty"
        lines.append(f"  queue: {queue} ({r['work_ready']} ready, {r['work_blocked']} blocked)")
    return lines


def _age(stamp: str, now: Any) -> str:
    """`2m05s`, `3h10m`, `4d2h` since `stamp` (bd's UTC time), `-` if unknown."""
    import datetime as dt

    try:
        then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


@pool_group.command("init")
@click.argument("pool")
@click.option("--size", type=click.IntRange(min=1), required=True, help="Persistent polecats.")
@json_option
@click.pass_obj
def pool_init(app: AppContext, pool: str, size: int) -> None:
    """Create SIZE persistent polecats (identity and worktree each), idle; idempotent."""
    from gc_polecat.pool.status import init_pool  # lazy: start-up

    made = init_pool(app.store(), pool, size)
    if app.json:
        emit_json([{"id": p.id, "name": p.name, "sandbox": p.sandbox} for p in made])
        return
    for p in made:
        echo(f"{p.id} {p.name} {p.sandbox}")


@pool_group.command("reconcile")
@click.argument("pools", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@json_option
@click.pass_obj
def pool_reconcile(app: AppContext, pools: tuple[str, ...], dry_run: bool) -> None:
    """Bring pools to their desired state (all configured pools by default)."""
    from gc_polecat.pool.config import require_pool  # lazy: start-up
    from gc_polecat.pool.reconcile import reconcile  # lazy: start-up

    store = app.store()
    for name in pools:
        require_pool(store, name)
    done = reconcile(store, app.providers(), list(pools) or None, dry_run=dry_run)
    if app.json:
        emit_json(
            [
                {"kind": a.kind, "target": a.target, "why": a.why, "outcome": outcome}
                for a, outcome in done
            ]
        )
        return
    if not done:
        click.echo("nothing to do")
    for action, outcome in done:
        tail = "" if dry_run else f" -> {outcome}"
        click.echo(f"{action.kind:<8} {action.target}  ({action.why}){tail}")


@click.command("sling")
@click.argument("work_id", metavar="WORK")
@click.option("--pool", "pool_name", required=True, help="The pool whose polecat takes it.")
@json_option
@click.pass_obj
def sling_command(app: AppContext, work_id: str, pool_name: str) -> None:
    """Give WORK to an idle polecat of the pool, or a new one under max_active (one commit);
    with no capacity, queue it in the pool for `pool reconcile`."""
    from gc_polecat.pool.sling import sling  # lazy: start-up

    validate_ids(work_id)
    done = sling(app.store(), app.providers(), work_id, pool_name)
    if app.json:
        emit_json({**done.__dict__, "queued": done.queued})
    elif done.queued:
        click.echo(f"{work_id} queued in pool {pool_name}: no idle polecat and no room")
    else:
        echo(f"slung {work_id} to polecat {done.name}: session {done.session}")
        echo(f"  branch {done.branch} in {done.sandbox}")


@click.command("next")
@click.option("--timeout", type=Seconds(min=0), default=None, help="Seconds.")
@click.option("--session", "session_opt", default=None, help="Default: $GC_SESSION_ID.")
@json_option
@click.pass_obj
def next_command(app: AppContext, timeout: float | None, session_opt: str | None) -> int:
    """Polecat: block until work is slung to this session; exit 0 with the work ID, 20 when
    the session has ended, 30 at --timeout."""
    from gc_polecat.errors import BadInput  # lazy: start-up
    from gc_polecat.lifecycle.session import caller_identity  # lazy: start-up
    from gc_polecat.pool.sling import await_work  # lazy: start-up

    session_id = session_opt or caller_identity()[0]
    if not session_id:
        raise BadInput("next needs the calling session: set GC_SESSION_ID (or --session)")
    validate_ids(session_id)
    code, work = await_work(app.store(), session_id, timeout)
    if app.json:
        emit_json({"exit": code, "work": work})
    elif work is not None:
        click.echo(work["id"])
    return code


@click.command("cleanup")
@click.argument("finalizer_id", metavar="[FINALIZER]", required=False)
@click.option("--all", "run_all", is_flag=True, help="Every pending cleanup (as the controller).")
@json_option
@click.pass_obj
def cleanup_command(app: AppContext, finalizer_id: str | None, run_all: bool) -> None:
    """Sync the sandbox to the target, delete the branch, verify, and close the finalizer.
    Without FINALIZER: the calling session's polecat's pending cleanup. Exit 1 if a check
    fails (the finalizer stays open and says why)."""
    from gc_polecat.errors import GcPolecatError, NotFound  # lazy: start-up
    from gc_polecat.lifecycle import cleanup  # lazy: start-up

    validate_ids(finalizer_id)
    store = app.store()
    if run_all:
        targets = [f["id"] for f in cleanup.pending(store)]
    elif finalizer_id:
        targets = [finalizer_id]
    else:
        targets = [_own_finalizer(store)]
    results: list[Any] = [cleanup.run(store, t, app.providers()) for t in targets]
    if finalizer_id and not results:
        raise NotFound(f"no finalizer {finalizer_id}")
    if app.json:
        emit_json([r.__dict__ for r in results])
    else:
        for r in results:
            click.echo(f"{r.finalizer} {r.result}{': ' + r.detail if r.detail else ''}")
    failed = [r for r in results if r.result == "failed"]
    if failed:
        raise GcPolecatError(f"cleanup {failed[0].finalizer} failed: {failed[0].detail}")


def _own_finalizer(store: Any) -> str:
    from gc_polecat.errors import BadInput, NotFound  # lazy: start-up
    from gc_polecat.lifecycle import cleanup  # lazy: start-up
    from gc_polecat.lifecycle import polecat as polecats  # lazy: start-up
    from gc_polecat.lifecycle.session import caller_identity  # lazy: start-up

    session_id = caller_identity()[0]
    if not session_id:
        raise BadInput("cleanup needs a FINALIZER, --all, or GC_SESSION_ID")
    validate_ids(session_id)
    session = store.get(session_id)
    polecat_id = session.get("metadata", {}).get("polecat")
    if not polecat_id:
        raise NotFound(f"session {session_id} is not a pool polecat's")
    for fin in cleanup.pending(store):
        if fin["metadata"].get("polecat") == polecat_id:
            return fin["id"]
    p = polecats.get(store, polecat_id)
    raise NotFound(f"polecat {p.name if p else polecat_id} has no pending cleanup")


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    for command in (pool_group, sling_command, next_command, cleanup_command):
        cli.add_command(command)


@hookimpl
def gc_polecat_controller_pass(store: Any, providers: Any) -> list[tuple[str, str]]:
    """Each controller pass brings every configured pool to its desired state."""
    if not store.config()["pools"]:
        return []
    from gc_polecat.pool.reconcile import reconcile  # lazy: start-up

    return [
        (action.target, f"{outcome} ({action.kind}: {action.why})")
        for action, outcome in reconcile(store, providers)
        if outcome and not outcome.startswith("skipped")
    ]
