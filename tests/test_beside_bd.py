"""gc-polecat in a bd project (issue 13, "Beside bd"): `init` adds only its own files.

The project is built as `bd init` leaves it (bd 1.0.3, gastownhall/beads at 7e3c7fb):
cmd/bd/init.go creates `.beads/` (0700) with `.gitignore` (cmd/bd/doctor/gitignore.go
GitignoreTemplate), `interactions.jsonl`, `metadata.json` (internal/configfile/configfile.go),
`config.yaml` and `README.md` (cmd/bd/init_templates.go), the hooks in `.beads/hooks/` with
`core.hooksPath` pointing there (cmd/bd/hooks.go), `.local_version` (cmd/bd/version_tracking.go),
`beads.role` in git config, the project `.gitignore` section (EnsureProjectGitignore), AGENTS.md,
and commits `.beads/` with `git commit --no-verify`. Auto-export adds `.beads/issues.jsonl`.
The file names, modes and texts are bd's (long templates abridged where marked). The one
fake: bd's embedded Dolt database under `.beads/embeddeddolt/` cannot be produced without bd,
so it is a directory of placeholder files in Dolt's layout (bd's .gitignore keeps it out of git).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import git, run_cli

BD_VERSION = "1.0.3"

# cmd/bd/init_templates.go createConfigYaml, as `bd init` writes it (the prefix lives in bd's
# database, so the issue-prefix line is a comment), and as `bd init` in no-db mode or Gas City
# write it (the prefix in the file).
BD_CONFIG_TEMPLATE = """\
# Beads Configuration File
# This file configures default behavior for all bd commands in this repository
# All settings can also be set via environment variables (BD_* prefix)
# or overridden with command-line flags

# Issue prefix for this repository (used by bd init)
# If not set, bd init will auto-detect from directory name
# Example: issue-prefix: "myproject" creates issues like "myproject-1", "myproject-2", etc.
{prefix_line}

# Use no-db mode: JSONL-only, no Dolt database
# When true, bd will use .beads/issues.jsonl as the source of truth
{no_db_line}

# Enable JSON output by default
# json: false

# Feedback title formatting for mutating commands (create/update/close/dep/edit)
# 0 = hide titles, N > 0 = truncate to N characters
# output:
#   title-length: 255

# Default actor for audit trails (overridden by BEADS_ACTOR or --actor)
# actor: ""

# Multi-repo configuration (experimental - bd-307)
# repos:
#   primary: "."  # Primary repo (where this database lives)
#   additional:   # Additional repos to hydrate from (read-only)
#     - ~/beads-planning  # Personal planning repo

# JSONL backup (periodic export for off-machine recovery)
# backup:
#   enabled: false     # Disable auto-backup entirely
#   interval: 15m      # Minimum time between auto-exports
"""
BD_DEFAULT_CONFIG = BD_CONFIG_TEMPLATE.format(
    prefix_line='# issue-prefix: ""', no_db_line="# no-db: false"
)
BD_NO_DB_CONFIG = BD_CONFIG_TEMPLATE.format(
    prefix_line='issue-prefix: "rt"', no_db_line="no-db: true  # JSONL-only mode, no database"
)
# gascity: engdocs/design/beads-dolt-contract-redesign.md, "Rig inheriting managed city".
GAS_CITY_CONFIG = """\
issue_prefix: fe
issue-prefix: fe
dolt.auto-start: false
gc.endpoint_origin: inherited_city
gc.endpoint_status: verified
"""
# cmd/bd/doctor/gitignore.go GitignoreTemplate (abridged: the runtime-file sections).
BD_GITIGNORE = """\
# Dolt database (managed by Dolt, not git)
dolt/
embeddeddolt/

# Runtime files
bd.sock
bd.sock.startlock
sync-state.json
last-touched
.exclusive-lock

# Interactions log (runtime, not versioned)
interactions.jsonl

# Lock files (various runtime locks)
*.lock

# Local version tracking (prevents upgrade notification spam after git ops)
.local_version

# Backup data (auto-exported JSONL, local-only)
backup/

# Legacy files (from pre-Dolt versions)
*.db
"""
# cmd/bd/init_templates.go createReadme (abridged).
BD_README = """\
# Beads - AI-Native Issue Tracking

