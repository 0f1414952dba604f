"""A Gas City city on our store: each test is one of gc's real call patterns, with the argv,
stdin and environment of the gc source file named in its docstring, against the real provider
script (`pack/scripts/gc-beads-polecat`) in real processes. The Go client is modelled in
`tests/gc_exec_store.py` (it cannot run here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gc_polecat.beads.bead import GASCITY_TYPES, TYPES
from gc_polecat.beads.store import Store
from gc_polecat.interop.gc_exec_client import socket_path
from gc_polecat.plugins import make_plugin_manager

from .conftest import assert_clean, git
from .gc_exec_store import (  # noqa: F401 - gc_path is a fixture
    ExecStore,
    ListQuery,
    NotFoundError,
    city_runtime_env,
    gc_path,
    run_script,
    scope_env,
    user_repo,
)

GASCITY = Path("/work/.mirror/gastownhall+gascity/repo")
STORES = (".gc", "runtime", "packs", "polecat", "stores")


class GcCity:
    """A city directory with city.toml and one rig (the user's code, holding bd's files as
    `gc rig add` leaves them), and gc's view of both scopes."""

    def __init__(self, root: Path, path: str, hq: str = "hq", rig_prefix: str = "fe") -> None:
        self.root, self.path, self.hq, self.rig_prefix = root, path, hq, rig_prefix
        root.mkdir()
        (root / "city.toml").write_text(f'[workspace]\nname = "{root.name}"\n')
        self.rig = root / "rigs" / "frontend"
        self.rig_head = user_repo(self.rig)
        beads = self.rig / ".beads"
        beads.mkdir()
        (beads / "config.yaml").write_text(f"issue-prefix: {rig_prefix}\n")  # bd's, not ours
        (beads / "metadata.json").write_text('{"database": "beads.db"}\n')
        git(self.rig, "add", ".beads")
        git(self.rig, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "bd files")
        self.rig_head = git(self.rig, "rev-parse", "HEAD").strip()
        self.rig_config = (self.rig / ".git" / "config").read_bytes()

    def lifecycle(self, *args: str, env: dict[str, str] | None = None) -> None:
        """runProviderOp (cmd/gc/beads_provider_lifecycle.go): the city runtime environment;
        exit 2 would be "not needed", anything else but 0 aborts `gc start`."""
        proc = run_script({**city_runtime_env(self.root), **(env or {})}, self.path, list(args))
        assert proc.returncode == 0, proc.stderr.decode()

    def start(self, env: dict[str, str] | None = None) -> None:
        """startBeadsLifecycle: start, init the city (hq database), init each rig."""
        self.lifecycle("start", env=env)
        self.lifecycle("init", str(self.root), self.hq, "hq", env=env)
        self.lifecycle("init", str(self.rig), self.rig_prefix, self.rig_prefix, env=env)

    def city_store(self) -> ExecStore:
        return ExecStore(scope_env(self.root, self.root, self.hq), self.path)

    def rig_store(self) -> ExecStore:
        return ExecStore(scope_env(self.root, self.rig, self.rig_prefix, rig="frontend"), self.path)

    def stores(self) -> Path:
        return self.root.joinpath(*STORES)

    def assert_rig_untouched(self) -> None:
        assert git(self.rig, "rev-parse", "HEAD").strip() == self.rig_head  # no commit
        assert git(self.rig, "status", "--porcelain", "--ignored") == ""  # no new file
        assert (self.rig / ".git" / "config").read_bytes() == self.rig_config  # no config
        assert sorted(p.name for p in (self.rig / ".beads").iterdir()) == [
            "config.yaml",
            "metadata.json",
        ]


@pytest.fixture
def gc_city(tmp_path: Path, gc_path: str) -> Iterator[GcCity]:  # noqa: F811
    made = GcCity(tmp_path / "city", gc_path)
    yield made
    made.lifecycle("stop")  # gc stop: the warm server `start` left, if any, ends
    assert not Path(str(socket_path(city_runtime_env(made.root)))).exists()


