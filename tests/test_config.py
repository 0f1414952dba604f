"""The settings file: one YAML parser, every bad file one line and exit 2, `init` on a clone.

Issue 12 points 9 and 10: the prefix used to be found with a regular expression (`prefix: rt  #
our rig`, `prefix: RT` and `{prefix: rt}` gave `gc-` IDs), a non-UTF-8 file was an internal error,
and `gc-polecat init` on a fresh clone refused every prefix but `gc` after writing git config.
Everything runs the real CLI in a real process against real git.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gc_polecat.beads import config as configmod
from gc_polecat.beads import ids
from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput

from .conftest import git, run_cli

ERROR = "gc-polecat: error: "


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def create(repo: Path, title: str = "work") -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "bead", "create", title)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """A refusal: exit 2, exactly one stderr line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


def set_settings(repo: Path, data: bytes, name: str = "config.yaml") -> None:
    """Commit a settings file by hand, as a person (or a pull) would."""
    (repo / ".beads" / name).write_bytes(data)
    git(repo, "add", "-A", ".beads")
    git(repo, "commit", "-qm", f"settings: {name}")


def ids_accept(prefix: str) -> bool:
    """Whether this branch's ID rule takes IDs of `prefix` (bd-import widens it, issue 13)."""
    try:
        ids.parse_id(f"{prefix}-abc")
    except BadInput:
        return False
    return True


# --- issue 12 point 9: the prefix is what the YAML parser reads ------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "prefix: rt  # our rig\n",
        "{prefix: rt}\n",
        "prefix: 'rt'\n",
        '# settings\n\nprefix: "rt"\nmax_attempts: 4\n',
        "---\nprefix: rt\n...\n",
        "prefix:\n  rt\n",
    ],
)
def test_new_ids_take_the_prefix_the_yaml_parser_reads(repo: Path, text: str) -> None:
    set_settings(repo, text.encode())
    proc = create(repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("rt-"), proc.stdout


@pytest.mark.parametrize("prefix", ["RT", "3c", "my_rig", "sonpoGPT"])
def test_prefixes_bd_and_gas_city_make_are_read_back(repo: Path, prefix: str) -> None:
    """bd keeps upper case and `_` (bd: cmd/bd/init.go); Gas City derives `3c` from `3d-city`
    (gascity: internal/config/config.go DeriveBeadsPrefix)."""
    set_settings(repo, f"prefix: {prefix}\n".encode())
    proc = run_cli("--repo", str(repo), "init", "--json")
    assert proc.returncode == 0, proc.stderr
    assert f'"prefix": "{prefix}"' in proc.stdout
    if not ids_accept(prefix):
        pytest.skip(f"IDs of prefix {prefix!r} need bd-import's ID rule (issue 13)")
    made = create(repo)
    assert made.returncode == 0 and made.stdout.startswith(f"{prefix}-"), made.stderr


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"prefix: r\xfft\n", "not UTF-8 text"),
        (b"\xff\xfe\x00p", "not UTF-8 text"),
        (b"prefix: [rt\n", "malformed YAML"),
        (b"- prefix\n- rt\n", "must be a mapping"),
        (b"prefix: rt\nprefix: xy\n", "malformed YAML"),  # a duplicate key is not a choice
        (b"prefx: rt\n", "unknown setting 'prefx'"),
        (b"prefix: 123\n", "quote it"),
        (b"prefix: ../x\n", "invalid prefix"),
        (b"prefix: a.b\n", "invalid prefix"),
        (b"prefix: rt-\n", "invalid prefix"),
        (b"prefix: true\n", "invalid prefix"),
        (b'prefix: "r\\tt"\n', "invalid prefix"),
        (b"x: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "malformed YAML"),
        (b"# " + b"x" * (configmod.MAX_CONFIG_BYTES + 1) + b"\n", "larger than"),
    ],
)
def test_a_bad_settings_file_is_one_line_exit_2_and_writes_nothing(
    repo: Path, data: bytes, says: str
) -> None:
    set_settings(repo, data)
    before = head(repo)
    for args in (["bead", "create", "work"], ["pool", "status"]):
        line = one_line_error(run_cli("--repo", str(repo), *args))
        assert ".beads/config.yaml" in line and says in line, line
    assert head(repo) == before and git(repo, "status", "--porcelain") == ""