Welcome to Beads! This repository uses **Beads** for issue tracking - a modern, AI-native tool \
designed to live directly in your codebase alongside your code.
"""
HOOK_NAMES = ("pre-commit", "post-merge", "pre-push", "post-checkout", "prepare-commit-msg")


def bd_hook(name: str) -> str:
    """cmd/bd/hooks.go generateHookSection, in a new file (shebang + section)."""
    return (
        "#!/usr/bin/env sh\n"
        f"# --- BEGIN BEADS INTEGRATION v{BD_VERSION} ---\n"
        "# This section is managed by beads. Do not remove these markers.\n"
        "if command -v bd >/dev/null 2>&1; then\n"
        "  export BD_GIT_HOOK=1\n"
        f'  bd hooks run {name} "$@"\n'
        "  _bd_exit=$?\n"
        "  if [ $_bd_exit -ne 0 ]; then exit $_bd_exit; fi\n"
        "fi\n"
        f"# --- END BEADS INTEGRATION v{BD_VERSION} ---\n"
    )


def write(path: Path, text: str | bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)


def bd_project(root: Path, config_yaml: str) -> Path:
    """A git repository after `bd init` and one auto-export, committed as bd commits it."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "project start")
    beads = root / ".beads"
    beads.mkdir(mode=0o700)
    write(beads / ".gitignore", BD_GITIGNORE, 0o600)
    write(beads / "interactions.jsonl", b"", 0o644)
    metadata = {
        "database": "dolt",
        "backend": "dolt",
        "dolt_mode": "embedded",
        "dolt_database": "rt",
        "project_id": "6f1c2e4a-8b7d-4c3e-9a15-2d0b7e6f9c81",
    }
    write(beads / "metadata.json", json.dumps(metadata, indent=2), 0o600)  # Go: no newline
    write(beads / "config.yaml", config_yaml, 0o600)
    write(beads / "README.md", BD_README, 0o644)
    for name in HOOK_NAMES:
        write(beads / "hooks" / name, bd_hook(name), 0o755)
    git(root, "config", "core.hooksPath", str(beads / "hooks"))
    git(root, "config", "beads.role", "maintainer")
    write(beads / ".local_version", f"{BD_VERSION}\n", 0o600)
    for part in ("noms/manifest", "noms/LOCK", "config.json", "repo_state.json"):
        write(beads / "embeddeddolt" / "rt" / ".dolt" / part, b"dolt placeholder\n", 0o644)
    issue = {
        "id": "rt-a3f",
        "title": "Existing bd issue",
        "status": "open",
        "priority": 2,
        "issue_type": "task",
        "created_at": "2026-05-04T11:43:39.420722-07:00",
        "updated_at": "2026-05-04T11:43:39.420722-07:00",
    }
    write(beads / "issues.jsonl", json.dumps(issue, separators=(",", ":")) + "\n", 0o644)
    write(
        root / ".gitignore",
        "\n# Beads / Dolt files (added by bd init)\n.dolt/\n*.db\n.beads-credential-key\n",
        0o644,
    )
    write(root / "AGENTS.md", "# Agent Instructions\n\nThis project uses **bd** (beads).\n", 0o644)
    git(root, "add", ".beads/", ".gitignore", "AGENTS.md")
    git(root, "commit", "-q", "--no-verify", "-m", "bd init: initialize beads issue tracking")
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file outside .git: its SHA-256 and its mode."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(root) and d == ".git")]
        for name in filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            found[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                st.st_mode,
            )
    return found


def index_entries(root: Path) -> set[str]:
    return set(git(root, "ls-files", "-s").splitlines())


def head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


OURS = {".beads/gc-polecat.yaml", "beads/README.md"}


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("init", str(root), *args)


@pytest.mark.parametrize(
    ("config_yaml", "prefix"), [(BD_NO_DB_CONFIG, "rt"), (GAS_CITY_CONFIG, "fe")]
)
def test_init_in_a_bd_project_adds_only_its_own_files(
    tmp_path: Path, config_yaml: str, prefix: str
) -> None:
    root = bd_project(tmp_path / "project", config_yaml)
    before, index_before, base = snapshot(root), index_entries(root), head(root)
    hooks_path = git(root, "config", "core.hooksPath")

    proc = init(root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "root": str(root), "prefix": prefix, "settings": ".beads/gc-polecat.yaml"
    }  # fmt: skip
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k not in OURS} == before  # bd's, byte for byte
    assert set(after) - set(before) == OURS
    assert (root / ".beads" / "gc-polecat.yaml").read_text().endswith(f"prefix: {prefix}\n")
    # One commit on top of bd's, holding our two files and nothing else; the index agrees.
    assert git(root, "rev-parse", "HEAD~1").strip() == base
    assert set(git(root, "show", "--name-only", "--format=", "HEAD").split()) == OURS
    assert index_before <= index_entries(root)
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "config", "core.hooksPath") == hooks_path
    assert git(root, "config", "beads.role").strip() == "maintainer"

    # Beads get bd's prefix; bd's files stay as they were; a second init changes nothing.
    made = run_cli("bead", "create", "beside bd", cwd=root / ".beads")
    assert made.returncode == 0 and made.stdout.startswith(f"{prefix}-"), made.stderr
    assert init(root).returncode == 0
    assert git(root, "rev-list", "--count", f"{base}..HEAD").strip() == "2"
    final = snapshot(root)
    assert {k: v for k, v in final.items() if k in before} == before
    assert git(root, "status", "--porcelain") == ""


