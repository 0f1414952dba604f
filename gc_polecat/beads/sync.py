"""Multi-machine sync: pull and push the beads repository against a git remote.

One round (docs/formats.md, "Multi-machine sync"):

1. fetch the remote's branch (the one HEAD names locally) into a private ref, with real git;
2. under the store's write lock, integrate it: nothing to do when the remote tip is already in
   our history, a fast-forward when ours is in the remote's, otherwise every local commit since
   the merge base is replayed, in order, on top of the remote tip (history stays linear, every
   local change keeps its own commit, message and author). Each replayed commit's tree is the
   remote tip's tree with the paths that commit touched merged three-way, bead by bead, with
   the precedence rules of `merge_beads`. The branch moves by compare-and-swap behind the same
   journal as any write, then the work tree, git's split index and the catalog catch up, and
   the observers (the wake plugin among them) are told about every bead the round changed here;
3. push the local tip, never forced. A rejection (the remote moved since the fetch) starts the
   next round, at most SYNC_ATTEMPTS rounds, with a short random back-off between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads import ids, layout
from gc_polecat.errors import BadInput, Conflict, GcPolecatError, InvalidBead

if TYPE_CHECKING:
    from gc_polecat.beads.git import Git
    from gc_polecat.beads.store import BeadChange, Store

SYNC_ATTEMPTS = 16  # rounds of fetch + merge + push before giving up on a remote that keeps moving
BACKOFF, BACKOFF_CAP = 0.05, 1.0  # after losing round n: a random wait up to BACKOFF * 2**(n-1)
PRIVATE_REFS = "refs/gc-polecat/sync/"  # where fetched tips are kept (one ref per remote)
GIT_TIMEOUT = 120.0
VERDICT_LABEL = "gc:verdict"  # verdict.VERDICT_LABEL, without importing the lifecycle here
_MISSING: Any = object()
T = beadmod.time_key  # times compare by instant (sub-second ones from imports included)
# a refused push worth another round: the remote moved on, or another push held its ref lock
_RETRYABLE = ("fetch first", "non-fast-forward", "stale info", "lock", "failed to update ref")


# --- remotes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """What `git fetch` and `git push` are given (a configured name or a URL) and its URL."""

    name: str
    url: str

    @property
    def private_ref(self) -> str:
        return PRIVATE_REFS + hashlib.sha1(self.name.encode()).hexdigest()[:16]


def _configured_remotes(store: Store) -> dict[str, str]:
    config = store.git.repo.get_config()
    found = {}
    for section in config.sections():
        if len(section) == 2 and section[0] == b"remote":
            with contextlib.suppress(KeyError):
                found[section[1].decode()] = config.get(section, b"url").decode()
    return found


def _branch(store: Store) -> str:
    ref = store.head()[0].decode()
    if not ref.startswith("refs/heads/"):
        raise BadInput("HEAD is detached; sync needs a branch checked out in the beads repository")
    return ref.removeprefix("refs/heads/")


def _is_location(text: str) -> bool:
    """A URL, an scp-like address or a path rather than a remote's name."""
    return "://" in text or ":" in text or "/" in text or Path(text).expanduser().exists()


