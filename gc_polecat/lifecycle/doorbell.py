"""Local wake-ups: a doorbell that the refinery's post-commit observer rings for blocked waiters.

The git repository is the only truth. A ring says "look again", nothing more: after a wake-up
the waiter re-reads its state from git, and a lost ring costs only latency because waiters
also re-check on a slow timer. So this module never promises delivery; it promises that a ring
is cheap, never blocks and never raises for a listener that is missing, dead or busy.

Layout. A listener binds one AF_UNIX datagram socket per key (a wait ID, a session ID) at

    <wake_dir>/<key>/<pid>-<random>.sock

and `ring` sends one datagram to every socket it lists in that directory. Directories are 0700
and sockets 0600, so only the owning user can listen or ring; both sides must run as that user.

Short-path fallback. An AF_UNIX path holds at most 107 bytes. When the socket path above could
exceed that (the length is decided on the real path of wake_dir, plus the key, plus the longest
socket name), both sides use instead

    /tmp/gc-polecat-wake-<uid>/<sha1(realpath(wake_dir) NUL key)[:20]>/<pid>-<random>.sock

The key is hashed together with wake_dir because a key alone may be 100 bytes. The rule is a
pure function of (realpath(wake_dir), key), so a ringer in another process, spelling wake_dir
differently, finds the same directory. A hash collision could only cause a spurious wake-up.

Stale sockets (a listener killed with SIGKILL leaves its socket file behind) are removed lazily
by `ring`: sending to them is refused. Usage without lost wake-ups: open the Doorbell first,
then read state from git, then wait; a ring committed after the bind is queued for you.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import time

from gc_polecat.errors import BadInput, GcPolecatError

# This module is imported by the slim waiter (waiter.py) that a blocked `await` becomes, so it
# imports nothing heavy at run time: pathlib, hashlib, typing and contextlib cost a waiter ~2
# MiB each among hundreds (docs/performance.md). Annotation-only names are imported for
# type checkers alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from types import TracebackType

MAX_KEY_LEN = 100
MAX_PAYLOAD = 1024
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_SOCKET_SUFFIX = ".sock"
# The longest name _socket_name() can produce: a 10-digit pid, a dash, 8 hex digits, suffix.
_MAX_SOCKET_NAME = len(f"{2**31 - 1}-{'0' * 8}{_SOCKET_SUFFIX}")
_FALLBACK_PARENT = "/tmp"
_BIND_ATTEMPTS = 5
_MAX_POLL_MS = 2**31 - 1  # poll() takes a C int; longer waits simply poll again


class UnsafeWakeDir(GcPolecatError):
    """A wake directory is a symlink, not ours, or open to other users; we will not use it."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe single path component (a bead or session ID), else BadInput."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_KEY_LEN
        or key in (".", "..")
        or not _KEY_CHARS.issuperset(key)
    ):
        raise BadInput(f"invalid wake key {key!r}: use 1-{MAX_KEY_LEN} of A-Z a-z 0-9 . _ -")
    return key


def ring(wake_dir: Path, key: str, payload: str = "") -> int:
    """Send `payload` to every listener of `key`; return how many were reached.

    Never blocks and never raises for a missing directory or a dead or busy listener: a full
    receive queue counts as reached (that listener already has a ring pending), and the socket
    of a dead listener is removed.
    """
    directory = _key_dir(_real(wake_dir), validate_key(key))
    if not _is_private_dir(directory) or not _parent_is_safe(directory):
        return 0
    try:
        names = [n for n in os.listdir(directory) if n.endswith(_SOCKET_SUFFIX)]
    except OSError:
        return 0
    data = _encode_payload(payload)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        return sum(_send(sender, os.path.join(directory, name), data) for name in names)


