"""Session beads: one per polecat session, the identity a verdict must find again.

A session bead (`issue_type: session`, labels `gc:session` and `pool:<pool>`) records how to
reach the session (the provider's handle, under `handle.*` metadata keys), its continuation
epoch and instance token (the fence that keeps a stale wake from reaching a later
incarnation), and its state. The session's process learns its identity from the environment,
as in Gas City: GC_SESSION_ID, GC_SESSION_NAME, GC_CONTINUATION_EPOCH, GC_POLECAT_REPO.

Bead metadata is untrusted (anyone who can push to the beads repository can edit it), so the
handle in the bead never steers a signal, a nudge or an inbox write. The machine that starts
(or registers) a session also keeps a record of it outside the tracked files,
`.git/gc-polecat/sessions/<id>.json`; only that record's handle is ever signalled, nudged or
written to, and it also decides liveness and which machine the session runs on. A session with
no record here (another machine's, or one started before records existed) is never signalled
from here (docs/security.md, section 7).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import Bead, meta_int
from gc_polecat.errors import BadInput, NotFound
from gc_polecat.lifecycle.providers import (
    Handle,
    ProviderError,
    check_session_name,
    process_start_time,
)

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store, Transaction
    from gc_polecat.lifecycle.providers import SessionProvider

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
RECORDS = "sessions"  # under the state dir: <id>.json, the handle this machine may act on
RECORD_FORMAT = 1
_RECORD_MAX = 64 * 1024
SIGNALS_LOG = "signals.log"  # under the state dir: why a signal, nudge or stop was withheld
_SIGNALS_LOG_CAP = 256 * 1024


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
    # The repository's state dir, when known: liveness then follows the local record.
    state_dir: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, bead: Bead, state_dir: Path | None = None) -> Session:
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
            state_dir=state_dir,
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
    import secrets  # lazy: start-up

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
    return Session.of(bead, getattr(reader, "store", reader).state_dir)


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
    import socket  # lazy: start-up

    return os.environ.get("GC_POLECAT_HOST") or socket.gethostname()


def is_local(session: Session) -> bool:
    """Whether this machine can see the session's process: its record's host when this
    repository keeps one, else the bead's (sessions made before hosts were recorded count as
    local)."""
    return _is_local(session, _record_of(session))


def _is_local(session: Session, record: Record | None) -> bool:
    if record is not None:
        return record.host == this_host()
    host = session.handle.get("host")
    return not host or host == this_host()


def is_alive(session: Session, providers: Mapping[str, SessionProvider]) -> bool:
    """The session's process exists and is the same incarnation (PID start time, tmux pane).
    A session on another machine is presumed alive: only its own machine's controller judges
    it (a PID here says nothing about a process there), so a verdict recorded on one machine
    still routes to a polecat waiting on another (docs/interop.md). Where this repository
    keeps the session's record, the record's handle is the one looked at, not the bead's."""
    if session.state not in LIVE_STATES:
        return False
    if session.gc_owned:  # gc's reconciler judges its runtime; a gone one is put asleep
        return True
    record = _record_of(session)
    if not _is_local(session, record):
        return True
    handle = record.handle if record is not None else session.handle
    provider = providers.get(handle.get("provider") or session.provider)
    if provider is None:
        return False
    try:
        return provider.is_alive(handle)
    except ProviderError:
        return False


# --- the local record: what a bead edit cannot forge -------------------------------------


@dataclass(frozen=True)
class Record:
    """`.git/gc-polecat/sessions/<id>.json`: written by the process that started (or
    registered) the session, never tracked, never synced."""

    session: str
    host: str
    handle: Handle


def record_path(state_dir: Path, session_id: str) -> Path:
    return Path(_record_file(state_dir, session_id))


