"""Where credentials are found, and in which order."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher._auth import AkSk, Token
from watcher._credentials import TokenFile, discover
from watcher._errors import ConfigError


def _ini(home: Path, text: str) -> None:
    (home / ".huaweicloud").mkdir()
    (home / ".huaweicloud" / "credentials").write_text(text)


def test_sdk_names_win_over_doc_names(tmp_path: Path) -> None:
    """HUAWEICLOUD_SDK_* is used before CLOUD_SDK_*, with the project id and security token."""
    env = {
        "HUAWEICLOUD_SDK_AK": "a1",
        "HUAWEICLOUD_SDK_SK": "s1",
        "CLOUD_SDK_AK": "a2",
        "CLOUD_SDK_SK": "s2",
        "HUAWEICLOUD_SDK_PROJECT_ID": "p",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "t",
    }
    found = discover(env, tmp_path)
    assert found is not None
    assert found.credentials == AkSk("a1", "s1", "t")
    assert found.project_id == "p"


def test_doc_names_are_accepted(tmp_path: Path) -> None:
    """CLOUD_SDK_AK/SK, the names in the API docs' examples, work on their own."""
    found = discover({"CLOUD_SDK_AK": "a", "CLOUD_SDK_SK": "s"}, tmp_path)
    assert found is not None and found.credentials == AkSk("a", "s")
    assert found.project_id is None


def test_token_before_keys(tmp_path: Path) -> None:
    """An IAM token (file first, then environment) is preferred to an AK/SK pair."""
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    env = {"METASTUDIO_AUTH_TOKEN": "env-token", "CLOUD_SDK_AK": "a", "CLOUD_SDK_SK": "s"}
    assert discover(env, tmp_path, token_file) is not None
    assert discover(env, tmp_path, token_file).credentials == Token("file-token", token_file)  # type: ignore[union-attr]
    assert discover(env, tmp_path).credentials == Token("env-token")  # type: ignore[union-attr]


def test_credentials_file_basic_section(tmp_path: Path) -> None:
    """~/.huaweicloud/credentials [basic] supplies keys and the project id."""
    _ini(tmp_path, "[basic]\nak = fa\nsk = fs\nproject_id = fp\n")
    found = discover({}, tmp_path)
    assert found is not None
    assert (found.credentials, found.project_id) == (AkSk("fa", "fs"), "fp")


def test_half_a_pair_is_an_error_that_names_the_missing_half(tmp_path: Path) -> None:
    """An AK without its SK is a ConfigError naming the missing variable, never printing the AK."""
    with pytest.raises(ConfigError, match="HUAWEICLOUD_SDK_SK is not set"):
        discover({"HUAWEICLOUD_SDK_AK": "secretish"}, tmp_path)


def test_nothing_found(tmp_path: Path) -> None:
    """No variables and no file: None, for the caller to explain."""
    assert discover({}, tmp_path) is None


def test_missing_token_file_is_named(tmp_path: Path) -> None:
    """An unreadable --auth-token-file is a ConfigError naming the flag."""
    with pytest.raises(ConfigError, match="--auth-token-file"):
        discover({}, tmp_path, tmp_path / "nope")


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """TokenFile.reload picks up a rewritten file, and keeps the last token while it is empty."""
    path = tmp_path / "token"
    path.write_text("first-token\n")
    tokens = TokenFile(path)
    assert tokens.token.token == "first-token" and not tokens.reload()
    path.write_text("")  # a writer truncated it and has not written yet
    assert not tokens.reload() and tokens.token.token == "first-token"
    path.write_text("second-token-longer\n")
    assert tokens.reload() and tokens.token.token == "second-token-longer"
    assert tokens.token.path == path
