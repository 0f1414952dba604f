"""The security review (issue 7, point 4; docs/security.md): one test per point, each with real
git repositories, real processes and, where a pane is involved, real tmux. Each test fails if
the protection it names is removed.

Attack strings try to run `touch <sentinel>`; every test checks the sentinel never appears.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gc_polecat.beads.ids import ID_RE, file_name, id_path, parse_id, path_id
from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput
from gc_polecat.interop import bd_hooks_out as beadhooks
from gc_polecat.lifecycle.providers import ProviderError, TmuxProvider
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.refinery.queue import run_gate

from .conftest import (
    City,
    Cli,
    Code,
    assert_clean,
    code_origin,
    configure,
    git,
    run_cli,
    submitted_ids,
    wait_for,
)
from .test_githooks import commit

HAS_TMUX = shutil.which("tmux") is not None
needs_tmux = pytest.mark.skipif(not HAS_TMUX, reason="tmux is not installed")
SHA = "a" * 40


def attacks(sentinel: Path) -> list[str]:
    """Strings that run `touch sentinel` if any shell, YAML loader or format ever reads them."""
    s = str(sentinel)
    return [
        f"$(touch {s})",
        f"`touch {s}`",
        f"'; touch {s}; '",
        f'"; touch {s}; "',
        f"\n touch {s}\n",
        f"x && touch {s}",
        f"!!python/object/apply:os.system ['touch {s}']",
        "__GC_POLECAT_EOF",
        "$__gc_polecat_in",
    ]


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


class Town:
    """A beads repository driven by the real `python -m gc_polecat` in separate processes."""

    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo, self.tmp = repo, tmp
        self.socket = tmp / "tmux.sock"
        self.env = {
            **os.environ,
            "GC_POLECAT_REPO": str(repo),
            "GC_POLECAT_TMUX_SOCKET": str(self.socket),
        }
        for var in ("GC_SESSION_ID", "GC_CONTINUATION_EPOCH", "GC_POLECAT_WRITER"):
            self.env.pop(var, None)

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        umask: int | None = None,
        input: str | None = None,  # noqa: A002
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "gc_polecat", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=120,
            input=input,
            cwd=cwd,
            preexec_fn=None if umask is None else (lambda: os.umask(umask)),  # noqa: PLW1509
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gc-polecat {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def bead(self, bead_id: str) -> dict[str, Any]:
        return json.loads(self.run("bead", "show", bead_id, "--json").stdout)[0]

    def idle_tmux_session(self, heard: Path) -> str:
        """A tmux session whose pane reads lines and appends each to `heard`, verbatim."""
        script = f'while IFS= read -r line; do printf "%s\\n" "$line" >> {heard}; done'
        return self.run(
            "session", "start", "--pool", "polecats", "--provider", "tmux", "--",
            "sh", "-c", script,
        ).stdout.strip()  # fmt: skip

    def submitted(self, title: str, session: str) -> tuple[str, str, str]:
        """A work item assigned to `session` and submitted at epoch 1: (work, sub, wait)."""
        work = self.run("bead", "create", title).stdout.strip()
        self.run("bead", "update", work, "--status", "in_progress", "--assignee", session)
        env = {"GC_SESSION_ID": session, "GC_CONTINUATION_EPOCH": "1"}
        out = self.run("submit", work, "--branch", "polecat/x", "--commit", SHA, env=env)
        sub, wait = submitted_ids(out.stdout)
        return work, sub, wait

    def close(self) -> None:
        if self.socket.exists():
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)


@pytest.fixture
def town(repo: Path, tmp_path: Path) -> Iterator[Town]:
    t = Town(repo, tmp_path)
    yield t
    t.close()


# --- 1. IDs can never escape the repository ---------------------------------------------------


@settings(max_examples=1500, deadline=None, database=None, derandomize=True)
@given(st.one_of(st.text(max_size=40), st.from_regex(ID_RE, fullmatch=True)))
def test_an_id_is_either_refused_or_a_file_under_beads(text: str) -> None:
    """`parse_id` is the gate: whatever passes names exactly one file beads/<c>/<c>/<id>.yaml."""
    try:
        parse_id(text)
    except BadInput:
        return
    path = id_path(text)
    parts = path.split("/")
    assert len(parts) == 4 and parts[0] == "beads" and parts[3] == file_name(text)
    assert path == path.lower()  # upper case is `+x`: one file even where names fold case
    assert not any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts)
    root = Path("/repo")
    assert (root / path).resolve().is_relative_to(root / "beads")
    assert path_id(path) == text


def test_path_tricks_are_refused_at_every_entry_point(repo: Path, tmp_path: Path) -> None:
    """The CLI, JSONL import, Gas City's exec provider and the bd hook all validate IDs before
    touching the file system: no file appears outside beads/, nothing is committed."""
    cli = Cli(repo)
    before = head(repo)
    tricks = ["../x", "../../outside", "/tmp/x", "gc-abc/../../x", "gc-../x", "gc-x\n", "."]
    for trick in tricks:
        for args in (
            ["bead", "show", trick],
            ["bead", "create", "t", "--id", trick],
            ["bead", "create", "t", "--parent", trick],
            ["bead", "update", trick, "--title", "x"],
            ["bead", "dep", "add", trick, "gc-abc"],
            ["wait", "cancel", trick],
            ["verdict", trick, "--merged"],
        ):
            result = cli(*args)
            assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.output
        line = json.dumps({"id": trick, "title": "t", "created_at": "2026-01-01T00:00:00Z",
                           "updated_at": "2026-01-01T00:00:00Z"})  # fmt: skip
        (tmp_path / "in.jsonl").write_text(line + "\n")
        assert cli("import", str(tmp_path / "in.jsonl")).exit_code == 2
        assert cli("exec-beads", "get", trick).exit_code == 1
        created = cli("exec-beads", "create", input=json.dumps({"id": trick, "title": "t"}))
        assert created.exit_code == 1, created.output
        payload = {"id": trick, "metadata": {"gc.verdict": "merged", "work": trick}}
        hook = cli("hooks", "run", "on_update", "--", trick, "update", input=json.dumps(payload))
        assert hook.exit_code == 0 and "invalid bead ID" in hook.stderr
    assert head(repo) == before
    assert_clean(repo)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert {p for p in written if p.parts[0] != "beads" and p.name != "in.jsonl"} <= {
        Path("home/.gitconfig")
    }


def test_a_symlinked_shard_cannot_carry_a_write_out_of_the_repository(
    repo: Path, tmp_path: Path
) -> None:
    """A committed `beads/4 -> /elsewhere` (a synced remote, a crafted repository): creating
    gc-4ab would write through it. `Store._refuse_links` refuses before anything is written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "beads" / "4").symlink_to(outside)
    git(repo, "add", "beads/4")
    git(repo, "commit", "-qm", "a symlinked shard")
    before = head(repo)
    cli = Cli(repo)
    refused = cli("bead", "create", "evil", "--id", "gc-4ab")
    assert refused.exit_code == 2 and "beads/4 is not a directory" in refused.stderr
    assert list(outside.iterdir()) == [] and head(repo) == before
    assert git(repo, "status", "--porcelain") == ""
    (repo / "beads" / "4").unlink()  # a work-tree symlink that was never committed: same
    (repo / "beads").rename(repo / "beads.real")
    (repo / "beads").symlink_to(outside)
    assert cli("bead", "create", "evil", "--id", "gc-4ab").exit_code == 2
    assert list(outside.iterdir()) == [] and head(repo) == before