def _local_path(url: str, root: Path) -> Path | None:
    """The directory a local URL names (relative ones as git reads them, from the repository),
    or None for a network URL."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" in url or re.match(r"^[^/]+:", url):
        return None
    return root / Path(url).expanduser()


def _is_git_repository(path: Path) -> bool:
    if (path / ".git").exists():
        return True
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def resolve_remote(store: Store, name: str | None = None) -> Remote:
    """The remote to sync with: a configured remote's name, a URL or a repository path; by
    default the branch's upstream remote, else `origin`, else the only remote. Bad input
    (nothing configured, no such remote, a path that is not a git repository) raises BadInput
    before anything is fetched or written."""
    remotes = _configured_remotes(store)
    if not name:
        branch = _branch(store)
        config = store.git.repo.get_config()
        try:
            name = config.get((b"branch", branch.encode()), b"remote").decode()
        except KeyError:
            if "origin" in remotes:
                name = "origin"
            elif len(remotes) == 1:
                name = next(iter(remotes))
            else:
                raise BadInput(
                    "sync needs a remote: give REMOTE, or configure one with "
                    "`git remote add origin URL` in the beads repository"
                ) from None
    if name.startswith("-") or "\n" in name or "\0" in name:
        raise BadInput(f"invalid remote {name!r}")
    if name in remotes:
        url = remotes[name]
    elif _is_location(name):
        path = _local_path(name, Path.cwd())
        url = name if path is None else str(path.resolve())
        name = url
    else:
        raise BadInput(
            f"no git remote named {name!r} in {store.root} (git remote add {name} URL), "
            "and it is not a URL or a repository path"
        )
    path = _local_path(url, store.root)
    if path is not None and not _is_git_repository(path):
        raise BadInput(f"remote {name!r} is not a git repository: {path}")
    return Remote(name, url)


# --- real git for the network side -------------------------------------------------------------


def _git(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"})
    env.pop("GIT_INDEX_FILE", None)
    argv = ["git", "-C", str(store.root), "-c", "gc.auto=0", "-c", "maintenance.auto=false"]
    try:
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT
        )
    except FileNotFoundError:
        raise GcPolecatError("sync needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise GcPolecatError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f} s") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    picked = [line for line in lines if line.lower().startswith(("fatal", "error"))] or lines
    return picked[0] if picked else "no output"


def fetch(store: Store, remote: Remote, branch: str) -> bytes | None:
    """The remote's tip of `branch` (its objects now local), or None if it has no such branch."""
    proc = _git(
        store,
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--refmap=",  # no remote-tracking ref names an unchecked tip (see track)
        remote.name,
        f"+refs/heads/{branch}:{remote.private_ref}",
    )
    if proc.returncode != 0:
        if "couldn't find remote ref" in proc.stderr:
            return None
        raise GcPolecatError(f"fetch from {remote.name} failed: {_first_line(proc.stderr)}")
    tip = store.git.ref_value(remote.private_ref.encode())
    if tip is None:  # pragma: no cover - git said it wrote the ref
        raise GcPolecatError(f"fetch from {remote.name} wrote no {remote.private_ref}")
    return tip


def track(store: Store, remote: Remote, branch: str, tip: bytes) -> None:
    """Once a fetched tip is accepted: move `refs/remotes/<remote>/<branch>` to it, as the
    fetch itself would have, if that remote-tracking ref exists (a refused tip never gets a
    ref, so `git fsck` and `git gc` in the clone never meet it)."""
    if remote.name == remote.url:  # a URL or a path: git keeps no remote-tracking ref for it
        return
    ref = f"refs/remotes/{remote.name}/{branch}"
    current = store.git.ref_value(ref.encode())
    if current is not None and current != tip:
        _git(store, "update-ref", ref, tip.decode(), current.decode())


def push(store: Store, remote: Remote, branch: str, commit: bytes) -> bool:
    """Push `commit` to the remote's `branch`, never forced: True when the remote took it,
    False when it refused because it moved on (fetch and merge again), an error otherwise."""
    proc = _git(store, "push", "--porcelain", remote.name, f"{commit.decode()}:refs/heads/{branch}")
    if proc.returncode == 0:
        return True
    status = [line for line in proc.stdout.splitlines() if line.startswith("!\t")]
    if status and any(word in status[0] for word in _RETRYABLE):
        return False
    why = status[0].split("\t")[-1] if status else _first_line(proc.stderr)
    raise GcPolecatError(f"push to {remote.name} failed: {why}")


def _merge_base(store: Store, a: bytes, b: bytes) -> bytes | None:
    proc = _git(store, "merge-base", a.decode(), b.decode())
    if proc.returncode == 1 and not proc.stdout.strip():
        return None
    if proc.returncode != 0:
        raise GcPolecatError(f"git merge-base failed: {_first_line(proc.stderr)}")
    return proc.stdout.strip().encode()


# --- merging one bead ------------------------------------------------------------------------


def _pick(base: Any, ours: Any, theirs: Any, ours_wins: bool) -> Any:
    """Three-way choice of one value: a side that alone changed it wins, else the tie-break."""
    if ours == theirs or theirs == base:
        return ours
    if ours == base:
        return theirs
    return ours if ours_wins else theirs


