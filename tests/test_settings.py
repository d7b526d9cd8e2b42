"""Settings from flags, WATCHER_* variables, a TOML file and defaults: precedence and mistakes."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pytest

from watcher._commands.run import add_arguments
from watcher._settings import EXCLUSIVE, Options
from watcher.cli import main

URL = "http://127.0.0.1:9"
EAST = "https://metastudio.cn-east-3.myhuaweicloud.com"
NORTH = "https://metastudio.cn-north-4.myhuaweicloud.com"


LAYERS = ("flag", "variable", "file", "default")
PAIRS = [(a, b) for i, a in enumerate(LAYERS) for b in LAYERS[i + 1 :]]


def _config(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, dict[str, str]],
) -> str:
    """`watcher config` with `settings[layer] = {flag name: value}`; its stdout. A switch given
    as a flag is the flag alone (its value is true)."""
    argv = ["config"]
    for name, value in settings.get("flag", {}).items():
        argv += [f"--{name}"] if name in SWITCHES else [f"--{name}", value]
    for name, value in settings.get("variable", {}).items():
        env.setenv(f"WATCHER_{name.upper().replace('-', '_')}", value)
    if file_settings := settings.get("file"):
        path = tmp_path / "w.toml"
        path.write_text("[run]\n" + "".join(f'{k} = "{v}"\n' for k, v in file_settings.items()))
        argv += ["--config", str(path)]
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


# Every setting of `watcher run`: a value for the higher layer, as typed and as `watcher config`
# prints it, and another for the lower layer. A switch can only be turned on by its flag, so its
# higher value is true.
SWITCHES = {"retry-failed", "verify", "insecure", "quiet"}
VALUES: dict[str, tuple[str, str, str]] = {
    "out": ("o-a", '"o-a"', "o-b"),
    "manifest": ("m-a.jsonl", '"m-a.jsonl"', "m-b.jsonl"),
    "endpoint": (URL, f'"{URL}"', "http://127.0.0.1:8"),
    "region": ("cn-east-3", '"cn-east-3"', "cn-north-4"),
    "project-id": ("proj-a", '"proj-a"', "proj-b"),
    "auth-token-file": ("TOKEN_A", '"TOKEN_A"', "TOKEN_B"),
    "request-timeout": ("7", "7.0", "8"),
    "poll": ("single", '"single"', "list"),
    "cadence": ("4", "4.0", "5"),
    "rate": ("4", "4.0", "5"),
    "download-workers": ("3", "3", "4"),
    "files": ("audio", '"audio"', "srt"),
    "name": ("{job_id}-a", '"{job_id}-a"', "{job_id}-b"),
    "shard": ("1/3", '"1/3"', "2/3"),
    "job-timeout": ("100", "100.0", "200"),
    "max-retries": ("2", "2", "3"),
    "retry-failed": ("true", "true", "false"),
    "verify": ("true", "true", "false"),
    "max-file-bytes": ("1000", "1000", "2000"),
    "speed-limit": ("10", "10.0", "20"),
    "speed-time": ("5", "5.0", "6"),
    "outage-timeout": ("100", "100.0", "200"),
    "max-pause": ("10", "10.0", "20"),
    "max-gap": ("30", "30.0", "40"),
    "insecure": ("true", "true", "false"),
    "grace": ("3", "3.0", "4"),
    "quiet": ("true", "true", "false"),
    "progress-interval": ("2", "2.0", "3"),
    "log-level": ("debug", '"debug"', "warning"),
    "log-format": ("json", '"json"', "console"),
    "pushgateway": ("http://127.0.0.1:9091", '"http://127.0.0.1:9091"', "http://127.0.0.1:9092"),
    "push-interval": ("5", "5.0", "6"),
    "metrics-port": ("9100", "9100", "9101"),
    "metrics-host": ("127.0.0.1", '"127.0.0.1"', "127.0.0.2"),
    "metrics-textfile": ("t-a.prom", '"t-a.prom"', "t-b.prom"),
    "metrics-batch": ("b-a", '"b-a"', "b-b"),
}


def test_the_table_has_every_setting() -> None:
    """VALUES names every setting of `watcher run` (and SWITCHES its switches): a new flag is
    tested across the layers below, or this fails."""
    options = Options(add_arguments)
    assert list(VALUES) == [Options.flag(d)[2:] for d in options.dests]
    assert {Options.flag(d)[2:] for d in options.switches} == SWITCHES


@pytest.mark.parametrize(("high", "low"), PAIRS)
@pytest.mark.parametrize("name", list(VALUES))
def test_every_layer_beats_the_ones_below_it(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    high: str,
    low: str,
) -> None:
    """For every setting and each pair of layers, the higher one's value is the effective one,
    and `watcher config` names that layer as its origin."""
    value, shown, other = VALUES[name]
    if name == "auth-token-file":  # a token file must exist and hold a token
        for token in ("TOKEN_A", "TOKEN_B"):
            (tmp_path / token).write_text(f"token-{token}\n")
        value, shown, other = str(tmp_path / value), f'"{tmp_path / value}"', str(tmp_path / other)
    settings = {high: {name: value}}
    if low != "default":
        settings[low] = {name: other}
    out = _config(env, tmp_path, capsys, settings)
    origin = {
        "flag": "flag",
        "variable": f"WATCHER_{name.upper().replace('-', '_')}",
        "file": str(tmp_path / "w.toml"),
    }[high]
    assert f"\n{name} = {shown}  # {origin}\n" in out


@pytest.mark.parametrize(("high", "low"), [p for p in PAIRS if p[1] != "default"])
@pytest.mark.parametrize("winner", ["endpoint", "region"])
def test_endpoint_and_region_are_resolved_across_layers(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    high: str,
    low: str,
    winner: str,
) -> None:
    """`WATCHER_ENDPOINT=x watcher run --region cn-east-3` talks to cn-east-3: whichever of the
    pair the higher layer sets wins, in both directions and for every pair of layers."""
    loser = "region" if winner == "endpoint" else "endpoint"
    given = {"endpoint": URL, "region": "cn-east-3"}
    settings = {high: {winner: given[winner]}, low: {loser: given[loser]}}
    out = _config(env, tmp_path, capsys, settings)
    expected = URL if winner == "endpoint" else EAST
    assert f"# endpoint: {expected}," in out


def test_an_endpoint_from_any_layer_beats_the_default_region(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the default of --region is left: an endpoint from the file is used."""
    out = _config(env, tmp_path, capsys, {"file": {"endpoint": URL}})
    assert f"# endpoint: {URL}," in out
    assert NORTH not in out