def _record_file(state_dir: Path, session_id: str) -> str:
    """The record's path as a string: read on every liveness check, so no pathlib here."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up

    return os.path.join(state_dir, RECORDS, f"{validate_id(session_id)}.json")


def write_record(state_dir: Path, session_id: str, handle: Handle) -> Path:
    """Record the handle of a process this machine just started or registered (mode 0600,
    replaced atomically)."""
    from gc_polecat.beads.bead import now  # lazy: start-up
    from gc_polecat.beads.git import atomic_write  # lazy: start-up

    path = record_path(state_dir, session_id)
    body = {
        "format": RECORD_FORMAT,
        "session": session_id,
        "host": handle.get("host") or this_host(),
        "written_by": os.getpid(),
        "written_at": now(),
        "handle": dict(handle),
    }
    atomic_write(path, json.dumps(body, sort_keys=True).encode(), path.parent / "tmp", 0o600)
    return path


def read_record(state_dir: Path, session_id: str) -> Record | None:
    """The session's record, or None: missing, a symlink, not a regular file of ours, open
    to group or world writes, too large or malformed all count as no record (no signal)."""
    import stat

    try:
        fd = os.open(_record_file(state_dir, session_id), os.O_RDONLY | os.O_NOFOLLOW)
    except (OSError, BadInput):
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & 0o022
            or st.st_size > _RECORD_MAX
        ):
            return None
        raw = os.read(fd, _RECORD_MAX + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _parse_record(raw, session_id)


def _parse_record(raw: bytes, session_id: str) -> Record | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("format") != RECORD_FORMAT:
        return None
    handle, host = body.get("handle"), body.get("host")
    if body.get("session") != session_id or not isinstance(host, str) or not host:
        return None
    if not isinstance(handle, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in handle.items()
    ):
        return None
    if not handle.get("provider"):
        return None
    return Record(session=session_id, host=host, handle=handle)


def _record_of(session: Session) -> Record | None:
    return read_record(session.state_dir, session.id) if session.state_dir else None


NOT_HERE = "runs on another machine"
REGISTERED = "registered itself: never signalled"
NO_RECORD = "no record of starting it on this machine"


def acting_handle(store: Store, session: Session, action: str) -> tuple[Handle | None, str]:
    """The handle `action` (stop, nudge) may use, or None and why not: the record's, when this
    machine started the session and it did not merely register. The bead's handle is never
    used; a local session without a record, or a bead whose handle disagrees with the record,
    is noted in `.git/gc-polecat/signals.log`."""
    record = read_record(store.state_dir, session.id)
    if record is None:
        host = session.handle.get("host")
        if host and host != this_host():
            return None, NOT_HERE
        note_withheld(store.state_dir, session.id, action, NO_RECORD)
        return None, NO_RECORD
    if record.host != this_host():
        return None, NOT_HERE
    if record.handle.get("registered") == "1":
        return None, REGISTERED
    differ = sorted(
        k
        for k in set(record.handle) | set(session.handle)
        if record.handle.get(k) != session.handle.get(k)
    )
    if differ:
        why = f"bead handle differs from the record in {', '.join(differ)}: record used"
        note_withheld(store.state_dir, session.id, action, why)
    return record.handle, ""


def note_withheld(state_dir: Path, session_id: str, action: str, why: str) -> None:
    """One line in the bounded `signals.log`: which action on which session was withheld, or
    done otherwise than the bead asked, and why. Never fails the caller."""
    from gc_polecat.beads.bead import now  # lazy: start-up

    path = Path(state_dir) / SIGNALS_LOG
    line = f"{now()} {session_id} {action}: {why}\n".encode(errors="replace")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    with contextlib.suppress(OSError):
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, line)
            big = os.fstat(fd).st_size > _SIGNALS_LOG_CAP
        finally:
            os.close(fd)
        if big:  # keep the last half, from a line boundary
            tail = path.read_bytes()[-_SIGNALS_LOG_CAP // 2 :]
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
            try:
                os.write(fd, tail[tail.find(b"\n") + 1 :])
            finally:
                os.close(fd)


def inbox_ok(state_dir: Path, inbox: str) -> bool:
    """An inbox is written only inside the repository's own session directory (symlinks
    resolved; the file itself is opened with O_NOFOLLOW by the provider)."""
    if not inbox:
        return False
    home = (Path(state_dir) / RECORDS).resolve()
    path = Path(inbox)
    return path.is_absolute() and path.parent.resolve() == home and not path.is_symlink()


def stop_process(
    store: Store, session: Session, providers: Mapping[str, SessionProvider], grace: float = 5.0
) -> str:
    """End the session's process if this machine started it (its record). Returns "" when
    the provider was asked to stop it, else why it was left alone (another machine's, a
    registered one, no record here, a provider this process lacks)."""
    handle, why = acting_handle(store, session, "stop")
    if handle is None:
        return why
    provider = providers.get(handle.get("provider", ""))
    if provider is None:
        return f"no provider {handle.get('provider')!r} here"
    provider.stop(handle, grace=grace)
    return ""


def nudge(
    store: Store, session: Session, providers: Mapping[str, SessionProvider], line: str
) -> bool:
    """Nudge the session through its record's handle; False if it cannot be, or may not. A
    nudge comes after a commit, so its failure is noted, never raised."""
    handle, _ = acting_handle(store, session, "nudge")
    provider = providers.get(handle.get("provider", "")) if handle else None
    if handle is None or provider is None:
        return False
    if "inbox" in handle and not inbox_ok(store.state_dir, handle["inbox"]):
        note_withheld(store.state_dir, session.id, "nudge", f"inbox outside: {handle['inbox']}")
        return False
    try:
        return provider.nudge(handle, line)
    except ProviderError as e:  # e.g. a symlink planted in the inbox's place meanwhile
        note_withheld(store.state_dir, session.id, "nudge", f"failed: {e}")
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
    record = record_path(tx.store.state_dir, session_id)
    try:
        write_record(tx.store.state_dir, session_id, handle)  # the proof that it is ours
        _write_pending(pending, fields)
        return Session.of(tx.create(fields), tx.store.state_dir)
    except BaseException:
        provider.stop(handle, grace=1.0)
        pending.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        raise


def _write_pending(path: Path, fields: Bead) -> None:
    from gc_polecat.beads.git import atomic_write  # lazy: start-up

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
        for s in launched:  # handles just returned by our own provider.start
            provider = providers.get(s.provider)
            if provider is not None:
                provider.stop(s.handle, grace=1.0)
            if s.state_dir is not None:
                record_path(s.state_dir, s.id).unlink(missing_ok=True)
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