def _content_key(bead: beadmod.Bead) -> tuple[str, bytes]:
    """Later `updated_at` wins content; equal times fall back to the file bytes, so the result
    never depends on which machine merges (merge_beads is symmetric)."""
    return beadmod.time_key(bead["updated_at"]), beadmod.dump(bead)


def _is_verdict(bead: beadmod.Bead) -> bool:
    return VERDICT_LABEL in bead.get("labels", [])


def _merge_list(base: list, ours: list, theirs: list, ours_first: bool) -> list:
    """Set-wise three-way: an item either side removed is gone, either side's additions stay."""
    b, o, t = set(base), set(ours), set(theirs)
    first, second = (ours, theirs) if ours_first else (theirs, ours)
    return [
        x
        for x in dict.fromkeys([*first, *second])
        if (x in o and x in t) or (x not in b and (x in o or x in t))
    ]


def _merge_dependencies(base: list, ours: list, theirs: list, ours_wins: bool) -> list:
    """Keyed by (depends_on_id, type): a removal on either side wins, additions are unioned,
    an entry both sides changed follows the content winner."""

    def keyed(deps: list) -> dict[tuple[str, str], dict]:
        return {(d["depends_on_id"], d["type"]): d for d in deps}

    b, o, t = keyed(base), keyed(ours), keyed(theirs)
    first, second = (ours, theirs) if ours_wins else (theirs, ours)
    out = []
    for key in dict.fromkeys((d["depends_on_id"], d["type"]) for d in [*first, *second]):
        if key in b and (key not in o or key not in t):
            continue  # removed on one side: removals win
        if key in o and key in t:
            out.append(_pick(b.get(key, _MISSING), o[key], t[key], ours_wins))
        else:
            out.append(o.get(key) or t[key])
    return out


def merge_beads(
    base: beadmod.Bead | None, ours: beadmod.Bead, theirs: beadmod.Bead
) -> tuple[beadmod.Bead, list[str]]:
    """One bead both sides changed (or both created), merged field by field; returns the bead
    and notes worth reporting. Symmetric: swapping ours and theirs gives the same bead.

    - a field (or metadata key, label, dependency) only one side changed takes that side;
    - verdicts (label gc:verdict) are immutable: if the sides differ, the one recorded first is
      kept whole, and that is reported;
    - status: closed wins over any other status; closed_at is the later of the two and
      close_reason comes from that side; two other statuses: the later updated_at;
    - metadata keys and the assignee both sides changed follow the side whose status is kept,
      when the statuses differ (a bead's state machine stays consistent with its status);
      otherwise, like every other field (title, description, ...): the later updated_at;
    - updated_at is the later, created_at and started_at the earlier;
    - labels: three-way set merge; dependencies: removals win, additions are unioned.
    """
    bid = ours["id"]
    if ours == theirs:
        return ours, []
    if _is_verdict(ours) or _is_verdict(theirs):
        kept = min(
            (b for b in (ours, theirs) if _is_verdict(b)),
            key=lambda b: (T(b["created_at"]), T(b["updated_at"]), beadmod.dump(b)),
        )
        return kept, [
            f"{bid}: verdicts are immutable and the two sides differ; "
            f"kept the one recorded first ({kept['created_at']})"
        ]
    notes = []
    if base is None:
        notes.append(f"{bid}: created on both sides with different content; merged by the rules")
    b = base or {}
    ours_wins = _content_key(ours) > _content_key(theirs)

    def get(bead: beadmod.Bead, key: str) -> Any:
        return bead.get(key, _MISSING)

    # status: closed wins; the side whose status is kept also decides state (metadata, assignee)
    os_, ts = ours["status"], theirs["status"]
    if os_ == ts or ts == get(b, "status"):
        status = os_
    elif os_ == get(b, "status"):
        status = ts
    elif "closed" in (os_, ts):
        status = "closed"
    else:
        status = os_ if ours_wins else ts
    ours_state = ours_wins
    if os_ != ts:
        ours_state = status == os_
    elif status == "closed" and ours["closed_at"] != theirs["closed_at"]:
        ours_state = T(ours["closed_at"]) > T(theirs["closed_at"])

    out: dict[str, Any] = {}
    special = {"id", "status", "closed_at", "close_reason", "updated_at", "created_at"}
    special |= {"started_at", "labels", "metadata", "dependencies", "assignee"}
    for key in (set(ours) | set(theirs) | set(b)) - special:
        out[key] = _pick(get(b, key), get(ours, key), get(theirs, key), ours_wins)
    out["id"] = bid
    out["status"] = status
    out["assignee"] = _pick(
        get(b, "assignee"), get(ours, "assignee"), get(theirs, "assignee"), ours_state
    )
    if status == "closed":
        closers = [x for x in (ours, theirs) if x["status"] == "closed"]
        if len(closers) == 2 and ours["closed_at"] == theirs["closed_at"]:
            out["closed_at"] = ours["closed_at"]
            out["close_reason"] = _pick(
                get(b, "close_reason"),
                get(ours, "close_reason"),
                get(theirs, "close_reason"),
                ours_wins,
            )
        else:
            src = max(closers, key=lambda x: T(x["closed_at"]))
            out["closed_at"], out["close_reason"] = src["closed_at"], get(src, "close_reason")
    out["updated_at"] = max(ours["updated_at"], theirs["updated_at"], key=T)
    for key in ("created_at", "started_at"):
        values = [v for v in (get(ours, key), get(theirs, key)) if v is not _MISSING]
        picked = _pick(get(b, key), get(ours, key), get(theirs, key), ours_wins)
        if picked is not _MISSING and len(values) == 2 and values[0] != values[1]:
            picked = min(values, key=T)  # a conflict: the earlier moment is the true one
        out[key] = picked
    out["labels"] = _merge_list(
        b.get("labels", []), ours.get("labels", []), theirs.get("labels", []), ours_wins
    )
    bm, om, tm = b.get("metadata", {}), ours.get("metadata", {}), theirs.get("metadata", {})
    out["metadata"] = {}
    for key in dict.fromkeys([*om, *tm, *bm]):
        value = _pick(
            bm.get(key, _MISSING), om.get(key, _MISSING), tm.get(key, _MISSING), ours_state
        )
        if value is not _MISSING:
            out["metadata"][key] = value
    out["dependencies"] = _merge_dependencies(
        b.get("dependencies", []),
        ours.get("dependencies", []),
        theirs.get("dependencies", []),
        ours_wins,
    )
    try:
        merged = beadmod.normalize({k: v for k, v in out.items() if v is not _MISSING})
    except InvalidBead as exc:
        kept = ours if ours_wins else theirs
        return kept, [*notes, f"{bid}: field merge failed ({exc}); kept the later version whole"]
    return merged, notes


