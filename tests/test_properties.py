"""Generated mistakes at every command: no traceback, a documented exit code, no stray files.

Each example runs one command in-process (`main(argv)`) in a fresh temporary folder, with
generated flags, `WATCHER_*` variables, a TOML file, input lines or manifest lines. Whatever comes,
the command must return a code from `watcher._exits.CODES` (or argparse's 2), never raise, never
print a traceback or an "internal error" (the safety net for bugs), and write nothing outside
`--out` (and `-o` / `--rest`, which name outputs there). `make test` runs a few examples each;
`HYPOTHESIS_PROFILE=soak` (`make soak`) many more.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from watcher._auth import AkSk
from watcher._exits import CODES
from watcher._inputs import Job
from watcher.cli import build_parsers, main
from watcher.sim import SimConfig, SimThread

settings.register_profile(
    "default",
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "soak",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Bounded whatever else is given: these come last on the command line, so they win. Every job
# is final at its first poll (the simulator knows it finished, or does not know it), so a
# generated --cadence is harmless with single GETs and no retries.
FAST = ["--poll", "single", "--rate", "5000", "--max-retries", "0", "--request-timeout", "2"]
FAST += ["--grace", "1", "--quiet", "--log-level", "error"]

NUMBERS = st.sampled_from(
    ["0", "-1", "1", "3", "0.5", "nan", "inf", "-inf", "1e309", "99999999999999999999", "", "x"]
)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
VALUES = st.one_of(NUMBERS, TEXT, st.sampled_from(["auto", "list", "single", "audio,srt", "true"]))
RUN_FLAGS = [
    "--poll", "--cadence", "--rate", "--download-workers", "--files", "--name", "--shard",
    "--job-timeout", "--max-retries", "--max-file-bytes", "--grace", "--progress-interval",
    "--log-level", "--log-format", "--project-id", "--request-timeout", "--bogus",
]  # fmt: skip
SWITCHES = ["--retry-failed", "--insecure", "--quiet"]
SETTING_NAMES = [
    "RATE", "CADENCE", "POLL", "OUT", "OUTT", "INSECURE", "NAME", "SHARD", "REGION",
    "ENDPOINT", "MAX_RETRIES", "DOWNLOAD_WORKERS", "FILES", "JOB_TIMEOUT",
]  # fmt: skip
TOML_KEYS = ["rate", "cadence", "poll", "download-workers", "name", "rtae", "region", "insecure"]


def _flat(lists: list[list[str]]) -> list[str]:
    return [word for words in lists for word in words]


# Values each flag takes, so that examples also get past the parser and run for real.
USABLE = {
    "--poll": ["auto", "single", "list"],
    "--cadence": ["0.01", "1"],
    "--rate": ["100"],
    "--download-workers": ["1", "4"],
    "--files": ["audio", "audio,srt"],
    "--name": ["{job_id}", "x-{job_id}", "../{job_id}", "/tmp/{job_id}", "{meta}"],
    "--shard": ["0/2", "1/2", "2/2"],
    "--job-timeout": ["5"],
    "--max-retries": ["0", "1"],
    "--max-file-bytes": ["10", "100000000"],
    "--grace": ["1"],
    "--progress-interval": ["0.1"],
    "--log-format": ["json", "console"],
    "--project-id": [TEST_PROJECT_ID],
    "--voice-asset-id": ["v1"],
    "--audio-format": ["WAV", "MP3"],
}


def _pair(flag: str) -> st.SearchStrategy[list[str]]:
    value = st.one_of(st.sampled_from(USABLE.get(flag, ["1"])), VALUES)
    return st.tuples(st.just(flag), value).map(list)


def _flags(names: list[str]) -> st.SearchStrategy[list[str]]:
    pair = st.sampled_from(names).flatmap(_pair)
    switch = st.sampled_from(SWITCHES).map(lambda s: [s])
    return st.lists(st.one_of(pair, switch), max_size=4).map(_flat)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return repr(value)


TOML_VALUES = st.one_of(st.integers(-5, 10**20), st.floats(allow_nan=True), st.booleans(), TEXT)
TOML_FILES = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["[run]\n", "", "[runn]\n", "[run.x]\n"]),
        st.dictionaries(st.sampled_from(TOML_KEYS), TOML_VALUES, max_size=3),
    ).map(lambda t: t[0] + "".join(f"{k} = {_toml_value(v)}\n" for k, v in t[1].items())),
    TEXT,
)
ENVIRONMENTS = st.dictionaries(
    st.sampled_from(SETTING_NAMES).map(lambda n: f"WATCHER_{n}"), VALUES, max_size=3
)
JOB_LINES = st.lists(
    st.one_of(
        st.sampled_from(["job-1", "job-2", "# c", "", "\ufeffjob-3", "../x", "job 4"]),
        st.builds(
            lambda v, m: orjson.dumps({"job_id": v, "meta": m}).decode(),
            st.one_of(st.sampled_from(["job-1", "job-9"]), st.integers(-9, 9), st.none()),
            st.one_of(st.integers(-(2**63), 2**63 - 1), TEXT),
        ),
        TEXT,
    ),
    max_size=5,
)
MANIFEST_LINES = st.lists(
    st.one_of(
        st.builds(
            lambda j, s, f: orjson.dumps({"job_id": j, "status": s, "files": f}).decode(),
            st.one_of(st.sampled_from(["a", "b"]), st.none(), st.integers(-9, 9)),
            st.one_of(
                st.sampled_from(["SUCCEED", "FAILED", "INVALID", "ERROR"]), st.integers(0, 9)
            ),
            st.one_of(st.just({}), st.just({"audio": {"bytes": "x"}}), st.integers(0, 9)),
        ),
        TEXT,
    ),
    max_size=5,
)


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """One simulator for every example: jobs job-1 and job-2 succeed at once, others are unknown."""
    config = SimConfig(
        project_id=TEST_PROJECT_ID,
        credentials=AkSk(TEST_AK, TEST_SK),
        time_scale=0,
        fail_percent=0,
    )
    with SimThread(config, preload=[Job("job-1"), Job("job-2"), Job("job-3")]) as running:
        yield running.url


class Place:
    """A temporary folder as the working directory, HOME, and the only place to write to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        self.out = self.root / "out"
        self.out.mkdir()  # where `-o` and `--rest` may write too
        self._patch = monkeypatch
        for name in [n for n in os.environ if n.startswith("WATCHER_")]:
            monkeypatch.delenv(name)
        monkeypatch.chdir(self.root)
        monkeypatch.setenv("HOME", str(self.root / "home"))
        monkeypatch.setenv("HUAWEICLOUD_SDK_AK", TEST_AK)
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", TEST_SK)
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", TEST_PROJECT_ID)
        for name, value in env.items():
            if "\x00" not in value:
                monkeypatch.setenv(name, value)
        self.stdin(b"")

    def write(self, name: str, text: str | None) -> str | None:
        """A file of ours (an input, a TOML file), allowed to exist."""
        if text is None:
            return None
        (self.root / name).write_text(text)
        return name

    def stdin(self, data: bytes) -> None:
        self._patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    def strays(self, ours: set[str]) -> list[str]:
        """Files written outside `out/`, other than ours."""
        found = []
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if path.is_dir() or rel.parts[0] == "out" or str(rel) in ours:
                continue
            found.append(str(rel))
        return found

    def close(self) -> None:
        self._patch.chdir(Path(__file__).parent)
        self._tmp.cleanup()


