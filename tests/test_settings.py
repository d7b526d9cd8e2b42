"""Settings from flags, WATCHER_* variables, a TOML file and defaults: precedence and mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    """`watcher config` with `settings[layer] = {flag name: value}`; its stdout."""
    argv = ["config"]
    for name, value in settings.get("flag", {}).items():
        argv += [f"--{name}", value]
    for name, value in settings.get("variable", {}).items():
        env.setenv(f"WATCHER_{name.upper().replace('-', '_')}", value)
    if file_settings := settings.get("file"):
        path = tmp_path / "w.toml"
        path.write_text("[run]\n" + "".join(f'{k} = "{v}"\n' for k, v in file_settings.items()))
        argv += ["--config", str(path)]
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize(("high", "low"), PAIRS)
def test_every_layer_beats_the_ones_below_it(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    high: str,
    low: str,
) -> None:
    """For each pair of layers, the higher one's value of a setting is the effective one."""
    values = {"flag": "4.0", "variable": "5.0", "file": "6.0", "default": "10.0"}
    settings = {layer: {"rate": values[layer]} for layer in (high, low) if layer != "default"}
    settings.setdefault("flag", {})["endpoint"] = URL
    out = _config(env, tmp_path, capsys, settings)
    assert f"rate = {values[high]}  #" in out


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