# --- merging one path ------------------------------------------------------------------------


def _load(git: Git, blob: bytes | None, path: str) -> beadmod.Bead | None:
    """The bead in a blob; None for no blob; InvalidBead when it does not parse."""
    if blob is None:
        return None
    found = beadmod.load(git.blob(blob), path)
    if found["id"] != ids.path_id(path):
        raise InvalidBead(f"{path}: holds id {found['id']!r}")
    return found


def _merge_path(
    git: Git, path: str, base: bytes | None, ours: bytes | None, theirs: bytes | None
) -> tuple[bytes | None, list[str], bool]:
    """(blob to keep, notes, whether both sides' changes were combined) for one path whose
    three versions are given (blob SHAs, None when absent). `theirs` is the remote."""
    if ours == theirs or theirs == base:
        return ours, [], False
    if ours == base:
        return theirs, [], False
    bead_id = ids.path_id(path)
    if bead_id is None:
        return theirs, [f"{path}: changed on both sides; the remote's version is kept"], True
    if ours is None or theirs is None:
        return (
            ours or theirs,
            [f"{bead_id}: deleted on one side and changed on the other; the changed bead is kept"],
            True,
        )
    try:
        b = _load(git, base, path)
    except InvalidBead:
        b = None
    parsed: list[beadmod.Bead | None] = []
    for blob in (ours, theirs):
        try:
            parsed.append(_load(git, blob, path))
        except InvalidBead:
            parsed.append(None)
    o, t = parsed
    if o is None or t is None:
        kept, side = (ours, "local") if t is None and o is not None else (theirs, "remote")
        return kept, [f"{bead_id}: unreadable on one side; the {side} file is kept"], True
    merged, notes = merge_beads(b, o, t)
    if merged == t:
        return theirs, notes, True
    if merged == o:
        return ours, notes, True
    return git.add_blob(beadmod.dump(merged)), notes, True


