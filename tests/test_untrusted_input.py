"""Input that cannot be parsed safely is the problem of the file or line that holds it (issue 12).

Points 3, 7, 8 and 11 of issue 12, each driven through real processes (`run_cli`) on real git
repositories: a bead file nested 50,000 deep (which made ruamel's C loader crash every process
with SIGSEGV), NaN and Infinity, numbers and nesting that Python's json turns into internal
errors, and a read-only repository. docs/security.md and docs/formats.md ("Limits on input")
name these tests.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gc_polecat.beads import bead, safejson
from gc_polecat.beads.ids import id_path
from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput, InvalidBead
from gc_polecat.plugins import make_plugin_manager

from .conftest import git, run_cli

T = "2026-11-21T14:00:00Z"
HEAD = f"id: gc-zz1\ntitle: t\ncreated_at: {T}\nupdated_at: {T}\n"
BOMBS = {
    "flow": "x: " + "[" * 50_000 + "]" * 50_000 + "\n",  # the file of issue 12, point 3
    "mapping": "x: " + "{a: " * 30_000 + "1" + "}" * 30_000 + "\n",
    "block": "x:\n" + "- " * 50_000 + "a\n",
    "crlf": ("x:\n" + "- " * 50_000 + "a\n").replace("\n", "\r\n"),
    "complex-keys": "? " * 50_000 + "a\n",
    "indentation": "x:\n" + "".join(" " * i + "a:\n" for i in range(1, 450)),
}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The process ended by itself (no signal) with one `error:` line and no traceback."""
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-300:]}"
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return errors[0]


