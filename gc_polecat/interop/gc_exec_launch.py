"""Starting and stopping a city's warm exec-beads server, as gc's `start` and `stop` calls do
(interop/gc_exec.py `op_start`/`op_stop`): the server itself is gc_exec_server.py, which this
module only names on a command line, so the provider never imports the server that imports it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from gc_polecat.interop.gc_exec_client import connect, receive, safe_dir, send, socket_path

CODE_FILES = (
    "interop/gc_exec.py",
    "interop/gc_exec_server.py",
    "beads/store.py",
    "beads/catalog.py",
    "beads/bead.py",
    "beads/ids.py",
    "interop/gc_exec_client.py",  # the protocol
    "beads/git.py",  # the tree diff of `ReadyView`
    "interop/gc_exec_launch.py",
)
START_WAIT = 10.0


def code_version() -> str:
    """What identifies the code this process runs (size and mtime of its modules' files), so
    `start` after an upgrade replaces a server still running the old code."""
    here = Path(__file__).resolve().parents[1]  # the gc_polecat package
    stamps = []
    for name in CODE_FILES:
        with contextlib.suppress(OSError):
            st = (here / name).stat()
            stamps.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(stamps)


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
                [sys.executable, "-m", "gc_polecat.interop.gc_exec_server", path],
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