def test_a_settings_file_that_is_a_directory_is_one_line(repo: Path) -> None:
    (repo / ".beads" / "gc-polecat.yaml").mkdir()
    line = one_line_error(create(repo))
    assert ".beads/gc-polecat.yaml: cannot read" in line


# --- the fast path gives the parser's answer -------------------------------------------------

LINES = st.sampled_from(
    [
        "", " ", "# c", "  # indented", "#", "# ünï", "prefix: rt", "prefix: rt  # r",
        "prefix:  gc", "prefix: RT", "prefix: true", "prefix: True", "prefix: no", "prefix: null",
        "prefix: 3c", "prefix: 1e5", "prefix: 0x1f", "prefix: a_b", "prefix: a-", "prefix: x#y",
        "prefix: 'q'", "prefix:rt", " prefix: rt", "prefix: rt\t", "\tprefix: rt", "---",
        "max_attempts: 3", "...", "%YAML 1.1", "prefix: .inf", "prefix: ~", "prefix: y",
        "prefix: on", "prefix: a b", "prefix: &a rt", "prefix: !!str rt", "prefix: [rt]",
        "prefix: rt\r", "\ufeffprefix: rt",
    ]
)  # fmt: skip


def parser_answer(text: str) -> object:
    from ruamel.yaml import YAML

    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc).__name__)
    return {} if raw is None else raw


@settings(max_examples=400, deadline=None)
@given(st.lists(LINES, max_size=6), st.booleans())
@example(["prefix: rt  # our rig"], True)
@example(["# only a comment"], False)
@example(["prefix: rt", "prefix: rt"], True)
@example(["prefix: true"], True)
def test_the_fast_path_answers_exactly_as_the_yaml_parser_or_not_at_all(
    lines: list[str], newline: bool
) -> None:
    text = "\n".join(lines) + ("\n" if newline else "")
    fast = configmod._fast_parse(text)
    if fast is not None:
        assert fast == parser_answer(text), text


def test_the_fast_path_takes_what_init_writes_and_defers_the_rest() -> None:
    assert configmod._fast_parse("# gc-polecat beads repository\nprefix: gc\n") == {"prefix": "gc"}
    assert configmod._fast_parse("prefix: rt  # our rig\n") == {"prefix": "rt"}
    for deferred in ("prefix: true\n", "prefix: 3c\n", "{prefix: rt}\n", "prefix: rt\npools: {}\n"):
        assert configmod._fast_parse(deferred) is None


@pytest.mark.parametrize("prefix", ["gc", "rt", "RT", "3c", "1e5", "123", "true", "No", "a_b"])
def test_what_init_writes_reads_back_as_the_same_prefix(tmp_path: Path, prefix: str) -> None:
    """A prefix YAML would read as a number or a boolean is written quoted."""
    proc = run_cli("init", str(tmp_path / "r"), "--prefix", prefix, "--json")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "r" / ".beads" / "config.yaml"
    assert parser_answer(path.read_text()) == {"prefix": prefix}
    assert configmod.load_prefix(path) == prefix


# --- which prefixes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", ["gc", "RT", "3c", "7", "my_rig", "_x", "sonpoGPT", "bd_001", "a-b-c", "g" * 64]
)
def test_every_prefix_bd_or_gas_city_makes_is_valid(good: str) -> None:
    assert ids.validate_prefix(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-a", "a-", "g" * 65, ".", "..", "../x", "a/b", "a\\b", "a b", "a.b", "a\x00",
            "a\n", "é", "ﬁ", 3, None, ["gc"]]
)  # fmt: skip
def test_path_tricks_are_not_prefixes(bad: object) -> None:
    with pytest.raises(BadInput):
        ids.validate_prefix(bad)