# --- integrating the fetched tip ---------------------------------------------------------------


@dataclass
class Integration:
    """What one integration of a fetched tip did to the local branch."""

    old: bytes | None
    new: bytes | None
    kind: str  # up-to-date | ahead | fast-forward | replayed
    replayed: int = 0
    merged: list[str] = field(default_factory=list)  # beads both sides changed
    conflicts: list[str] = field(default_factory=list)
    changes: list[BeadChange] = field(default_factory=list)
    moved: tuple[bytes | None, bytes | None, list[str]] | None = None  # not yet announced


def _local_commits(git: Git, tip: bytes, base: bytes) -> list[bytes]:
    """Commits after `base` up to `tip`, oldest first, along first parents."""
    out = []
    sha: bytes | None = tip
    while sha is not None and sha != base:
        out.append(sha)
        parents = git.store[sha].parents
        sha = parents[0] if parents else None
    if sha != base:
        raise Conflict("the local history is not linear (a merge commit); sync cannot replay it")
    return out[::-1]


def _replay(store: Store, local: bytes, base: bytes, remote: bytes) -> Integration:
    """Each local commit after `base`, replayed on the remote tip with its paths merged."""
    from dulwich.objects import Commit

    git = store.git
    base_tree, remote_tree = git.commit_tree(base), git.commit_tree(remote)
    theirs = dict(git.changed_paths(base_tree, remote_tree))
    done = Integration(local, None, "replayed")
    notes: dict[str, list[str]] = {}
    merged: dict[str, bool] = {}
    tip, tip_tree, prev_tree = remote, remote_tree, base_tree
    for sha in _local_commits(git, local, base):
        original = git.store[sha]
        edits: dict[str, bytes | None] = {}
        combined = []
        for path, blob in git.changed_paths(prev_tree, original.tree):
            if path not in theirs:
                edits[path] = blob
                continue
            base_blob = git.lookup(base_tree, path)
            edits[path], notes[path], both = _merge_path(
                git, path, base_blob[1] if base_blob else None, blob, theirs[path]
            )
            merged[path] = both
            if both:
                combined.append(ids.path_id(path) or path)
        tree = git.edit_tree(tip_tree, edits) if edits else tip_tree
        commit = Commit()
        commit.tree, commit.parents = tree, [tip]
        commit.author, commit.author_time = original.author, original.author_time
        commit.author_timezone = original.author_timezone
        commit.committer, commit.commit_time = store.author(), int(time.time())
        commit.commit_timezone = 0
        commit.encoding = original.encoding or b"UTF-8"
        message = original.message
        if combined:
            note = f"sync: merged with the remote's changes to {', '.join(combined)}"
            message = message.rstrip(b"\n") + b"\n\n" + note.encode() + b"\n"
        commit.message = message
        git.store.add_object(commit)
        tip, tip_tree, prev_tree = commit.id, tree, original.tree
        done.replayed += 1
    done.new = tip
    done.merged = sorted(ids.path_id(p) or p for p, both in merged.items() if both)
    done.conflicts = [n for path in sorted(notes) for n in notes[path] if merged.get(path)]
    return done


def _plan(store: Store, local: bytes | None, remote: bytes) -> Integration:
    if local is None:
        return Integration(None, remote, "fast-forward")
    if local == remote:
        return Integration(local, local, "up-to-date")
    base = _merge_base(store, local, remote)
    if base is None:
        raise BadInput(
            "the remote's history shares no commit with this repository's; "
            "clone the remote (git clone URL; gc-polecat init PATH) instead of syncing"
        )
    if base == remote:
        return Integration(local, local, "ahead")
    if base == local:
        return Integration(local, remote, "fast-forward")
    return _replay(store, local, base, remote)


def _bead_changes(
    store: Store, old_tree: bytes | None, new_tree: bytes | None, paths: list[str]
) -> list[BeadChange]:
    """How each bead at `paths` changed here, as observers see a commit's changes."""
    from gc_polecat.beads.store import BeadChange  # lazy: start-up

    git = store.git
    out = []
    for path in paths:
        if ids.path_id(path) is None:
            continue
        versions = []
        for tree in (old_tree, new_tree):
            found = git.lookup(tree, path)
            try:
                versions.append(_load(git, found[1], path) if found else None)
            except InvalidBead:
                versions.append(None)
        before, after = versions
        if after is None and before is None:
            continue
        if after is None:
            event = "delete"
        elif before is None:
            event = "create"
        elif after["status"] == "closed" and before["status"] != "closed":
            event = "close"
        else:
            event = "update"
        out.append(BeadChange(ids.path_id(path) or path, event, before, after))
    return out


