"""The client half of the warm exec-beads server: hand one gc store call to the city's server.

gc spawns the provider for every store call; a cold interpreter that imports dulwich, YAML and
the plugins to write one bead costs several hundred milliseconds. gc's lifecycle `start`
(`cmd/gc/beads_provider_lifecycle.go`) starts `exec_server` for the city; from then on each
call connects to its Unix socket, sends argv, environment and stdin, and prints the answer. No
server (never started, stopped, or gone): `call_server` returns None and the call runs in this
process as before. This module imports only what the standard library loads at start anyway.
"""

from __future__ import annotations

import json
import os
import socket
import sys

STDIN_OPS = ("create", "update", "set-metadata")  # the operations gc gives stdin
CONNECT_TIMEOUT = 2.0
CALL_TIMEOUT = 28.0  # gc kills a call at 30 s
MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes
PIPE_MAX = 1 << 20  # /proc/sys/fs/pipe-max-size by default: what a user may ask for


def socket_path(env: dict[str, str] | os._Environ[str]) -> str | None:
    """Where the city's server listens: in the city's runtime directory (gascity
    `citylayout.PackStateDir(city, "polecat")`), or under /tmp when that path is too long for
    a socket. None outside a city."""
    city = (env.get("GC_CITY_PATH") or env.get("GC_CITY") or "").strip()
    if not city:
        return None
    runtime = os.path.join(os.path.abspath(city), ".gc", "runtime", "packs", "polecat")
    path = os.path.join(runtime, "server", "exec.sock")  # a directory of its own, mode 0700
    if len(os.fsencode(path)) < MAX_SOCKET_PATH:
        return path
    import hashlib

    digest = hashlib.sha256(os.fsencode(os.path.abspath(city))).hexdigest()[:16]
    return f"/tmp/gc-polecat-{os.getuid()}/{digest}.sock"


def safe_dir(path: str) -> bool:
    """Whether the socket's directory is this user's and no one else can write into it: else
    another user could put a socket of their own there and receive our environment."""
    try:
        st = os.lstat(os.path.dirname(path))
    except OSError:
        return False
    return (
        st.st_uid == os.getuid() and not st.st_mode & 0o022 and (st.st_mode & 0o170000) == 0o040000
    )


def send(sock: socket.socket, header: dict, body: bytes) -> None:
    sock.sendall(json.dumps(header).encode() + b"\n" + body)


def receive(sock: socket.socket) -> tuple[dict, bytes]:
    """One message: a JSON header line, then `body` bytes as the header counts them."""
    data = bytearray()
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    end = data.index(b"\n")
    header = json.loads(data[:end])
    size = int(header.get("body", 0))
    return header, receive_body(sock, data[end + 1 :], size)


def receive_body(sock: socket.socket, start: bytearray, size: int) -> bytes:
    """`size` bytes, `start` already read: received straight into one buffer (an answer of
    thousands of beads is megabytes; no chunk is allocated or copied on the way)."""
    if size < 0:
        raise ValueError(f"bad body size {size}")
    if len(start) >= size:
        return bytes(start[:size])
    body = bytearray(size)
    body[: len(start)] = start
    view = memoryview(body)
    got = len(start)
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("connection closed")
        got += n
    return bytes(body)


def connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def widen_pipe(stream: object, size: int) -> None:
    """When stdout is a pipe (gc reads it), let it hold a large answer (up to the kernel's
    1 MiB) so it goes over in a few writes instead of one per 64 kB the reader drains."""
    if size <= 65536:
        return
    import fcntl  # lazy: start-up

    opt = getattr(fcntl, "F_SETPIPE_SZ", None)
    if opt is None:
        return
    try:
        fcntl.fcntl(stream.fileno(), opt, min(size, PIPE_MAX))  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return  # not a pipe, or over the user's pipe quota: written as before


def call_server(args: list[str]) -> int | None:
    """Answer `exec-beads <args>` through the city's server; None when there is none (the
    caller then answers it itself). Once the request is sent, a lost answer is a failure,
    never a second try: the write may have happened."""
    path = socket_path(os.environ)
    if path is None or not os.path.exists(path) or not safe_dir(path):
        return None
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        stdin = b""
        if args and args[0] in STDIN_OPS and sys.stdin is not None:
            stdin = sys.stdin.buffer.read()
        header = {"argv": args, "env": dict(os.environ), "body": len(stdin)}
        try:
            sock.settimeout(CALL_TIMEOUT)
            send(sock, header, stdin)
            answer, body = receive(sock)
        except (OSError, ValueError) as exc:
            print(f"gc-polecat: error: exec-beads server {path}: {exc}", file=sys.stderr)
            return 1
    if body:
        widen_pipe(sys.stdout, len(body) + 1)
        sys.stdout.buffer.write(body + b"\n")
        sys.stdout.buffer.flush()
    if answer.get("err"):
        print(f"gc-polecat: error: {' '.join(str(answer['err']).split())}", file=sys.stderr)
    return int(answer.get("status", 1))
