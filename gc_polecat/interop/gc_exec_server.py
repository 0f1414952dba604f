"""The warm exec-beads server: one long-lived process per city answering gc's store calls.

Started by the provider's `start` (gc's lifecycle, `cmd/gc/beads_provider_lifecycle.go`, runs
it on every `gc start`), stopped by `stop` (gc stop), and gone by itself after `IDLE_SECONDS`
without a call. Calls are answered one at a time, each exactly as a cold `exec-beads` process
would answer it (`execprovider.run` with the caller's environment), so the only difference is
that dulwich, YAML, the plugins and the store's caches are already loaded. The socket lives in
the city's runtime directory with mode 0600, and only the server's own user may talk to it
(`SO_PEERCRED`). Nothing here is a second store: every call reads and writes the git files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from gc_polecat.interop.gc_exec import ExecError, run
from gc_polecat.interop.gc_exec_client import receive, send
from gc_polecat.interop.gc_exec_launch import CODE, START_WAIT, private_dir

IDLE_SECONDS = 3600.0
# The modules whose code answers a call: a server started from other code is replaced by `start`.
MAX_SNDBUF = 8 << 20  # the kernel caps it at net.core.wmem_max anyway
ACTOR_KEYS = ("GC_AGENT", "BD_ACTOR")  # read by the store from os.environ for authorship


def peer(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end (Linux SO_PEERCRED); None where unknown."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", raw)
    return pid, uid


def answer(request: dict, stdin: bytes, pm: object) -> tuple[int, str, str]:
    """One call, as `execprovider.run` answers it in a process of its own."""
    argv = [str(a) for a in request.get("argv", [])]
    env = {str(k): str(v) for k, v in dict(request.get("env", {})).items()}

    def read_stdin() -> str:
        try:
            return stdin.decode("utf-8")
        except UnicodeDecodeError:
            raise ExecError("stdin is not UTF-8 text") from None

    saved = {key: os.environ.get(key) for key in ACTOR_KEYS}
    try:
        for key in ACTOR_KEYS:  # the caller's identity for the commit, not the server's
            if env.get(key):
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        op = argv[0] if argv else None
        return run(None, op, argv[1:], read_stdin, env=env, pm=pm)  # type: ignore[arg-type]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def handle(conn: socket.socket, pm: object) -> bool:
    """Answer one connection; False when it asked the server to stop."""
    who = peer(conn)
    if who is not None and who[1] != os.getuid():
        return True  # another user's process: no answer at all
    conn.settimeout(30)
    try:
        request, stdin = receive(conn)
        op = request.get("argv", [None])[:1]
        stopping = op == ["stop"]
        # `start` runs in the caller (it may replace this very server), never in here
        status, out, err = (
            (0, "", "") if op in (["stop"], ["start"]) else answer(request, stdin, pm)
        )
        body = out.encode("utf-8")
        header = {"status": status, "err": err, "body": len(body), "code": CODE}
        room_for(conn, len(body))
        send(conn, header, body)
    except (OSError, ValueError):
        return True
    return not stopping


def room_for(conn: socket.socket, size: int) -> None:
    """Let the kernel queue a whole answer (`ready` at 10,000 beads is 1.3 MB), so the server
    hands it over in one write instead of waiting on the client for every 200 kB."""
    if size > 65536:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(size + 65536, MAX_SNDBUF))


def owner_lock(path: str) -> int | None:
    """The lock that makes one server per socket (held for the server's life; the kernel drops
    it when the process ends), waiting up to START_WAIT for a server on its way out."""
    import fcntl

    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + START_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def keep_views() -> None:
    """This process lives on: `ready` keeps each store's `ReadyView` between calls."""
    from gc_polecat.interop import gc_exec as execprovider  # lazy: start-up

    execprovider.WARM = True


def serve(path: str, idle: float = IDLE_SECONDS) -> None:
    """Listen on `path` until `stop` or `idle` seconds without a call; return at once when
    another server owns the socket."""
    from gc_polecat.plugins import get_plugin_manager  # lazy: start-up

    pm = get_plugin_manager()
    import dulwich.repo  # noqa: F401 - loaded once here instead of in every write

    # lazy: start-up
    from gc_polecat.beads import (
        catalog,  # noqa: F401
        store,  # noqa: F401
    )

    keep_views()

    if not private_dir(Path(path).parent):
        return
    lock = owner_lock(path)
    if lock is None:
        return
    try:
        with listening(path) as server:
            server.settimeout(idle)
            while True:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    return
                with conn:
                    if not handle(conn, pm):
                        return
    finally:
        log = Path(path).with_suffix(".log")
        with contextlib.suppress(FileNotFoundError):
            if log.stat().st_size == 0:  # nothing went wrong: leave nothing behind
                log.unlink()
        os.close(lock)


@contextlib.contextmanager
def listening(path: str) -> Iterator[socket.socket]:
    """The listening Unix socket at `path`, mode 0600 (a dead server's socket there is
    replaced), closed and removed when the block ends. This server's and the command
    server's (`gc_polecat/cmdserver.py`)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    try:
        sock.listen(64)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gc_polecat.interop.gc_exec_server SOCKET", file=sys.stderr)
        return 2
    os.umask(os.umask(0o002) | 0o002)
    serve(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