class Doorbell:
    """A listener for wake-ups on one or more keys (e.g. a wait ID and a session ID).

    Bind it before reading state from git, so that no ring can slip in between. One thread at
    a time may wait on it; close() it (or use `with`) when done.
    """

    def __init__(self, wake_dir: Path, keys: Iterable[str]) -> None:
        unique = list(dict.fromkeys(validate_key(k) for k in keys))
        if not unique:
            raise BadInput("a doorbell needs at least one key")
        self._keys = tuple(unique)
        self._sockets: list[socket.socket] = []
        self._paths: list[str] = []
        real = _real(wake_dir)
        try:
            os.makedirs(real, mode=0o700, exist_ok=True)
            for key in self._keys:
                sock, path = _bind(_key_dir(real, key))
                self._sockets.append(sock)
                self._paths.append(path)
        except BaseException:
            self.close()
            raise

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    @property
    def paths(self) -> tuple[Path, ...]:
        """The socket files this doorbell listens on (one per key)."""
        from pathlib import Path

        return tuple(Path(p) for p in self._paths)

    def wait(self, timeout: float | None) -> list[str]:
        """Block until at least one ring arrives or `timeout` seconds pass (None: forever).

        Returns every payload pending on any key, oldest first per key; [] on timeout.
        """
        if not self._sockets:
            raise ValueError("wait() on a closed Doorbell")
        poller = select.poll()
        for sock in self._sockets:
            poller.register(sock, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if poller.poll(_poll_ms(remaining)):
                payloads = self._drain()
                if payloads:
                    return payloads
            if remaining == 0.0:
                return []

    def close(self) -> None:
        """Stop listening: close and unlink the sockets, drop key directories left empty."""
        sockets, paths = self._sockets, self._paths
        self._sockets, self._paths = [], []
        for sock in sockets:
            sock.close()
        for path in paths:
            _quietly(os.unlink, path)
            _quietly(os.rmdir, os.path.dirname(path))  # ENOTEMPTY while another listener uses it

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort for a forgotten close(); ring() would remove the socket later anyway.
        try:  # noqa: SIM105 - contextlib is kept out of the slim waiter (module docstring)
            self.close()
        except Exception:  # at interpreter exit anything may be gone
            pass

    def _drain(self) -> list[str]:
        """Read every queued datagram without blocking."""
        payloads: list[str] = []
        for sock in self._sockets:
            while True:
                try:
                    data = sock.recv(MAX_PAYLOAD)
                except (BlockingIOError, InterruptedError):
                    break
                payloads.append(data.decode("utf-8", "replace"))
        return payloads


def _real(wake_dir: Path) -> str:
    """One spelling of wake_dir for every process: the layout rule depends on it."""
    return os.path.realpath(os.fspath(wake_dir))


def _key_dir(real_wake_dir: str, key: str) -> str:
    """Where the sockets of `key` live, following the short-path rule in the module docstring."""
    direct = os.path.join(real_wake_dir, key)
    if len(os.fsencode(direct)) + 1 + _MAX_SOCKET_NAME <= MAX_SOCKET_PATH:
        return direct
    import hashlib  # only for long paths: kept out of the waiter's memory otherwise

    digest = hashlib.sha1(os.fsencode(real_wake_dir) + b"\0" + key.encode()).hexdigest()[:20]
    return os.path.join(_fallback_root(), digest)


def _fallback_root() -> str:
    return os.path.join(_FALLBACK_PARENT, f"gc-polecat-wake-{os.getuid()}")


def _parent_is_safe(directory: str) -> bool:
    """In /tmp, the shared fallback root must be ours too; wake_dir itself is the caller's."""
    parent = os.path.dirname(directory)
    return parent != _fallback_root() or _is_private_dir(parent)


def _ensure_private_dir(path: str) -> None:
    """Create `path` as 0700, or accept an existing real directory that only we can enter."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # the umask may have cleared bits we need
    if not _is_private_dir(path):
        raise UnsafeWakeDir(f"refusing wake directory {path}: a symlink, not ours, or not 0700")


def _is_private_dir(path: str) -> bool:
    """A real directory (lstat: symlinks are never followed) owned by us, closed to others."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _bind(directory: str) -> tuple[socket.socket, str]:
    """Bind a fresh 0600 socket in `directory`, recreating it if a closing listener removed it."""
    for _ in range(_BIND_ATTEMPTS):
        if os.path.dirname(directory) == _fallback_root():
            _ensure_private_dir(_fallback_root())
        _ensure_private_dir(directory)
        path = os.path.join(directory, _socket_name())
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            if e.errno in (errno.ENOENT, errno.EADDRINUSE):
                continue  # directory removed under us, or a name clash: try again
            raise
        except BaseException:
            sock.close()
            raise
        os.chmod(path, 0o600)  # the 0700 directory already keeps others out meanwhile
        sock.setblocking(False)
        return sock, path
    raise GcPolecatError(f"could not bind a wake socket in {directory}")


def _socket_name() -> str:
    return f"{os.getpid()}-{os.urandom(4).hex()}{_SOCKET_SUFFIX}"


def _encode_payload(payload: str) -> bytes:
    """UTF-8, cut to MAX_PAYLOAD bytes without leaving half a character at the end."""
    data = payload.encode("utf-8", "replace")[:MAX_PAYLOAD]
    return data.decode("utf-8", "ignore").encode("utf-8")


def _send(sender: socket.socket, path: str, data: bytes) -> bool:
    """Ring one listener; a dead one's socket file is removed. True if it was reached."""
    try:
        sender.sendto(data, socket.MSG_DONTWAIT, path)
    except BlockingIOError:
        return True  # its queue is full: it already has a ring pending
    except ConnectionRefusedError:
        _remove_stale(path)
        return False
    except OSError:
        return False  # vanished meanwhile (ENOENT), not a socket, not ours: not a listener
    return True


def _remove_stale(path: str) -> None:
    """Unlink a socket file nobody listens on; leave any other kind of file alone."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _quietly(call: object, path: str) -> None:
    """`call(path)`, where failing (the file is gone, the directory in use) is fine."""
    try:  # noqa: SIM105 - contextlib is kept out of the slim waiter (module docstring)
        call(path)  # type: ignore[operator]
    except OSError:
        pass


def _poll_ms(seconds: float | None) -> int:
    """poll() wants whole milliseconds; round up so a short timeout does not spin at 0."""
    if seconds is None:
        return -1
    return min(-int(-seconds * 1000 // 1), _MAX_POLL_MS)