def _check_remote_tree(store: Store, tip: bytes, local: bytes | None, label: str) -> None:
    """Refuse, before anything is planned or written, a remote commit whose tree leaves the
    beads layout (layout.check_tree: `.git`, `..`, bad names, symlinks, submodules)."""
    from dulwich.objects import Commit

    git = store.git
    commit = git.store[tip]
    if not isinstance(commit, Commit):
        raise BadInput(f"refusing {label}'s tip {tip.decode()[:12]}: not a commit")
    try:
        layout.check_tree(git, commit.tree, git.commit_tree(local))
    except BadInput as exc:
        raise BadInput(
            f"refusing {label}'s commit {tip.decode()[:12]}, outside the beads layout: {exc}"
        ) from None


def integrate(
    store: Store, remote_tip: bytes | None, label: str = "remote", *, announce: bool = True
) -> Integration:
    """Bring `remote_tip` into the local branch (see the module docstring), then (unless told
    to leave that to `announce_changes`) refresh the catalog and tell the observers about
    every bead that changed here."""
    from gc_polecat.beads.store import CAS_RETRIES  # lazy: start-up

    git = store.git
    for _ in range(CAS_RETRIES):
        with store.locked():
            ref, local = store.head()
            if remote_tip is None:
                return Integration(local, local, "up-to-date")
            if remote_tip != local:
                _check_remote_tree(store, remote_tip, local, label)
            done = _plan(store, local, remote_tip)
            if done.new == local:
                return done
            assert done.new is not None
            old_tree, new_tree = git.commit_tree(local), git.commit_tree(done.new)
            paths = [path for path, _ in git.changed_paths(old_tree, new_tree)]
            layout.check_worktree(store.root, git, old_tree, new_tree, paths)
            # the store's write protocol (locks, journal, work tree, index, then the ref)
            if not store.publish(ref, local, done.new, paths, f"gc-polecat: sync {label}"):
                continue  # someone moved the branch with plain git: plan again
        done.moved = (old_tree, new_tree, paths)
        if announce:
            announce_changes(store, done, label)
        return done
    raise Conflict("the branch kept moving during sync; retry")


def announce_changes(store: Store, done: Integration, label: str) -> None:
    """Once per integration that moved the branch: the catalog catches up (by tree diff) and
    the observers get one commit result holding every bead that changed here, so the wake
    plugin rings an `await` whose wait a remote verdict made ready."""
    from gc_polecat.beads.store import CommitResult  # lazy: start-up

    if done.moved is None or done.new is None:
        return
    old_tree, new_tree, paths = done.moved
    done.moved = None
    with contextlib.suppress(Exception):  # derived data: a failure only costs a rebuild
        store.catalog.refresh()
    done.changes = _bead_changes(store, old_tree, new_tree, paths)
    if done.changes:
        count = len(done.changes)
        message = f"sync: {count} bead{'s' * (count != 1)} changed by {label}"
        store.notify(CommitResult(done.new.decode(), message, tuple(done.changes)))


# --- the whole sync ----------------------------------------------------------------------------


@dataclass
class SyncResult:
    remote: str
    branch: str
    before: str | None  # the local tip before
    after: str | None = None  # the local tip after
    fetched: str | None = None  # the remote tip the last round fetched
    pushed: str | None = None  # what the remote took, if anything was pushed
    attempts: int = 0
    replayed: int = 0
    fast_forwards: int = 0
    incoming: list[str] = field(default_factory=list)  # beads that changed here
    merged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def _sync_lock(store: Store) -> Iterator[None]:
    """One sync at a time per repository (they share the fetched ref); writers are not held."""
    from gc_polecat.beads.locks import FileLock, LockTimeout  # lazy: start-up

    store.state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(store.state_dir / "sync.lock", timeout=GIT_TIMEOUT)
    try:
        lock.acquire()
    except LockTimeout:
        raise GcPolecatError("another sync of this repository is still running") from None
    try:
        yield
    finally:
        lock.release()