def test_both_of_a_pair_in_one_layer_is_refused(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """WATCHER_ENDPOINT and WATCHER_REGION together: exit 2 naming both."""
    env.setenv("WATCHER_ENDPOINT", URL)
    env.setenv("WATCHER_REGION", "cn-east-3")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "WATCHER_ENDPOINT and WATCHER_REGION" in err


def test_an_unknown_variable_is_a_warning_with_a_suggestion(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """WATCHER_OUTT is named (did you mean WATCHER_OUT?) and the run goes on."""
    env.setenv("WATCHER_OUTT", "x")
    assert main(["config", "--endpoint", URL]) == 0
    err = capsys.readouterr().err
    assert "WATCHER_OUTT is not a setting" in err and "WATCHER_OUT?" in err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[runn]\nrate = 3\n", "unknown table [runn]"),
        ("[run]\nrate = 3\n[run.x]\na = 1\n", "[run.x]"),
        ("rate = 3\n[run]\ncadence = 4\n", "'rate' outside [run]"),
        ("[run]\nrtae = 3\n", "unknown setting 'rtae'; did you mean 'rate'?"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_mistakes_in_the_file_are_refused_by_name(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    says: str,
) -> None:
    """A misspelt table, a stray key or bad TOML: exit 2 with the file and what is wrong."""
    path = tmp_path / "w.toml"
    path.write_text(text)
    assert main(["config", "--config", str(path), "--endpoint", URL]) == 2
    err = capsys.readouterr().err
    assert says in err and str(path) in err


def test_the_config_variable_is_named_as_itself(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WATCHER_CONFIG=/nonexistent.toml is reported as WATCHER_CONFIG, not --config; a folder
    is called a folder."""
    env.setenv("WATCHER_CONFIG", "/nonexistent.toml")
    assert main(["config", "--endpoint", URL]) == 2
    err = capsys.readouterr().err
    assert "WATCHER_CONFIG=/nonexistent.toml" in err and "--config" not in err
    env.setenv("WATCHER_CONFIG", str(tmp_path))
    assert main(["config", "--endpoint", URL]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_the_exclusive_pairs_are_exactly_the_flags_argparse_refuses_together() -> None:
    """`_settings.EXCLUSIVE` (resolved across layers) holds every pair of `watcher run` flags
    that cannot be given together, found by giving each pair to the parser, and nothing else."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arguments(parser)
    words = {
        name.replace("-", "_"): [f"--{name}"] if name in SWITCHES else [f"--{name}={value}"]
        for name, (value, _, _) in VALUES.items()
    }
    refused = set()
    for a, b in itertools.combinations(words, 2):
        try:
            parser.parse_known_args(words[a] + words[b])
        except argparse.ArgumentError:
            refused.add(frozenset({a, b}))
    assert refused == {frozenset(pair) for pair in EXCLUSIVE}
