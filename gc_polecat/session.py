"""Session beads: one per polecat session, the identity a verdict must find again.

A session bead (`issue_type: session`, labels `gc:session` and `pool:<pool>`) records how to
reach the session (the provider's handle, under `handle.*` metadata keys), its continuation
epoch and instance token (the fence that keeps a stale wake from reaching a later
incarnation), and its state. The session's process learns its identity from the environment,
as in Gas City: GC_SESSION_ID, GC_SESSION_NAME, GC_CONTINUATION_EPOCH, GC_POLECAT_REPO.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .bead import Bead, meta_int
from .errors import BadInput, NotFound
from .providers import Handle, ProviderError, check_session_name, process_start_time

if TYPE_CHECKING:
    from .providers import SessionProvider
    from .store import Store, Transaction

SESSION_LABEL = "gc:session"
# Our states, kept under STATE_KEY. active: working or idle; awaiting_verdict: pinned, waiting
# on the refinery; stopped: ended on purpose; dead: its process is gone (found by the controller).
STATES = ("active", "awaiting_verdict", "stopped", "dead")
LIVE_STATES = ("active", "awaiting_verdict")
STATE_KEY = "polecat.state"
STATE_EPOCH_KEY = "polecat.state_epoch"  # on gc's sessions: the incarnation STATE_KEY is about
# `metadata.state` holds only states gc's session reconciler knows (cmd/gc/session_reconcile.go
# knownSessionStates; internal/session/manager.go): ours mapped onto them for the sessions we
# start; a session gc started keeps gc's own, which we read (GC_LIVE) but never write.
GC_STATE = {
    "active": "active", "awaiting_verdict": "active", "stopped": "stopped", "dead": "stopped",
}  # fmt: skip
GC_LIVE = ("", "creating", "active", "awake", "draining")
LAUNCHING = "launching"  # under the state dir: sessions started, their bead not yet committed
HANDLE_PREFIX = "handle."


@dataclass(frozen=True)
class Session:
    """A session bead, read as the fields the lifecycle needs."""

    id: str
    name: str
    pool: str
    provider: str
    state: str
    epoch: int
    token: str
    handle: Handle
    work_dir: str
    bead: Bead

    @classmethod
    def of(cls, bead: Bead) -> Session:
        if bead.get("issue_type") != "session" or SESSION_LABEL not in bead.get("labels", []):
            raise BadInput(f"{bead['id']} is not a session bead")
        meta = bead.get("metadata", {})
        epoch = meta_int(bead, "continuation_epoch", 1)
        return cls(
            id=bead["id"],
            name=meta.get("session_name", ""),
            pool=meta.get("pool", ""),
            provider=meta.get("provider", ""),
            state=state_of(bead),
            epoch=epoch,
            token=meta.get("instance_token", ""),
            handle={
                k[len(HANDLE_PREFIX) :]: v for k, v in meta.items() if k.startswith(HANDLE_PREFIX)
            },
            work_dir=meta.get("work_dir", ""),
            bead=bead,
        )

    @property
    def gc_owned(self) -> bool:
        """Started by gc's session manager, not by us: its `metadata.state` is gc's to write."""
        return not started_by_us(self.bead.get("metadata", {}))

    def env(self, repo: Path) -> dict[str, str]:
        """What the session's process is told about itself."""
        return {
            "GC_SESSION_ID": self.id,
            "GC_SESSION_NAME": self.name,
            "GC_CONTINUATION_EPOCH": str(self.epoch),
            "GC_INSTANCE_TOKEN": self.token,
            "GC_POLECAT_REPO": str(repo),
        }


def started_by_us(meta: Mapping[str, str]) -> bool:
    """`session_fields` wrote it (a `pool` key, a handle); gc's session manager writes neither
    (internal/session/manager.go `createAliasedNamedWithTransport`)."""
    return "pool" in meta or any(k.startswith(HANDLE_PREFIX) for k in meta)


def state_of(bead: Bead) -> str:
    """Our state of a session bead. Ours: STATE_KEY (or, written before it, `state` itself).
    gc's: gc's `state` says whether it lives (GC_LIVE); STATE_KEY, if written for the current
    incarnation (gc bumps `continuation_epoch` on a restart), refines it."""
    if bead["status"] == "closed":
        return "stopped"
    meta = bead.get("metadata", {})
    ours = meta.get(STATE_KEY, "")
    ours = ours if ours in STATES else ""
    theirs = meta.get("state", "")
    if started_by_us(meta):
        return ours or (theirs if theirs in STATES else "active" if theirs in GC_LIVE else "dead")
    if meta.get(STATE_EPOCH_KEY, "") != meta.get("continuation_epoch", ""):
        ours = ""  # about an earlier incarnation of gc's session
    if ours in ("stopped", "dead"):
        return ours
    if theirs in ("awaiting_verdict", "dead"):  # written by us before STATE_KEY
        return theirs
    return (ours or "active") if theirs in GC_LIVE else "dead"


