"""Log redaction."""

from __future__ import annotations

from typing import Any

from watcher.logs import Redact


def test_secrets_are_masked_wherever_they_appear() -> None:
    """A secret inside strings, nested containers and exceptions is replaced by ***."""
    redact = Redact(["SK-SECRET", ""])
    event: dict[str, Any] = {
        "event": "sent Authorization with SK-SECRET",
        "nested": {"list": ["x SK-SECRET y", 3]},
        "exc": ValueError("token SK-SECRET expired"),
        "n": 5,
    }
    out = redact(None, "info", event)
    assert "SK-SECRET" not in repr(out)
    assert out["event"] == "sent Authorization with ***"
    assert out["n"] == 5