def sync(
    store: Store,
    remote: Remote | str | None = None,
    *,
    push_changes: bool = True,
    attempts: int = SYNC_ATTEMPTS,
    before_push: Callable[[int], None] | None = None,
) -> SyncResult:
    """Fetch, merge into the local branch, push; a rejected push starts another round.
    `before_push(round)` runs between a round's merge and its push (tests use it to lose the
    race deterministically)."""
    target = remote if isinstance(remote, Remote) else resolve_remote(store, remote)
    branch = _branch(store)
    before = store.head()[1]
    result = SyncResult(target.name, branch, before.decode() if before else None)
    incoming: dict[str, None] = {}
    merged: dict[str, None] = {}
    conflicts: dict[str, None] = {}
    with _sync_lock(store):
        for attempt in range(1, attempts + 1):
            result.attempts = attempt
            previous = store.git.ref_value(target.private_ref.encode())
            tip = fetch(store, target, branch)
            result.fetched = tip.decode() if tip else None
            try:
                done = integrate(store, tip, target.name, announce=False)
            except BadInput:  # refused: even the fetched ref is put back
                _restore_ref(store, target.private_ref, previous)
                raise
            if tip is not None:
                track(store, target, branch, tip)
            try:  # push first, announce after: a shorter window for another clone to push in
                local = store.head()[1]
                if not push_changes or local is None or local == tip:
                    break
                if before_push is not None:
                    before_push(attempt)
                if push(store, target, branch, local):
                    result.pushed = local.decode()
                    break
            finally:
                announce_changes(store, done, target.name)
                result.replayed += done.replayed
                result.fast_forwards += done.kind == "fast-forward"
                incoming.update(dict.fromkeys(c.id for c in done.changes))
                merged.update(dict.fromkeys(done.merged))
                conflicts.update(dict.fromkeys(done.conflicts))
            if attempt < attempts:  # full jitter, so a busy writer cannot starve this one
                time.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF * 2 ** (attempt - 1))))
        else:
            raise GcPolecatError(
                f"push to {target.name} was rejected {attempts} times (the remote keeps moving); "
                "the local branch holds the merged state: run sync again"
            )
    after = store.head()[1]
    result.after = after.decode() if after else None
    result.incoming, result.merged = list(incoming), list(merged)
    result.conflicts = list(conflicts)
    return result


def _restore_ref(store: Store, ref: str, value: bytes | None) -> None:
    if value is None:
        _git(store, "update-ref", "-d", ref)
    else:
        _git(store, "update-ref", ref, value.decode())


class ControllerSync:
    """`controller run --sync`: a sync before each pass, and one after a pass that wrote.
    A failed sync is reported and the controller goes on (it fails only with --once)."""

    def __init__(
        self, store: Store, remote: str | None, report: Callable[[str], Any], strict: bool
    ) -> None:
        self.store = store
        self.remote = resolve_remote(store, remote)  # bad input: before the first pass
        self.report = report
        self.strict = strict

    def __call__(self) -> None:
        try:
            done = sync(self.store, self.remote)
        except GcPolecatError as exc:
            if self.strict:
                raise
            self.report(f"sync: {exc}")
            return
        for line in summary(done, quiet=True):
            self.report(line)


def summary(done: SyncResult, quiet: bool = False) -> list[str]:
    """Lines for people; `quiet` leaves out the line of a sync that changed nothing."""

    def short(sha: str | None) -> str:
        return sha[:12] if sha else "-"

    parts = []
    if done.incoming:
        parts.append(f"{len(done.incoming)} bead(s) changed here")
    if done.replayed:
        parts.append(f"{done.replayed} local commit(s) replayed on the remote's")
    if done.pushed:
        parts.append(f"pushed {short(done.pushed)}")
    if done.attempts > 1:
        parts.append(f"{done.attempts} rounds")
    lines = []
    if parts or not quiet:
        head = f"sync {done.remote} {done.branch}: "
        lines.append(head + ("; ".join(parts) if parts else f"up to date at {short(done.after)}"))
    lines += [f"conflict: {note}" for note in done.conflicts]
    return lines
