"""The slim waiter: what a blocked `await` becomes while it waits.

A polecat blocks in `gc-polecat await` for minutes or hours, and a city has hundreds of them.
The full command line (click, pluggy, dulwich, ruamel, every plugin) costs about 30 MiB per
process; nothing of it is needed to sit on a doorbell. So once `await` has found its wait
pending, it *execs* this file as a script with `python -S` (no site, no package imports beyond
`gc_polecat.lifecycle.doorbell`, which is kept light for this reason). The process keeps its
PID, its
environment (the session's identity) and its parent; only its memory shrinks.

The waiter binds the doorbell first, then reads the wait's state from git (`git cat-file` on
HEAD, spawned without the subprocess module), so no ring is lost. It reads again after every
ring, and on a slow timer (`RECHECK`, 30 s) whenever the branch ref has moved; the settling
daemon watches the ref once a second and rings a wait that settled without a ring, so a missed
ring costs about a second while the daemon runs and at most `RECHECK` when it does not
(latency, never correctness). As soon as the state is anything but `pending`, or the deadline
passes, it asks the settling daemon (waiterd.py), or else execs the full command line again
(`await WAIT --timeout LEFT`), which delivers the verdict, prints and exits exactly as a
never-slimmed `await` would. Whatever it cannot read with
certainty (a bead file in an unexpected shape, git failing) also goes back to the full command
line, with `GC_POLECAT_AWAIT_SLIM=0` so that one blocks in place instead of coming back here.

Usage (built by `hand_over`, never typed by people):

    python -S waiter.py ROOT WAKE_DIR WAIT_ID WAIT_PATH DEADLINE JSON KEY...

DEADLINE is a `time.monotonic()` value (the clock is system-wide on Linux) or `-` for none;
JSON is `1` when the caller asked for `--json`.
"""

from __future__ import annotations

import os
import sys
import time

# The slow timer behind the doorbell. The settling daemon watches the ref once a second and
# rings any listening wait that settled without a ring (waiterd.ring_settled), so this one only
# matters while no daemon runs: then a missed ring costs up to this, as Gas City's 30 s tick.
RECHECK = 30.0
SLIM_ENV = "GC_POLECAT_AWAIT_SLIM"  # "0": block in the full command line (the old way)
_MAX_BLOB = 1 << 20
_MAX_SOCKET_PATH = 107
# a session's identity in the environment: what a daemon started from a session must not carry
SESSION_IDENTITY = ("GC_SESSION_", "GC_CONTINUATION_", "GC_INSTANCE_", "GC_POLECAT_REPO")
DAEMON_TIMEOUT = 30.0  # an answer from the settling daemon takes milliseconds; this is a cap


def daemon_address(state_dir: str) -> str:
    """Where the settling daemon (waiterd.py) listens: in the state directory, or, when that
    path is too long for AF_UNIX, in the user's private wake root in /tmp (as doorbell.py does)."""
    direct = os.path.join(state_dir, "waiterd.sock")
    if len(os.fsencode(direct)) <= _MAX_SOCKET_PATH:
        return direct
    import hashlib  # only for long paths

    # lazy: start-up
    from gc_polecat.lifecycle.doorbell import (
        _fallback_root,  # one rule for the private root in /tmp
    )

    digest = hashlib.sha1(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:20]
    return os.path.join(_fallback_root(), f"waiterd-{digest}.sock")


def start_daemon(root: str, state_dir: str) -> None:
    """Start the repository's settling daemon unless one answers already (double fork: it is
    nobody's child, so no zombie is left behind; it exits on its own when idle)."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(daemon_address(state_dir))
        return  # one is running
    except OSError:
        pass
    finally:
        probe.close()
    if _recently_spawned(os.path.join(state_dir, "waiterd.spawned")):
        return  # another await started one a moment ago: it is still importing
    if os.fork() == 0:  # child
        try:
            os.setsid()
            if os.fork() == 0:  # grandchild: the daemon
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                # not a session's process: none of the session's identity (a sweep that looks
                # for the session's processes by their environment must not find it)
                env = {k: v for k, v in os.environ.items() if not k.startswith(SESSION_IDENTITY)}
                argv = [sys.executable, "-m", "gc_polecat.lifecycle.waiterd", root]
                os.execve(sys.executable, argv, env)
        finally:
            os._exit(0)
    os.wait()


def _recently_spawned(marker: str, within: float = 10.0) -> bool:
    """True if the marker was touched in the last `within` seconds; else touch it. Keeps a
    storm of starting awaits (a whole pool at once) from starting a daemon each."""
    try:
        if time.time() - os.stat(marker).st_mtime < within:
            return True
    except OSError:
        pass
    try:
        with open(marker, "w"):
            pass
    except OSError:
        pass
    return False


def ask_daemon(state_dir: str, request: str) -> dict | None:
    """The daemon's answer to one request line, or None when it cannot give one."""
    import json
    import socket

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(DAEMON_TIMEOUT)
    try:
        conn.connect(daemon_address(state_dir))
        conn.sendall(request.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1 << 20)
            if not chunk:
                return None
            data += chunk
        answer = json.loads(data)
    except (OSError, ValueError):
        return None
    finally:
        conn.close()
    return answer if isinstance(answer, dict) else None


