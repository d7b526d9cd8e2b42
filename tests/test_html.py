"""`watcher report --html`: one self-contained page whose figures are its manifest's."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from watcher._report import Report
from watcher.cli import main

START = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
CHROMIUM = shutil.which("chromium")


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _record(
    job_id: str,
    status: str,
    finished: float,
    *,
    took: float = 30.0,
    saved: float | None = None,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "job_id": job_id,
        "status": status,
        "state": status,
        "files": {},
        "polls": 3,
        "first_poll_at": _at(finished - took),
        "finished_at": _at(finished),
        "elapsed_s": took,
        "error": None if error is None else {"code": error[0], "message": error[1]},
        "meta": {},
    }
    if saved is not None:
        record["saved_at"] = _at(finished + saved)
    return record


def _night() -> list[dict[str, Any]]:
    """Two hours: 40 jobs saved, a burst of failures with two messages, an ERROR, a rerun."""
    records = [
        _record(f"ok-{i:02d}", "SUCCEED", 60 + i * 170, took=20 + i, saved=0.5 + i / 10)
        for i in range(40)
    ]
    records += [
        _record(f"v-{i}", "FAILED", 3600 + i, error=("FAILED", "the voice asset is unavailable"))
        for i in range(7)
    ]
    records += [
        _record(f"t-{i}", "FAILED", 3700 + i, error=("FAILED", "the text is unreadable"))
        for i in range(10)
    ]
    records.append(_record("e-0", "ERROR", 5000, error=("DOWNLOAD_FAILED", "HTTP 403")))
    # ok-00 was FAILED in an earlier run: that line is superseded by its later SUCCEED
    records.insert(0, _record("ok-00", "FAILED", 10, error=("FAILED", "internal error")))
    return records


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _figures(page: str) -> dict[str, Any]:
    found = re.search(r"<script type='application/json' id='figures'>(.*?)</script>", page)
    assert found, "the page has no figures block"
    figures: dict[str, Any] = orjson.loads(found.group(1))
    return figures


def test_the_pages_figures_are_its_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counts, timeline, delays and failure groups on the page match the manifest's records."""
    records = _night()
    manifest = _write(tmp_path / "manifest.jsonl", records)
    page = tmp_path / "night.html"
    assert main(["report", str(manifest), "--html", str(page)]) == 1
    assert "SUCCEED" in capsys.readouterr().out  # the text report is printed as ever
    figures = _figures(page.read_text())
    report = Report.from_records(records)
    assert figures["jobs"] == report.jobs == 58
    assert figures["statuses"] == dict(report.statuses)
    assert figures["statuses"]["SUCCEED"] == 40 and figures["statuses"]["FAILED"] == 17
    timeline = figures["timeline"]
    assert {s: sum(c) for s, c in timeline["counts"].items()} == {
        "SUCCEED": 40,
        "FAILED": 17,
        "ERROR": 1,
    }
    assert timeline["step_s"] * len(timeline["counts"]["SUCCEED"]) >= 6690  # the whole span
    assert [(g["code"], g["message"], g["count"]) for g in figures["failures"]] == [
        ("FAILED", "the text is unreadable", 10),
        ("FAILED", "the voice asset is unavailable", 7),
        ("DOWNLOAD_FAILED", "HTTP 403", 1),
    ]
    assert figures["detection_s"]["count"] == 58 and figures["detection_s"]["max"] == 59
    assert figures["download_s"]["count"] == 40  # only the jobs with `saved_at`
    assert figures["download_s"]["p50"] == pytest.approx(2.4)
    assert figures["download_s"]["max"] == pytest.approx(4.4)
    html = page.read_text()
    assert "the voice asset is unavailable" in html and "<svg" in html