def test_bd_init_default_config_names_no_prefix_so_init_asks_for_one(tmp_path: Path) -> None:
    """`bd init` keeps the prefix in its database (config.yaml has `# issue-prefix: ""`):
    without --prefix, init refuses and writes nothing, git config included."""
    root = bd_project(tmp_path / "project", BD_DEFAULT_CONFIG)
    before, base = snapshot(root), head(root)
    git_config = (root / ".git" / "config").read_bytes()
    proc = init(root)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "names no issue-prefix" in proc.stderr and "--prefix" in proc.stderr
    assert snapshot(root) == before and head(root) == base
    assert (root / ".git" / "config").read_bytes() == git_config

    done = init(root, "--prefix", "rt")
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in snapshot(root).items() if k not in OURS} == before
    made = run_cli("--repo", str(root), "bead", "create", "x")
    assert made.stdout.startswith("rt-"), made.stderr


def test_an_explicit_prefix_wins_over_bds(tmp_path: Path) -> None:
    """As in bd (cmd/bd/init.go: flag > config.yaml), --prefix is taken over issue-prefix."""
    root = bd_project(tmp_path / "project", BD_NO_DB_CONFIG)
    assert init(root, "--prefix", "gp").returncode == 0
    assert run_cli("--repo", str(root), "bead", "create", "x").stdout.startswith("gp-")
    refused = init(root, "--prefix", "rt")
    assert refused.returncode == 2 and "already a beads repository with prefix 'gp'" in (
        refused.stderr
    )


@pytest.mark.parametrize(
    ("config_yaml", "says"),
    [
        ('issue-prefix: "../x"\n', "config.yaml: issue-prefix: invalid prefix '../x'"),
        ("issue-prefix: [rt\n", "config.yaml: malformed YAML"),
        ("issue-prefix: r\udcfft\n", "config.yaml: not UTF-8 text"),
    ],
)
def test_a_bad_bd_config_is_one_line_and_nothing_is_written(
    tmp_path: Path, config_yaml: str, says: str
) -> None:
    root = bd_project(tmp_path / "project", "# placeholder\n")
    write(root / ".beads" / "config.yaml", config_yaml.encode("utf-8", "surrogateescape"), 0o600)
    before, git_config = snapshot(root), (root / ".git" / "config").read_bytes()
    proc = init(root)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(root) == before and (root / ".git" / "config").read_bytes() == git_config


def test_bd_changing_its_config_never_breaks_our_commands(tmp_path: Path) -> None:
    """After init, bd owns config.yaml: any keys bd writes there (even ones that are not
    settings of ours) leave gc-polecat reading its own file."""
    root = bd_project(tmp_path / "project", BD_NO_DB_CONFIG)
    assert init(root).returncode == 0
    with open(root / ".beads" / "config.yaml", "a") as f:
        f.write("sync.remote: dolthub://org/beads\nsomething-new-in-bd: true\n")
    made = run_cli("--repo", str(root), "bead", "create", "x")
    assert made.returncode == 0 and made.stdout.startswith("rt-"), made.stderr
    assert run_cli("--repo", str(root), "pool", "status").returncode == 0


def test_settings_written_by_hand_are_committed_once(tmp_path: Path) -> None:
    """A person who writes `.beads/gc-polecat.yaml` before `init` keeps it as written; init
    commits it (other clones need it) with nothing of bd's, and a second init commits nothing."""
    root = bd_project(tmp_path / "project", BD_DEFAULT_CONFIG)
    before, base = snapshot(root), head(root)
    ours = b"# ours\nprefix: rt\nmax_attempts: 5\n"
    write(root / ".beads" / "gc-polecat.yaml", ours, 0o644)
    proc = init(root, "--json")
    assert proc.returncode == 0 and '"prefix": "rt"' in proc.stdout, proc.stderr
    assert set(git(root, "show", "--name-only", "--format=", "HEAD").split()) == OURS
    assert git(root, "show", "HEAD:.beads/gc-polecat.yaml").encode() == ours
    assert {k: v for k, v in snapshot(root).items() if k not in OURS} == before
    assert init(root).returncode == 0
    assert git(root, "rev-list", "--count", f"{base}..HEAD").strip() == "1"
    assert git(root, "status", "--porcelain") == ""
