"""`watcher run --out s3://...` end to end: moto's S3 server, the simulator, kill -9 and reruns."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from helpers import make_jobs
from s3server import S3Server, s3_server

from watcher._bucket import Bucket, BucketUrl
from watcher.cli import main

BUCKET = "tts-night"


@pytest.fixture
def s3(env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server with a fresh bucket, its variables set (on conftest's clean environment with
    the API's test credentials), and the spool in this test's temporary folder."""
    monkeypatch = env
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    with s3_server() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        client: Any = server.client()
        client.create_bucket(Bucket=BUCKET)
        yield server


def _objects(s3: S3Server, prefix: str) -> dict[str, Any]:
    client: Any = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o for o in listed}


def _ledger(s3: S3Server, prefix: str) -> list[dict[str, Any]]:
    url = BucketUrl.parse(f"s3://{BUCKET}/{prefix}")
    assert url is not None
    body = anyio.run(Bucket.open(url, s3.env()).read_ledger)
    return [orjson.loads(line) for line in body.splitlines()]


def _spool() -> Path:
    return Path(tempfile.gettempdir()) / "watcher-spool"


def _argv(ids: Path, url: str, prefix: str) -> list[str]:
    fast = ["--cadence", "0.02", "--rate", "2000", "--quiet"]
    return ["run", str(ids), "--endpoint", url, "--out", f"s3://{BUCKET}/{prefix}", *fast]


def _check_batch(s3: S3Server, prefix: str, job_ids: list[str]) -> None:
    """Every job's counting line is SUCCEED; every file it lists is an object of that size,
    with its sha256 as the object's metadata and as its bytes' digest."""
    client: Any = s3.client()
    last: dict[str, dict[str, Any]] = {}
    for record in _ledger(s3, prefix):
        last[record["job_id"]] = record
    assert sorted(last) == sorted(job_ids)
    for record in last.values():
        assert record["status"] == "SUCCEED"
        assert {"audio", "srt"} <= set(record["files"])
        for saved in record["files"].values():
            got = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{saved['path']}")
            data = got["Body"].read()
            assert len(data) == saved["bytes"]
            assert hashlib.sha256(data).hexdigest() == saved["sha256"]
            assert got["Metadata"]["watcher-sha256"] == saved["sha256"]
    assert not [k for k in _objects(s3, prefix) if "/segment-" in k]  # segments compacted


def test_a_batch_goes_to_the_bucket_and_reruns_without_the_local_disk(
    s3: S3Server, sim_factory: Any, tmp_path: Path
) -> None:
    """Files and the ledger land in the bucket; with the local spool deleted, a rerun finds
    every job done from the bucket alone and downloads nothing."""
    jobs = make_jobs(5)
    sim = sim_factory(jobs)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    assert main(_argv(ids, sim.url, "night/1")) == 0
    _check_batch(s3, "night/1", [j.job_id for j in jobs])
    assert not list(_spool().rglob("*.wav"))  # nothing left behind on the local disk
    downloads = sim.sim.stats.count("Storage")
    shutil.rmtree(_spool())
    assert main(_argv(ids, sim.url, "night/1")) == 0
    assert sim.sim.stats.count("Storage") == downloads
    assert len(_ledger(s3, "night/1")) == 5  # nothing re-watched, nothing appended


def test_a_changed_object_is_fetched_again(s3: S3Server, sim_factory: Any, tmp_path: Path) -> None:
    """An object overwritten with other bytes (its size differs) is not taken as done."""
    jobs = make_jobs(2)
    sim = sim_factory(jobs)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    assert main(_argv(ids, sim.url, "n")) == 0
    client: Any = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"n/{jobs[0].job_id}.srt", Body=b"tampered")
    assert main(_argv(ids, sim.url, "n")) == 0
    _check_batch(s3, "n", [j.job_id for j in jobs])


def test_missing_bucket_credentials_are_a_usage_error(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """No AWS_ACCESS_KEY_ID: exit 2 naming the variable, before any request."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    ids = tmp_path / "ids.txt"
    ids.write_text("job-1\n")
    assert main(_argv(ids, "http://127.0.0.1:9", "x")) == 2
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err


def test_kill_9_mid_run_then_a_rerun_with_the_local_folder_gone(
    s3: S3Server, sim_factory: Any, tmp_path: Path
) -> None:
    """kill -9 while the batch is going to the bucket, delete the spool, rerun: the ledger ends
    with each job SUCCEED once as its counting line, every object intact."""
    jobs = make_jobs(30)
    sim = sim_factory(jobs, time_scale=0.02, slots=4)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    env = dict(os.environ)
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "watcher", *_argv(ids, sim.url, "k9")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # up to ~30 s for the first ledger segment to reach the bucket
            if any("/segment-" in k for k in _objects(s3, "k9")) or child.poll() is not None:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    shutil.rmtree(_spool(), ignore_errors=True)
    assert main(_argv(ids, sim.url, "k9")) == 0
    _check_batch(s3, "k9", [j.job_id for j in jobs])


UPLOADER = """
import sys, anyio, os
from pathlib import Path
from watcher._bucket import Bucket, BucketUrl
async def main():
    url = BucketUrl.parse(sys.argv[1])
    bucket = Bucket.open(url, os.environ)
    await bucket.put_file(Path(sys.argv[2]), "big.wav", sha256=sys.argv[3], size=int(sys.argv[4]))
anyio.run(main)
"""


def test_kill_9_during_a_multipart_upload_leaves_nothing_under_the_key(
    s3: S3Server, tmp_path: Path
) -> None:
    """A multipart upload killed half-way leaves no object under the key (never part of a file
    under a final name); the next upload of the file completes it."""
    data = os.urandom(40 * 1024 * 1024)
    big = tmp_path / "big.wav"
    big.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    client: Any = s3.client()
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", UPLOADER, f"s3://{BUCKET}/mp", str(big), sha, str(len(data))],
        env=dict(os.environ),
    )
    begun = False
    try:
        for _ in range(600):  # up to ~30 s for the multipart upload to begin
            begun = bool(client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))
            if begun or child.poll() is not None:
                break
            time.sleep(0.05)
        assert begun and child.poll() is None, "the upload was not caught under way"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert "mp/big.wav" not in _objects(s3, "mp")
    url = BucketUrl.parse(f"s3://{BUCKET}/mp")
    assert url is not None
    bucket = Bucket.open(url, os.environ)

    async def upload_again() -> bool:
        await bucket.put_file(big, "big.wav", sha256=sha, size=len(data))
        return await bucket.intact("mp/big.wav", sha256=sha, size=len(data))

    assert anyio.run(upload_again)


def test_shards_share_one_prefix_and_report_reads_the_whole_batch(
    s3: S3Server, sim_factory: Any, tmp_path: Path, capsys: Any
) -> None:
    """Two shards write into one bucket prefix with no shared disk; `watcher report s3://...`
    then reports the whole batch, and each shard's rerun skips its own jobs."""
    jobs = make_jobs(8)
    sim = sim_factory(jobs)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{j.job_id}\n" for j in jobs))
    for k in (0, 1):
        assert main([*_argv(ids, sim.url, "sharded"), "--shard", f"{k}/2"]) == 0
    _check_batch(s3, "sharded", [j.job_id for j in jobs])
    capsys.readouterr()
    assert main(["report", f"s3://{BUCKET}/sharded", "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["jobs"] == 8
    downloads = sim.sim.stats.count("Storage")
    shutil.rmtree(_spool())
    assert main([*_argv(ids, sim.url, "sharded"), "--shard", "1/2"]) == 0
    assert sim.sim.stats.count("Storage") == downloads
