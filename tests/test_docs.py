"""The deployment examples in the docs are valid Kubernetes objects, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KUBERNETES = (
    "1.30"  # the oldest version the examples promise to work on (timeZone, podFailurePolicy)
)
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documents() -> list[tuple[str, int, dict[str, Any]]]:
    """Every YAML document in a ```yaml block of README.md and docs/*.md."""
    found = []
    for path in DOCS:
        if not path.is_file():
            continue
        for number, block in enumerate(BLOCK.findall(path.read_text()), 1):
            for doc in yaml.safe_load_all(block):
                if doc is not None:
                    found.append((path.name, number, doc))
    return found


def test_the_docs_have_kubernetes_examples() -> None:
    """The docs hold the Indexed Job, its merge step and the nightly CronJob."""
    if not (ROOT / "docs").is_dir():
        pytest.skip("docs/ is not here (the suite runs outside a checkout)")
    kinds = [doc.get("kind") for _, _, doc in documents()]
    assert kinds.count("Job") >= 2
    assert "CronJob" in kinds


@pytest.mark.parametrize(
    ("source", "block", "doc"),
    documents(),
    ids=lambda value: value if isinstance(value, str | int) else str(value.get("kind")),
)
def test_each_yaml_document_validates(source: str, block: int, doc: dict[str, Any]) -> None:
    """Each document passes the Kubernetes schema, strictly (no unknown fields)."""
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_cronjob_never_overlaps_and_fails_fast_on_usage_errors() -> None:
    """The CronJob forbids overlapping runs and does not retry exits 2 and 4."""
    cronjobs = [doc for _, _, doc in documents() if doc.get("kind") == "CronJob"]
    if not cronjobs:
        pytest.skip("docs/ is not here (the suite runs outside a checkout)")
    for cron in cronjobs:
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        rules = cron["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
        fail = [r for r in rules if r["action"] == "FailJob"]
        assert fail[0]["onExitCodes"]["values"] == [2, 4]
