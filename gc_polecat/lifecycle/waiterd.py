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

from gc_polecat.beads.ids import validate_id
from gc_polecat.beads.store import Store
from gc_polecat.errors import GcPolecatError
from gc_polecat.lifecycle import doorbell as wake
from gc_polecat.lifecycle import waiter
from gc_polecat.lifecycle.wait import is_wait, settled
from gc_polecat.output import json_text, printable

IDLE_EXIT = 60.0  # seconds without any slim waiter before the daemon exits
TICK = 10.0
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
    last_seen = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([server], [], [], TICK)
            if ready:
                conn, _ = server.accept()
                with conn, contextlib.suppress(OSError):  # a waiter gone falls back alone
                    _answer(store, conn)
                last_seen = time.monotonic()
            elif _waiters_listening(wake_dir):
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen >= IDLE_EXIT:
                return 0
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(address)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
