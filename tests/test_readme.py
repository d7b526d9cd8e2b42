"""README's examples do what they say: its library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK, SimFactory

from watcher._inputs import Job

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_library_example_runs_as_written(
    sim_factory: SimFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README's python block, unchanged, watches job_ids.txt against a simulator to the end."""
    (block,) = _python_blocks()
    jobs = [Job("readme-1"), Job("readme-2")]
    sim = sim_factory(jobs, time_scale=0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHER_ENDPOINT", sim.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", TEST_PROJECT_ID)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", TEST_AK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", TEST_SK)
    (tmp_path / "job_ids.txt").write_text("readme-1\nreadme-2\n")
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})  # noqa: S102 - our README
    out = capsys.readouterr().out
    assert "readme-1 SUCCEED" in out and "readme-2 SUCCEED" in out
    assert "'SUCCEED': 2" in out
    lines = [orjson.loads(x) for x in (tmp_path / "audio/manifest.jsonl").read_bytes().splitlines()]
    assert sorted(r["job_id"] for r in lines) == ["readme-1", "readme-2"]
