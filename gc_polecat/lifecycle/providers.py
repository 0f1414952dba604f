"""Session providers: how a polecat session is started, found again, nudged and stopped.

A session outlives the gc-polecat process that started it (the refinery may reject the branch
hours later), so everything needed to reach it again goes into a `Handle`, a flat dict of
strings stored in the session bead's metadata. Liveness never trusts a PID alone: a PID is
matched with its start time (/proc/<pid>/stat field 22), so a reused PID is never mistaken for
the session, and never signalled.

Providers are registered through the `gc_polecat_register_session_providers` hook; the built-in
`process` and `tmux` providers live in `gc_polecat.builtin.providers_plugin`.
Stdlib only: this module is imported on every command line start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gc_polecat.errors import GcPolecatError
from gc_polecat.procs import ProcStat, proc_stat, process_start_time  # noqa: F401 - API

if TYPE_CHECKING:
    import subprocess

    import pluggy

Handle = dict[str, str]

SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TMUX_SOCKET_ENV = "GC_POLECAT_TMUX_SOCKET"
INBOX_ENV = "GC_POLECAT_INBOX"
NUDGE_SIGNAL_ENV = "GC_POLECAT_NUDGE_SIGNAL"
_POLL = 0.05
_TMUX_TIMEOUT = 15.0
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


class ProviderError(GcPolecatError):
    """A session could not be started or reached (tmux missing, name taken, argv empty...)."""


class SessionProvider(Protocol):
    """Starts sessions and finds them again from the handle `start` returned."""

    name: str

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> Handle: ...

    def is_alive(self, handle: Handle) -> bool: ...

    def nudge(self, handle: Handle, line: str) -> bool: ...

    def stop(self, handle: Handle, grace: float = 5.0) -> None: ...


def get_providers(pm: pluggy.PluginManager) -> dict[str, SessionProvider]:
    """Every provider registered through the hook, by name; two with one name is an error,
    since a handle names its provider and must reach exactly one."""
    found: dict[str, SessionProvider] = {}

    def register(provider: SessionProvider) -> None:
        name = getattr(provider, "name", None)
        if not isinstance(name, str) or not name:
            raise ProviderError(f"session provider {provider!r} has no name")
        if name in found:
            raise ProviderError(f"two session providers are named {name!r}")
        found[name] = provider

    pm.hook.gc_polecat_register_session_providers(register=register)
    return found


# --- /proc ---------------------------------------------------------------------------------


def _is_running(pid: int, start: str) -> bool:
    """The very process that had `start` is still there and not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat.start == start and stat.state != "Z"


def _group_has_live_members(pgid: int) -> bool:
    """Any non-zombie process in the group (zombies wait for a parent and cannot be killed)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat is not None and stat.pgrp == pgid and stat.state != "Z":
                    return True
    return False


def _group_is_ours(leader: int, leader_start: str) -> bool:
    """Whether the group numbered after `leader` is still the one we started.

    A PID number is not reused while a process group of that number exists, so: the leader
    with its start time means ours; no process at all with that PID means any members left
    are ours; a different process with that PID means our group is gone. With no recorded
    start time (the leader exited before it could be read) nothing can be proved ours."""
    if not leader_start:
        return False
    stat = proc_stat(leader)
    return stat is None or stat.start == leader_start


def _signal_process(pid: int, start: str, sig: signal.Signals) -> bool:
    """Send `sig` to the very process that had `start`; False if it is gone. Through a pidfd
    where the kernel has them, so a PID reused between the check and the signal is never hit."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):  # no pidfds here: the start-time check alone
        fd = None
    try:
        if not start or not _is_running(pid, start):
            return False
        if fd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        if fd is not None:
            os.close(fd)
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the group; False if it has no members left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, timeout: float, reap: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        gone = not _group_has_live_members(pgid)
        reap()  # after the check, so a leader found dead is collected, not left a zombie
        if gone:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


