"""Metrics: what a run's hooks feed in is what a Pushgateway, a scrape and a textfile show."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import make_jobs, read_manifest
from prometheus_client.parser import text_string_to_metric_families

from watcher._manifest import ErrorInfo, JobResult, SavedFile
from watcher._metrics import Metrics, MetricsConfig, Publisher
from watcher._progress import Snapshot
from watcher.cli import main

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def results() -> list[JobResult]:
    """Three SUCCEED jobs with two files each, one FAILED, one ERROR."""
    saved = {
        "audio": SavedFile("a.wav", 1000, "0" * 64, 1.5),
        "srt": SavedFile("a.srt", 24, "1" * 64),
    }
    done = [
        JobResult(f"j{i}", "SUCCEED", "SUCCEED", saved, 3, T0, T0 + timedelta(seconds=9), 9.0)
        for i in range(3)
    ]
    return [
        *done,
        JobResult("f", "FAILED", "FAILED", error=ErrorInfo("MSS.000000001", "no")),
        JobResult("e", "ERROR", "SUCCEED", error=ErrorInfo("DOWNLOAD_FAILED", "gone")),
    ]


def snapshot(**changes: object) -> Snapshot:
    """A mid-run snapshot."""
    base: dict[str, object] = {
        "elapsed_s": 60.0,
        "admitted": 12,
        "waiting": 4,
        "processing": 2,
        "unseen": 1,
        "downloading": 1,
        "done": 3,
        "failed": 2,
        "requests_per_s": 8.5,
        "cadence_s": 3.1,
        "throttled": 2,
        "input_done": True,
        "eta_s": None,
    }
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text as {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def get(url: str) -> bytes:
    """The body of a GET of an http://127.0.0.1 URL."""
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (checked above)
        body: bytes = response.read()
    return body


async def fed(metrics: Metrics) -> Metrics:
    for result in results():
        await metrics.on_result(result)
    metrics.on_progress(snapshot())
    return metrics


@pytest.mark.anyio
async def test_results_and_snapshots_become_metric_values(tmp_path: Path) -> None:
    """Jobs by status, failures by code, files, bytes, stages and the exit code are right."""
    metrics = await fed(Metrics())
    publisher = Publisher(metrics, MetricsConfig(textfile=str(tmp_path / "watcher.prom")))
    publisher.final(1)
    got = samples((tmp_path / "watcher.prom").read_text())
    assert got[("watcher_jobs_total", (("status", "SUCCEED"),))] == 3
    assert got[("watcher_jobs_total", (("status", "FAILED"),))] == 1
    assert got[("watcher_job_failures_total", (("code", "DOWNLOAD_FAILED"),))] == 1
    assert got[("watcher_files_saved_total", ())] == 6
    assert got[("watcher_bytes_saved_total", ())] == 3 * 1024
    assert got[("watcher_job_elapsed_seconds_count", ())] == 3
    assert got[("watcher_jobs_admitted", ())] == 12
    assert got[("watcher_throttled", ())] == 2
    assert got[("watcher_run_exit_code", ())] == 1
    assert got[("watcher_last_success_time_seconds", ())] == 0  # exit 1 is no success
    assert got[("watcher_jobs_pending", (("stage", "waiting"),))] == 0  # cleared at the end


