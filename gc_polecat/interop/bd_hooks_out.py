"""bd-compatible bead event hooks: `.beads/hooks/on_{create,update,close}`.

Same protocol as bd: `<hook> <issue_id> <event>` with the issue JSON on stdin, the environment
inherited, cwd = repository root, a per-hook time limit after which the hook's whole process
group is SIGKILLed. A hook can never fail the write that triggered it. The CLI hands its events
to a detached supervisor (`python -m gc_polecat.interop.bd_hooks_out`) so that it is neither
delayed by a
slow hook nor kills the hooks when it exits. This module is imported on every write: stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOOK_EVENTS = ("create", "update", "close")
OUTPUT_CAP = 64 * 1024  # bytes kept per stream per run; the rest is read and dropped
LOG_CAP = 1024 * 1024  # past this the log keeps only its last half
_TRUTHY = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's ParseBool, as bd reads it
_background: list[subprocess.Popen] = []  # our supervisors, polled so none lingers as a zombie

Event = tuple[str, str, dict]


@dataclass
class HookRun:
    """One hook execution's outcome, for logs and tests."""

    hook: str  # hook file name, e.g. "on_close"
    bead_id: str
    event: str
    returncode: int | None  # None when the hook could not start or was killed at the deadline
    timed_out: bool
    error: str | None  # why the hook could not be started, if it could not
    duration: float  # seconds
    stdout: bytes = field(default=b"", repr=False)  # first OUTPUT_CAP bytes
    stderr: bytes = field(default=b"", repr=False)


def hooks_disabled() -> bool:
    """BD_NO_HOOKS, read the way bd reads it (1/true/t... disable)."""
    return os.environ.get("BD_NO_HOOKS", "") in _TRUTHY


def runnable_hooks(hooks_dir: Path) -> dict[str, Path]:
    """event -> hook path for the hooks that would run: regular files with an exec bit that
    no other local user can change (see `_untrusted`); a refused one is named on stderr."""
    found: dict[str, Path] = {}
    for event in HOOK_EVENTS:
        path = Path(hooks_dir) / f"on_{event}"
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            why = _untrusted(st, Path(hooks_dir))
            if why:
                print(f"gc-polecat: warning: not running {path}: {why}", file=sys.stderr)
            else:
                found[event] = path
    return found


def _untrusted(st: os.stat_result, hooks_dir: Path) -> str | None:
    """Why a hook (followed through symlinks, as it runs) could be someone else's code: it is
    world-writable, owned by a user other than us or root, or its directory lets any user
    replace it (world-writable without the sticky bit). Group write is allowed: whoever shares
    the group can commit to the repository, and so change its configuration, anyway."""
    if st.st_mode & stat.S_IWOTH:
        return "it is writable by every user"
    if st.st_uid not in (os.geteuid(), 0):
        return f"it is owned by another user (uid {st.st_uid})"
    try:
        dir_mode = os.stat(hooks_dir).st_mode
    except OSError:
        return None
    if dir_mode & stat.S_IWOTH and not dir_mode & stat.S_ISVTX:
        return f"{hooks_dir} is writable by every user"
    return None


def fire(
    repo_root: Path,
    events: Sequence[Event],
    *,
    wait: bool = False,
    timeout: float = 10.0,
    log_path: Path | None = None,
) -> list[HookRun]:
    """Run the hooks for `events` ((bead_id, event, bead_json) in commit order). Never raises.

    wait=False detaches a supervisor and returns [] at once; wait=True runs inline.
    """
    try:
        if hooks_disabled():
            return []
        root = Path(repo_root).absolute()
        hooks = runnable_hooks(root / ".beads" / "hooks")
        todo = [(str(bead_id), event, data) for bead_id, event, data in events if event in hooks]
        if not todo:
            return []
        log = Path(log_path).absolute() if log_path else None
        if wait:
            return _run_events(root, todo, timeout, log)
        _spawn_supervisor(root, todo, timeout, log)
    except Exception:
        pass  # hooks are advisory: nothing here may fail the write
    return []


def _spawn_supervisor(root: Path, events: list[Event], timeout: float, log: Path | None) -> None:
    """Start a detached `python -m gc_polecat.interop.bd_hooks_out` that outlives us and runs
    the events."""
    request = {"repo_root": str(root), "events": events, "timeout": timeout}
    request["log_path"] = str(log) if log else None
    with _payload_file(json.dumps(request, default=str).encode()) as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gc_polecat.interop.bd_hooks_out"],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],  # so `-m` finds this copy of the package
            start_new_session=True,
        )
    _background[:] = [p for p in _background if p.poll() is None]
    _background.append(proc)


def _payload_file(data: bytes):
    """An unlinked file holding data: unlike a pipe, filling it never waits for the reader."""
    try:
        handle = os.fdopen(os.memfd_create("gc-polecat-hooks", os.MFD_CLOEXEC), "w+b")
    except (AttributeError, OSError):
        import tempfile  # rare fallback; kept off the import path

        handle = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    handle.write(data)
    handle.flush()
    handle.seek(0)
    return handle


