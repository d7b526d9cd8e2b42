"""Where credentials come from: the names users already have set, in a fixed order.

1. An IAM token: `--auth-token-file`, else `METASTUDIO_AUTH_TOKEN`.
2. AK/SK: `HUAWEICLOUD_SDK_AK`/`_SK` (the official SDK's names), else `CLOUD_SDK_AK`/`_SK` (the API
   docs' examples), with `HUAWEICLOUD_SDK_SECURITY_TOKEN` for temporary credentials.
3. The `[basic]` section of `~/.huaweicloud/credentials`: `ak`, `sk`, `project_id`,
   `security_token`.

A token file is read again whenever it changes (`TokenFile`), so a sidecar or cron job that
rewrites it keeps a long run going; a token from the environment cannot change.

The project id comes from the flag, else `HUAWEICLOUD_SDK_PROJECT_ID`, else that INI file.
Both `watcher run` and `watcher sim` read credentials here, so one set of exports serves both.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from watcher._auth import AkSk, Credentials, Token
from watcher._errors import ConfigError

log = structlog.get_logger("watcher.credentials")


@dataclass(frozen=True, slots=True)
class Found:
    """Credentials, the project id if one was found beside them, and where they came from."""

    credentials: Credentials
    project_id: str | None
    source: str


def _pair(env: Mapping[str, str], prefix: str) -> AkSk | None:
    ak, sk = env.get(f"{prefix}_AK", "").strip(), env.get(f"{prefix}_SK", "").strip()
    if not ak and not sk:
        return None
    if not ak or not sk:
        missing = f"{prefix}_SK" if ak else f"{prefix}_AK"
        raise ConfigError(f"{missing} is not set, but its partner is: set both or neither")
    token = env.get("HUAWEICLOUD_SDK_SECURITY_TOKEN", "").strip() or None
    return AkSk(ak, sk, token)


def _ini(path: Path) -> tuple[AkSk | None, str | None]:
    if not path.is_file():
        return None, None
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot be read as an INI file: {exc.__class__.__name__}"
        ) from exc
    if not parser.has_section("basic"):
        return None, None
    section = parser["basic"]
    ak, sk = section.get("ak", "").strip(), section.get("sk", "").strip()
    project_id = section.get("project_id", "").strip() or None
    if not ak or not sk:
        return None, project_id
    return AkSk(ak, sk, section.get("security_token", "").strip() or None), project_id


def read_token(path: Path) -> str:
    """The token in `path`, stripped; ConfigError when it cannot be read or is empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--auth-token-file {path}: {reason}") from exc
    if not token:
        raise ConfigError(f"--auth-token-file {path}: the file is empty")
    return token


class TokenFile:
    """`--auth-token-file` as it is now: `reload()` reads it again when its mtime or size
    changed. A file that is missing, empty or unreadable for a moment (a writer replacing it)
    keeps the last good token."""

    __slots__ = ("_stamp", "path", "token")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self.token = Token(read_token(path), path)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self) -> bool:
        """Read the file again if it changed; True when it now holds a different token."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            token = read_token(self.path)
        except ConfigError:
            return False  # mid-rewrite: keep the last good token and look again next time
        self._stamp = stamp
        if token == self.token.token:
            return False
        self.token = Token(token, self.path)
        log.info("read a new token from --auth-token-file", path=str(self.path))
        return True


def discover(
    env: Mapping[str, str],
    home: Path | None,
    token_file: Path | None = None,
) -> Found | None:
    """The first credentials found in the order above, or None; ConfigError for half-set ones."""
    env_project = env.get("HUAWEICLOUD_SDK_PROJECT_ID", "").strip() or None
    ini_creds, ini_project = _ini(home / ".huaweicloud" / "credentials") if home else (None, None)
    project_id = env_project or ini_project
    if token_file is not None:
        return Found(Token(read_token(token_file), token_file), project_id, "--auth-token-file")
    if token := env.get("METASTUDIO_AUTH_TOKEN", "").strip():
        return Found(Token(token), project_id, "METASTUDIO_AUTH_TOKEN")
    for prefix in ("HUAWEICLOUD_SDK", "CLOUD_SDK"):
        if pair := _pair(env, prefix):
            return Found(pair, project_id, f"{prefix}_AK/{prefix}_SK")
    if ini_creds is not None:
        return Found(ini_creds, project_id, "~/.huaweicloud/credentials [basic]")
    return None
