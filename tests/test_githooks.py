"""Git hooks on the code repository (issue 5, point 2): a submitted branch merged by hand, or by
any tool, gets its merged verdict. Real git, real pushes, the real hook running gc-polecat."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from gc_polecat.beads.store import Store
from gc_polecat.lifecycle.providers import get_providers
from gc_polecat.plugins import make_plugin_manager
from gc_polecat.refinery.githooks import MARKER, parse_updates, record_landed, sh_quote

from .conftest import City, Cli, Code, git


def sh(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git with its stderr (where a push shows the remote hook's output) kept."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref).strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(f"{name}\n")
    git(repo, "add", name)
    git(repo, "commit", "-qm", name)
    return head(repo)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a hooks directory with its bytes and mode."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mode)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def push_branch(clone: Path, branch: str) -> str:
    """A polecat's branch: one commit on top of origin/main, pushed to origin."""
    git(clone, "fetch", "-q", "origin")
    git(clone, "checkout", "-qB", branch, "origin/main")
    sha = commit(clone, f"{branch.replace('/', '-')}.txt")
    git(clone, "push", "-q", "origin", branch)
    return sha


def hand_merge(clone: Path, branch: str) -> str:
    """A person merges origin/<branch> into main by hand and pushes; returns main's new tip."""
    git(clone, "checkout", "-q", "main")
    git(clone, "pull", "-q", "--no-rebase", "origin", "main")
    git(clone, "fetch", "-q", "origin")
    git(clone, "merge", "-q", "--no-ff", "-m", f"merge {branch}", f"origin/{branch}")
    pushed = sh(clone, "push", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    return head(clone)


def remote_lines(push: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in push.stderr.splitlines() if ln.startswith("remote: gc-polecat")]


# --- the bare origin ---------------------------------------------------------------------------


def test_a_hand_merge_pushed_to_origin_records_merged(
    cli: Cli, city: City, code: Code, repo: Path
) -> None:
    origin, c1, c2 = code.origin, code.clone, code.other
    installed = json.loads(cli("hooks", "install", "--git", str(origin), "--json").stdout)
    hook = origin / "hooks" / "post-receive"
    assert installed["bare"] and installed["changes"] == [
        {"action": "written", "path": str(hook), "to": ""}
    ]
    assert hook.stat().st_mode & 0o111 and MARKER in hook.read_text().splitlines()[:3]
    assert sh_quote(sys.executable) in hook.read_text()  # the interpreter that installed it

    sha = push_branch(c1, "polecat/furiosa/w1")
    work, sub = city.submit("polecat/furiosa/w1", sha)
    git(c2, "checkout", "-q", "main")
    commit(c2, "unrelated")
    unrelated = sh(c2, "push", "origin", "main")
    assert unrelated.returncode == 0 and remote_lines(unrelated) == []
    assert city.bead(sub)["status"] == "open"  # an unrelated push judges nothing

    landed = hand_merge(c2, "polecat/furiosa/w1")
    city.assert_merged(work, sub, landed, "post-receive")
    beads_head = head(repo)
    commit(c2, "later")
    later = sh(c2, "push", "origin", "main")
    assert later.returncode == 0 and remote_lines(later) == []
    assert head(repo) == beads_head  # judged once


def test_an_existing_hook_is_chained_kept_and_restored(
    cli: Cli, city: City, code: Code, tmp_path: Path
) -> None:
    origin, c1, c2 = code.origin, code.clone, code.other
    hooks = origin / "hooks"
    seen = tmp_path / "seen"
    log = sh_quote(str(seen))
    user_hook = f'#!/bin/sh\necho "args:$#" >> {log}\ncat >> {log}\nexit 3\n'
    (hooks / "post-receive").write_text(user_hook)
    (hooks / "post-receive").chmod(0o750)

    first = cli("hooks", "install", "--git", str(origin))
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"moved {hooks / 'post-receive'} -> ")
    legacy = hooks / "post-receive.legacy"
    assert legacy.read_text() == user_hook and stat.S_IMODE(legacy.stat().st_mode) == 0o750
    before = snapshot(hooks)
    again = cli("hooks", "install", "--git", str(origin))
    assert again.stdout == f"unchanged {hooks / 'post-receive'}\n"
    assert snapshot(hooks) == before  # byte-identical, no second .legacy
    assert [p.name for p in hooks.iterdir() if ".legacy" in p.name] == ["post-receive.legacy"]

    sha = push_branch(c1, "polecat/nux/w2")
    work, sub = city.submit("polecat/nux/w2", sha)
    old_main = head(origin, "main")
    landed = hand_merge(c2, "polecat/nux/w2")
    zero = "0" * 40
    assert seen.read_text() == (
        f"args:0\n{zero} {sha} refs/heads/polecat/nux/w2\n"
        f"args:0\n{old_main} {landed} refs/heads/main\n"
    )
    city.assert_merged(work, sub, landed, "post-receive")  # ours ran though the user's failed

    removed = cli("hooks", "uninstall", "--git", str(origin))
    assert removed.stdout.splitlines() == [
        f"removed {hooks / 'post-receive'}",
        f"restored {legacy} -> {hooks / 'post-receive'}",
    ]
    assert (hooks / "post-receive").read_text() == user_hook and not legacy.exists()
    assert stat.S_IMODE((hooks / "post-receive").stat().st_mode) == 0o750
    after = snapshot(hooks)
    twice = cli("hooks", "uninstall", "--git", str(origin), "--json")
    assert twice.exit_code == 0 and json.loads(twice.stdout)["changes"] == []
    assert snapshot(hooks) == after


