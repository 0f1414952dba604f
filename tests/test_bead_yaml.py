"""The fast bead emitter: every bead loads back unchanged; common beads match ruamel byte for byte.

`bead._dump_ruamel` (the ruamel.yaml path the emitter replaces, kept as its fallback) is the
oracle: the fast output must load back to the same bead with the project's own loader and with
ruamel's pure-Python parser under YAML 1.1 rules (so `yes`, `on`, `1:20`, `017` stay strings
for older tools too); the fallback output must be exactly ruamel's.
"""

from __future__ import annotations

import datetime as dt
import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from gc_polecat.beads import bead
from gc_polecat.errors import InvalidBead

from .conftest import examples

T = "2026-11-21T14:00:00Z"
BD_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "bd-issues.jsonl"
_PURE = YAML(typ="safe", pure=True)


# --- helpers -------------------------------------------------------------------------------


def ordered(value: Any) -> Any:
    """A comparable form that also checks key order (dict equality ignores it)."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return (type(value).__name__, value)


def fast_path(data: Any) -> bool:
    """True when the hand-rolled emitter handles `data` (no ruamel fallback)."""
    try:
        bead._emit_bead(data)
    except bead._Unsupported:
        return False
    return True


def assert_round_trip(data: dict[str, Any]) -> bytes:
    """dump, then load with the project's loader; fast output also with the stricter oracles.

    The fallback must be exactly the old ruamel output (which the pure-Python parser cannot
    always read back, e.g. a key '\\n\\u2028'; the project's libyaml loader can).
    """
    out = bead.dump(data)
    text = out.decode("utf-8")
    expected = ordered(data)
    assert ordered(bead._yaml_engine().load(text)) == expected, text
    if fast_path(data):  # a second parser, and YAML 1.1 resolvers (yes, on, 1:20, 017, ...)
        assert ordered(_PURE.load("%YAML 1.1\n---\n" + text)) == expected, text
    else:
        assert out == bead._dump_ruamel(data)
    return out


# --- strategies ----------------------------------------------------------------------------

SPECIALS = [
    *str.split("true True TRUE false False FALSE yes Yes YES no No NO on On ON off Off OFF"),
    *str.split("y Y n N null Null NULL ~ << = yEs nULL oN"),
    *str.split("0 -1 +1 007 0x1F 0X1f 0o17 0b101 1e3 1E+3 1_000 3.14 -2.5e-3 .5 ._5 _ __1 1:20"),
    *str.split(".inf -.Inf +.INF .nan .NaN 1:20:30.5 0.30.2 3d 2fa 1st 404 . .. ... ---"),
    T,
    "2026-11-21",
    "2001-12-14 21:59:43.10 -5",
    "2001-12-14t21:59:43.10-05:00",
    "",
    *("- x", "? x", ": x", "-x", "?x", ":x", "x:", "a: b", "a #b", "a#b", "#x", "x #", "a:b"),
    *("'q'", '"dq"', "it's", "|", ">", "%YAML", "@x", "`x`", "!tag", "&a", "*a", "[a]"),
    *("{a: 1}", "a, b", "~/x", "$HOME", "(x)", "/tmp", ".gitignore", "...x", "---x", "- "),
    *(" x", "x ", "  ", " ", "\t", "x\t", "\r", "a\rb", "\r\n", "\x00", "\x7f", "\x80", "\x9f"),
    *("é", "Überprüfung läuft", "日本語のタイトル", "→ next", "— dash", "«x»", "\ufffd"),
    *("\n", "\n\n", "x\n", "x\n\n", "x\n\n\n", "\nx", " x\ny", "x\n y", "x \ny", "x\n "),
    *("x\n\ny\n", "\n\nx\n\n", "- a\n- b\n", "a: b\nc: d", "# h\n\ntext\n", "x\n\t y\n"),
]
PUNCT = list(" \t\r\n#:'\"-?|>%@`!&*,[]{}~._+/\\=<") + ["\x00", "\x1b", "\x7f", "\x9f", "é"]
WORDS = ["yes", "no", "null", "true", "1", "0x", "e3", ".inf", "2026-01-01", "a", "...", "---"]
RARE = ["\x85", "\u2028", "\u2029", "\ufeff", "\xa0", "\u3000", "\u200b", "\ue000", "\U0001f680"]

# Characters the fast emitter writes itself: printable BMP text plus the C0/C1 controls it escapes.
fast_char = st.characters(
    max_codepoint=0xFFFF,
    exclude_categories=("Cs", "Co", "Cn", "Cf", "Zl", "Zp", "Zs"),
    exclude_characters="\x85",
    include_characters=" ",
)
any_char = st.characters(exclude_categories=("Cs",))  # every category: mostly ruamel's business
fast_text = st.text(fast_char)
ascii_text = st.text(st.characters(max_codepoint=0x7F))
yaml_soup = st.lists(st.sampled_from(PUNCT + WORDS + list(string.ascii_letters[:6]))).map("".join)
core = st.one_of(st.sampled_from(SPECIALS), yaml_soup, fast_text, ascii_text)
wrapped = st.builds(
    lambda pre, text, post: pre + text + post,
    st.sampled_from(["", " ", "  ", "\n", "\n\n", "\t", "#", "- ", "'", '"', "\r", " \n"]),
    core,
    st.sampled_from(["", " ", "\n", "\n\n", "\n\n\n", ":", " #x", "\r\n", " \n", "\t"]),
)
multi_line = st.lists(st.one_of(core, wrapped), max_size=6).map("\n".join)
long_text = st.builds(
    lambda piece, n, sep: sep.join([piece] * n),
    st.text(fast_char, min_size=1, max_size=8),
    st.integers(min_value=50, max_value=600),
    st.sampled_from(["", " ", "\n", "\n\n", "\n  "]),
)
# Now and then a string the fast emitter must decline: any character at all, or a rare one.
rare = st.one_of(
    st.text(any_char),
    st.builds(lambda a, r, b: a + r + b, fast_text, st.sampled_from(RARE), fast_text),
)
common = st.one_of(core, wrapped, multi_line, long_text)
adversarial = st.integers(1, 100).flatmap(lambda n: rare if n == 1 else common)
non_empty = adversarial.filter(bool)
# Keys are mostly one-line (a line break or control character in a key means ruamel's `? key`).
one_line = st.one_of(st.sampled_from(SPECIALS), yaml_soup, fast_text).map(
    lambda s: "".join(c for c in s if c.isprintable())
)
keys = st.integers(1, 30).flatmap(lambda n: non_empty if n == 1 else one_line.filter(bool))

base36 = st.text("0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
ids = st.builds(
    lambda prefix, digits, children: f"{prefix}-{digits}{children}",
    st.sampled_from(["gc", "bd", "a", "wisp-x"]),
    base36,
    st.sampled_from(["", ".1", ".12.3"]),
)
times = st.integers(0, 7_000_000_000).map(
    lambda s: (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")
)
dep_types = st.one_of(
    st.sampled_from(bead.BLOCKING_DEP_TYPES), st.from_regex(bead.DEP_TYPE_RE, fullmatch=True)
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=bead.INT_MIN, max_value=bead.INT_MAX),  # JSON numbers bd can hold
    st.floats(allow_nan=False, allow_infinity=False),
    adversarial,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(adversarial, inner, max_size=3)
    ),
    max_leaves=6,
)
int64 = st.integers(min_value=bead.INT_MIN, max_value=bead.INT_MAX)
schema_values = st.one_of(
    adversarial,
    int64,
    st.booleans(),
    st.lists(st.one_of(non_empty, int64), min_size=1, max_size=3),
    st.dictionaries(keys, adversarial, min_size=1, max_size=3),
)
unknown_values = st.integers(1, 8).flatmap(lambda n: json_values if n == 1 else schema_values)


@st.composite
def dependencies(draw: st.DrawFn, bid: str) -> list[dict[str, Any]]:
    deps = []
    for _ in range(draw(st.integers(0, 3))):
        dep: dict[str, Any] = {
            "issue_id": bid,
            "depends_on_id": draw(ids),
            "type": draw(dep_types),
            "created_at": draw(times),
        }
        for key in ("created_by", "metadata"):
            if draw(st.booleans()):
                dep[key] = draw(adversarial)
        deps.append(dep)
    return deps


@st.composite
def beads(draw: st.DrawFn) -> dict[str, Any]:
    """Normalized beads over the real schema, with adversarial strings everywhere."""
    bid = draw(ids)
    status = draw(st.sampled_from(bead.STATUSES))
    raw: dict[str, Any] = {
        "id": bid,
        "title": draw(non_empty.filter(lambda s: s.strip() and len(s) <= bead.MAX_TITLE)),
        "status": status,
        "priority": draw(st.integers(0, 4)),
        "issue_type": draw(st.sampled_from(bead.TYPES)),
        "created_at": draw(times),
        "updated_at": draw(times),
    }
    for key in bead.TEXT_KEYS + ("assignee", "owner", "created_by", "close_reason", "await_id"):
        if draw(st.booleans()):
            raw[key] = draw(adversarial)
    if status == "closed":
        raw["closed_at"] = draw(times)
    if draw(st.booleans()):
        raw["started_at"] = draw(times)
    raw["labels"] = draw(st.lists(non_empty, max_size=4))
    raw["metadata"] = draw(st.dictionaries(keys, adversarial, max_size=4))
    raw["dependencies"] = draw(dependencies(bid))
    raw["ephemeral"] = draw(st.booleans())
    if draw(st.booleans()):
        raw["await_type"] = draw(st.sampled_from(bead.AWAIT_TYPES))
        raw["timeout"] = draw(st.integers(0, 10**15))
        raw["waiters"] = draw(st.lists(non_empty, max_size=3))
    unknown = st.dictionaries(
        keys.filter(lambda k: k not in bead.KEY_ORDER), unknown_values, max_size=3
    )
    raw.update(draw(unknown))
    return bead.normalize(raw)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=examples(800), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beads())
def test_every_bead_loads_back_unchanged(b: dict[str, Any]) -> None:
    out = assert_round_trip(b)
    assert bead.load(out, "x.yaml") == b


@settings(max_examples=1500, deadline=None)
@given(adversarial)
def test_every_string_survives_every_position(s: str) -> None:
    """One string as a value, key, list item, nested value and dependency-style entry."""
    assert_round_trip({"k": s})
    assert_round_trip({s: "v", "n": 1})
    assert_round_trip({"l": [s, "x", s]})
    assert_round_trip({"m": {"a": s, s: "b"}})
    assert_round_trip({"d": [{"k": s, "j": s}, {"k": "z"}], "e": True})


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)), core))
def test_plain_output_is_a_string_in_yaml_1_1_and_1_2(s: str) -> None:
    """Whenever the emitter leaves a string unquoted, neither resolver reads it as another type."""
    if fast_path({"k": s}) and bead._single_line(s) == s and "\n" not in s:
        assert _PURE.load(f"k: {s}\n") == {"k": s}
        assert _PURE.load(f"%YAML 1.1\n---\nk: {s}\n") == {"k": s}


# --- regression cases ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain words", "k: plain words\n"),
        (T, f"k: '{T}'\n"),
        ("2026-11-21", "k: '2026-11-21'\n"),
        ("", "k: ''\n"),
        ("yes", "k: 'yes'\n"),
        ("Null", "k: 'Null'\n"),
        ("~", "k: '~'\n"),
        ("0x1F", "k: '0x1F'\n"),
        ("1e3", "k: '1e3'\n"),
        (".inf", "k: '.inf'\n"),
        ("12:30", "k: '12:30'\n"),
        ("_", "k: '_'\n"),
        ("._5", "k: '._5'\n"),
        ("_internal", "k: _internal\n"),
        (".gitignore", "k: .gitignore\n"),
        ("3 tests fail", "k: 3 tests fail\n"),
        ("https://example.com/a#b", "k: https://example.com/a#b\n"),
        ("a: b", "k: 'a: b'\n"),
        ("a #b", "k: 'a #b'\n"),
        ("x:", "k: 'x:'\n"),
        ("it's", "k: it's\n"),
        ("'quoted'", "k: '''quoted'''\n"),
        (" lead", "k: ' lead'\n"),
        ("trail ", "k: 'trail '\n"),
        ("--force", "k: '--force'\n"),
        ("...x", "k: '...x'\n"),
        ("Überprüfung → done", "k: Überprüfung → done\n"),
        ("a\tb", 'k: "a\\tb"\n'),
        ("a\rb", 'k: "a\\rb"\n'),
        ("a\x01\x7f\x80", 'k: "a\\x01\\x7F\\x80"\n'),
        ('say "hi" \\o/\t', 'k: "say \\"hi\\" \\\\o/\\t"\n'),
        ("x\ny", "k: |-\n  x\n  y\n"),
        ("x\ny\n", "k: |\n  x\n  y\n"),
        ("x\ny\n\n", "k: |+\n  x\n  y\n\n"),
        ("x\n\n\n", "k: |+\n  x\n\n\n"),
        ("x\n\ny", "k: |-\n  x\n\n  y\n"),
        (" lead\nx", "k: |2-\n   lead\n  x\n"),
        ("\nlead\n", "k: |2\n\n  lead\n"),
        ("\n", "k: |2+\n\n"),
        ("x\n indented", "k: |-\n  x\n   indented\n"),
        ("x \ny", 'k: "x \\ny"\n'),
        ("x\ny ", 'k: "x\\ny "\n'),
        ("x\n\ty", 'k: "x\\n\\ty"\n'),
    ],
)
def test_regression_output(value: str, expected: str) -> None:
    assert fast_path({"k": value})
    assert bead.dump({"k": value}).decode("utf-8") == expected
    assert_round_trip({"k": value})


@pytest.mark.parametrize(
    "data",
    [
        {"k": 1.5},
        {"k": None},
        {"k": {"nested": {"deeper": "x"}}},
        {"k": [["x"]]},
        {"k": [{"a": ["x"]}]},
        {"k": []},
        {"k": {}},
        {"k": dt.datetime(2026, 1, 1)},
        {"k": 2**80},
        {"k": "rocket \U0001f680"},
        {"k": "a\u2028b"},
        {"k": "a\x85b"},
        {"k": "\ufeffa"},
        {"k": "non\xa0breaking"},
        {"k": "x " * 2000},
        {"k": "x \n" * 2000},
        {"x" * 130: "v"},
        {"multi\nline key": "v"},
        {"tab\tkey": "v"},
        {1: "int key"},
        {},
    ],
    ids=lambda data: repr(data)[:40],
)
def test_falls_back_to_ruamel(data: dict[Any, Any]) -> None:
    assert not fast_path(data)
    assert bead.dump(data) == bead._dump_ruamel(data)


def test_long_literal_lines_stay_on_the_fast_path() -> None:
    """libyaml never folds literal blocks, so long lines there need no fallback."""
    data = {"k": "x" * 10_000 + "\n" + "y " * 3000 + "z\n"}
    assert fast_path(data)
    assert bead.dump(data) == bead._dump_ruamel(data)


def test_known_keys_are_plain() -> None:
    for key in bead._KNOWN_KEYS:
        assert bead._quote(key) == key


def test_load_rejects_nothing_dump_wrote() -> None:
    b = bead.normalize(realistic_beads()[0])
    assert bead.load(bead.dump(b), "x.yaml") == b


@pytest.mark.parametrize("shape", ["lists", "mappings", "mixed"])
def test_the_deepest_valid_bead_passes_the_nesting_limit(shape: str) -> None:
    """The pre-parse nesting limit (issue 12) must never refuse a bead normalize accepts: an
    unmodelled key nested MAX_EXTRA_DEPTH deep, plus bracket-heavy text, loads back."""
    value: Any = "leaf"
    for level in range(bead.MAX_EXTRA_DEPTH - 1):
        as_list = shape == "lists" or (shape == "mixed" and level % 2)
        value = [value] if as_list else {"k": value}
    text = "[[[{{{ code ]]]}}} " * 200 + "\n  - - - ? : indented\n" * 50
    raw = {**realistic_beads()[0], "deep": value, "description": text, "notes": "&anchor *x"}
    b = bead.normalize(raw)
    data = bead.dump(b)
    assert bead._nesting_bound(data) > bead.MAX_NESTING  # the token scan decides, not the bound
    assert bead.load(data, "x.yaml") == b


# --- byte identity with the ruamel path ----------------------------------------------------


def realistic_beads() -> list[dict[str, Any]]:
    dep = {"issue_id": "gc-4f2", "depends_on_id": "gc-8kq", "type": "blocks", "created_at": T}
    return [
        {
            "id": "gc-4f2",
            "title": "Fix the login test",
            "description": "The login test fails one run in ten.\nSee the CI log of build 812.\n",
            "status": "in_progress",
            "priority": 1,
            "assignee": "furiosa",
            "created_at": T,
            "created_by": "mayor",
            "updated_at": "2026-11-21T14:05:31Z",
            "started_at": "2026-11-21T14:05:31Z",
            "labels": ["tests"],
            "metadata": {"branch": "polecat/furiosa/gc-4f2@m3k9x"},
            "dependencies": [dep | {"created_by": "mayor"}],
        },
        {
            "id": "gc-4f2",
            "title": "Refactor: split the store (phase 2/3)",
            "description": "## Why\n\n- the store is 2,000 lines\n- `tx` does too much\n\n```py\n"
            "def f():\n    return 1\n```\n\n",
            "design": "  indented first line\nthen flush",
            "acceptance_criteria": "- [ ] tests pass\n- [ ] docs updated",
            "notes": "see gc-8kq; it's related",
            "status": "closed",
            "priority": 0,
            "issue_type": "feature",
            "owner": "mayor@example.com",
            "created_at": T,
            "updated_at": T,
            "closed_at": T,
            "close_reason": "Done: merged in #812",
            "labels": ["refactor", "phase-2", "p0", "área"],
            "metadata": {"bd:rig": "gastown", "_seq": "17", "review": "ok, ship it"},
            "dependencies": [
                dep,
                dep | {"depends_on_id": "gc-9", "type": "parent-child", "metadata": "{}"},
            ],
            "agent_state": "idle",
            "comment_count": 3,
            "parent": "gc-1",
            "pinned": True,
        },
        {
            "id": "gc-g4t.1",
            "title": "Wait for CI on PR 42",
            "issue_type": "gate",
            "created_at": T,
            "updated_at": T,
            "ephemeral": True,
            "await_type": "gh:pr",
            "await_id": "owner/repo#42",
            "timeout": 7_200_000_000_000,
            "waiters": ["mayor", "gc-polecat/furiosa"],
        },
        {
            "id": "wisp-x9z",
            "title": "Überprüfung — naïve café → 日本語",
            "description": "Ünïcödé text\nwith a second line\n\n\n",
            "created_at": T,
            "updated_at": T,
        },
    ]


@pytest.mark.parametrize("raw", realistic_beads(), ids=lambda r: r["title"][:20])
def test_realistic_beads_are_byte_identical(raw: dict[str, Any]) -> None:
    b = bead.normalize(raw)
    assert fast_path(b)
    assert bead.dump(b) == bead._dump_ruamel(b)


@pytest.mark.parametrize(
    "when",
    [
        T, "2026-06-14T05:24:01.125980081Z", "2026-06-14T05:24:01.1Z", "0001-01-01T00:00:00Z",
        "2026-06-14T05:24:01+02:00", "2026-06-14 05:24:01Z", "2026-06-14T05:24:01Z'",
        "2026-06-14T05:24:01.Z", "2026-6-14T05:24:01Z", "yesterday", "1:20",
    ],
)  # fmt: skip
def test_times_in_time_keys_are_written_as_ruamel_writes_them(when: str) -> None:
    """The emitter writes a time in `normalize`'s stored form straight into its quotes, outside
    the scalar cache: the text any other one-line string gets (`_quote`), ruamel's for the
    stored form, and every near miss takes the general path; all load back."""
    data = {"id": "gc-1", **dict.fromkeys(bead.TIME_KEYS, when), "created_by": when}
    quoted = bead._quote(when)
    expected = "id: gc-1\n" + "".join(f"{key}: {quoted}\n" for key in list(data)[1:])
    assert bead.dump(data) == expected.encode()
    if when.endswith("Z") and when[:4].isdigit() and "'" not in when:
        assert bead.dump(data) == bead._dump_ruamel(data)
    assert_round_trip(data)


def test_bd_export_is_byte_identical_or_falls_back(capsys: pytest.CaptureFixture[str]) -> None:
    if not BD_EXPORT.exists():
        pytest.skip(f"{BD_EXPORT} not present")
    counts = {"records": 0, "rejected": 0, "identical": 0, "different": 0, "fallback": 0}
    for line in BD_EXPORT.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        counts["records"] += 1
        try:
            b = bead.normalize(json.loads(line))
        except InvalidBead:
            counts["rejected"] += 1
            continue
        assert_round_trip(b)
        if not fast_path(b):
            counts["fallback"] += 1
        elif bead.dump(b) == bead._dump_ruamel(b):
            counts["identical"] += 1
        else:
            counts["different"] += 1
    with capsys.disabled():
        print(f"\nbd export: {counts}")
    assert counts["identical"] > 0
    assert counts["different"] == 0