# --- bd's keys in the shared file --------------------------------------------------------------

BD_AND_GAS_CITY = """\
issue_prefix: gc
issue-prefix: gc
dolt.auto-start: false
gc.endpoint_origin: managed_city
gc.endpoint_status: verified
no-db: false
json: false
sync:
  remote: dolthub://org/beads
backup:
  enabled: false
types.custom: "spec,convergence"
validation:
  on-create: warn
"""


def test_bd_and_gas_city_keys_in_config_yaml_are_ignored(repo: Path) -> None:
    """Keys from bd: internal/config/config.go and yaml_config.go; Gas City:
    engdocs/design/beads-dolt-contract-redesign.md."""
    set_settings(repo, b"prefix: rt\nmax_attempts: 5\n" + BD_AND_GAS_CITY.encode())
    assert create(repo).stdout.startswith("rt-")
    assert Store(repo).config()["max_attempts"] == 5
    assert run_cli("--repo", str(repo), "pool", "status").returncode == 0


def test_a_typo_is_still_an_error_beside_bd_keys(repo: Path) -> None:
    set_settings(repo, b"prefix: rt\nmax_attempt: 5\n" + BD_AND_GAS_CITY.encode())
    line = one_line_error(create(repo))
    assert "unknown setting 'max_attempt'" in line
    assert "bd's and Gas City's keys are ignored" in line


def test_bd_keys_in_our_own_file_are_errors(repo: Path) -> None:
    """bd never reads `.beads/gc-polecat.yaml`: a bd key there is misplaced, not bd's."""
    set_settings(repo, b"prefix: rt\nissue-prefix: rt\n", name="gc-polecat.yaml")
    line = one_line_error(create(repo))
    assert ".beads/gc-polecat.yaml: unknown setting 'issue-prefix'" in line


# --- which file ------------------------------------------------------------------------------


def test_our_own_file_wins_and_every_reader_names_it(repo: Path) -> None:
    """pool, refinery and the prefix all read the store's settings file."""
    set_settings(repo, b"prefix: xy\npools: {old: {max_active: 1}}\n")
    set_settings(repo, b"prefix: rt\npools: {new: {max_active: 2}}\n", name="gc-polecat.yaml")
    assert create(repo).stdout.startswith("rt-")
    status = run_cli("--repo", str(repo), "pool", "status", "--json")
    assert status.returncode == 0 and '"new"' in status.stdout and '"old"' not in status.stdout
    line = one_line_error(run_cli("--repo", str(repo), "pool", "reconcile", "old", "--dry-run"))
    assert "unknown pool 'old' (configured in .beads/gc-polecat.yaml: new)" in line
    refinery = one_line_error(run_cli("--repo", str(repo), "refinery", "process", "--once"))
    assert "refinery.repo is not set in .beads/gc-polecat.yaml" in refinery


def test_the_repository_is_found_by_either_file(repo: Path) -> None:
    git(repo, "mv", ".beads/config.yaml", ".beads/gc-polecat.yaml")
    git(repo, "commit", "-qm", "move the settings")
    (repo / "sub").mkdir()
    proc = run_cli("bead", "create", "found from a subdirectory", cwd=repo / "sub")
    assert proc.returncode == 0 and proc.stdout.startswith("gc-"), proc.stderr
    env = {"GC_POLECAT_REPO": str(repo)}
    assert run_cli("bead", "list", cwd=repo.parent, env=env).returncode == 0
    (repo / ".beads" / "gc-polecat.yaml").unlink()
    lost = one_line_error(run_cli("bead", "list", cwd=repo / "sub"))
    assert "not a beads repository" in lost


# --- issue 12 point 10: init on a second machine ------------------------------------------------


def clone_of(tmp_path: Path, prefix: str) -> tuple[Path, Path]:
    """A beads repository with `prefix` and one bead, pushed to a bare remote, and a fresh
    clone of it (git config is not cloned: no core.splitIndex there)."""
    first = tmp_path / "first"
    assert run_cli("init", str(first), "--prefix", prefix).returncode == 0
    assert create(first).returncode == 0
    bare = tmp_path / "beads.git"
    git(tmp_path, "clone", "-q", "--bare", str(first), str(bare))
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(bare), str(second))
    return first, second


