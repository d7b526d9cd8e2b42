"""The signer against the official SDK's own signatures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from watcher import _auth as auth

VECTORS = json.loads((Path(__file__).parent / "data" / "sign_vectors.json").read_text())


def _cases() -> list[Any]:
    cases = [
        pytest.param(VECTORS["ak"], VECTORS["sk"], v, id=f"sdk-{i}")
        for i, v in enumerate(VECTORS["vectors"])
    ]
    doc = VECTORS["documented_example"]
    cases.append(pytest.param(doc["ak"], doc["sk"], doc, id="signing-guide"))
    return cases


@pytest.mark.parametrize(("ak", "sk", "vector"), _cases())
def test_sign_reproduces_vector(ak: str, sk: str, vector: dict[str, Any]) -> None:
    """Each vector's Authorization header is reproduced exactly from its unsigned headers."""
    sent = dict(vector["headers_sent"])
    expected = sent.pop("Authorization")
    date = auth.parse_sdk_date(sent.pop("X-Sdk-Date"))
    body = vector["body"].encode() if vector["body"] else b""
    query = [(k, str(v)) for k, v in vector["query"]]
    signed = auth.sign(auth.AkSk(ak, sk), vector["method"], vector["path"], query, sent, body, date)
    assert signed["Authorization"] == expected


def test_sign_adds_security_token_and_signs_it() -> None:
    """Temporary credentials send X-Security-Token and include it in SignedHeaders."""
    creds = auth.AkSk("AK", "SK", security_token="STS")
    headers = {"Host": "h", "Content-Type": "application/json"}
    date = auth.parse_sdk_date("20250101T000000Z")
    signed = auth.sign(creds, "GET", "/v1/p/x", [], headers, b"", date)
    assert signed["X-Security-Token"] == "STS"
    assert "x-security-token" in auth.parse_authorization(signed["Authorization"]).signed_headers


def test_query_and_uri_canonical_forms() -> None:
    """Query pairs sort by key then value and encode space as %20; the URI ends with a slash."""
    assert auth.canonical_query([("b", "x y"), ("a", "2"), ("a", "1")]) == "a=1&a=2&b=x%20y"
    assert auth.canonical_uri("/v1/p/a%20b") == "/v1/p/a%20b/"
    assert auth.canonical_uri("/v1/p/") == "/v1/p/"


def test_url_query_order_does_not_matter() -> None:
    """The list-call vector's wire URL orders its query unlike its pairs; both sign alike."""
    vector = VECTORS["vectors"][3]
    wire = parse_qsl(urlsplit(vector["url"]).query)
    assert auth.canonical_query(wire) == auth.canonical_query(
        [(k, str(v)) for k, v in vector["query"]]
    )


@pytest.mark.parametrize(
    "value",
    ["HMAC foo", "SDK-HMAC-SHA256 Access=a, SignedHeaders=b", "SDK-HMAC-SHA256 Access"],
)
def test_parse_authorization_rejects_malformed(value: str) -> None:
    """Malformed Authorization headers raise ValueError rather than being half-parsed."""
    with pytest.raises(ValueError, match=r"\w"):
        auth.parse_authorization(value)


def test_credentials_repr_hides_secrets() -> None:
    """Neither SK, security token nor IAM token shows up in a repr."""
    text = repr(auth.AkSk("AKID", "SECRETSK", "SECRETSTS")) + repr(auth.Token("SECRETTOKEN"))
    assert "SECRET" not in text
    assert "AKID" in text
