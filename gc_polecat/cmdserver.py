"""The command server: a write command for the cost of a fork, not an interpreter's start-up.

`verdict`, `submit` and the `bead` write verbs run as a fresh process many times per work item,
and most of their wall time is importing click, dulwich and the plugins, not writing. Like
Mercurial's chg, `__main__` hands such a command line to a server that has imported all of
that once: the server forks, the child takes the caller's working directory, environment,
stdin, stdout and stderr (the file descriptors themselves, passed over the socket), runs the
same click command line, and the server reports how the child ended. The caller exits with the
same status, or dies of the same signal; a signal sent to the caller is passed on to the child,
and a caller that dies (even of SIGKILL) takes the child with it. So a served command does
what the same command run cold does, byte for byte (docs/performance.md, "The command server").

Nothing is served unless all of this holds, else the command runs cold, as before:
- the command is one of SERVED, `GC_POLECAT_SERVER` is not `0`, and no variable that a module
  reads at import time is set (COLD_ENV);
- the socket's directory is this user's alone (mode 0700, not a link): `/tmp/gc-polecat-<uid>/`,
  as for the exec-beads server; the server answers only its own user (SO_PEERCRED);
- the server was started by the same interpreter, flags, `sys.path`, locale, plugin choice
  and `gc_polecat` package directory (the socket's name is a digest of them), and before each
  command it checks that no module it has loaded (ours, a plugin's, a library's) changed on
  disk and that no distribution was installed or removed since it started (the entry-point
  cache's stamp): otherwise it answers "stale", exits, and the command runs cold.

The first command finds no server: it starts one (detached, its own session) and runs cold. A
server exits after IDLE_SECONDS without a command. The hand-over is request -> "accepted" -> GO:
the server forks only on the caller's GO, and the caller runs a command itself only when it did
not send GO, so a command runs once, whoever gives up when; a server lost after GO is exit 1.
This module's client half imports only what `__main__`'s other paths load anyway (json, os,
socket, sys).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import sys

SWITCH = "GC_POLECAT_SERVER"  # "0": never use or start a server
DIR_ENV = "GC_POLECAT_SERVER_DIR"  # where the sockets live (tests); default /tmp/gc-polecat-<uid>
SERVED = (  # the write commands: each a short-lived process that writes and exits
    ("verdict",), ("submit",), ("import",),
    ("bead", "create"), ("bead", "update"), ("bead", "close"),
)  # fmt: skip
COLD_ENV = ("GC_POLECAT_TEST_CRASH_AT",)  # read when the store module is imported
GLOBAL_FLAGS = ("--json",)
GLOBAL_OPTIONS = ("--repo",)
IDLE_SECONDS = 600.0
HANDSHAKE_TIMEOUT = 30.0  # request, "accepted", GO: milliseconds unless the machine is swamped
GO = b"go\n"  # the caller's last word: only after it does the server fork the command
MAX_SOCKET_PATH = 100


# --- the client (imported by __main__ for SERVED command lines) --------------------------------


def served(argv: list[str]) -> bool:
    """Whether `argv` (without the program name) is a command line the server takes."""
    words: list[str] = []
    i = 0
    while i < len(argv) and len(words) < 2:
        arg = argv[i]
        if arg in GLOBAL_FLAGS:
            i += 1
        elif arg in GLOBAL_OPTIONS:
            i += 2
        elif arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            i += 1
        elif arg.startswith("-"):
            return False  # --help, --version, an unknown option: cold, as click says it
        else:
            words.append(arg)
            i += 1
    return any(tuple(words[: len(cmd)]) == cmd for cmd in SERVED)


def identity() -> dict[str, object]:
    """What the server must share with this process for its modules to be the ones this
    process would import and behave the same way: the socket's name is a digest of it."""
    import _locale  # lazy: start-up

    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "version": sys.version,
        "flags": list(sys.flags),
        "path": sys.path[1:],  # [0] is the script's (or the working) directory
        "encoding": [_locale.getencoding(), sys.getfilesystemencoding()],
        "plugins": os.environ.get("GC_POLECAT_LOAD_PLUGINS"),
        "uid": os.getuid(),
        # the package this process runs: `python -m` in a checkout imports that checkout's
        "package": os.path.dirname(os.path.abspath(__file__)),
    }


def socket_dir() -> str:
    return os.environ.get(DIR_ENV) or f"/tmp/gc-polecat-{os.getuid()}"


def socket_path(ident: dict[str, object]) -> str:
    import zlib  # lazy: start-up

    key = json.dumps(ident, sort_keys=True).encode()
    return os.path.join(socket_dir(), f"cmd-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.sock")