def test_init_on_a_fresh_clone_adopts_its_prefix(tmp_path: Path) -> None:
    """docs/formats.md and docs/interop.md: `git clone ...; gc-polecat init PATH`."""
    _, second = clone_of(tmp_path, "rt")
    before = head(second)
    proc = run_cli("init", str(second), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"prefix": "rt"' in proc.stdout and '"settings": ".beads/config.yaml"' in proc.stdout
    assert head(second) == before  # nothing changed: no commit
    assert git(second, "config", "core.splitIndex").strip() == "true"
    again = run_cli("init", str(second), "--prefix", "rt")
    assert again.returncode == 0 and head(second) == before
    assert create(second).stdout.startswith("rt-")
    assert git(second, "status", "--porcelain") == ""


def test_init_with_another_prefix_refuses_before_writing_anything(tmp_path: Path) -> None:
    _, second = clone_of(tmp_path, "rt")
    config_before = (second / ".git" / "config").read_bytes()
    before = head(second)
    line = one_line_error(run_cli("init", str(second), "--prefix", "xy"))
    assert "already a beads repository with prefix 'rt'" in line
    assert (second / ".git" / "config").read_bytes() == config_before  # no core.splitIndex
    assert head(second) == before and git(second, "status", "--porcelain") == ""


def test_init_on_an_unreadable_settings_file_writes_nothing(tmp_path: Path) -> None:
    _, second = clone_of(tmp_path, "rt")
    (second / ".beads" / "config.yaml").write_bytes(b"prefix: r\xfft\n")
    config_before = (second / ".git" / "config").read_bytes()
    line = one_line_error(run_cli("init", str(second)))
    assert "not UTF-8 text" in line
    assert (second / ".git" / "config").read_bytes() == config_before


def test_init_of_a_new_directory_makes_config_yaml_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "new"
    assert run_cli("init", str(root), "--prefix", "3c").returncode == 0
    text = (root / ".beads" / "config.yaml").read_text()
    assert text.endswith('prefix: "3c"\n') and not (root / ".beads" / "gc-polecat.yaml").exists()
    assert commits(root) == 1
    assert run_cli("init", str(root)).returncode == 0 and commits(root) == 1
    assert git(root, "status", "--porcelain") == ""


def test_load_config_names_the_file_and_never_raises_anything_else(tmp_path: Path) -> None:
    """Every bad file is a BadInput naming it, in one line (the fuzzing in test_fuzz.py covers
    the values; these are the file-level cases)."""
    path = tmp_path / "config.yaml"
    for data in (b"\x80", b"a: b: c", b"[", b"!!binary AAAA\n", b"? [a]\n: b\n", b"*x\n"):
        path.write_bytes(data)
        with pytest.raises(BadInput) as caught:
            configmod.load_config(path)
        assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
    assert configmod.load_config(tmp_path / "missing.yaml")["prefix"] == "gc"


def test_settings_files_are_documented() -> None:
    """docs/formats.md names both files and the bd keys we ignore (bd's source files named)."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text()
    assert ".beads/gc-polecat.yaml" in docs and "internal/config/yaml_config.go" in docs
    for key in sorted(configmod.BD_KEYS | configmod.BD_SECTIONS):
        assert re.search(rf"`{re.escape(key)}`", docs), key


@pytest.mark.parametrize("name", [".beads", "beads"])
def test_init_refuses_a_link_where_its_directories_go_before_writing(
    tmp_path: Path, name: str
) -> None:
    root, elsewhere = tmp_path / "r", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / name).symlink_to(elsewhere)
    line = one_line_error(run_cli("init", str(root)))
    assert f"{root / name} is not a directory" in line
    assert not (root / ".git").exists() and list(elsewhere.iterdir()) == []