def test_a_third_party_hook_over_ours_is_never_clobbered(cli: Cli, code: Code) -> None:
    hooks = code.origin / "hooks"
    hook, legacy = hooks / "post-receive", hooks / "post-receive.legacy"
    hook.write_text("#!/bin/sh\necho first\n")
    hook.chmod(0o755)
    assert cli("hooks", "install", "--git", str(code.origin)).exit_code == 0
    hook.write_text("#!/bin/sh\necho third party\n")  # someone replaced ours
    before = snapshot(hooks)

    refused = cli("hooks", "install", "--git", str(code.origin))
    assert refused.exit_code == 2 and len(refused.stderr.splitlines()) == 1
    assert "already exists" in refused.stderr and snapshot(hooks) == before
    kept = cli("hooks", "uninstall", "--git", str(code.origin))
    assert kept.exit_code == 0 and kept.stdout == "nothing to do\n"
    assert snapshot(hooks) == before  # not ours: neither deleted nor restored over

    legacy.unlink()  # with no .legacy in the way, theirs is chained like any other
    moved = cli("hooks", "install", "--git", str(code.origin))
    assert moved.exit_code == 0 and legacy.read_text() == "#!/bin/sh\necho third party\n"


# --- a working clone ---------------------------------------------------------------------------


def test_a_local_merge_in_a_working_clone_records_merged(
    cli: Cli, city: City, code: Code, repo: Path
) -> None:
    c1, c2 = code.clone, code.other
    installed = cli("hooks", "install", "--git", str(c2))
    hook = c2 / ".git" / "hooks" / "reference-transaction"
    assert installed.stdout == f"written {hook}\n" and hook.stat().st_mode & 0o111

    sha = push_branch(c1, "polecat/furiosa/w3")
    work, sub = city.submit("polecat/furiosa/w3", sha)
    beads_head = head(repo)
    git(c2, "checkout", "-q", "main")
    commit(c2, "local")  # a commit on main that contains no submission
    git(c2, "fetch", "-q", "origin")
    assert head(repo) == beads_head
    merged = sh(c2, "merge", "--no-ff", "-m", "by hand", "origin/polecat/furiosa/w3")
    assert merged.returncode == 0, merged.stderr
    city.assert_merged(work, sub, head(c2), "reference-transaction")

    # any route that moves the target, not only `git merge`: here a reset, as a tool might do
    sha2 = push_branch(c1, "polecat/furiosa/w4")
    work2, sub2 = city.submit("polecat/furiosa/w4", sha2)
    git(c2, "checkout", "-q", "main")
    git(c2, "fetch", "-q", "origin")
    git(c2, "reset", "-q", "--hard", "origin/polecat/furiosa/w4")
    city.assert_merged(work2, sub2, sha2, "reference-transaction")


def test_a_legacy_reference_transaction_veto_still_counts(cli: Cli, code: Code) -> None:
    c2 = code.other
    veto = "#!/bin/sh\n[ \"$1\" = prepared ] || exit 0\n! grep -q ' refs/heads/frozen$'\n"
    hook = c2 / ".git" / "hooks" / "reference-transaction"
    hook.write_text(veto)
    hook.chmod(0o755)
    assert cli("hooks", "install", "--git", str(c2)).exit_code == 0
    refused = sh(c2, "branch", "frozen")
    assert refused.returncode != 0 and "frozen" not in git(c2, "branch")
    assert sh(c2, "branch", "thawed").returncode == 0