# --- 2. bead content never reaches a shell -----------------------------------------------------


@needs_tmux
def test_tmux_nudges_are_typed_literally(tmp_path: Path) -> None:
    """`send-keys -l --` types text, never key names; a trailing ';' is escaped so tmux does
    not read it as a command separator; control characters are refused (check_line)."""
    sentinel, heard = tmp_path / "pwned", tmp_path / "heard"
    provider = TmuxProvider(socket=tmp_path / "t.sock")
    script = f'while IFS= read -r line; do printf "%s\\n" "$line" >> {heard}; done'
    handle = provider.start("nudged", ["sh", "-c", script], dict(os.environ), tmp_path,
                            tmp_path / "nudged.log")  # fmt: skip
    try:
        lines = ["C-c", "Enter", "done;", "a ; kill-server", "a \\; kill-server", "-t x"]
        lines += [a for a in attacks(sentinel) if "\n" not in a]
        for line in lines:
            assert provider.nudge(handle, line)
        wait_for(lambda: heard.exists() and len(heard.read_text().splitlines()) == len(lines),
                 "every nudge in the pane", 15)  # fmt: skip
        assert heard.read_text().splitlines() == lines
        for bad in ("x\ny", "x\x03", "\x1b[A", "x\r"):
            with pytest.raises(ProviderError):
                provider.nudge(handle, bad)
        assert provider.is_alive(handle)
    finally:
        provider.stop(handle, grace=1.0)
    assert not sentinel.exists()