def _check(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    files: dict[str, str | None],
    stdin: bytes = b"",
) -> None:
    """Run `watcher ARGV` (names in argv that are keys of `files` become those files) and check
    the properties."""
    with monkeypatch.context() as patch:
        place = Place(patch, env)
        try:
            ours = {name for name, text in files.items() if place.write(name, text) is not None}
            argv = [a for a in argv if a not in files or a in ours]
            place.stdin(stdin)
            capsys.readouterr()
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: usage errors are 2, --help 0
                code = exc.code if isinstance(exc.code, int) else 2
            captured = capsys.readouterr()
            event(f"{argv[0]} exit {code}")  # --hypothesis-show-statistics: how far they got
            assert code in CODES, (argv, code, captured.err)
            assert "Traceback" not in captured.err, captured.err
            assert "internal error" not in captured.err, captured.err  # a bug, however caught
            assert place.strays(ours) == [], argv
        finally:
            place.close()


@given(
    flags=_flags(RUN_FLAGS),
    env=ENVIRONMENTS,
    toml=TOML_FILES,
    lines=JOB_LINES,
    from_stdin=st.booleans(),
    previous=MANIFEST_LINES,
)
def test_run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sim_url: str,
    flags: list[str],
    env: dict[str, str],
    toml: str | None,
    lines: list[str],
    from_stdin: bool,
    previous: list[str],
) -> None:
    """`watcher run` against the simulator with generated flags, settings, input lines and the
    lines of an earlier manifest to resume from."""
    data = "".join(line + "\n" for line in lines)
    config = ["--config", "w.toml"] if toml is not None else []
    inputs = [] if from_stdin else ["ids.txt"]
    argv = ["run", *inputs, *flags, *config, "--endpoint", sim_url, "--out", "out", *FAST]
    files = {
        "ids.txt": data,
        "w.toml": toml,
        "out/manifest.jsonl": "".join(f"{x}\n" for x in previous),
    }
    _check(monkeypatch, capsys, argv, env, files, data.encode() if from_stdin else b"")