def _run_events(
    root: Path, events: Sequence[Event], timeout: float, log: Path | None
) -> list[HookRun]:
    """Run the hooks one after another in event order (the wait=True and supervisor path)."""
    hooks = runnable_hooks(root / ".beads" / "hooks")
    runs: list[HookRun] = []
    for bead_id, event, data in events:
        if event in hooks:
            run = _run_hook(root, hooks[event], bead_id, event, data, timeout)
            runs.append(run)
            if log is not None:
                _append_log(log, run)
    return runs


def _run_hook(
    root: Path, hook: Path, bead_id: str, event: str, data: dict, timeout: float
) -> HookRun:
    """Run one hook to completion or the deadline; every failure ends up in the HookRun."""
    started = time.monotonic()
    run = HookRun(hook.name, bead_id, event, None, False, None, 0.0)
    try:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
        proc = subprocess.Popen(
            [str(hook), bead_id, event],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            start_new_session=True,  # its own process group, so a timeout can kill all of it
            env={**os.environ, "GC_POLECAT_WRITER": "1"},  # bdhooks: never re-ingest our writes
        )
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"  # e.g. missing interpreter, bad format
    else:
        try:
            _finish(proc, payload.encode("utf-8", "replace"), started + timeout, run)
        finally:
            if proc.returncode is None:  # interrupted (e.g. SIGTERM): leave nothing behind
                _kill_group(proc)
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                pipe.close()
    run.duration = time.monotonic() - started
    return run


def _finish(proc: subprocess.Popen, payload: bytes, deadline: float, run: HookRun) -> None:
    """Exchange data with the hook, then reap it, killing its group if it overran the deadline.

    As in bd, output pipes still held open by the hook's descendants keep it "running", and the
    group is killed only while the hook is still unreaped, so its pgid cannot have been reused.
    """
    drained = _pump(proc, payload, deadline, run)
    if drained:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    killed = proc.returncode is None or not drained
    if killed:
        _kill_group(proc)
    code = proc.wait()
    run.timed_out = killed and code == -signal.SIGKILL
    run.returncode = None if run.timed_out else code


def _pump(proc: subprocess.Popen, payload: bytes, deadline: float, run: HookRun) -> bool:
    """Feed stdin and drain stdout/stderr until all pipes close (True) or the deadline passes."""
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    pending = memoryview(payload)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        for pipe in kept:
            sel.register(pipe, selectors.EVENT_READ)
        for pipe in (proc.stdin, *kept):
            os.set_blocking(pipe.fileno(), False)
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                pipe = key.fileobj
                try:
                    if pipe is proc.stdin:
                        pending = pending[os.write(pipe.fileno(), pending) :]
                        done = not pending
                    else:
                        chunk = os.read(pipe.fileno(), 65536)
                        kept[pipe] += chunk[: OUTPUT_CAP - len(kept[pipe])]
                        done = not chunk
                except BlockingIOError:
                    continue
                except OSError:  # e.g. EPIPE: the hook does not read its stdin
                    done = True
                if done:
                    sel.unregister(pipe)
                    pipe.close()
        drained = not sel.get_map()
    run.stdout, run.stderr = bytes(kept[proc.stdout]), bytes(kept[proc.stderr])
    return drained


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):  # the group may already be gone
        os.killpg(proc.pid, signal.SIGKILL)


def _append_log(log: Path, run: HookRun) -> None:
    """Append one entry and keep the file bounded. The log is diagnostics: it never fails a run."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            handle.write(_log_entry(run))
            size = handle.tell()
        if size > LOG_CAP:
            _trim_log(log)
    except Exception:
        pass


def _log_entry(run: HookRun) -> bytes:
    """Header line (UTC time, hook, id, event, status, ms), then the output indented."""
    if run.timed_out:
        status = "timeout"
    elif run.error:
        status = f"error={run.error}"
    else:
        status = f"exit={run.returncode}"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    head = f"{when} {run.hook} {run.bead_id} {run.event} {status} {run.duration * 1000:.0f}ms"
    lines = [" ".join(head.splitlines()).encode("utf-8", "replace")]
    for tag, output in ((b"    out| ", run.stdout), (b"    err| ", run.stderr)):
        lines += [tag + line for line in output.splitlines()]
    return b"\n".join(lines) + b"\n"


def _trim_log(log: Path) -> None:
    """Keep the last half of the log, starting at a line boundary; replaced atomically."""
    with open(log, "rb") as handle:
        handle.seek(-(LOG_CAP // 2), os.SEEK_END)
        tail = handle.read()
    tmp = log.with_name(f"{log.name}.{os.getpid()}.tmp")
    tmp.write_bytes(tail[tail.find(b"\n") + 1 :])
    os.replace(tmp, log)


def _main() -> None:
    """Supervisor: run the request on stdin ({repo_root, events, timeout, log_path}) in order."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, killing the running hook
    try:
        request = json.load(sys.stdin.buffer)
        events = [(str(bead_id), str(event), data) for bead_id, event, data in request["events"]]
        log = request.get("log_path")
        timeout = float(request.get("timeout", 10.0))
        _run_events(Path(request["repo_root"]), events, timeout, Path(log) if log else None)
    except Exception:
        pass


if __name__ == "__main__":
    _main()