@pytest.mark.anyio
async def test_metrics_are_served_while_the_run_lasts() -> None:
    """--metrics-port serves the registry over HTTP (here on 127.0.0.1, port 0)."""
    metrics = await fed(Metrics())
    publisher = Publisher(metrics, MetricsConfig(port=0, host="127.0.0.1"))
    publisher.serve()
    try:
        assert publisher.port
        url = f"http://127.0.0.1:{publisher.port}/metrics"
        body = await anyio.to_thread.run_sync(get, url)
    finally:
        publisher.stop()
    got = samples(body.decode())
    assert got[("watcher_jobs_pending", (("stage", "processing"),))] == 2
    assert got[("watcher_cadence_seconds", ())] == pytest.approx(3.1)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Pushgateway on 127.0.0.1 (Debian's prometheus-pushgateway), its base URL."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.skip(
            "needs the prometheus-pushgateway binary (apt-get install prometheus-pushgateway)"
        )
    log = (tmp_path / "pushgateway.log").open("w+")
    process = subprocess.Popen(  # noqa: S603
        # Debian's build persists to /var/lib/prometheus by default: keep this one's in the test
        [
            binary,
            "--web.listen-address=127.0.0.1:0",
            f"--persistence.file={tmp_path / 'pushgateway.data'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        address = None
        for _ in range(200):  # up to ~10 s for it to say where it listens
            log.seek(0)
            if m := re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', log.read()):
                address = m.group(1)
                break
            if process.poll() is not None:
                break
            time.sleep(0.05)
        if address is None:
            log.seek(0)
            pytest.fail(f"the Pushgateway did not start: {log.read()[-500:]}")
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.mark.anyio
async def test_a_push_reaches_a_real_pushgateway(pushgateway: str) -> None:
    """Pushed figures are what the Pushgateway then serves, grouped by batch and shard."""
    metrics = await fed(Metrics())
    config = MetricsConfig(pushgateway=pushgateway, batch="nightly", shard="2")
    publisher = Publisher(metrics, config)
    await anyio.to_thread.run_sync(publisher.final, 0)
    url = f"{pushgateway}/metrics"
    body = await anyio.to_thread.run_sync(get, url)
    got = samples(body.decode())
    group = (("batch", "nightly"), ("instance", ""), ("job", "watcher"), ("shard", "2"))
    key = ("watcher_jobs_total", tuple(sorted((*group, ("status", "SUCCEED")))))
    assert got[key] == 3
    assert got[("watcher_run_exit_code", group)] == 0
    assert got[("watcher_last_success_time_seconds", group)] > 0


def test_a_failed_push_is_a_warning_not_an_error() -> None:
    """A Pushgateway that is not there costs a warning; the run is not affected."""
    publisher = Publisher(Metrics(), MetricsConfig(pushgateway="http://127.0.0.1:9"))
    publisher.push()  # would raise URLError if not caught


@pytest.mark.usefixtures("env")
def test_a_run_pushes_its_counts_and_writes_the_textfile(
    sim_factory: Any, pushgateway: str, tmp_path: Path
) -> None:
    """`watcher run --pushgateway --metrics-textfile`: the Pushgateway and the textfile hold the
    run's jobs by status, its exit code and its batch label."""
    jobs = make_jobs(6)
    sim = sim_factory(jobs, fail_percent=34)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    textfile = tmp_path / "watcher.prom"
    argv = ["run", str(ids), "--endpoint", sim.url, "--out", str(tmp_path / "night-7")]
    argv += ["--quiet", "--cadence", "0.02", "--rate", "2000", "--pushgateway", pushgateway]
    argv += ["--metrics-textfile", str(textfile)]
    code = main(argv)
    statuses = Counter(r["status"] for r in read_manifest(tmp_path / "night-7"))
    assert code == (0 if statuses["FAILED"] == 0 else 1)
    for text in (get(f"{pushgateway}/metrics").decode(), textfile.read_text()):
        got = samples(text)
        for status, count in statuses.items():
            key = [k for k in got if k[0] == "watcher_jobs_total" and ("status", status) in k[1]]
            assert [got[k] for k in key] == [count], key
        exit_code = [v for k, v in got.items() if k[0] == "watcher_run_exit_code"]
        assert exit_code == [code]
    pushed = samples(get(f"{pushgateway}/metrics").decode())
    assert any(("batch", "night-7") in labels for _, labels in pushed)


@pytest.mark.usefixtures("env")
def test_an_unusable_pushgateway_url_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--pushgateway ftp://x` is refused naming the flag, exit 2, before anything runs."""
    argv = ["run", "--endpoint", "http://127.0.0.1:9", "--out", str(tmp_path / "o")]
    assert main([*argv, "--pushgateway", "ftp://x"]) == 2
    assert "--pushgateway" in capsys.readouterr().err