@given(flags=_flags([*RUN_FLAGS, "--endpoint", "--region"]), env=ENVIRONMENTS, toml=TOML_FILES)
def test_config(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    env: dict[str, str],
    toml: str | None,
) -> None:
    """`watcher config` with generated flags, variables and TOML files."""
    config = ["--config", "w.toml"] if toml is not None else []
    _check(monkeypatch, capsys, ["config", *flags, *config], env, {"w.toml": toml})


@given(
    lines=MANIFEST_LINES,
    command=st.sampled_from(["report", "merge"]),
    flags=st.lists(
        st.sampled_from([["--format", "json"], ["--format", "x"], ["-o", "out/m.jsonl"], ["x"]]),
        max_size=3,
    ).map(_flat),
)
def test_report_and_merge(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    command: str,
    flags: list[str],
) -> None:
    """`watcher report` and `watcher merge` on generated manifest lines."""
    data = "".join(line + "\n" for line in lines)
    argv = [command, "m.jsonl", *flags]
    _check(monkeypatch, capsys, argv, {}, {"m.jsonl": data})


@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda t: orjson.dumps({"text": t}).decode(), TEXT),
            st.sampled_from(['{"text": "hi", "job_id": "x"}', "{", "[1]", '{"text": 5}']),
            TEXT,
        ),
        max_size=4,
    ),
    flags=_flags(["--rate", "--voice-asset-id", "--audio-format", "--bogus"]),
    rest=st.booleans(),
)
def test_submit(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    flags: list[str],
    rest: bool,
) -> None:
    """`watcher submit` against a dead endpoint with generated lines and flags."""
    data = "".join(line + "\n" for line in lines)
    extra = ["--rest", "out/rest.jsonl"] if rest else []
    argv = ["submit", "t.jsonl", *flags, *extra, "--endpoint", "http://127.0.0.1:9"]
    _check(monkeypatch, capsys, argv, {}, {"t.jsonl": data})


@given(port=st.one_of(NUMBERS, st.integers().map(str)), flags=_flags(["--slots", "--time-scale"]))
def test_sim_refuses_bad_ports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], port: str, flags: list[str]
) -> None:
    """`watcher sim --port P` with a bad port (or flag) is a usage error, never a traceback."""
    argv = ["sim", "--port", port, *flags]
    try:
        build_parsers()[1]["sim"].parse_args(argv[1:])
    except SystemExit:
        pass
    else:
        assume(False)  # a usable command line would start a server that runs until a signal
    capsys.readouterr()
    _check(monkeypatch, capsys, argv, {}, {})