def test_a_stretch_without_finishes_and_unanswered_jobs_are_shown(tmp_path: Path) -> None:
    """A steady run that stops finishing jobs for 15 minutes shows that stretch (and only it);
    jobs that ended ERROR TRANSPORT are counted as unanswered."""
    records = [_record(f"a-{i}", "SUCCEED", 10.0 * i) for i in range(120)]  # to 19:50
    records += [_record(f"b-{i}", "SUCCEED", 2090.0 + 10 * i) for i in range(60)]  # 15 min later
    records += [
        _record(f"x-{i}", "ERROR", 1195.0 + i, error=("TRANSPORT", "connection reset"))
        for i in range(3)
    ]
    page = tmp_path / "p.html"
    main(["report", str(_write(tmp_path / "m.jsonl", records)), "--html", str(page)])
    figures = _figures(page.read_text())
    assert figures["stalls"] == [{"start": _at(1197), "seconds": 893.0}]
    assert figures["unreachable"] == 3
    html = page.read_text()
    assert "no job finished for 14:53 from 2026-11-25 02:19:57 UTC" in html
    assert 'class="stall"' in html
    steady = [_record(f"s-{i}", "SUCCEED", 10.0 * i) for i in range(50)]
    main(["report", str(_write(tmp_path / "s.jsonl", steady)), "--html", str(page)])
    assert _figures(page.read_text())["stalls"] == []


def test_without_saved_at_the_download_delay_is_said_to_be_unknown(tmp_path: Path) -> None:
    """A manifest with no `saved_at` (older runs) still gives a page; the delay is left out."""
    records = [_record(f"ok-{i}", "SUCCEED", 10 * i) for i in range(5)]
    page = tmp_path / "p.html"
    assert main(["report", str(_write(tmp_path / "m.jsonl", records)), "--html", str(page)]) == 0
    figures = _figures(page.read_text())
    assert figures["download_s"] is None and figures["jobs"] == 5
    assert "does not record when files were saved" in page.read_text()


def test_an_empty_manifest_gives_a_page_too(tmp_path: Path) -> None:
    """No records: a page with zero jobs and no timeline, no crash."""
    page = tmp_path / "p.html"
    (tmp_path / "m.jsonl").write_bytes(b"")
    assert main(["report", str(tmp_path / "m.jsonl"), "--html", str(page)]) == 0
    figures = _figures(page.read_text())
    assert figures["jobs"] == 0 and figures["timeline"] is None


def test_odd_records_neither_crash_the_page_nor_stretch_it(tmp_path: Path) -> None:
    """Negative or missing delays, unparsable times and a clock off by decades: still a page,
    with at most 72 time buckets."""
    records = [_record(f"ok-{i}", "SUCCEED", 10 * i) for i in range(5)]
    records[0]["elapsed_s"] = -3.0
    records[1]["finished_at"] = "yesterday"
    records[2]["finished_at"] = "1970-01-01T00:00:00Z"
    records[3]["saved_at"] = "2026-11-25T01:00:00Z"  # before it finished: counted as 0
    records[4]["first_poll_at"] = None
    page = tmp_path / "p.html"
    # The "yesterday" line is damaged (the ledger skips it, naming it): exit 1, still a page.
    assert main(["report", str(_write(tmp_path / "m.jsonl", records)), "--html", str(page)]) == 1
    figures = _figures(page.read_text())
    assert len(figures["timeline"]["counts"]["SUCCEED"]) <= 72
    assert sum(figures["timeline"]["counts"]["SUCCEED"]) == 4
    assert figures["download_s"]["max"] == 0


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    """No network: no external script, stylesheet, font or image; no script that runs."""
    page = tmp_path / "p.html"
    records = [*_night(), _record("x", "FAILED", 9, error=("<b>", "</script><script>alert(1)"))]
    main(["report", str(_write(tmp_path / "m.jsonl", records)), "--html", str(page)])
    html = page.read_text()
    links = re.findall(r"(?:https?:)?//[\w.-]+", html)
    assert set(links) <= {"http://www.w3.org"}, links  # the SVG namespace, never fetched
    assert not re.search(r"<(link|img|iframe)\b|@import|url\(|src=", html)
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ["<script type='application/json' id='figures'>"]
    assert "<script>alert" not in html and "<b>" not in html.split("<style>")[0]


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the raw (filtered) scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_the_page(tmp_path: Path) -> None:
    """A real browser renders the page to a screenshot that is not blank."""
    page = tmp_path / "night.html"
    main(["report", str(_write(tmp_path / "m.jsonl", _night())), "--html", str(page)])
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    subprocess.run(  # noqa: S603 (chromium, found on PATH)
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=50,
        check=True,
    )
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1200, 900)
    assert len(set(pixels)) > 16, "the screenshot is blank"
