"""Git hooks on the code repository: a submission merged by any route gets its merged verdict.

The refinery is not the only way a submitted branch lands: a person merges it by hand, another
tool fast-forwards the target. `hooks install --git PATH` puts a small shell hook in the code
repository that calls `gc-polecat hooks run-git`, which records `merged` for every open
submission whose commit the updated target branch now contains (`record_landed`).

Which hook:
- a bare repository (the shared origin) gets `post-receive`: it runs once per push, after every
  ref is updated, with `<old> <new> <ref>` lines on stdin; its status cannot reject the push.
- a working clone gets `reference-transaction` (git 2.28+). A target branch advances in a clone
  by many routes: `git merge`, `git pull` (merge, fast-forward or rebase), `git rebase`,
  `git reset`, `git cherry-pick`, `git update-ref`, a push received into it. `post-merge` sees
  only the first two, and nothing a rebase or reset does; `reference-transaction` sees every
  ref update, as `<old> <new> <ref>` lines, so one hook covers them all. It runs in three
  states; only `committed` is acted on (`prepared` could abort the update, `aborted` changed
  nothing), and the script filters in shell so Python starts only for a committed update of a
  branch under refs/heads/.

Chaining, as pre-commit does it: a hook that was already there and is not ours is renamed
`<hook>.legacy` (mode kept) and our script runs it first, with the same arguments and the same
stdin, and exits with its status (what git acts on, e.g. a `prepared` veto). Ours runs after it
whatever it returned and can never fail the git command. Our script is the same bytes whether or
not a legacy hook exists (it looks for `<hook>.legacy` when it runs), so installing twice writes
nothing, and uninstalling restores the legacy hook. A hook that is not ours is never deleted or
overwritten: if one replaced ours while a `.legacy` is kept, install refuses (exit 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.errors import BadInput, GcPolecatError

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider

MARKER = "# gc-polecat hook v1"
_MARKER_PREFIX = "# gc-polecat hook "
BARE_HOOK = "post-receive"
CLONE_HOOK = "reference-transaction"
GIT_HOOKS = (BARE_HOOK, CLONE_HOOK)
LEGACY_SUFFIX = ".legacy"
MIN_GIT_FOR_CLONES = (2, 28)
ZERO_SHA = re.compile(r"0+")
_SHA = re.compile(r"[0-9a-f]{4,64}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# What git exports to a hook so that git commands in it find the repository; none may leak
# into git commands we run for another repository (the beads store, or a different PATH).
REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
)


@dataclass(frozen=True)
class CodeRepo:
    path: Path  # the working tree's top, or the git directory of a bare repository
    bare: bool
    git_dir: Path
    hooks_dir: Path  # core.hooksPath when set, else <git common dir>/hooks

    @property
    def hook(self) -> str:
        return BARE_HOOK if self.bare else CLONE_HOOK


@dataclass
class Report:
    """What install/uninstall did: `changes` are (action, path, to) with action one of written,
    updated, unchanged, moved, removed, restored."""

    repository: str
    bare: bool
    hooks_dir: str
    changes: list[dict[str, str]] = field(default_factory=list)

    def add(self, action: str, path: Path, to: Path | None = None) -> None:
        self.changes.append({"action": action, "path": str(path), "to": str(to) if to else ""})


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus what ties git to the repository whose hook is running."""
    base = os.environ if env is None else env
    return {k: v for k, v in base.items() if k not in REPO_ENV} | {
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git as an argv in `cwd`, never prompting, never steered by a hook's GIT_DIR."""
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=clean_env(),
    )


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return lines[0] if lines else f"exit status {proc.returncode}"