def _stream(stream: object) -> list[object]:
    """How a standard stream of this process encodes and buffers, for the child to match."""
    return [
        getattr(stream, "encoding", "utf-8"),
        getattr(stream, "errors", "strict"),
        bool(getattr(stream, "line_buffering", False)),
        bool(getattr(stream, "write_through", False)),
    ]


def call(argv: list[str]) -> int | None:
    """Run `argv` in the server; its exit status, or None to run it here (no server, a stale
    one, a directory that is not ours alone). Starts a server for the next command."""
    if os.environ.get(SWITCH) == "0" or any(os.environ.get(k) for k in COLD_ENV):
        return None
    from gc_polecat.interop.gc_exec_client import connect, safe_dir  # lazy: start-up

    ident = identity()
    path = socket_path(ident)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH or not _private_dir(socket_dir()):
        return None
    if not safe_dir(path):
        return None
    sock = connect(path)
    if sock is None:
        spawn(path)
        return None
    with sock:
        return _converse(sock, argv)


def _private_dir(directory: str) -> bool:
    """Make the sockets' directory (0700) if missing; never follows or fixes someone else's."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    return True


def _converse(sock: socket.socket, argv: list[str]) -> int | None:
    """Send the command line and the three standard descriptors; wait for how it ended."""
    import signal  # lazy: start-up

    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "streams": [_stream(sys.stdin), _stream(sys.stdout), _stream(sys.stderr)],
    }
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        data = json.dumps(request).encode() + b"\n"
        sock.settimeout(HANDSHAKE_TIMEOUT)
        sent = socket.send_fds(sock, [data], [0, 1, 2])
        sock.sendall(data[sent:])  # a long environment may take more than one send
        replies = sock.makefile("rb")
        accepted = _line(replies).get("accepted") is True
        if accepted:
            sock.sendall(GO)  # from here on the command is the server's: never run it here
    except (OSError, ValueError):
        accepted = False
    if not accepted:  # stale, refused, closed (an idle server on its way out), too slow
        return None  # the server forks only on GO, which was not sent: nothing ran
    sock.settimeout(None)
    try:
        child = int(_line(replies)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        print("gc-polecat: error: the command server went away mid-command", file=sys.stderr)
        return 1  # it may have started the command: never run it a second time

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(child, signum)

    passed_on = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    before = [signal.signal(signum, forward) for signum in passed_on]
    try:
        ended = _line(replies)
    except (OSError, ValueError):
        print("gc-polecat: error: the command server went away mid-command", file=sys.stderr)
        return 1
    finally:
        for signum, handler in zip(passed_on, before, strict=True):
            signal.signal(signum, handler)
    if "signal" in ended:
        signum = int(ended["signal"])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    return int(ended.get("code", 1))


def _line(replies: object) -> dict:
    """The server's next reply: one JSON object on one line (two may arrive in one read)."""
    data = replies.readline(65537)  # type: ignore[attr-defined]
    if not data.endswith(b"\n"):
        raise ConnectionError("connection closed" if not data else "reply too long")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError("not a reply")
    return reply


def spawn(path: str, every: float = 30.0) -> None:
    """Start a server at `path` for the commands to come, detached from this one; at most one
    attempt per `every` seconds (a server that cannot start must not cost every command)."""
    import subprocess  # lazy: start-up
    import time  # lazy: start-up

    mark = f"{path}.spawned"
    try:
        if time.time() - os.stat(mark).st_mtime < every:
            return
    except OSError:
        pass
    try:
        with open(mark, "w"):
            pass
    except OSError:
        return
    from gc_polecat.lifecycle.waiter import SESSION_IDENTITY  # lazy: start-up

    # not a session's process: a sweep that finds a session's processes by their environment
    # (session._kill_by_identity) must not find the server; each child gets its caller's
    env = {k: v for k, v in os.environ.items() if not k.startswith(SESSION_IDENTITY)}
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-m", "gc_polecat.cmdserver", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


# --- the server ------------------------------------------------------------------------------


