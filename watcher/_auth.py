"""Authentication for the MetaStudio API: an IAM token header, or SDK-HMAC-SHA256 request signing.

The signing follows the official SDK (`huaweicloudsdkcore.signer.Signer`) byte for byte; both the
client (`_client.py`) and the simulator's verifier (`sim/`) build the canonical request here, so
there is one definition of it. Everything is a pure function; the clock is an argument.

Secrets never appear in a `repr`: credential objects mask them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# What `quote(s, safe="~")` leaves as it is: a string of only these needs no encoding (every
# segment of our paths, every job id), and checking costs far less than quoting.
UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


@dataclass(frozen=True, slots=True)
class AkSk:
    """An access key pair, optionally with the security token of temporary credentials."""

    ak: str
    sk: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be logged."""
        return tuple(s for s in (self.sk, self.security_token) if s)


@dataclass(frozen=True, slots=True)
class Token:
    """A project-scoped IAM token, sent as `X-Auth-Token`; `path`: the file it was read from,
    read again when it changes (a token from the environment has none and cannot rotate)."""

    token: str = field(repr=False)
    path: Path | None = None

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be logged."""
        return (self.token,)


Credentials = AkSk | Token


def _encode(s: str) -> str:
    """Percent-encode everything but `A-Za-z0-9-_.~`, as the SDK's `quote(s, safe='~')`."""
    return s if UNRESERVED.fullmatch(s) else quote(s, safe="~")


def canonical_uri(path: str) -> str:
    """The path, each segment decoded then re-encoded, always ending in `/`."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Decoded query pairs, sorted by key then value, encoded and joined with `&`."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request; `headers` are keyed by lower-case name, `signed_headers` sorted.

    Raises KeyError when a signed header is missing from `headers`.
    """
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    body_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            body_hash,
        )
    )


def signature(sk: str, sdk_date: str, canonical: str) -> str:
    """The lower-case hex HMAC-SHA256 of the string to sign, keyed with the SK."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{digest}"
    return hmac.digest(sk.encode(), string_to_sign.encode(), "sha256").hex()


def format_sdk_date(now: datetime) -> str:
    """`now` as an `X-Sdk-Date` value (UTC, basic ISO 8601)."""
    return _sdk_date(int(now.timestamp()))


@functools.lru_cache(maxsize=4)
def _sdk_date(second: int) -> str:
    # thousands of requests a second share one value: format it once a second, not per request
    return datetime.fromtimestamp(second, UTC).strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """An `X-Sdk-Date` value as an aware UTC datetime; ValueError when malformed."""
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)


def sign(
    credentials: AkSk,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """`headers` plus `X-Sdk-Date`, `X-Security-Token` if any, and `Authorization`.

    Every header given is signed, as the SDK does (names containing `_` are left out, as it does);
    `headers` must already hold `Host` (with the port when it is not the default).
    """
    signed = dict(headers)
    signed["X-Sdk-Date"] = format_sdk_date(now)
    if credentials.security_token:
        signed["X-Security-Token"] = credentials.security_token
    lower = {name.lower(): value for name, value in signed.items() if "_" not in name}
    names = sorted(lower)
    canonical = canonical_request(method, path, query, lower, names, body)
    sig = signature(credentials.sk, signed["X-Sdk-Date"], canonical)
    signed["Authorization"] = (
        f"{ALGORITHM} Access={credentials.ak}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return signed


@dataclass(frozen=True, slots=True)
class Authorization:
    """A parsed `Authorization: SDK-HMAC-SHA256 ...` header."""

    access: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Parse an `Authorization` header value; ValueError names what is wrong."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization field {key!r}")
        fields[key] = val
    try:
        return Authorization(
            access=fields["Access"],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"],
        )
    except KeyError as exc:
        raise ValueError(f"Authorization lacks {exc.args[0]}") from exc