def session_fields(name: str, pool: str, provider: str, work_dir: str, handle: Handle) -> Bead:
    """The bead for a new session (state active, epoch 1)."""
    check_session_name(name)
    if not pool or not all(c.isalnum() or c in "-_./" for c in pool):
        raise BadInput(f"invalid pool name {pool!r}")
    meta = {
        "session_name": name,
        "pool": pool,
        "provider": provider,
        "state": GC_STATE["active"],
        STATE_KEY: "active",
        "continuation_epoch": "1",
        "instance_token": secrets.token_hex(8),
        "work_dir": work_dir,
    }
    meta.update({HANDLE_PREFIX + k: v for k, v in handle.items()})
    return {
        "title": f"session:{name}",
        "issue_type": "session",
        "labels": [SESSION_LABEL, f"pool:{pool}"],
        "metadata": meta,
    }


def get(reader: Transaction | Store, session_id: str) -> Session:
    """The session bead, through a transaction's pending view or at HEAD."""
    try:
        bead = reader.require(session_id) if hasattr(reader, "require") else reader.get(session_id)
    except NotFound:
        raise NotFound(f"no session {session_id}") from None
    return Session.of(bead)


def set_state(tx: Transaction, session: Session, state: str, **meta: str) -> Bead:
    """Our state under STATE_KEY; `state` gets gc's name for it, unless gc started the
    session (then `state` and the bead's status stay gc's: we never stop gc's sessions)."""
    assert state in STATES, state
    changes: dict[str, str] = {STATE_KEY: state, **meta}
    if session.gc_owned:
        changes[STATE_EPOCH_KEY] = str(session.epoch)
    else:
        changes["state"] = GC_STATE[state]
    merged = {**session.bead.get("metadata", {}), **changes}
    fields: Bead = {"metadata": merged}
    if state == "stopped" and not session.gc_owned:
        fields["status"] = "closed"
        fields["close_reason"] = meta.get("stop_reason", state)
    return tx.update(session.id, fields)


def this_host() -> str:
    """The machine a session runs on: $GC_POLECAT_HOST, else the host name."""
    return os.environ.get("GC_POLECAT_HOST") or socket.gethostname()


def is_local(session: Session) -> bool:
    """Whether this machine can see the session's process (sessions made before hosts were
    recorded count as local)."""
    host = session.handle.get("host")
    return not host or host == this_host()


def is_alive(session: Session, providers: Mapping[str, SessionProvider]) -> bool:
    """The session's process exists and is the same incarnation (PID start time, tmux pane).
    A session on another machine is presumed alive: only its own machine's controller judges
    it (a PID here says nothing about a process there), so a verdict recorded on one machine
    still routes to a polecat waiting on another (docs/interop.md)."""
    if session.state not in LIVE_STATES:
        return False
    if session.gc_owned:  # gc's reconciler judges its runtime; a gone one is put asleep
        return True
    if not is_local(session):
        return True
    provider = providers.get(session.provider)
    if provider is None:
        return False
    try:
        return provider.is_alive(session.handle)
    except ProviderError:
        return False


def caller_identity() -> tuple[str | None, int | None]:
    """(GC_SESSION_ID, GC_CONTINUATION_EPOCH) of the calling process, as Gas City exports them."""
    sid = os.environ.get("GC_SESSION_ID") or None
    raw = os.environ.get("GC_CONTINUATION_EPOCH")
    try:
        epoch = int(raw) if raw else None
    except ValueError:
        raise BadInput(f"GC_CONTINUATION_EPOCH is not a number: {raw!r}") from None
    return sid, epoch


def registered_handle(pid: int, log: Path) -> Handle:
    """A handle for a process we did not start (`session register`): liveness only."""
    start = process_start_time(pid)
    if start is None:
        raise BadInput(f"process {pid} does not exist")
    return {
        "provider": "process",
        "name": "registered",
        "pid": str(pid),
        "pid_start": start,
        "pgid": str(os.getpgid(pid)),
        "inbox": str(log.with_suffix(".inbox")),
        "nudge_signal": "0",
        "log": str(log),
        "registered": "1",
        "host": this_host(),
    }