class Server:
    """Listens on one socket; forks a child per command; reports each child's end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.children: dict[int, socket.socket] = {}  # child pid -> its caller's connection
        self.callers: dict[int, int] = {}  # child pid -> its caller's pid
        self.gone: set[int] = set()  # children whose caller died: killed, not yet reaped
        self.closing = False  # stale: no new command; the running ones still get their answer
        self.started = self.stamp()

    @staticmethod
    def stamp() -> list[object]:
        """What must not change under a running server: every loaded module's file and the
        directories on sys.path (an install or removal)."""
        from gc_polecat.plugins import path_stamp  # lazy: start-up

        files = []
        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            if name:
                try:
                    st = os.stat(name)
                except OSError:
                    files.append([name, None])
                else:
                    files.append([name, st.st_mtime_ns, st.st_size, st.st_ino])
        return [sorted(files, key=lambda f: str(f[0])), path_stamp()[1:]]

    def fresh(self) -> bool:
        """Nothing the server loaded changed; modules imported since start are checked too."""
        now = self.stamp()
        known = {f[0]: f for f in self.started[0]}  # type: ignore[index]
        return now[1] == self.started[1] and all(known.get(f[0], f) == f for f in now[0])


def preload() -> object:
    """Import, once, everything a command could: the command line with its plugins, every
    module of the package, and every module those import inside their functions (the imports
    deferred for a cold start's sake, found by reading their source). A child then imports
    nothing; what a module does at import is what it would do in any process."""
    import ast  # lazy: the server's own start-up
    import importlib  # lazy: the server's own start-up
    import pkgutil  # lazy: the server's own start-up

    import gc_polecat  # lazy: the server's own start-up
    from gc_polecat import cli  # lazy: the server's own start-up

    command_line = cli.make_cli()
    names = [m.name for m in pkgutil.walk_packages(gc_polecat.__path__, "gc_polecat.")]
    for name in names:
        if name.endswith("__main__") or name.endswith(".waiter"):
            continue  # runs on import / a script of its own
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    for name in list(sys.modules):
        if name.startswith("gc_polecat"):
            for deferred in _deferred_imports(sys.modules[name], ast):
                with contextlib.suppress(Exception):
                    importlib.import_module(deferred)
    return command_line


def _deferred_imports(module: object, ast: object) -> list[str]:
    """The modules `module` imports inside its functions."""
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())  # type: ignore[attr-defined]
    except (OSError, SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):  # type: ignore[attr-defined]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):  # type: ignore[attr-defined]
            for inner in ast.walk(node):  # type: ignore[attr-defined]
                if isinstance(inner, ast.Import):  # type: ignore[attr-defined]
                    found += [alias.name for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:  # type: ignore[attr-defined]
                    found.append(inner.module)
                    found += [f"{inner.module}.{alias.name}" for alias in inner.names]
    return found


def serve(path: str, idle: float = IDLE_SECONDS) -> None:
    """Serve at `path` until idle for `idle` seconds, stale, or another server owns it."""
    import select  # lazy: start-up
    import signal  # lazy: start-up

    from gc_polecat.interop.gc_exec_client import safe_dir  # lazy: the server's start-up
    from gc_polecat.interop.gc_exec_server import listening, owner_lock, peer  # lazy: as above

    gc.disable()  # the parent's objects stay where they are: no holes, no copies in the children
    command_line = preload()
    if not safe_dir(path):
        return
    lock = owner_lock(path)
    if lock is None:
        return
    server = Server(path)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select through wake_w
    with listening(path) as listener:
        with contextlib.suppress(OSError):
            os.unlink(f"{path}.spawned")  # started: the next spawn need not wait
        last = _now()
        while server.children or (not server.closing and _now() - last < idle):
            if server.closing:
                listener.close()  # and, on the way out, the socket file goes too
            waiting = [c for pid, c in server.children.items() if pid not in server.gone]
            listen = [] if server.closing else [listener]
            ready, _, _ = select.select([*listen, wake_r, *waiting], [], [], 1.0)
            for item in ready:
                if item is listener:
                    last = _now()
                    _accept(server, listener, command_line, peer)
                elif item == wake_r:
                    os.read(wake_r, 512)
                else:
                    _caller_gone(server, item)
            _reap(server)
    os.close(lock)


def _now() -> float:
    import time  # lazy: start-up

    return time.monotonic()


def _accept(server: Server, listener: socket.socket, command_line: object, peer: object) -> None:
    """Take one command and fork its child; a stale server answers "stale" and closes."""
    conn, _ = listener.accept()
    who = peer(conn)  # type: ignore[operator]
    if who is None or who[1] != os.getuid():
        conn.close()  # another user: no answer at all
        return
    conn.settimeout(5.0)
    fds: list[int] = []
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while not msg.endswith(b"\n"):
            more = conn.recv(1 << 20)
            if not more:
                raise ConnectionError("request cut short")
            msg += more
        request = json.loads(msg)
    except (OSError, ValueError):
        _drop(conn, fds)
        return
    stale = not server.fresh()
    if len(fds) != 3 or not isinstance(request, dict) or stale:
        server.closing = server.closing or stale
        _reply(conn, {"stale": True})  # the caller runs its command itself
        _drop(conn, fds)
        return
    if not _go(conn):  # the caller gave up (or went) before it handed the command over
        _drop(conn, fds)
        return
    gc.freeze()  # a child's collections never walk (and so never copy) the server's objects
    pid = os.fork()
    if pid == 0:  # the child: never returns
        listener.close()
        for other in server.children.values():
            other.close()
        _child(request, fds, command_line, conn)
    for fd in fds:
        os.close(fd)
    server.children[pid] = conn
    server.callers[pid] = who[0]
    _reply(conn, {"pid": pid})


def _drop(conn: socket.socket, fds: list[int]) -> None:
    """A request not taken: its descriptors and its connection closed."""
    for fd in fds:
        os.close(fd)
    conn.close()


def _reply(conn: socket.socket, message: dict) -> bool:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        return False
    return True


def _go(conn: socket.socket) -> bool:
    """Accept the command and wait for the caller's GO: a caller that timed out or died
    before sending it runs the command itself (or not at all), so the server must not."""
    if not _reply(conn, {"accepted": True}):
        return False
    conn.settimeout(HANDSHAKE_TIMEOUT)
    got = b""
    try:
        while len(got) < len(GO):
            chunk = conn.recv(len(GO) - len(got))
            if not chunk:
                return False
            got += chunk
    except OSError:
        return False
    return got == GO


def _caller_gone(server: Server, conn: socket.socket) -> None:
    """The caller's end closed before its command ended: it died; so does the command."""
    import signal  # lazy: start-up

    try:
        data = conn.recv(1, socket.MSG_PEEK)
    except OSError:
        data = b""
    if data:
        return  # a caller only listens; stray bytes are ignored until it closes
    for pid, c in list(server.children.items()):
        if c is conn:
            server.gone.add(pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _reap(server: Server) -> None:
    """Report each ended child to its caller: its exit status, or the signal that ended it."""
    while server.children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = server.children.pop(pid, None)
        server.gone.discard(pid)
        if conn is None:
            continue
        ended = os.waitstatus_to_exitcode(status)
        if os.WIFSIGNALED(status):
            _reply(conn, {"signal": os.WTERMSIG(status)})
        else:
            _reply(conn, {"code": ended})
        conn.close()
        _log(server.path, f"{server.callers.pop(pid, 0)} {pid} {ended}")


LOG_MAX = 1 << 20


def _log(path: str, line: str) -> None:
    """One line per served command beside the socket (`CALLER-PID CHILD-PID STATUS`, a
    negative status the signal that ended it): no argument or title, just what ran where.
    Kept under LOG_MAX bytes with one older file (`.log.1`)."""
    import time  # lazy: start-up

    log = f"{path}.log"
    with contextlib.suppress(OSError):
        if os.path.getsize(log) > LOG_MAX:
            os.replace(log, f"{log}.1")
    with contextlib.suppress(OSError):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n".encode())
        finally:
            os.close(fd)


def _child(request: dict, fds: list[int], command_line: object, conn: socket.socket) -> None:
    """Become the caller's command: its descriptors, directory and environment, then run."""
    import signal  # lazy: start-up

    code = 1
    try:
        gc.enable()
        conn.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # its own group: what it starts is not the server's
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _streams(request.get("streams") or [])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
        code = _run(command_line, [str(a) for a in request["argv"]])
    except BaseException as exc:  # noqa: BLE001 - the child must end here, whatever happened
        print(f"gc-polecat: error: the command server failed: {exc!r}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(code)


def _streams(described: list) -> None:
    """sys.stdin/stdout/stderr over descriptors 0-2, encoded and buffered as the caller's."""
    import io  # lazy: start-up

    names = ("stdin", "stdout", "stderr")
    for fd, (name, how) in enumerate(zip(names, described, strict=False)):
        encoding, errors, line_buffering, write_through = how
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        setattr(
            sys,
            name,
            io.TextIOWrapper(
                buffered,
                encoding=encoding,
                errors=errors,
                line_buffering=line_buffering,
                write_through=write_through,
            ),
        )


def _run(command_line: object, argv: list[str]) -> int:
    """The click command line, as `__main__` runs it; its exit status."""
    try:
        command_line.main(args=argv, prog_name="gc-polecat")  # type: ignore[attr-defined]
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gc_polecat.cmdserver SOCKET", file=sys.stderr)
        return 2
    os.umask(os.umask(0o002) | 0o002)
    serve(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
