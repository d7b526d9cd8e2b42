"""`watcher sim`: credentials, preload, the URL on stdout, and a clean stop on a signal."""

from __future__ import annotations

import argparse
import http.client
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK, ApiSigner

from watcher._auth import AkSk, Token
from watcher._commands.sim import add_arguments
from watcher._errors import ConfigError
from watcher.sim.cli import read_preload, resolve_credentials
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK

REPO = Path(__file__).resolve().parents[1]
CREDENTIAL_VARS = ("HUAWEICLOUD_SDK", "CLOUD_SDK", "METASTUDIO_AUTH_TOKEN")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without any credentials, HOME in `home`, and the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIAL_VARS)}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), **extra)
    return env


def test_flags_override_the_environment(tmp_path: Path) -> None:
    """--ak/--sk/--project-id win over HUAWEICLOUD_SDK_* and the SK is never echoed."""
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "envsk"}
    args = parse("--ak", "FLAGAK", "--sk", "flagsk", "--project-id", "p1")
    creds, project, notes = resolve_credentials(args, env, tmp_path)
    assert creds == AkSk("FLAGAK", "flagsk")
    assert project == "p1"
    assert "flagsk" not in "\n".join(notes)


def test_environment_credentials_are_used_and_not_printed(tmp_path: Path) -> None:
    """Credentials from the environment are accepted; the notes name the AK, never the SK."""
    env = {
        "HUAWEICLOUD_SDK_AK": "ENVAK",
        "HUAWEICLOUD_SDK_SK": "env-secret",
        "HUAWEICLOUD_SDK_PROJECT_ID": "proj",
    }
    creds, project, notes = resolve_credentials(parse(), env, tmp_path)
    assert creds == AkSk("ENVAK", "env-secret")
    assert project == "proj"
    text = "\n".join(notes)
    assert "ENVAK" in text
    assert "env-secret" not in text


def test_token_from_environment_is_not_printed(tmp_path: Path) -> None:
    """An IAM token is accepted without echoing it; a missing project id gets the demo one."""
    creds, project, notes = resolve_credentials(
        parse(), {"METASTUDIO_AUTH_TOKEN": "tok-secret"}, tmp_path
    )
    assert creds == Token("tok-secret")
    assert project == DEMO_PROJECT_ID
    assert "tok-secret" not in "\n".join(notes)


def test_no_credentials_means_demo_ones_printed_for_export(tmp_path: Path) -> None:
    """Without credentials the demo ones are accepted and printed as an export line."""
    creds, project, notes = resolve_credentials(parse(), {}, tmp_path)
    assert creds == AkSk(DEMO_AK, DEMO_SK)
    assert project == DEMO_PROJECT_ID
    expected = (
        f"export HUAWEICLOUD_SDK_AK={DEMO_AK} HUAWEICLOUD_SDK_SK={DEMO_SK}"
        f" HUAWEICLOUD_SDK_PROJECT_ID={DEMO_PROJECT_ID}"
    )
    assert expected in notes


def test_half_set_flags_are_a_config_error(tmp_path: Path) -> None:
    """--ak without --sk is a ConfigError."""
    with pytest.raises(ConfigError, match="--sk"):
        resolve_credentials(parse("--ak", "A"), {}, tmp_path)


def test_preload_reports_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    """Bad preload lines are reported with their line number; good ones are kept."""
    path = tmp_path / "jobs.jsonl"
    path.write_text('first-job\n{"job_id": 5}\n# comment\n{"job_id": "second", "text": "hi"}\n')
    err = tmp_path / "err.txt"
    with err.open("w") as stream:
        jobs = read_preload(str(path), stream)
    assert [j.job_id for j in jobs] == ["first-job", "second"]
    assert jobs[1].meta == {"text": "hi"}
    assert f"{path}:2:" in err.read_text()


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of `proc`, waiting at most `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return proc.stdout.readline().strip()


def _list_jobs(url: str, signer: ApiSigner) -> tuple[int, dict[str, object]]:
    """One signed ShowTtsJob call with the stdlib client."""
    full = f"{url}/v1/{signer.project_id}/ttsc/tts-jobs"
    parts = urlsplit(full)
    conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", parts.path, headers=signer.headers("GET", full))
        response = conn.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        conn.close()


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-m", "watcher.sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


def test_cli_serves_env_credentials_and_stops_on_sigint(tmp_path: Path) -> None:
    """URL first on stdout, preloaded ids listed, bad line reported, SIGINT exits 0, no SK shown."""
    preload = tmp_path / "ids.txt"
    preload.write_text("demo-1\n{not json\ndemo-2\n")
    env = clean_env(
        tmp_path,
        HUAWEICLOUD_SDK_AK=TEST_AK,
        HUAWEICLOUD_SDK_SK=TEST_SK,
        HUAWEICLOUD_SDK_PROJECT_ID=TEST_PROJECT_ID,
    )
    proc = _start(["--time-scale", "0", "--preload", str(preload)], env)
    try:
        url = _first_line(proc, timeout=20)
        assert url.startswith("http://127.0.0.1:")
        status, body = _list_jobs(url, ApiSigner())
        assert status == 200
        assert body["count"] == 2
    finally:
        code, err = _stop(proc, signal.SIGINT)
    assert code == 0
    assert f"{preload}:2:" in err
    assert TEST_AK in err
    assert TEST_SK not in err


def test_cli_demo_credentials_and_sigterm(tmp_path: Path) -> None:
    """With no credentials it prints the demo export line, accepts them, and SIGTERM exits 0."""
    proc = _start([], clean_env(tmp_path))
    try:
        url = _first_line(proc, timeout=20)
        status, _ = _list_jobs(url, ApiSigner(DEMO_AK, DEMO_SK, DEMO_PROJECT_ID))
        assert status == 200
    finally:
        code, err = _stop(proc, signal.SIGTERM)
    assert code == 0
    assert f"export HUAWEICLOUD_SDK_AK={DEMO_AK} HUAWEICLOUD_SDK_SK={DEMO_SK}" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--fault", "bogus=1"], "watcher sim: error: "),
        (["--preload", "/nonexistent/ids.txt"], "watcher sim: error: --preload /nonexistent"),
    ],
)
def test_python_m_watcher_sim_reports_errors_as_watcher_sim(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    """`python -m watcher.sim` is `watcher sim` through the one error mapper: exit 2, one line
    that starts `watcher sim:`, no traceback."""
    from watcher.sim.__main__ import main as sim_main

    monkeypatch.setenv("HOME", str(tmp_path))
    assert sim_main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_port_in_use_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watcher sim --port N` where N is taken: exit 2 naming the address, from `watcher.cli`."""
    import socket

    from watcher.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["sim", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"watcher: error: cannot listen on 127.0.0.1:{port}" in err
