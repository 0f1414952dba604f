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
import subprocess
import sys
import time
from pathlib import Path

from .exec_client import connect, receive, safe_dir, send, socket_path

IDLE_SECONDS = 3600.0
# The modules whose code answers a call: a server started from other code is replaced by `start`.
CODE_FILES = ("execprovider.py", "exec_server.py", "store.py", "catalog.py", "bead.py", "ids.py")
CODE_FILES += ("exec_client.py", "git.py")  # the protocol, and the tree diff of `ReadyView`
START_WAIT = 10.0
MAX_SNDBUF = 8 << 20  # the kernel caps it at net.core.wmem_max anyway
ACTOR_KEYS = ("GC_AGENT", "BD_ACTOR")  # read by the store from os.environ for authorship


def code_version() -> str:
    """What identifies the code this process runs (size and mtime of its modules' files), so
    `start` after an upgrade replaces a server still running the old code."""
    here = Path(__file__).resolve().parent
    stamps = []
    for name in CODE_FILES:
        with contextlib.suppress(OSError):
            st = (here / name).stat()
            stamps.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(stamps)


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
    from .execprovider import ExecError, run

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


CODE = code_version()
_SPAWNED: list[subprocess.Popen[bytes]] = []  # servers this process started: they outlive it


def ask(path: str, argv: list[str]) -> dict | None:
    """One request to the server at `path` (its answer's header), or None if none answers."""
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        try:
            send(sock, {"argv": argv, "env": {}, "body": 0}, b"")
            return receive(sock)[0]
        except (OSError, ValueError):
            return None


def private_dir(directory: Path) -> bool:
    """Make the socket's directory (mode 0700) and check it is this user's alone."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        if directory.lstat().st_uid == os.getuid():
            directory.chmod(0o700)
    return safe_dir(str(directory / "exec.sock"))


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
    from . import execprovider

    execprovider.WARM = True


def serve(path: str, idle: float = IDLE_SECONDS) -> None:
    """Listen on `path` until `stop` or `idle` seconds without a call; return at once when
    another server owns the socket."""
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    import dulwich.repo  # noqa: F401 - loaded once here instead of in every write

    from . import catalog, store  # noqa: F401

    keep_views()

    if not private_dir(Path(path).parent):
        return
    lock = owner_lock(path)
    if lock is None:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a dead server's socket
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old)
    server.listen(64)
    server.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                return
            with conn:
                if not handle(conn, pm):
                    return
    finally:
        server.close()
        log = Path(path).with_suffix(".log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            if log.stat().st_size == 0:  # nothing went wrong: leave nothing behind
                log.unlink()
        os.close(lock)


def start(env: dict[str, str]) -> str | None:
    """Start the city's server unless one answers; wait until it does. Returns a warning when
    it could not start (calls then run cold, as before), else None."""
    path = socket_path(env)
    if path is None:
        return None
    if not private_dir(Path(path).parent):  # before talking to whatever listens there
        return f"{Path(path).parent} is not this user's alone: no exec-beads server; calls run cold"
    running = ask(path, ["health"])
    if running is not None:
        if running.get("code") == CODE:
            return None
        ask(path, ["stop"])  # started from other code (an upgrade): replace it
        deadline = time.monotonic() + START_WAIT
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
    log = Path(path).with_suffix(".log")
    with open(log, "ab") as out:
        _SPAWNED.append(
            subprocess.Popen(
                [sys.executable, "-m", "gc_polecat.exec_server", path],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # outlives this call, and gc's process group
                close_fds=True,
            )
        )
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        sock = connect(path)
        if sock is not None:
            sock.close()
            return None
        time.sleep(0.05)
    return f"the exec-beads server did not start (see {log}); calls run cold"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gc_polecat.exec_server SOCKET", file=sys.stderr)
        return 2
    os.umask(os.umask(0o002) | 0o002)
    serve(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