def running(pid: int, wait: float = 5.0) -> bool:
    """Whether the process is alive after up to `wait` seconds (a zombie waiting for a reaper
    that is not ours counts as ended)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


# --- init: where the stores live -------------------------------------------------------------


def test_gc_start_puts_each_scope_store_under_the_city_and_leaves_the_rig_alone(
    gc_city: GcCity,
) -> None:
    """cmd/gc/beads_provider_lifecycle.go startBeadsLifecycle + initBeadsForDir: `start`, then
    `init <city> <hq-prefix> hq` and `init <rig> <prefix> <prefix>` (argv with the database
    name), on every `gc start`; idempotent; the rig (the user's code, with bd's
    `.beads/config.yaml`) gets no commit, no file and no config change."""
    gc_city.start()
    city_repo = gc_city.stores() / "city"
    rigs = list((gc_city.stores() / "rigs").iterdir())
    assert len(rigs) == 1 and rigs[0].name.startswith("frontend-")
    assert "prefix: hq" in (city_repo / ".beads" / "config.yaml").read_text()
    assert "prefix: fe" in (rigs[0] / ".beads" / "config.yaml").read_text()
    made = commits(city_repo), commits(rigs[0])
    gc_city.start()  # every gc start runs it again
    assert (commits(city_repo), commits(rigs[0])) == made
    for op in ("health", "probe", "stop"):
        gc_city.lifecycle(op)
    bead = gc_city.rig_store().create(title="rig work")
    assert bead["id"].startswith("fe-") and commits(rigs[0]) == made[1] + 1
    assert gc_city.city_store().list_open() == []  # scopes are separate stores
    gc_city.assert_rig_untouched()
    assert sorted(p.name for p in gc_city.root.iterdir()) == [".gc", "city.toml", "rigs"]
    assert_clean(city_repo)
    assert_clean(rigs[0])


def test_init_with_gc_polecat_repo_makes_that_store_only(gc_city: GcCity, tmp_path: Path) -> None:
    """The same lifecycle with GC_POLECAT_REPO set: one store for every scope, no repository
    made anywhere else (neither in the city nor in the rig)."""
    shared = tmp_path / "shared"
    gc_city.start(env={"GC_POLECAT_REPO": str(shared)})
    assert "prefix: hq" in (shared / ".beads" / "config.yaml").read_text()
    assert not gc_city.stores().exists()  # no store in the city either
    gc_city.assert_rig_untouched()


def test_init_refuses_a_directory_it_cannot_place(gc_city: GcCity, tmp_path: Path) -> None:
    """Without a city (GC_CITY_PATH) or GC_POLECAT_REPO the store has no documented place:
    exit 1 with one line, nothing written; a file is not a directory."""
    lone = tmp_path / "lone"
    lone.mkdir()
    proc = run_script({}, gc_city.path, ["init", str(lone), "lo"])
    assert proc.returncode == 1 and b"GC_CITY_PATH" in proc.stderr
    assert list(lone.iterdir()) == []
    proc = run_script(city_runtime_env(gc_city.root), gc_city.path, ["init", "/dev/null", "x"])
    assert proc.returncode == 1 and b"not a directory" in proc.stderr


def test_a_prefix_gc_derives_with_a_leading_digit(tmp_path: Path, gc_path: str) -> None:  # noqa: F811
    """internal/config/config.go DeriveBeadsPrefix: a city named "3d-city" gets "3c"; init and
    create must take it."""
    gc_city = GcCity(tmp_path / "3d-city", gc_path, hq="3c")
    gc_city.start()
    gc_city.start()
    bead = gc_city.city_store().create(title="first")
    assert re.fullmatch(r"3c-[0-9a-z]+", bead["id"])
    assert gc_city.city_store().get(bead["id"])["title"] == "first"
    gc_city.lifecycle("stop")


# --- gc's calls ------------------------------------------------------------------------------


def test_poured_steps_are_blocked_by_their_needs(gc_city: GcCity) -> None:
    """internal/molecule/molecule.go Instantiate: the root (type molecule, ref = formula) and
    each step (parent_id = root, ref = step, metadata gc.step_ref, needs = earlier steps' IDs,
    `<type>:<id>` for other types), created one by one; gc's bd store turns `needs` into
    dependencies (internal/beads/bdstore.go Create: `--deps`). Only the first step is ready."""
    gc_city.start()
    s = gc_city.rig_store()
    root = s.create(title="mol-polecat-work", type="molecule", ref="mol-polecat-work")
    steps: list[dict] = []
    for name in ("load-context", "implement", "submit"):
        needs = [steps[-1]["id"]] if steps else []
        steps.append(
            s.create(
                title=name,
                parent_id=root["id"],
                ref=name,
                needs=needs,
                metadata={"gc.step_ref": name},
            )  # fmt: skip
        )
    review = s.create(title="review", needs=["waits-for:" + steps[2]["id"]])
    assert [b["id"] for b in s.ready()] == [steps[0]["id"]]
    deps = s.dep_list(steps[1]["id"], "down")
    assert {(d["depends_on_id"], d["type"]) for d in deps} >= {(steps[0]["id"], "blocks")}
    assert s.get(steps[1]["id"])["needs"] == [steps[0]["id"]]
    for n, step in enumerate(steps):
        s.close(step["id"])
        want = [steps[n + 1]["id"]] if n + 1 < len(steps) else [review["id"]]
        assert [b["id"] for b in s.ready()] == want
    with pytest.raises(NotFoundError):  # a step naming a bead of this store that is not there
        s.create(title="bad", needs=["fe-zzzzz"])
    gc_city.assert_rig_untouched()


def test_gc_required_types_come_from_gc_and_are_accepted(gc_city: GcCity) -> None:
    """internal/doctor/checks_custom_types.go RequiredCustomTypes: our GASCITY_TYPES is that
    list (compared with the gascity source when its mirror is here); each type can be created,
    and the convergence loop's `list --type=convergence` (cmd/gc/convergence_store.go) answers."""
    if GASCITY.is_dir():
        source = subprocess.run(
            ["git", "-C", str(GASCITY), "show", "HEAD:internal/doctor/checks_custom_types.go"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        body = source.split("RequiredCustomTypes = []string{", 1)[1].split("}", 1)[0]
        assert tuple(re.findall(r'"([^"]+)"', body)) == GASCITY_TYPES
    assert set(GASCITY_TYPES) <= set(TYPES)
    gc_city.start()
    s = gc_city.city_store()
    made = {t: s.create(title=t, type=t)["id"] for t in GASCITY_TYPES}
    assert [b["id"] for b in s.list(ListQuery(type="convergence"))] == [made["convergence"]]
    assert s.get(made["spec"])["type"] == "spec"


def test_newest_in_progress_bead_of_an_assignee(gc_city: GcCity) -> None:
    """internal/api/handler_agents.go: List{Assignee, Status: in_progress, Limit: 1, Sort:
    created_desc} becomes `list --status=in_progress --assignee=A --limit=1` (exec.go), and gc
    keeps the head of what comes back: the script must filter and take the newest before the
    limit, whatever the priorities and however many closed or foreign beads there are."""
    gc_city.start()
    store = Store(gc_city.stores() / "city", pm=make_plugin_manager(load_entrypoints=False))
    with store.transaction() as tx:
        for day in range(1, 6):
            tx.create({
                "title": f"old {day}", "status": "in_progress", "assignee": "nux", "priority": 0,
                "created_at": f"2026-01-0{day}T00:00:00Z",
            })  # fmt: skip
        tx.create({"title": "newer, closed", "status": "closed", "assignee": "nux"})
        tx.create({"title": "newer, someone else's", "status": "in_progress", "assignee": "ace"})
    s = gc_city.city_store()
    newest = s.create(title="newest", assignee="nux", priority=4)
    s.update(newest["id"], status="in_progress")
    got = s.list_by_assignee("nux", "in_progress", 1)
    assert [b["title"] for b in got] == ["newest"]
    assert s.calls[-1] == ["list", "--status=in_progress", "--assignee=nux", "--limit=1"]
    assert [b["title"] for b in s.list_by_assignee("nux", "in_progress", 2)] == [
        "newest", "old 5",
    ]  # fmt: skip


def test_dependencies_across_scopes(gc_city: GcCity) -> None:
    """A rig bead blocked by a city bead (and poured with a city bead in `needs`): accepted
    as a reference to another scope's store, and `ready` follows that bead's status there."""
    gc_city.start()
    hq, rig = gc_city.city_store(), gc_city.rig_store()
    gate = hq.create(title="city decision")
    work = rig.create(title="rig work")
    rig.dep_add(work["id"], gate["id"], "blocks")
    poured = rig.create(title="poured step", needs=[gate["id"]])
    assert rig.ready() == []
    hq.close(gate["id"])
    assert {b["id"] for b in rig.ready()} == {work["id"], poured["id"]}
    with pytest.raises(NotFoundError):  # our own prefix, missing: still "not found"
        rig.dep_add(work["id"], "fe-zzzzz", "blocks")
    rig.dep_add(work["id"], "other-abc", "blocks")  # a scope with no store here: blocks
    assert [b["id"] for b in rig.ready()] == [poured["id"]]
    gc_city.assert_rig_untouched()


@pytest.mark.parametrize("stored", ["blocked", "deferred", "pinned"])
def test_update_status_open_really_opens(gc_city: GcCity, stored: str) -> None:
    """internal/beads/exec/json.go updateRequest {"status": "open"}: a bead stored as blocked,
    deferred or pinned (gc reads it as open) is then open, and ready."""
    gc_city.start()
    store = Store(gc_city.stores() / "city", pm=make_plugin_manager(load_entrypoints=False))
    with store.transaction() as tx:
        bead_id = tx.create({"title": stored, "status": stored})["id"]
    s = gc_city.city_store()
    assert s.get(bead_id)["status"] == "open" and s.ready() == []
    s.update(bead_id, status="open")
    assert "status_detail" not in s.get(bead_id)
    assert store.get(bead_id)["status"] == "open"
    assert [b["id"] for b in s.ready()] == [bead_id]


def test_metadata_bytes_are_kept_exactly(gc_city: GcCity) -> None:
    """exec.go SetMetadata writes the value as stdin, byte for byte, and the bd bridge keeps
    it so: trailing newlines, carriage returns, spaces and '' survive set-metadata, create and
    update alike."""
    gc_city.start()
    s = gc_city.city_store()
    values = {"nl": "line\n\n", "crlf": "a\r\n", "spaces": "  x  ", "empty": ""}
    values["json"] = '{"a": 1}\n'
    bead = s.create(title="meta", metadata={"made": "m\n"})
    for key, value in values.items():
        s.set_metadata(bead["id"], key, value)
    s.update(bead["id"], metadata={"updated": "\n"})
    assert s.get(bead["id"])["metadata"] == {**values, "made": "m\n", "updated": "\n"}


def test_the_warm_server_answers_as_a_cold_call_would(gc_city: GcCity) -> None:
    """gc's `start` leaves a server per city (its socket under the city's runtime directory,
    or /tmp for a long path); calls go through it with the caller's environment (the scope,
    the acting agent); `stop` ends it and calls run cold again, with the same answers."""
    gc_city.start()
    sock = Path(str(socket_path(city_runtime_env(gc_city.root))))
    assert sock.exists() and oct(sock.stat().st_mode & 0o777) == "0o600"
    s = gc_city.rig_store()
    s.env = {**s.env, "GC_AGENT": "rig/polecat-1"}
    warm = s.create(title="warm")
    rig_repo = next((gc_city.stores() / "rigs").iterdir())
    assert git(rig_repo, "log", "-1", "--format=%an").strip() == "rig/polecat-1"
    assert gc_city.city_store().list_open() == []  # the server kept the scopes apart
    traced = {**s.env, "PYTHONPROFILEIMPORTTIME": "1"}
    served = run_script(traced, gc_city.path, ["get", warm["id"]])
    provider = re.compile(rb"\| +gc_polecat\.interop\.gc_exec$", re.M)  # -X importtime's line
    assert served.returncode == 0 and not provider.search(served.stderr)
    gc_city.lifecycle("stop")
    cold = run_script(traced, gc_city.path, ["get", warm["id"]])
    assert cold.stdout == served.stdout and provider.search(cold.stderr)
    assert not sock.exists()
    assert s.get(warm["id"])["title"] == "warm"  # cold, the same store
    assert [b["id"] for b in s.ready()] == [warm["id"]]
    gc_city.lifecycle("stop")  # nothing to stop: fine


def test_start_replaces_a_server_running_other_code(
    gc_city: GcCity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade, gc's next `start` must not keep the old server: `start` asks the one
    that answers which code it runs and replaces it when that is not this code."""
    from gc_polecat.interop import gc_exec_launch as launch
    from gc_polecat.interop import gc_exec_server as exec_server
    from gc_polecat.interop.gc_exec_client import connect

    gc_city.start()
    path = str(socket_path(city_runtime_env(gc_city.root)))

    def server_pid() -> int:
        sock = connect(path)
        assert sock is not None
        with sock:
            who = exec_server.peer(sock)
        assert who is not None
        return who[0]

    old = server_pid()
    gc_city.start()  # the same code: kept
    assert server_pid() == old
    monkeypatch.setattr(launch, "CODE", "code of another version")
    assert launch.start(city_runtime_env(gc_city.root)) is None
    new = server_pid()
    assert new != old and not running(old)
    assert (launch.ask(path, ["health"]) or {}).get("status") == 0


@pytest.fixture
def short_city(gc_path: str) -> Iterator[GcCity]:  # noqa: F811
    """A city at a short path, so its socket is in its own runtime directory (not the shared
    /tmp fallback), which a test may then tamper with alone."""
    root = Path(tempfile.mkdtemp(prefix="gcc", dir="/tmp"))
    try:
        made = GcCity(root / "city", gc_path)
        yield made
        made.lifecycle("stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_socket_directory_not_ours_alone_is_never_used(short_city: GcCity) -> None:
    """Another user able to place a socket where ours goes would receive our environment: a
    socket directory that is not this user's (or that others can write) makes `start` start
    no server, and calls neither connect there nor fail: they run cold."""
    import socket

    gc_city = short_city
    gc_city.start()
    sock_path = Path(str(socket_path(city_runtime_env(gc_city.root))))
    gc_city.lifecycle("stop")
    directory = sock_path.parent
    assert directory.is_relative_to(gc_city.root)
    directory.chmod(0o777)  # ours, but open: the client refuses it until `start` closes it
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(str(sock_path))  # someone else's listener where ours would be
    fake.listen(8)
    fake.setblocking(False)
    try:
        s = gc_city.city_store()
        bead = s.create(title="cold, not through the stranger's socket")
        with pytest.raises(BlockingIOError):
            fake.accept()  # nobody connected
        if os.getuid() == 0:  # a directory another user owns: `start` leaves it alone
            os.chown(directory, 4242, -1)
            proc = run_script(city_runtime_env(gc_city.root), gc_city.path, ["start"])
            assert proc.returncode == 0 and b"not this user's alone" in proc.stderr
            assert s.get(bead["id"])["title"].startswith("cold")
            with pytest.raises(BlockingIOError):
                fake.accept()
            os.chown(directory, os.getuid(), -1)
    finally:
        fake.close()
        sock_path.unlink()
