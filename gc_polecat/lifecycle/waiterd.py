"""The settling daemon: one warm process per beads repository that settles slim waiters' waits.

A slim waiter (waiter.py) is small because it imports nothing of the store; when its wait
settles it needs the whole store (read the verdict, commit the delivery) and the same output
`await` prints. Starting the full command line for that costs 100-300 ms of imports, which
would be the wake latency of every polecat. So the slim waiter asks this daemon instead: one
request line, one answer line, over a private AF_UNIX socket (waiter.daemon_address):

    request  {"wait": ID, "session": ID|null, "epoch": N|null, "pid": N, "json": bool}
    answer   {"pending": true}  |  {"code": N, "out": TEXT}  |  {"error": TEXT}

The daemon does exactly what the waiter's own `await` would have done (`wait.settled` with the
waiter's session, epoch and PID as the delivery's recipient), so the receipt names the waiting
process. Anything it cannot do is an `error` answer, and the waiter falls back to the full
command line: the daemon is a fast path, never the only path.

It is also the repository's watch for a missed ring: once a second it looks at the branch ref
(a stat, as the waiters did), and when the ref has moved it rings every listening wait that is
no longer pending (`ring_settled`), so a ring the committing process never sent (it died after
its commit, or bd, git or a sync moved the branch) costs about a second, not the waiters' own
slow re-read. That is what lets each slim waiter sleep `waiter.RECHECK` (30 s) between its own
looks: one stat a second here instead of a thousand waiters waking every 5 s
(docs/performance.md, "Waiting at fleet scale").

Lifetime: started (detached) by the first `await` that becomes a slim waiter; only one runs per
repository (an flock); it exits once no slim waiter has been listening for `IDLE_EXIT` seconds
(their doorbell sockets are gone from the wake directory). Run as
`python -m gc_polecat.lifecycle.waiterd ROOT`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import sys
import time
from pathlib import Path

from gc_polecat.beads.ids import path_id, validate_id
from gc_polecat.beads.store import Store
from gc_polecat.errors import GcPolecatError
from gc_polecat.lifecycle import doorbell as wake
from gc_polecat.lifecycle import waiter
from gc_polecat.lifecycle.wait import is_wait, settled, state
from gc_polecat.output import json_text, printable

IDLE_EXIT = 60.0  # seconds without any slim waiter before the daemon exits
TICK = 10.0  # how often it looks for listening waiters (its idle exit)
WATCH = 1.0  # how often it looks at the branch ref for a move no doorbell announced
MAX_REQUEST = 4096


def settle(store: Store, request: dict) -> dict:
    """One request: the answer the waiter prints and exits with, or pending."""
    wait_id = validate_id(request.get("wait"))
    session = request.get("session")
    if session is not None:
        validate_id(session)
    epoch, pid = request.get("epoch"), request.get("pid")
    if (epoch is not None and type(epoch) is not int) or type(pid) is not int:
        return {"error": "epoch and pid must be integers"}
    wait = store.get(wait_id)
    if not is_wait(wait):
        return {"error": f"{wait_id} is not a wait"}
    result = settled(store, wait, epoch, f"{session or 'pid'}:{pid}")
    if result is None:
        return {"pending": True}
    out = json_text(result.payload) if request.get("json") else printable(result.summary())
    return {"code": result.code, "out": out}


def _answer(store: Store, conn: socket.socket) -> None:
    conn.settimeout(5.0)
    data = b""
    while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    try:
        request = json.loads(data.decode("utf-8"))
        if not isinstance(request, dict):
            raise ValueError("not an object")
        answer = settle(store, request)
    except (ValueError, UnicodeDecodeError, GcPolecatError) as exc:
        answer = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    conn.sendall(json.dumps(answer).encode() + b"\n")


def _waiters_listening(wake_dir: Path) -> bool:
    """Any doorbell socket at all under the wake directory (any key, any waiter)."""
    try:
        return any(
            name.endswith(".sock")
            for entry in os.scandir(wake_dir)
            if entry.is_dir(follow_symlinks=False)
            for name in os.listdir(entry.path)
        )
    except OSError:
        return False


def ring_settled(store: Store, wake_dir: Path, since: bytes | None) -> tuple[bytes | None, int]:
    """Ring every wait changed between commit `since` and HEAD that is no longer pending; (the
    HEAD commit, how many were rung). Only the changed files are read (a tree diff), and
    `doorbell.ring` finds each wait's listeners in whichever layout they bound (a long wake
    path puts them in /tmp). Never raises: what it cannot read now is read at the next move
    of the ref, and the waiters' own slow re-read still covers it (latency, never correctness)."""
    head = since
    try:
        head = store.head()[1]
        if head == since or since is None:
            return head, 0
        git = store.git
        rung = 0
        for path, blob in git.changed_paths(git.commit_tree(since), git.commit_tree(head)):
            bead_id = path_id(path)
            if bead_id is None or blob is None:
                continue
            try:
                bead = store.get(bead_id)
            except GcPolecatError:  # a bad file: not a wait anyone can settle
                continue
            if is_wait(bead) and state(bead) != "pending":
                rung += wake.ring(wake_dir, bead_id, "ref moved") > 0
        return head, rung
    except Exception:  # noqa: BLE001 - a fast path only: the daemon keeps serving
        return head, 0


def serve(root: Path) -> int:
    store = Store(root)
    store.state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(store.state_dir / "waiterd.lock", "a")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another daemon serves this repository
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")  # who serves: for people and tests
    lock.flush()
    address = waiter.daemon_address(str(store.state_dir))
    if os.path.dirname(address) == wake._fallback_root():  # a long state path: /tmp, made ours
        wake._ensure_private_dir(wake._fallback_root())
    if os.path.exists(address):
        os.unlink(address)  # a dead daemon's socket: we hold the lock, so it is not live
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    os.chmod(address, 0o600)
    server.listen(64)
    wake_dir = store.state_dir / "wake"
    last_seen = last_tick = time.monotonic()
    ref_seen = waiter.ref_signature(str(root))
    commit_seen = store.head()[1]
    try:
        while True:
            ready, _, _ = select.select([server], [], [], WATCH)
            if ready:
                conn, _ = server.accept()
                with conn, contextlib.suppress(OSError):  # a waiter gone falls back alone
                    _answer(store, conn)
                last_seen = time.monotonic()
            signature = waiter.ref_signature(str(root))
            if signature != ref_seen:
                ref_seen = signature
                commit_seen = ring_settled(store, wake_dir, commit_seen)[0]
            now = time.monotonic()
            if now - last_tick < TICK:
                continue
            last_tick = now
            if _waiters_listening(wake_dir):
                last_seen = now
            elif now - last_seen >= IDLE_EXIT:
                return 0
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(address)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