def test_core_hooks_path_and_an_awkward_beads_path(
    code: Code, tmp_path: Path, sleeper: int
) -> None:
    """core.hooksPath (absolute, not yet created) is where the hook goes; a beads path with a
    space and a quote survives the shell."""
    beads = tmp_path / "it's a beads repo"
    Store.init(beads, prefix="gc", pm=make_plugin_manager(load_entrypoints=False))
    cli = Cli(beads)
    city = City(cli, sleeper)
    origin, c1, c2 = code.origin, code.clone, code.other
    shared = tmp_path / "shared hooks"
    git(origin, "config", "core.hooksPath", str(shared))

    assert cli("hooks", "install", "--git", str(origin)).exit_code == 0
    assert (shared / "post-receive").is_file() and not (origin / "hooks" / "post-receive").exists()
    sha = push_branch(c1, "polecat/max/w5")
    work, sub = city.submit("polecat/max/w5", sha)
    landed = hand_merge(c2, "polecat/max/w5")
    city.assert_merged(work, sub, landed, "post-receive")


# --- failures ----------------------------------------------------------------------------------


def test_a_broken_beads_repo_never_fails_the_push(cli: Cli, code: Code, repo: Path) -> None:
    assert cli("hooks", "install", "--git", str(code.origin)).exit_code == 0
    (repo / ".beads" / "config.yaml").unlink()
    c2 = code.other
    git(c2, "checkout", "-q", "main")
    tip = commit(c2, "pushed anyway")
    pushed = sh(c2, "push", "origin", "main")
    assert pushed.returncode == 0 and head(code.origin, "main") == tip
    [line] = remote_lines(pushed)
    assert "error: git hook post-receive: not a beads repository" in line


def test_bad_paths_are_refused_and_nothing_is_written(
    cli: Cli, code: Code, repo: Path, tmp_path: Path
) -> None:
    (code.other / "src").mkdir()
    (tmp_path / "plain").mkdir()
    before = {p: snapshot(p) for p in (code.origin / "hooks", code.other / ".git" / "hooks")}
    for path, why in [
        (tmp_path / "nowhere", "not a directory"),
        (Path("../" * 12 + "no/such/../dir"), "not a directory"),
        (tmp_path / "plain", "not a git repository"),
        (code.other / "src", "not the top of a working tree"),
        (code.origin / "hooks", "give its top"),
        (repo, "is the beads repository"),
    ]:
        for command in ("install", "uninstall"):
            if command == "uninstall" and why == "is the beads repository":
                continue
            result = cli("hooks", command, "--git", str(path))
            assert result.exit_code == 2, (path, result.output)
            assert len(result.stderr.splitlines()) == 1 and why in result.stderr, result.stderr
    missing = cli("hooks", "install")
    assert missing.exit_code == 2 and "--git PATH" in missing.stderr
    assert {p: snapshot(p) for p in before} == before
    assert not (repo / ".git" / "hooks" / "reference-transaction").exists()


# --- the logic the refinery can call directly --------------------------------------------------


def test_record_landed_judges_only_what_a_target_contains(
    city: City, code: Code, store: Store
) -> None:
    c1 = code.clone
    sha = push_branch(c1, "polecat/a/w6")
    work, sub = city.submit("polecat/a/w6", sha, target="release")
    providers = get_providers(store.pm)
    zero = "0" * 40
    ignored = [
        (zero, sha, "refs/heads/main"),  # the wrong target
        (zero, sha, "refs/remotes/origin/release"),  # not a branch
        (sha, zero, "refs/heads/release"),  # a deletion
        (zero, head(c1, "origin/main"), "refs/heads/release"),  # does not contain it
    ]
    assert record_landed(store, providers, c1, ignored, "post-receive") == []
    assert city.bead(sub)["status"] == "open"
    done = record_landed(store, providers, c1, [(zero, sha, "refs/heads/release")], "test")
    assert len(done) == 1 and city.bead(sub)["metadata"]["verdict"] == done[0]
    assert record_landed(store, providers, c1, [(zero, sha, "refs/heads/release")], "x") == []
    assert parse_updates(f"{zero} {sha} refs/heads/x\nbad line\n\n") == [
        (zero, sha, "refs/heads/x")
    ]


def test_run_git_acts_only_on_a_committed_transaction(cli: Cli, city: City, code: Code) -> None:
    c1 = code.clone
    sha = push_branch(c1, "polecat/b/w7")
    work, sub = city.submit("polecat/b/w7", sha)
    update = f"{'0' * 40} {sha} refs/heads/main\n"
    cwd = os.getcwd()
    os.chdir(c1)  # a clone's hook runs in the top of its working tree
    try:
        for state in ("prepared", "aborted"):
            result = cli("hooks", "run-git", "reference-transaction", state, input=update)
            assert (result.exit_code, result.stdout) == (0, "")
        assert city.bead(sub)["status"] == "open"
        result = cli("hooks", "run-git", "reference-transaction", "committed", input=update)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0 and "recorded merged verdict" in result.stdout
    city.assert_merged(work, sub, sha, "reference-transaction")