def hand_over(
    root: str,
    wake_dir: str,
    wait_id: str,
    wait_path: str,
    deadline: float | None,
    json_output: bool,
    keys: list[str],
) -> None:
    """Replace this process by the slim waiter (never returns)."""
    when = "-" if deadline is None else repr(deadline)
    script = os.path.abspath(__file__)
    argv = [sys.executable, "-S", script, root, wake_dir, wait_id, wait_path, when]
    argv += ["1" if json_output else "0", *keys]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def slim_allowed() -> bool:
    return os.environ.get(SLIM_ENV, "1") != "0"


def _back(root: str, wait_id: str, deadline: float | None, json_output: bool, slim: bool) -> None:
    """Exec the full `await` again, with what is left of the time (never returns)."""
    argv = [sys.executable, "-m", "gc_polecat", "--repo", root]
    argv += ["--json"] if json_output else []
    argv += ["await", wait_id]
    if deadline is not None:
        argv += ["--timeout", f"{max(0.0, deadline - time.monotonic()):.3f}"]
    env = dict(os.environ)
    if not slim:
        env[SLIM_ENV] = "0"
    os.execve(sys.executable, argv, env)


def wait_state(text: str) -> str | None:
    """`metadata.state` of a wait bead as gc-polecat writes it, or None when the file is not
    in that plain shape (then the full command line reads it with the real YAML parser)."""
    lines = text.split("\n")
    try:
        start = lines.index("metadata:")
    except ValueError:
        return None
    found = None
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        if line.startswith("  state:"):
            if found is not None:
                return None
            found = line[len("  state:") :].strip().strip("'\"")
    if found is None:
        return "pending"  # no state key: a wait is pending until it says otherwise
    return found if found.isalpha() and found.islower() else None


def _read_blob(root: str, path: str) -> str | None:
    """HEAD:path through `git cat-file` (posix_spawn and a pipe: no subprocess module)."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.posix_spawnp(
            "git",
            ["git", "-C", root, "cat-file", "blob", f"HEAD:{path}"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_CLOSE, read_fd),
            ],
        )
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    os.close(write_fd)
    chunks, size = [], 0
    while size <= _MAX_BLOB:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if status != 0 or size > _MAX_BLOB:
        return None
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        return None


def ref_signature(root: str) -> tuple[int, ...]:
    """Cheap evidence that the branch moved: the stat of HEAD's ref file and packed-refs
    (HEAD read with one open, read and close: this runs in every idle waiter)."""
    git_dir = os.path.join(root, ".git")
    sig: list[int] = []
    try:
        fd = os.open(os.path.join(git_dir, "HEAD"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            head = os.read(fd, 512).strip()
        finally:
            os.close(fd)
    except OSError:
        return ()
    names = [head[5:].decode("utf-8", "replace")] if head.startswith(b"ref: ") else []
    for name in [*names, "packed-refs"]:
        try:
            st = os.stat(os.path.join(git_dir, name))
            sig += [st.st_ino, st.st_mtime_ns, st.st_size]
        except OSError:
            sig += [0, 0, 0]
    return tuple(sig)


def main(argv: list[str]) -> None:
    root, wake_dir, wait_id, wait_path, deadline_s, json_s, *keys = argv
    deadline = None if deadline_s == "-" else float(deadline_s)
    json_output = json_s == "1"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from gc_polecat.lifecycle.doorbell import Doorbell  # lazy: start-up

    state_dir = os.path.dirname(wake_dir)
    state: str | None = None
    with Doorbell(wake_dir, keys) as bell:  # bind first, then read: no ring is lost
        seen: tuple[int, ...] | None = None
        while True:
            signature = ref_signature(root)
            if signature != seen:
                seen = signature
                text = _read_blob(root, wait_path)
                state = wait_state(text) if text is not None else None
                if state is None:
                    break  # not readable here: the full command line decides
                if state != "pending":
                    answer = ask_daemon(state_dir, _request(wait_id, json_output))
                    if answer is not None and type(answer.get("code")) is int:
                        _finish(answer["code"], str(answer.get("out", "")))
                    if answer is None or not answer.get("pending"):
                        break  # no daemon, or it could not settle: the full command line
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            if bell.wait(RECHECK if left is None else min(RECHECK, left)):
                seen = None  # rung: read again even if the ref looks the same
    # unreadable here: the full command line blocks in place rather than coming back
    _back(root, wait_id, deadline, json_output, slim=state is not None)


def _request(wait_id: str, json_output: bool) -> str:
    """The settling request for this process: its session identity, as `await` read it."""
    import json

    epoch = os.environ.get("GC_CONTINUATION_EPOCH")
    return json.dumps({
        "wait": wait_id,
        "session": os.environ.get("GC_SESSION_ID") or None,
        "epoch": int(epoch) if epoch and epoch.strip().lstrip("-").isdigit() else None,
        "pid": os.getpid(),
        "json": json_output,
    })  # fmt: skip


def _finish(code: int, out: str) -> None:
    """Print the daemon's answer as `await` would and exit with its status."""
    data = (out + "\n").encode("utf-8", "replace")
    while data:
        try:
            data = data[os.write(1, data) :]
        except BrokenPipeError:
            break
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