def cli(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return run_cli("--repo", str(repo), *args, timeout=120)
    return subprocess.run(
        [sys.executable, "-m", "gc_polecat", "--repo", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def commit_file(repo: Path, rel: str, content: bytes) -> None:
    """A file committed with plain git, as a hand edit or another clone would."""
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    git(repo, "add", rel)
    git(repo, "commit", "-qm", f"add {rel}")


def created(repo: Path, title: str) -> str:
    proc = cli(repo, "bead", "create", title)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --- point 3: a bead file that would crash the parser --------------------------------------


def test_a_50000_deep_bead_file_crashes_no_command_and_no_other_bead(repo: Path) -> None:
    """Before: `bead list`, `bead create`, `controller run --once` died with SIGSEGV (139)."""
    good = created(repo, "a good bead")
    bad_path = id_path("gc-zz1")
    commit_file(repo, bad_path, BOMBS["flow"].encode())

    listed = cli(repo, "bead", "list")
    assert listed.returncode == 2, listed.stderr  # the list is printed; one file is unreadable
    assert good in listed.stdout
    assert f"skipped unreadable bead file {bad_path}" in listed.stderr
    assert "nested deeper than" in listed.stderr
    assert "Traceback" not in listed.stderr

    other = cli(repo, "bead", "create", "an unrelated bead")
    assert other.returncode == 0, other.stderr
    assert cli(repo, "bead", "update", good, "--status", "in_progress").returncode == 0
    assert cli(repo, "bead", "show", good).returncode == 0

    shown = cli(repo, "bead", "show", "gc-zz1")
    assert shown.returncode == 2
    assert "nested deeper than" in one_error_line(shown)

    controller = cli(repo, "controller", "run", "--once")
    assert controller.returncode == 0, controller.stderr

    exported = cli(repo, "export")
    assert exported.returncode == 2
    assert bad_path in one_error_line(exported)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_every_kind_of_deep_nesting_is_refused_before_parsing(repo: Path, name: str) -> None:
    good = created(repo, "still listed")
    commit_file(repo, id_path("gc-zz1"), (HEAD + BOMBS[name]).encode())
    listed = cli(repo, "bead", "list")
    assert listed.returncode == 2, listed.stderr
    assert good in listed.stdout and "skipped unreadable bead file" in listed.stderr


def test_a_deep_bead_file_arriving_by_sync_takes_down_no_clone(tmp_path: Path) -> None:
    """A push of the file must not crash `sync` on the pushing or any other clone."""
    pm = make_plugin_manager(load_entrypoints=False)
    origin, a, b = tmp_path / "origin.git", tmp_path / "a", tmp_path / "b"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    Store.init(a, prefix="gc", pm=pm)
    git(a, "remote", "add", "origin", str(origin))
    assert cli(a, "sync").returncode == 0
    git(tmp_path, "clone", "-q", str(origin), str(b))
    Store.init(b, prefix="gc", pm=pm)
    mine = created(b, "made on b")

    commit_file(a, id_path("gc-zz1"), BOMBS["flow"].encode())
    pushed = cli(a, "sync")
    assert pushed.returncode >= 0 and "Traceback" not in pushed.stderr, pushed.stderr
    pulled = cli(b, "sync")
    assert pulled.returncode >= 0 and "Traceback" not in pulled.stderr, pulled.stderr
    assert (b / id_path("gc-zz1")).is_file()  # it arrived, as any file does
    listed = cli(b, "bead", "list")
    assert mine in listed.stdout and "skipped unreadable bead file" in listed.stderr
    assert cli(b, "bead", "create", "after the sync").returncode == 0


def test_aliases_that_expand_are_refused_in_any_key() -> None:
    """A "billion laughs" in `priority` (a key normalize checks with repr in its message)."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    text = "\n".join(levels) + "\n" + HEAD + "priority: *a8\n"
    with pytest.raises(InvalidBead, match="aliases expand"):
        bead.load(text.encode(), "f")
    with pytest.raises(InvalidBead, match="aliases expand"):
        bead.load((HEAD + "priority: &r [*r]\n").encode(), "f")


def test_a_file_over_the_size_limit_is_refused_unread_and_never_written() -> None:
    big = HEAD + "description: " + "x" * bead.MAX_FILE_BYTES + "\n"
    with pytest.raises(InvalidBead, match="larger than"):
        bead.load(big.encode(), "f")
    with pytest.raises(InvalidBead, match="larger than"):
        bead.dump(bead.normalize({**bead.load(HEAD.encode(), "f"), "description": "x" * (1 << 20)}))


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


_leaf = st.one_of(st.sampled_from(["x", "- a", "[b]", "c: d", "? e", "", "&f"]), st.integers())
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("kqz"), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_tree, flow=st.sampled_from([None, True, False]), indent=st.sampled_from([2, 4]))
def test_the_cheap_bound_and_the_token_scan_never_underestimate(
    tree: Any, flow: bool | None, indent: int
) -> None:
    """The pre-scan decides whether libyaml may compose a file: it must never say "shallow"
    for a deep one, in any layout ruamel writes (flow, block, indentless sequences)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    yaml.indent(mapping=indent, sequence=indent + 2, offset=indent)
    buf = io.StringIO()
    yaml.dump({"root": tree}, buf)
    data = buf.getvalue().encode()
    depth = nesting({"root": tree})
    assert bead._nesting_bound(data) >= depth, data
    assert not bead._surely_shallow(data) or bead._nesting_bound(data) <= bead.MAX_NESTING
    saved = bead.MAX_NESTING
    try:
        bead.MAX_NESTING = depth - 1
        with pytest.raises(InvalidBead, match="nested deeper"):
            bead._scan_depth(data.decode(), "f")
    finally:
        bead.MAX_NESTING = saved


@pytest.mark.parametrize("width", range(0, 100, 3))
def test_the_one_regex_shortcut_agrees_with_the_bound(width: int) -> None:
    """`_surely_shallow` (one regex search on the hot path) never clears a file the full
    bound would send to the token scan: wide leads and many brackets, alone and together."""
    for lead in (" " * width, "- " * (width // 2), "? " * (width // 2), "\t" * width):
        for brackets in ("", "[" * (width // 3), "{" * width):
            data = f"{HEAD}x:\n{lead}a: {brackets}\n".encode()
            if bead._surely_shallow(data):
                assert bead._nesting_bound(data) <= bead.MAX_NESTING, data


# --- points 7 and 8: NaN, Infinity and JSON that broke the decoder ---------------------------


def record(**extra: Any) -> dict[str, Any]:
    return {"id": "gc-j1", "title": "t", "created_at": T, "updated_at": T, **extra}


BAD_JSON_LINES = {
    "infinity": ('{"id":"gc-j1","title":"t","x":Infinity,"y":NaN}', "Infinity is not JSON"),
    "nan": ('{"id":"gc-j1","title":"t","y":NaN}', "NaN is not JSON"),
    "overflow": ('{"id":"gc-j1","title":"t","x":1e999}', "would become infinity"),
    "5000 digits": ('{"id":"gc-j1","title":"t","x":' + "7" * 5000 + "}", "out of range"),
    "int65": ('{"id":"gc-j1","title":"t","x":18446744073709551616}', "out of range"),
    "100000 deep": ('{"id":"gc-j1","x":' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper"),
    "65 deep": ('{"id":"gc-j1","x":' + "[" * 64 + "]" * 64 + "}", "nested deeper"),
    "lone surrogate": ('{"id":"gc-j1","title":"\\udc00"}', "unpaired surrogate"),
}


@pytest.mark.parametrize("name", sorted(BAD_JSON_LINES))
def test_bad_jsonl_is_one_line_exit_2_and_nothing_is_written(
    repo: Path, tmp_path: Path, name: str
) -> None:
    """Before: 5,000 digits gave `internal error: ValueError`, deep nesting RecursionError
    (exit 1), and Infinity/NaN were imported and then exported as non-JSON."""
    line, why = BAD_JSON_LINES[name]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record(title="fine")) + "\n" + line + "\n")
    before = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "import", str(source))
    assert proc.returncode == 2
    message = one_error_line(proc)
    assert f"{source} line 2:" in message and why in message, message
    assert git(repo, "rev-parse", "HEAD") == before


@pytest.mark.parametrize(
    "payload, why",
    [
        ('{"title":"t","metadata":{"a":' + "[" * 100_000 + "]" * 100_000 + "}}", "nested"),
        ('{"title":"t","priority":' + "9" * 5000 + "}", "out of range"),
        ('{"title":"\\udc00"}', "unpaired surrogate"),
        ('{"title":"t","metadata":{"a":NaN}}', "NaN is not JSON"),
        ('{"title":"t","metadata":{"a":1e400}}', "would become infinity"),
    ],
    ids=["deep", "huge-int", "lone-surrogate", "nan", "overflow"],
)
def test_exec_beads_refuses_unsafe_json_with_one_line_exit_1(
    repo: Path, payload: str, why: str
) -> None:
    """Gas City reads exit 2 as "unknown operation, fine", so exec-beads fails with 1."""
    before = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "exec-beads", "create", stdin=payload)
    assert proc.returncode == 1
    assert why in one_error_line(proc)
    assert git(repo, "rev-parse", "HEAD") == before


def test_a_non_finite_number_in_a_bead_file_is_unreadable_and_never_printed(repo: Path) -> None:
    good = created(repo, "finite")
    commit_file(repo, id_path("gc-zz1"), (HEAD + "x: .inf\ny: [.nan]\n").encode())
    listed = cli(repo, "--json", "bead", "list")
    assert listed.returncode == 2 and "not a JSON number" in listed.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON output")

    beads = json.loads(listed.stdout, parse_constant=refuse)
    assert [b["id"] for b in beads] == [good]
    assert cli(repo, "export").returncode == 2
    assert "not a JSON number" in one_error_line(cli(repo, "bead", "show", "gc-zz1"))


def test_json_output_can_never_carry_nan() -> None:
    with pytest.raises(ValueError):
        safejson.dumps({"x": float("nan")})
    with pytest.raises(InvalidBead, match="NaN and Infinity"):
        bead.normalize({**record(), "x": [float("inf")]})


def test_the_decoder_keeps_ordinary_json_exact() -> None:
    text = '{"a":[1,-2,3.5,1e300,null,true,"\\ud83d\\ude80"],"b":{"c":-9223372036854775808}}'
    assert safejson.loads(text, "w") == json.loads(text)
    assert safejson.loads(text.encode(), "w") == json.loads(text)
    deep = "[" * safejson.MAX_DEPTH + "]" * safejson.MAX_DEPTH
    assert nesting(safejson.loads(deep, "w")) == safejson.MAX_DEPTH
    with pytest.raises(BadInput, match="w: not UTF-8"):
        safejson.loads(b'"\xff"', "w")


# --- point 11: a read-only repository ------------------------------------------------------


def _read_only_runner(repo: Path) -> list[str]:
    """The command prefix that runs a process seeing `repo` read-only, or skip.

    Root ignores permission bits, so as root the repository is bind-mounted read-only in a
    private mount namespace (`unshare -m`, needs CAP_SYS_ADMIN); as another user `chmod -R a-w`
    is enough and the caller does it."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        pytest.skip("as root a read-only repository needs `unshare -m` (util-linux), not found")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    prefix = ["unshare", "-m", "--", "sh", "-c", script, "sh", str(repo)]
    probe = subprocess.run([*prefix, "touch", str(repo / ".probe")], capture_output=True)
    if (repo / ".probe").exists() or probe.returncode == 0 or b"Read-only" not in probe.stderr:
        pytest.skip(f"cannot bind-mount read-only here (unshare -m): {probe.stderr[-200:]!r}")
    return prefix


@pytest.fixture
def read_only(repo: Path):  # noqa: ANN201 - yields a runner
    prefix = _read_only_runner(repo)
    chmodded = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        if not prefix and not chmodded:  # not root: the repository turns read-only from here
            subprocess.run(["chmod", "-R", "a-w", str(repo)], check=True)
            chmodded.append(True)
        argv = [sys.executable, "-m", "gc_polecat", "--repo", str(repo), *args]
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)

    yield run
    if chmodded:
        subprocess.run(["chmod", "-R", "u+w", str(repo)], check=True)


@pytest.mark.parametrize("catalog", ["present", "missing", "behind"])
def test_a_read_only_repository_can_be_read(repo: Path, catalog: str, read_only: Any) -> None:
    """Before: `bead list`, `show`, `export` exited 1 with `internal error: PermissionError`
    on catalog.sqlite (OperationalError when it was missing)."""
    first = created(repo, "first")
    state = repo / ".git" / "gc-polecat"
    if catalog == "missing":
        shutil.rmtree(state)
    elif catalog == "behind":  # a commit made with plain git: the catalog must catch up
        commit_file(repo, id_path("gc-zz1"), (HEAD + "status: open\n").encode())
    # the `repo` fixture's in-process Store may still hold the catalog open: when the garbage
    # collector closes it, SQLite removes catalog.sqlite-wal/-shm. Close it before the snapshot,
    # so the snapshot judges the read-only commands alone.
    gc.collect()
    files = sorted(p.relative_to(repo) for p in repo.rglob("*"))

    listed = read_only("bead", "list")
    assert listed.returncode == 0, listed.stderr
    assert first in listed.stdout
    assert ("gc-zz1" in listed.stdout) == (catalog == "behind")
    shown = read_only("--json", "bead", "show", first)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["title"] == "first"  # bd prints a list
    exported = read_only("export")
    assert exported.returncode == 0, exported.stderr
    assert first in exported.stdout

    write = read_only("bead", "create", "refused")
    assert write.returncode == 2
    assert "cannot write" in one_error_line(write)
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == files


def test_a_reader_of_a_read_only_repository_ignores_a_pending_journal(
    repo: Path, read_only: Any
) -> None:
    """A dead writer's journal cannot be finished without writing; readers read git objects."""
    first = created(repo, "first")
    killed = run_cli(
        "--repo", str(repo), "bead", "create", "half", env={"GC_POLECAT_TEST_CRASH_AT": "ref-moved"}
    )
    assert killed.returncode == -9
    listed = read_only("bead", "list")
    assert listed.returncode == 0, listed.stderr
    assert first in listed.stdout and "half" in listed.stdout
    assert read_only("bead", "show", first).returncode == 0
    assert read_only("export").returncode == 0
    assert "cannot write" in one_error_line(read_only("bead", "close", first))


@pytest.mark.parametrize(
    "payload",
    ['{"id":"gc-x","x":NaN}', "[" * 100_000, '{"id":"gc-x","n":' + "9" * 5000 + "}", '"\\udc00"'],
    ids=["nan", "deep", "huge-int", "lone-surrogate"],
)
def test_a_bd_hook_payload_goes_through_the_same_decoder(repo: Path, payload: str) -> None:
    """`hooks run` (bd's hook protocol) never fails bd's write: exit 0, one clear line."""
    before = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "hooks", "run", "on_update", "gc-x", "update", stdin=payload)
    assert proc.returncode == 0
    assert "stdin:" in one_error_line(proc)
    assert git(repo, "rev-parse", "HEAD") == before