@needs_tmux
def test_titles_reasons_and_logs_never_reach_a_shell_or_a_pane(town: Town, tmp_path: Path) -> None:
    """Hostile text in a work's title and description, a verdict's reason and log, and bd's
    hook payload: the nudge names IDs only, the bd hook section passes the payload through
    a here-doc unexpanded, and nothing runs."""
    sentinel, heard = tmp_path / "pwned", tmp_path / "heard"
    hostile = " ".join(a for a in attacks(sentinel) if "\n" not in a)
    hooks = town.repo / ".beads" / "hooks"
    hooks.mkdir(parents=True)
    saw = tmp_path / "saw"
    (hooks / "on_update").write_text(f"#!/bin/sh\ncat >> {saw}\n")  # one payload a line
    (hooks / "on_update").chmod(0o755)
    town.run("hooks", "install", "--beads")
    session = town.idle_tmux_session(heard)
    work, sub, wait = town.submitted(hostile[:400], session)
    town.run("bead", "update", work, "--description", "\n".join(attacks(sentinel)))
    log = tmp_path / "ci.log"
    log.write_text("\n".join(attacks(sentinel)) + "\n")
    town.run("verdict", sub, "--fix-needed", "--type", "tests", "--reason", hostile, "--log",
             str(log))  # fmt: skip
    line = wait_for(lambda: heard.exists() and heard.read_text().strip(), "the nudge", 20)
    assert line == (f"gc-polecat: refinery verdict on {work}: fix needed (wait {wait}); "
                    f"run: gc-polecat await {wait}")  # fmt: skip
    seen = wait_for(lambda: saw.exists() and saw.read_text().splitlines(), "hook payloads", 20)
    payloads = [json.loads(x) for x in seen]
    assert any(p.get("description", "").startswith(attacks(sentinel)[0]) for p in payloads)
    # bd runs the hook with a payload it wrote: through our section, the rest of the file
    # receives it byte for byte, and our ingestion treats it as data
    payload = {"id": work, "title": hostile, "metadata": {"rejection_reason": hostile}}
    bd = subprocess.run(
        [str(hooks / "on_update"), work, "update"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=town.repo,
        env=town.env,
        timeout=30,
    )
    assert bd.returncode == 0
    assert json.loads(saw.read_text().splitlines()[-1]) == payload
    verdict = town.bead(town.bead(sub)["metadata"]["verdict"])
    assert verdict["description"] == hostile and attacks(sentinel)[0] in verdict["notes"]
    time.sleep(0.5)  # the hook supervisor runs detached
    assert not sentinel.exists()


def test_human_output_never_carries_terminal_controls(repo: Path) -> None:
    """Escape sequences (OSC retitle, CSI clear, BEL, CR, an 8-bit CSI, DEL) in a title, a
    description and metadata: the human output of real `bead show`, `bead list` and `wait
    list` processes prints each control as a visible `\\xNN`; `--json` escapes them and gives
    the exact text back."""
    hostile = "t\x1b]0;owned\x07\x1b[2J\r\x9b31m\x7f"
    r = str(repo)
    made = run_cli("--repo", r, "bead", "create", hostile, "-d", f"l1\n{hostile}",
                   "--set-metadata", f"k={hostile}", "-l", "gc:wait")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bead_id = made.stdout.strip()
    for args in (("bead", "show", bead_id), ("bead", "list"), ("wait", "list")):
        out = run_cli("--repo", r, *args)
        assert out.returncode == 0, out.stderr
        assert "owned" in out.stdout, args
        controls = [
            c for c in out.stdout if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0
        ]
        assert controls == [], (args, controls)
        assert "t\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b31m\\x7f" in out.stdout, args
    shown = run_cli("--repo", r, "bead", "show", bead_id, "--json")
    assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout and "\x7f" not in shown.stdout
    (bead,) = json.loads(shown.stdout)
    assert bead["title"] == hostile and bead["description"] == f"l1\n{hostile}"
    assert bead["metadata"]["k"] == hostile


def test_git_hook_scripts_quote_every_path(tmp_path: Path, code: Code) -> None:
    """The installed hook names the interpreter and the beads repository; a repository path
    full of shell syntax still reaches gc-polecat as one word (githooks.sh_quote)."""
    sentinel = tmp_path / "pwned"
    weird = tmp_path / f"be'ads $(touch {sentinel}) `touch {sentinel}` ; x\"y"
    Store.init(weird, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    cli = Cli(weird)
    pid = subprocess.Popen(["sleep", "300"])
    try:
        city = City(cli, pid.pid)
        assert cli("hooks", "install", "--git", str(code.origin)).exit_code == 0
        git(code.clone, "checkout", "-qb", "feature")
        sha = commit(code.clone, "feature.txt")
        work, sub = city.submit("feature", sha)
        git(code.clone, "checkout", "-q", "main")
        git(code.clone, "merge", "-q", "--ff-only", "feature")
        git(code.clone, "push", "-q", "origin", "main")
        city.assert_merged(work, sub, sha, "post-receive")
    finally:
        pid.kill()
        pid.wait()
    assert not sentinel.exists()


def test_sandbox_git_never_takes_bead_content_for_an_option(tmp_path: Path) -> None:
    """Branch names from bead metadata reach git only behind `refs/...` prefixes or on stdin;
    `submit` refuses a branch that starts with '-' (ids.check_ref)."""
    from gc_polecat.lifecycle import sandbox

    sentinel = tmp_path / "pwned"
    origin, clone = tmp_path / "origin.git", tmp_path / "clone"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(clone, "checkout", "-qb", "main")
    commit(clone, "README")
    git(clone, "push", "-q", "origin", "main")
    box = tmp_path / "box"
    sandbox.create(clone, box, "main")
    for prior in (f"--upload-pack=touch {sentinel}", f"-c core.fsmonitor=touch {sentinel}",
                  f"$(touch {sentinel})"):  # fmt: skip
        sandbox.start_branch(box, "polecat/a/gc-abc@1", "main", resume_from=prior)
        assert not sandbox.has_branch(box, prior)
        sandbox.sync(box, "main")
        sandbox.delete_branch(box, "polecat/a/gc-abc@1")
    assert not sentinel.exists()


def test_refinery_gates_run_their_configured_argv_without_a_shell(tmp_path: Path) -> None:
    """The gate is the configuration's argv (trusted); bead content is not in it, and the
    only variable the refinery adds to its environment is the submission's ID."""
    sentinel, out = tmp_path / "pwned", tmp_path / "gate.log"
    argv = ["sh", "-c", 'printf "%s\\n" "$@"; printenv GC_REFINERY_SUBMISSION', "gate",
            f"$(touch {sentinel})", f"; touch {sentinel}"]  # fmt: skip
    assert run_gate(argv, tmp_path, 10, out, {"GC_REFINERY_SUBMISSION": "gc-abc"})
    assert out.read_text().splitlines() == [argv[4], argv[5], "gc-abc"]
    assert not run_gate([f"touch {sentinel}"], tmp_path, 10, out, {})  # one word, no shell
    assert "cannot run" in out.read_text()
    assert not sentinel.exists()


# --- 3. hooks: only from their place, with their exec bit, bounded in time and output -------------


def _hook(path: Path, body: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)


def test_bead_hooks_run_only_from_beads_hooks_with_their_exec_bit(
    repo: Path, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    body = f'echo "$0" >> {ran}\n'
    _hook(repo / ".beads" / "hooks" / "on_update", body, 0o644)  # no exec bit
    _hook(repo / ".beads" / "hooks" / "on_update.sample", body)
    _hook(repo / ".beads" / "hooks" / "on_close.d" / "x", body)
    (repo / ".beads" / "hooks" / "on_create").mkdir()  # a directory, not a file
    _hook(repo / "beads" / "hooks" / "on_update", body)
    _hook(repo / "hooks" / "on_update", body)
    _hook(repo / ".git" / "hooks" / "on_update", body)
    events = [("gc-abc", "update", {"id": "gc-abc"}), ("gc-abc", "create", {"id": "gc-abc"}),
              ("gc-abc", "close", {"id": "gc-abc"})]  # fmt: skip
    assert beadhooks.fire(repo, events, wait=True, timeout=5) == []
    assert not ran.exists()
    (repo / ".beads" / "hooks" / "on_update").chmod(0o755)
    runs = beadhooks.fire(repo, events, wait=True, timeout=5)
    assert [(r.hook, r.returncode) for r in runs] == [("on_update", 0)]
    assert ran.read_text().splitlines() == [str(repo / ".beads" / "hooks" / "on_update")]


def test_a_hook_past_its_time_limit_is_killed_with_its_children(repo: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    _hook(repo / ".beads" / "hooks" / "on_update",
          f"sleep 60 & echo $! >> {pids}\nsleep 60 &\necho $! >> {pids}\nwait\n")  # fmt: skip
    started = time.monotonic()
    (run,) = beadhooks.fire(repo, [("gc-abc", "update", {})], wait=True, timeout=1.0)
    assert run.timed_out and run.returncode is None and time.monotonic() - started < 5
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists()
                 or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3],
                 f"hook child {pid} killed", 5)  # fmt: skip


def test_hook_output_is_bounded_in_memory_and_in_the_log(repo: Path) -> None:
    """A hook that prints 16 MB on each stream: it is drained (never blocks on a full pipe),
    only OUTPUT_CAP bytes of each are kept, and hooks.log stays near LOG_CAP."""
    spew = "head -c 16000000 /dev/zero | tr '\\0' {}\n"
    _hook(repo / ".beads" / "hooks" / "on_update", spew.format("o") + spew.format("e >&2"))
    log = repo / ".git" / "gc-polecat" / "hooks.log"
    started = time.monotonic()
    runs = beadhooks.fire(repo, [("gc-abc", "update", {})] * 12, wait=True, timeout=20,
                          log_path=log)  # fmt: skip
    assert all(r.returncode == 0 for r in runs) and len(runs) == 12
    assert all(len(r.stdout) == len(r.stderr) == beadhooks.OUTPUT_CAP for r in runs)
    assert log.stat().st_size <= beadhooks.LOG_CAP + 2 * beadhooks.OUTPUT_CAP + 4096
    assert time.monotonic() - started < 60


def test_symlinked_hook_files_are_never_edited(repo: Path, tmp_path: Path) -> None:
    """`hooks install --beads` refuses a symlinked on_* file (it would edit the link's target);
    the target is untouched and nothing is committed."""
    target = tmp_path / "elsewhere.sh"
    target.write_text("#!/bin/sh\necho theirs\n")
    target.chmod(0o755)
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "on_update").symlink_to(target)
    result = Cli(repo)("hooks", "install", "--beads")
    assert result.exit_code == 2 and "not a regular file" in result.stderr
    assert target.read_text() == "#!/bin/sh\necho theirs\n"
    assert (hooks / "on_update").is_symlink()


# --- 4. a verdict cannot be forged for a submission whose commit it does not name ---------------


def test_a_verdict_must_name_the_submitted_commit(city: City, repo: Path) -> None:
    work, sub = city.submit("polecat/a", "ab12" + "c" * 36)
    before = head(repo)
    for wrong in ("ab13", "c" * 40, "abc", "ab12" + "c" * 35 + "d", "-ab12", "AB12"):
        refused = city.cli("verdict", sub, "--merged", "--commit", wrong)
        assert refused.exit_code == 2, (wrong, refused.output)
    assert head(repo) == before
    assert city.cli("verdict", sub, "--merged", "--commit", "ab12c").exit_code == 0
    assert city.bead(sub)["close_reason"] == "merged"


def test_a_judged_superseded_or_withdrawn_attempt_cannot_be_judged_again(
    city: City, repo: Path
) -> None:
    work, first = city.submit("polecat/a", SHA)
    city.run("verdict", first, "--fix-needed", "--type", "tests", "--reason", "red")
    second, _ = submitted_ids(city.run("submit", work, "--branch", "polecat/a", "--commit",
                                       "b" * 40, "--session", city.session))  # fmt: skip
    before = head(repo)
    assert city.cli("verdict", first, "--merged").exit_code == 2  # judged otherwise
    again = city.cli("verdict", first, "--fix-needed", "--type", "tests", "--reason", "red")
    assert again.exit_code == 0 and "already recorded" in again.stdout  # the same: a no-op
    # a submission that is not the work's current attempt (a hand edit, a lost race)
    city.run("bead", "update", work, "--set-metadata", f"gc.submission={first}")
    moved = head(repo)
    refused = city.cli("verdict", second, "--merged")
    assert refused.exit_code == 2 and "superseded" in refused.stderr
    assert head(repo) == moved != before
    # withdrawn: closed without a verdict
    city.run("bead", "update", work, "--set-metadata", f"gc.submission={second}")
    city.run("bead", "close", second, "--reason", "withdrawn: no verdict")
    assert city.cli("verdict", second, "--merged").exit_code == 2


def test_the_git_hook_records_merged_only_for_a_contained_commit(
    city: City,
    repo: Path,
    code: Code,
) -> None:
    git(code.clone, "checkout", "-qb", "feature")
    sha = commit(code.clone, "feature.txt")
    work, sub = city.submit("feature", sha)
    git(code.clone, "checkout", "-q", "main")
    other = commit(code.clone, "other.txt")  # main moves, without the feature
    before = head(repo)
    forged = [
        f"{'0' * 40} {other} refs/heads/main",  # a real tip that does not contain it
        f"{'0' * 40} {'f' * 40} refs/heads/main",  # a commit that does not exist
        f"{'0' * 40} {sha} refs/heads/other",  # contains it, but not the target
        f"{'0' * 40} {sha} refs/tags/main",
        f"{'0' * 40} {sha[:12]} refs/heads/main",  # abbreviated
    ]

    def run_git(stdin: str) -> Any:
        os.environ["GIT_DIR"] = str(code.clone / ".git")  # as git sets it; the command drops it
        try:
            return city.cli("hooks", "run-git", "post-receive", input=stdin)
        finally:
            os.environ.pop("GIT_DIR", None)

    for line in forged:
        result = run_git(line + "\n")
        assert result.exit_code == 0 and "recorded" not in result.stdout, line
    assert head(repo) == before
    landed = run_git(f"{'0' * 40} {sha} refs/heads/main\n")
    assert "recorded merged verdict" in landed.stdout
    city.assert_merged(work, sub, sha, "post-receive")


# --- 5. a stale epoch cannot be woken -------------------------------------------------------------


@needs_tmux
def test_a_stale_epoch_is_neither_woken_nor_handed_the_verdict(town: Town, tmp_path: Path) -> None:
    """The session's epoch moves on (a new incarnation) while epoch 1's wait is pending. A
    merged verdict makes the wait ready, but the later incarnation's pane is not nudged, a
    lingering epoch-1 `await` is not handed it (exit 20), nor is epoch 2's, and the
    controller cancels the wait as continuation-stale."""
    heard = tmp_path / "heard"
    session = town.idle_tmux_session(heard)
    work, sub, wait = town.submitted("work", session)
    env1 = {"GC_SESSION_ID": session, "GC_CONTINUATION_EPOCH": "1"}
    lingering = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "await", wait, "--timeout", "20", "--json"],
        env={**town.env, **env1}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # bound to its doorbell
    town.run("bead", "update", session, "--set-metadata", "continuation_epoch=2")
    town.run("verdict", sub, "--merged")
    out, err = lingering.communicate(timeout=30)
    assert lingering.returncode == 20, (out, err)
    assert json.loads(out)["reason"] == "continuation-stale"
    for epoch in ("1", "2"):
        late = town.run("await", wait, "--timeout", "1", "--json", check=False,
                        env={"GC_SESSION_ID": session, "GC_CONTINUATION_EPOCH": epoch})  # fmt: skip
        assert late.returncode == 20, late.stderr
    meta = town.bead(wait)["metadata"]
    assert meta["state"] == "ready" and "woken_by" not in meta and "delivered_to" not in meta
    assert not heard.exists() or heard.read_text() == ""
    assert "continuation-stale" in town.run("controller", "run", "--once").stdout
    assert town.bead(wait)["metadata"]["state"] == "canceled"
    assert not heard.exists() or heard.read_text() == ""