def code_repository(path: str | os.PathLike[str]) -> CodeRepo:
    """PATH as a code repository: the top of a working tree, or a bare repository's directory.
    Anything else (not a directory, not a repository, a subdirectory of one) is bad input."""
    where = Path(path).expanduser().resolve()
    if not where.is_dir():
        raise BadInput(f"--git {path}: not a directory")
    try:
        proc = _git(where, "rev-parse", "--is-bare-repository", "--absolute-git-dir")
    except OSError as exc:
        raise BadInput(f"--git {path}: cannot run git: {exc}") from None
    if proc.returncode != 0:
        raise BadInput(f"--git {path}: not a git repository")
    bare_word, git_dir = proc.stdout.splitlines()[:2]
    bare = bare_word == "true"
    if bare:
        if Path(git_dir).resolve() != where:
            raise BadInput(f"--git {path}: inside the bare repository {git_dir}; give its top")
    else:
        top = _git(where, "rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != where:
            found = top.stdout.strip() if top.returncode == 0 else git_dir
            raise BadInput(f"--git {path}: not the top of a working tree (the repository: {found})")
    hooks = _git(where, "rev-parse", "--git-path", "hooks")
    if hooks.returncode != 0:
        raise BadInput(f"--git {path}: {_first_line(hooks)}")
    return CodeRepo(where, bare, Path(git_dir).resolve(), where / hooks.stdout.strip())


def git_version() -> tuple[int, int]:
    proc = _git(Path.cwd(), "version")
    match = re.search(r"(\d+)\.(\d+)", proc.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def sh_quote(text: str) -> str:
    """One shell word for `text`, whatever it holds: single quotes, each ' as '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


def hook_script(hook: str, beads_root: Path, python: str | None = None) -> str:
    """Our hook: run `<hook>.legacy` if any, then gc-polecat; exit with the legacy's status."""
    command = " ".join(
        [
            sh_quote(python or sys.executable),
            "-P -m gc_polecat --repo",
            sh_quote(str(beads_root)),
            "hooks run-git",
            hook,
            '"$@"',
        ]
    )
    only_committed = (
        '[ "$1" = committed ] || exit "$status"  # prepared/aborted: nothing landed\n'
        if hook == CLONE_HOOK
        else ""
    )
    return (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# Installed by `gc-polecat hooks install --git`; `hooks uninstall --git` removes it.\n"
        "# Records the merged verdict of a submission whose commit lands on its target branch.\n"
        "# A hook that was here before runs first as <hook>.legacy, with the same arguments and\n"
        "# input, and its exit status is this hook's; gc-polecat's part never fails git.\n"
        "input=$(cat)\n"
        'feed() { [ -z "$input" ] || printf \'%s\\n\' "$input"; }\n'
        "status=0\n"
        f'if [ -x "$0{LEGACY_SUFFIX}" ]; then\n'
        f'    feed | "$0{LEGACY_SUFFIX}" "$@"\n'
        "    status=$?\n"
        "fi\n"
        f"{only_committed}"
        'case "$input" in *" refs/heads/"*) ;; *) exit "$status" ;; esac\n'
        f"feed | {command} || :\n"
        'exit "$status"\n'
    )


def is_ours(path: Path) -> bool:
    """A hook file carrying our marker (any version) near its top."""
    try:
        with open(path, "rb") as f:
            head = f.read(512).decode("utf-8", "replace")
    except OSError:
        return False
    return any(line.startswith(_MARKER_PREFIX) for line in head.splitlines()[:3])


def _write(path: Path, content: str) -> None:
    """Replace `path` atomically with an executable `content`."""
    tmp = path.with_name(f".{path.name}.gc-polecat-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def install(repo: CodeRepo, beads_root: Path) -> Report:
    """Install (or refresh) our hook in `repo`, moving a foreign hook to `<hook>.legacy`."""
    beads_root = Path(beads_root).resolve()
    if repo.path == beads_root or repo.git_dir == beads_root / ".git":
        raise BadInput(f"--git {repo.path} is the beads repository; give the code repository")
    if not repo.bare and git_version() < MIN_GIT_FOR_CLONES:
        raise BadInput(
            "a working clone needs git 2.28 or later (reference-transaction hook); "
            "install on the bare origin instead"
        )
    report = Report(str(repo.path), repo.bare, str(repo.hooks_dir))
    hook = repo.hooks_dir / repo.hook
    legacy = hook.with_name(hook.name + LEGACY_SUFFIX)
    content = hook_script(repo.hook, beads_root)
    try:
        if os.path.lexists(hook) and not is_ours(hook):
            if os.path.lexists(legacy):
                raise BadInput(
                    f"{hook} is not gc-polecat's and {legacy.name} already exists; "
                    "move one of them away, then install again"
                )
            os.rename(hook, legacy)
            report.add("moved", hook, legacy)
        elif os.path.lexists(hook):
            current = hook.read_bytes() if hook.is_file() else b""
            if current == content.encode() and os.access(hook, os.X_OK):
                report.add("unchanged", hook)
                return report
            _write(hook, content)
            report.add("updated", hook)
            return report
        repo.hooks_dir.mkdir(parents=True, exist_ok=True)
        _write(hook, content)
        report.add("written", hook)
    except OSError as exc:
        raise GcPolecatError(f"cannot install {hook}: {exc.strerror or exc}") from None
    return report


def uninstall(repo: CodeRepo) -> Report:
    """Remove our hooks and put back what they had moved aside; a foreign hook is left alone."""
    report = Report(str(repo.path), repo.bare, str(repo.hooks_dir))
    for name in GIT_HOOKS:
        hook = repo.hooks_dir / name
        legacy = hook.with_name(name + LEGACY_SUFFIX)
        try:
            if os.path.lexists(hook):
                if not is_ours(hook):
                    continue
                os.unlink(hook)
                report.add("removed", hook)
            if os.path.lexists(legacy):
                os.rename(legacy, hook)
                report.add("restored", legacy, hook)
        except OSError as exc:
            raise GcPolecatError(f"cannot uninstall {hook}: {exc.strerror or exc}") from None
    return report


# --- the hook at work ------------------------------------------------------------------------


def parse_updates(text: str) -> list[tuple[str, str, str]]:
    """`<old> <new> <ref>` lines (post-receive, reference-transaction); others are ignored."""
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    return updates


def _is_ancestor(code_repo: Path, commit: str, of: str) -> bool:
    proc = _git(code_repo, "merge-base", "--is-ancestor", commit, of)
    return proc.returncode == 0


def record_landed(
    store: Store,
    providers: Mapping[str, SessionProvider],
    code_repo: Path,
    updates: Sequence[tuple[str, str, str]],
    hook: str,
) -> list[str]:
    """Record `merged` for each open submission whose commit a `refs/heads/<target>` in
    `updates` now contains, one commit each; returns the verdict IDs recorded now. A submission
    judged meanwhile (or superseded) is skipped."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.lifecycle.submit import SUBMISSION_LABEL  # lazy: start-up
    from gc_polecat.lifecycle.verdict import record_verdict  # lazy: start-up

    landed: dict[str, str] = {}
    for _old, new, ref in updates:
        if (
            ref.startswith("refs/heads/")
            and _FULL_SHA.fullmatch(new)
            and not ZERO_SHA.fullmatch(new)
        ):
            landed[ref.removeprefix("refs/heads/")] = new
    if not landed:
        return []
    store.catalog.refresh()
    recorded: list[str] = []
    for target, new in landed.items():
        query = Query(labels=(SUBMISSION_LABEL,), include_closed=False, meta=(("target", target),))
        for sub in store.catalog.list(query):
            commit = sub.get("metadata", {}).get("commit", "")
            if not _SHA.fullmatch(commit) or not _is_ancestor(code_repo, commit, new):
                continue
            try:
                with store.transaction() as tx:
                    judged = record_verdict(
                        tx,
                        sub["id"],
                        "merged",
                        providers=providers,
                        merge_commit=new,
                        refinery=f"git-hook:{hook}",
                        via=f"git hook {hook}: {target} at {new[:12]}",
                    )
            except BadInput:
                continue  # judged otherwise, superseded or gone since the catalog read
            if not judged.noop:
                recorded.append(judged.verdict["id"])
    return recorded