def _terminate_group(
    pgid: int, leader: int, leader_start: str, grace: float, reap: Callable[[], None]
) -> None:
    """SIGTERM the group, SIGKILL whatever is left after `grace` seconds; never a group whose
    leader PID now belongs to another process."""
    if not _group_is_ours(leader, leader_start):
        return
    if not _signal_group(pgid, signal.SIGTERM):
        return
    if _wait_group_gone(pgid, grace, reap):
        return
    if _group_is_ours(leader, leader_start) and _signal_group(pgid, signal.SIGKILL):
        _wait_group_gone(pgid, 5.0, reap)


# --- input checks --------------------------------------------------------------------------


def check_session_name(name: str) -> None:
    """Names reach tmux targets, where `:` and `.` separate window and pane, and file names."""
    if not isinstance(name, str) or not SESSION_NAME_RE.match(name):
        raise ProviderError(
            f"invalid session name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ - (no ':' or '.')"
        )


def check_line(line: str) -> None:
    """A nudge is one line of text: a newline or control character would act as a keystroke."""
    import unicodedata  # lazy: start-up

    bad = [c for c in line if unicodedata.category(c) == "Cc"]
    if bad:
        raise ProviderError(f"nudge line holds control characters {bad!r}: {line!r}")


def _check_start_args(
    name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> list[str]:
    check_session_name(name)
    args = list(argv)
    if not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise ProviderError(f"session {name!r}: argv must be a non-empty list of strings")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ProviderError(f"session {name!r}: invalid environment variable {key!r}")
    if any("\0" in a for a in args):
        raise ProviderError(f"session {name!r}: argv holds a NUL byte")
    if not Path(cwd).is_dir():
        raise ProviderError(f"session {name!r}: working directory {cwd} does not exist")
    return args


def _handle_int(handle: Handle, key: str) -> int:
    try:
        return int(handle[key])
    except (KeyError, ValueError) as e:
        raise ProviderError(f"session handle has no valid {key!r}: {handle!r}") from e


def _handle_str(handle: Handle, key: str, empty_ok: bool = False) -> str:
    value = handle.get(key)
    if value is None or not (value or empty_ok):
        raise ProviderError(f"session handle has no {key!r}: {handle!r}")
    return value


# --- plain child process -------------------------------------------------------------------


def _fresh_inbox(inbox: Path) -> None:
    """Create (or empty) the inbox, never through a symlink planted in its place."""
    inbox.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        os.close(os.open(inbox, flags, 0o600))
    except OSError as e:
        raise ProviderError(f"cannot create the inbox {inbox}: {e}") from e


class ProcessProvider:
    """A detached child process: its own session and process group, stdin from /dev/null,
    stdout and stderr appended to the log. It is nudged through an inbox file (path in
    $GC_POLECAT_INBOX), plus SIGUSR1 if it asked for that with GC_POLECAT_NUDGE_SIGNAL=1."""

    name = "process"

    def __init__(self) -> None:
        # Popen objects of children started here, so they are reaped (not left as zombies)
        # and Python does not warn about them still running.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> Handle:
        args = _check_start_args(name, argv, env, cwd)
        # The inbox sits beside the log, always: an inherited $GC_POLECAT_INBOX (a launcher
        # that is itself a session) must not become this session's inbox.
        inbox = Path(f"{log_path}.inbox")
        child_env = {**env, INBOX_ENV: str(inbox)}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _fresh_inbox(inbox)  # a fresh process owes nothing to its predecessor's nudges
        import subprocess  # lazy: start-up (a verdict or submit starts no process)

        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    args,
                    env=child_env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as e:
            raise ProviderError(f"session {name!r}: cannot run {args[0]!r}: {e}") from e
        self._children[proc.pid] = proc
        start = process_start_time(proc.pid)  # a zombie until reaped, so never None here
        return {
            "provider": self.name,
            "name": name,
            "pid": str(proc.pid),
            "pid_start": start or "",
            "pgid": str(proc.pid),
            "inbox": str(inbox),
            "nudge_signal": "1" if env.get(NUDGE_SIGNAL_ENV) == "1" else "0",
            "log": str(log_path),
        }

    def is_alive(self, handle: Handle) -> bool:
        pid = _handle_int(handle, "pid")
        start = _handle_str(handle, "pid_start")
        alive = _is_running(pid, start)
        if not alive:
            self._reap(pid, start)  # a dead child of ours must not linger as a zombie
        return alive

    def nudge(self, handle: Handle, line: str) -> bool:
        """Append the line to the inbox (one write, so concurrent nudges never interleave)."""
        check_line(line)
        if not self.is_alive(handle):
            return False
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(_handle_str(handle, "inbox"), flags, 0o600)
        except OSError as e:  # a symlink (ELOOP), a missing directory...
            raise ProviderError(f"cannot write the inbox {handle['inbox']!r}: {e}") from e
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        if handle.get("nudge_signal") == "1":
            pid, start = _handle_int(handle, "pid"), _handle_str(handle, "pid_start")
            return _signal_process(pid, start, signal.SIGUSR1)
        return True

    def stop(self, handle: Handle, grace: float = 5.0) -> None:
        pid = _handle_int(handle, "pid")
        start = _handle_str(handle, "pid_start")
        pgid = _handle_int(handle, "pgid") if "pgid" in handle else pid
        _terminate_group(pgid, pid, start, grace, lambda: self._reap(pid, start))
        if not _is_running(pid, start):
            self._reap(pid, start)

    def _reap(self, pid: int, start: str) -> None:
        """Collect the exit status of a child of this process that has exited, so it does
        not linger as a zombie; only the very process of the handle, never a reused PID."""
        proc = self._children.get(pid)
        if proc is not None:
            if proc.poll() is not None:
                del self._children[pid]
            return
        stat = proc_stat(pid)
        if stat is not None and stat.state == "Z" and stat.start == start:
            # Someone else's child (ChildProcessError) is reaped by its parent or by init.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


# --- tmux ----------------------------------------------------------------------------------


def _tmux_arg(arg: str) -> str:
    """Pass `arg` to the tmux command line literally: tmux takes an argument ending in ';' as
    a command separator, unless the ';' is escaped as '\\;'."""
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def _tmux_format_literal(text: str) -> str:
    """Protect text that tmux expands as a format (`-c`, the pipe-pane command)."""
    return text.replace("#", "##")


class TmuxProvider:
    """A detached session on a dedicated tmux server (`tmux -S <socket>`), so neither tests
    nor gc-polecat ever touch the user's default server. The server loads no configuration
    (`-f /dev/null`), so a user's tmux.conf cannot change how sessions behave."""

    name = "tmux"

    def __init__(self, socket: Path | None = None, tmux: str = "tmux") -> None:
        self._socket = socket
        self._tmux = tmux

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> Handle:
        args = _check_start_args(name, argv, env, cwd)
        socket = self._socket_for(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        socket.parent.mkdir(parents=True, exist_ok=True)
        if len(args) == 1:
            # tmux runs a single argument through `sh -c`; keep it one literal word.
            args = ["/bin/sh", "-c", 'exec "$0"', args[0]]
        # pipe-pane runs in the same tmux invocation, before the server reads any pane output.
        import shlex  # lazy: start-up

        pipe = "cat >> " + shlex.quote(str(log_path.absolute()))
        workdir = _tmux_format_literal(str(Path(cwd).absolute()))
        cmd = ["new-session", "-d", "-s", name, "-c", workdir]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        cmd += ["-P", "-F", "#{pane_id} #{pane_pid}", "--", *args]
        piped = ["pipe-pane", "-o", "-t", f"={name}:", _tmux_format_literal(pipe)]
        chained = [*map(_tmux_arg, cmd), ";", *map(_tmux_arg, piped)]
        out = self._run(socket, chained, f"cannot start session {name!r}")
        pane_id, pane_pid = self._parse_pane(out, name)
        return {
            "provider": self.name,
            "socket": str(socket),
            "session": name,
            "pane_id": pane_id,
            "pane_pid": pane_pid,
            # Empty if the command already exited: such a handle is never alive.
            "pane_pid_start": process_start_time(int(pane_pid)) or "",
            "log": str(log_path),
        }

    def is_alive(self, handle: Handle) -> bool:
        return self._find_pane(handle) is not None

    def nudge(self, handle: Handle, line: str) -> bool:
        """Type the line into the pane and press Enter: `-l` sends it as literal text, so no
        word of it is taken for a key name, and it never reaches a shell as a command."""
        check_line(line)
        pane = self._find_pane(handle)
        if pane is None:
            return False
        socket = Path(handle["socket"])
        if self._try(socket, ["send-keys", "-t", pane, "-l", "--", _tmux_arg(line)]) is None:
            return False
        return self._try(socket, ["send-keys", "-t", pane, "Enter"]) is not None

    def stop(self, handle: Handle, grace: float = 5.0) -> None:
        """Kill the session if it is still ours, then the pane's process group if anything in
        it ignored the hangup."""
        pane_pid = _handle_int(handle, "pane_pid")
        start = _handle_str(handle, "pane_pid_start", empty_ok=True)
        session = self._find_session(handle)
        if session is not None:
            self._try(Path(handle["socket"]), ["kill-session", "-t", session])
        _terminate_group(pane_pid, pane_pid, start, grace, lambda: None)

    # helpers

    def _socket_for(self, log_path: Path) -> Path:
        configured = self._socket or os.environ.get(TMUX_SOCKET_ENV)
        socket = Path(configured) if configured else log_path.parent / "tmux.sock"
        socket = socket.absolute()
        if len(os.fsencode(socket)) > _SOCKET_PATH_MAX:
            raise ProviderError(
                f"tmux socket path too long ({socket}); set {TMUX_SOCKET_ENV} to a shorter path"
            )
        return socket

    def _exec(self, socket: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        """Run `tmux -S socket cmd...`; only a missing or hung tmux is an error here."""
        import shutil  # lazy: start-up
        import subprocess  # lazy: start-up

        exe = shutil.which(self._tmux)
        if exe is None:
            raise ProviderError(f"tmux is not installed (no {self._tmux!r} on PATH)")
        argv = [exe, "-f", "/dev/null", "-S", str(socket), *cmd]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=_TMUX_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise ProviderError(f"tmux on {socket} did not answer in {_TMUX_TIMEOUT}s") from e

    def _run(self, socket: Path, cmd: list[str], what: str) -> str:
        proc = self._exec(socket, cmd)
        if proc.returncode != 0:
            raise ProviderError(f"{what}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
        return proc.stdout

    def _try(self, socket: Path, cmd: list[str]) -> str | None:
        """Run a tmux command whose failure means the pane, session or server is gone."""
        proc = self._exec(socket, cmd)
        return proc.stdout if proc.returncode == 0 else None

    @staticmethod
    def _parse_pane(out: str, name: str) -> tuple[str, str]:
        fields = out.split()
        if len(fields) < 2 or not fields[0].startswith("%") or not fields[1].isdigit():
            raise ProviderError(f"session {name!r}: unexpected tmux output {out!r}")
        return fields[0], fields[1]

    def _panes(self, handle: Handle) -> list[list[str]]:
        fmt = "#{pane_id} #{pane_pid} #{pane_dead} #{session_id} #{session_name}"
        out = self._try(Path(_handle_str(handle, "socket")), ["list-panes", "-a", "-F", fmt])
        return [line.split() for line in (out or "").splitlines()]

    def _find_session(self, handle: Handle) -> str | None:
        """The tmux session id (`$N`) holding the handle's pane, if that pane still runs the
        very process we started under the session's name; None otherwise."""
        pane_id = _handle_str(handle, "pane_id")
        pane_pid = _handle_str(handle, "pane_pid")
        session = _handle_str(handle, "session")
        start = _handle_str(handle, "pane_pid_start", empty_ok=True)
        if not start:
            return None  # the pane's command exited before start() could see it
        for row in self._panes(handle):
            if row[:3] == [pane_id, pane_pid, "0"] and row[4:] == [session]:
                return row[3] if _is_running(int(pane_pid), start) else None
        return None

    def _find_pane(self, handle: Handle) -> str | None:
        return _handle_str(handle, "pane_id") if self._find_session(handle) else None