# --- 6. nothing gc-polecat writes is world-writable ---------------------------------------------


def _world_writable(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            st_ = path.lstat()
        except FileNotFoundError:
            continue  # removed meanwhile (a lock, a temporary file)
        if not stat.S_ISLNK(st_.st_mode) and st_.st_mode & stat.S_IWOTH:
            found.append(f"{oct(st_.st_mode)} {path}")
    return found


@needs_tmux
def test_nothing_gc_polecat_creates_is_world_writable(repo: Path, tmp_path: Path) -> None:
    """A whole lifecycle run by gc-polecat processes started with umask 000: init, beads,
    tmux and process sessions, bd and git hooks, a pool with worktrees, sling, submit, verdicts
    with a log, await with its doorbell, the refinery, the controller, cleanup. Every file and
    directory under the test's directory (the beads repository with .git/gc-polecat, the code
    clones, the origin, the sandboxes, logs and sockets) is walked: none is world-writable."""
    root = tmp_path / "city"
    root.mkdir()
    origin, clone, refinery, beads = (root / n for n in ("origin.git", "code", "refinery", "beads"))
    code_origin(origin, clone, refinery)
    town = Town(beads, root)
    run = lambda *a, **k: town.run(*a, umask=0, **k)  # noqa: E731
    seen: list[str] = []
    sessions: list[str] = []
    try:
        run("init", str(beads))
        configure(beads, (
            f"pools:\n  cats:\n    max_active: 2\n    repo: {clone}\n    provider: process\n"
            f"    command: [sleep, '300']\n    worktree_root: {root / 'polecats'}\n"
            f"refinery:\n  repo: {refinery}\n  test: [sh, -c, 'echo gate ok']\n"
        ))  # fmt: skip
        (beads / ".beads" / "hooks").mkdir()
        (beads / ".beads" / "hooks" / "on_update").write_text("#!/bin/sh\necho hook ran\n")
        (beads / ".beads" / "hooks" / "on_update").chmod(0o755)
        run("hooks", "install", "--beads")
        run("hooks", "install", "--git", str(origin))
        run("pool", "init", "cats", "--size", "1")
        sessions.append(run("session", "start", "--pool", "side", "--provider", "tmux", "--",
                            "sleep", "300").stdout.strip())  # fmt: skip
        work = run("bead", "create", "work").stdout.strip()
        slung = json.loads(run("sling", work, "--pool", "cats", "--json").stdout)
        box, branch, session = Path(slung["sandbox"]), slung["branch"], slung["session"]
        sessions.append(session)
        env = {"GC_SESSION_ID": session, "GC_CONTINUATION_EPOCH": "1"}
        for attempt in (1, 2):
            (box / f"change{attempt}.txt").write_text(f"{attempt}\n")
            git(box, "add", "-A")
            git(box, "commit", "-qm", f"attempt {attempt}")
            git(box, "push", "-q", "origin", branch)
            sub, wait = submitted_ids(run("submit", work, "--branch", branch, "--commit",
                                          head(box), env=env, cwd=box).stdout)  # fmt: skip
            waiting = subprocess.Popen(
                [sys.executable, "-m", "gc_polecat", "await", wait, "--timeout", "60"],
                env={**town.env, **env}, stdout=subprocess.PIPE, text=True,
                preexec_fn=lambda: os.umask(0),  # noqa: PLW1509
            )  # fmt: skip
            time.sleep(0.5)
            seen += _world_writable(root)  # with the doorbell, the tmux socket and every log
            if attempt == 1:
                log = root / "ci.log"
                log.write_text("FAILED test_login\n")
                run("verdict", sub, "--fix-needed", "--type", "tests", "--reason", "red",
                    "--log", str(log))  # fmt: skip
                assert waiting.wait(timeout=60) == 10
            else:
                run("refinery", "process", "--once")
                assert waiting.wait(timeout=60) == 0
        run("cleanup", env=env, cwd=box, check=False)  # else the controller does it
        run("controller", "run", "--once")
        run("export", "--jsonl", str(root / "export.jsonl"))
        time.sleep(0.5)  # the detached hook supervisor appends to hooks.log
        assert (beads / ".git" / "gc-polecat" / "hooks.log").exists()
        assert town.bead(work)["status"] == "closed"
        seen += _world_writable(root)
    finally:
        for sid in sessions:
            run("session", "stop", sid, check=False)
        town.close()
    assert seen == []
    assert _world_writable(root) == []
    wake = Path(f"/tmp/gc-polecat-wake-{os.getuid()}")
    assert not wake.exists() or _world_writable(wake) == []


# --- 10. a sandbox path from a bead is used only if it is the pool's ----------------------------


class Victim:
    """A clean git repository outside the city, on its branch `main`, with a branch `keep` of
    its own: clean, so no uncommitted-changes check stands between it and a stray cleanup
    (before the check, cleanup checked its base out there, detached)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        git(path.parent, "init", "-q", "-b", "main", str(path))
        commit(path, "precious")
        git(path, "branch", "keep")
        self.before = self.state()

    def state(self) -> tuple[str, ...]:
        return (
            git(self.path, "for-each-ref", "--format=%(refname) %(objectname)"),
            git(self.path, "status", "--porcelain"),
            git(self.path, "worktree", "list", "--porcelain"),
            git(self.path, "config", "--local", "--list"),
            (self.path / "precious").read_text(),
        )


@pytest.fixture
def pool_repo(repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A beads repository with a pool `cats` over a code clone; (code clone, sandbox root)."""
    origin, code = tmp_path / "origin.git", tmp_path / "code"
    code_origin(origin, code)
    configure(
        repo,
        f"pools:\n  cats:\n    max_active: 1\n    repo: {code}\n    provider: process\n"
        "    command: [sleep, '60']\n",
    )
    return code, tmp_path / "polecats" / "cats"


@pytest.mark.parametrize("forged", ["sandbox", "repo", "link", "parent", "name"])
def test_a_forged_finalizer_never_runs_git_outside_the_pools_sandboxes(
    repo: Path, pool_repo: tuple[Path, Path], tmp_path: Path, forged: str
) -> None:
    """A finalizer's `sandbox` and `repo` are bead content (a synced commit, a bd edit, an
    agent): cleanup runs git in them (push, reset, branch -D, worktree remove). Each must be
    the pool's own (pool/config.py `sandbox_path`, lifecycle/cleanup.py `_places`), or the
    cleanup fails with one recorded line and the other repository is untouched."""
    from gc_polecat.lifecycle import cleanup

    code, root = pool_repo
    victim = Victim(tmp_path / "victim")
    root.mkdir(parents=True)
    box = {
        "sandbox": str(victim.path),
        "repo": str(root / "cats-1"),
        "link": str(root / "cats-1"),
        "parent": str(root / "cats-1" / ".." / ".." / ".." / "victim"),
        "name": str(root.parent / "victim"),
    }[forged]
    if forged == "link":
        (root / "cats-1").symlink_to(victim.path)
    meta = {"pool": "cats", "sandbox": box, "repo": str(code), "reason": "released",
            "target": "main", "retire": "1"}  # fmt: skip
    if forged == "repo":
        meta["repo"] = str(victim.path)
    store = Store(repo)
    with store.transaction() as tx:
        fin = tx.create(
            {"title": "cleanup", "labels": [cleanup.CLEANUP_LABEL, "pool:cats"], "metadata": meta}
        )
    head = git(repo, "rev-parse", "HEAD")
    out = cleanup.run(store, fin["id"])
    assert out.result == "failed"
    assert ("is not pools.cats.repo" if forged == "repo" else "sandbox") in out.detail
    assert victim.state() == victim.before
    recorded = store.get(fin["id"])
    assert recorded["status"] == "open" and recorded["metadata"]["last_error"] == out.detail
    assert git(repo, "rev-list", "--count", f"{head.strip()}..HEAD").strip() == "1"  # the error


def test_a_forged_polecat_sandbox_is_neither_checked_out_nor_started_in(
    repo: Path, pool_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    """A polecat bead whose `sandbox` names another repository: `sling` refuses it with one
    line, exit 2, before any git runs there or any session starts in it."""
    from gc_polecat.lifecycle import polecat as polecats

    victim = Victim(tmp_path / "victim")
    store = Store(repo)
    with store.transaction() as tx:
        tx.create(polecats.fields("cats-1", "cats", str(victim.path), ephemeral=False))
        work = tx.create({"title": "work"})["id"]
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("--repo", str(repo), "sling", work, "--pool", "cats")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is not one of pool cats's" in proc.stderr
    assert victim.state() == victim.before
    assert git(repo, "rev-parse", "HEAD") == head  # nothing written
    assert not list(store.state_dir.glob("sessions/*"))  # no session started