def launch(
    tx: Transaction,
    providers: Mapping[str, SessionProvider],
    *,
    pool: str,
    name: str | None,
    provider_name: str,
    argv: Sequence[str],
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    extra_meta: Mapping[str, str] | None = None,
) -> Session:
    """Create the session bead in `tx` and launch its process. The process needs its session
    ID before it starts, so it is launched before the commit; if the caller's transaction then
    fails, the process is stopped again (see `stop_on_failure`)."""
    provider = providers.get(provider_name)
    if provider is None:
        raise BadInput(f"unknown provider {provider_name!r} (have: {', '.join(sorted(providers))})")
    if not argv:
        raise BadInput("no command given: session start --pool P -- CMD...")
    if not work_dir.is_dir():
        raise BadInput(f"not a directory: {work_dir}")
    logs = tx.store.state_dir / "sessions"
    logs.mkdir(parents=True, exist_ok=True)
    session_id = tx.new_id({"title": f"session:{name or pool}"})
    session_name = name or f"{pool.replace('/', '-')}-{session_id.rsplit('-', 1)[1]}"
    fields = session_fields(session_name, pool, provider_name, str(work_dir), {})
    fields["id"] = session_id
    fields["metadata"].update(extra_meta or {})
    draft = Session.of({**fields, "status": "open"})
    env = {**os.environ, **(extra_env or {}), **draft.env(tx.store.root)}
    # Until the caller's commit records the session, only this file knows its process: a
    # launcher killed from here to that commit leaves it for `sweep_unrecorded`. Written
    # before the process exists, and again with its handle once it does.
    pending = tx.store.state_dir / LAUNCHING / f"{session_id}.json"
    _write_pending(pending, fields)
    try:
        handle = provider.start(session_name, list(argv), env, work_dir, logs / f"{session_id}.log")
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    handle = {**handle, "host": this_host()}
    fields["metadata"].update({HANDLE_PREFIX + k: v for k, v in handle.items()})
    try:
        _write_pending(pending, fields)
        return Session.of(tx.create(fields))
    except BaseException:
        provider.stop(handle, grace=1.0)
        pending.unlink(missing_ok=True)
        raise


def _write_pending(path: Path, fields: Bead) -> None:
    from .git import atomic_write

    atomic_write(path, json.dumps(fields).encode(), path.parent / "tmp")


def sweep_unrecorded(store: Store, providers: Mapping[str, SessionProvider]) -> list[str]:
    """Stop the processes of sessions whose launcher died (SIGKILL, a crash) between starting
    them and committing their bead: nobody else knows them, so they would run forever. Each
    one is recorded as a stopped session bead, one commit each; returns their IDs. Runs under
    the write lock, so no launcher is between its start and its commit meanwhile."""
    folder = store.state_dir / LAUNCHING
    try:
        pending = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return []
    stopped = []
    for path in pending:
        session_id = path.stem
        message = f"{session_id}: stopped (its launcher died before recording it)"
        with store.transaction(message) as tx:
            try:
                fields = json.loads(path.read_text())
                draft = Session.of({**fields, "status": "open"})
            except (OSError, ValueError, KeyError, TypeError, BadInput):
                fields = draft = None
            ended = False
            if draft is None or draft.id != session_id or tx.exists(session_id):
                pass  # recorded by its launcher's commit (or unreadable): nothing runs unknown
            elif draft.handle:
                provider = providers.get(draft.provider)
                if provider is None:
                    continue  # a provider this process lacks: leave it to one that has it
                if is_alive(draft, providers):
                    provider.stop(draft.handle, grace=1.0)
                    ended = True
            else:  # the launcher died while its provider was starting the process
                ended = _kill_by_identity(store.root, session_id)
            if ended and fields is not None:
                meta = {**fields["metadata"], "state": "stopped", "stop_reason": "launcher-died"}
                closed = {"status": "closed", "close_reason": "launcher-died", "metadata": meta}
                tx.create({**fields, **closed})
                stopped.append(session_id)
        path.unlink(missing_ok=True)
    return stopped


def _kill_by_identity(root: Path, session_id: str) -> bool:
    """A launcher killed while its provider started the process left no handle: find the
    process by the identity its environment carries (GC_SESSION_ID, GC_POLECAT_REPO) and end
    its process group. True if there was one."""
    import signal

    want = {f"GC_SESSION_ID={session_id}".encode(), f"GC_POLECAT_REPO={root}".encode()}
    found = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if not want <= set(f.read().split(b"\0")):
                    continue
            group = os.getpgid(int(entry.name))
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
                found = True
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@contextmanager
def stop_on_failure(providers: Mapping[str, SessionProvider]) -> Iterator[list[Session]]:
    """Collects sessions launched inside a transaction; stops them if it does not commit."""
    launched: list[Session] = []
    try:
        yield launched
    except BaseException:
        for s in launched:
            provider = providers.get(s.provider)
            if provider is not None:
                provider.stop(s.handle, grace=1.0)
        raise


def start(
    store: Store,
    providers: Mapping[str, SessionProvider],
    *,
    pool: str,
    name: str | None,
    provider_name: str,
    argv: Sequence[str],
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Session:
    """Create the session bead and launch its process in one transaction (one commit)."""
    with stop_on_failure(providers) as launched, store.transaction() as tx:
        launched.append(
            launch(
                tx,
                providers,
                pool=pool,
                name=name,
                provider_name=provider_name,
                argv=argv,
                work_dir=work_dir,
                extra_env=extra_env,
            )
        )
    return launched[0]
