"""Object storage: URLs, settings from the environment, uploads with metadata, the bucket ledger."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import S3Server, s3_server

from watcher._bucket import Bucket, BucketUrl, store_options
from watcher._errors import ConfigError, DownloadError


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """One S3 server for this module's tests."""
    with s3_server() as server:
        yield server


def make_bucket(s3: S3Server, name: str, scheme: str = "s3", prefix: str = "night/1") -> Bucket:
    """A fresh bucket `name` on the server, opened as `scheme://name/prefix`."""
    client: Any = s3.client()
    client.create_bucket(Bucket=name)
    url = BucketUrl.parse(f"{scheme}://{name}/{prefix}")
    assert url is not None
    return Bucket.open(url, s3.env(scheme) if scheme == "s3" else s3.env("s3"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://tts-out/night/2026-12-01/", BucketUrl("s3", "tts-out", "night/2026-12-01")),
        ("OBS://tts-out", BucketUrl("obs", "tts-out", "")),
        ("s3://b.c-d//a//b", BucketUrl("s3", "b.c-d", "a/b")),
        ("./s3-out", None),
        ("/data/out", None),
        ("http://host/x", None),
    ],
)
def test_out_urls(text: str, expected: BucketUrl | None) -> None:
    """Bucket URLs parse into bucket and prefix; anything else is a local path."""
    assert BucketUrl.parse(text) == expected


@pytest.mark.parametrize("text", ["s3://", "s3://UPPER/x", "s3://a/x", "s3://b-b/../x"])
def test_unusable_bucket_urls_are_named(text: str) -> None:
    """A bucket URL with a bad bucket name or a '..' prefix is refused, naming it."""
    with pytest.raises(ConfigError, match="--out"):
        BucketUrl.parse(text)


def test_settings_come_from_the_usual_variables_and_never_the_apis() -> None:
    """s3:// reads AWS_*; obs:// reads OBS_* first and goes virtual-hosted with its region."""
    s3 = BucketUrl("s3", "tts", "")
    options = store_options(
        s3, {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "HUAWEICLOUD_SDK_AK": "X"}
    )
    assert options == {"access_key_id": "A", "secret_access_key": "S", "region": "us-east-1"}
    obs = BucketUrl("obs", "tts", "p")
    env = {
        "OBS_ACCESS_KEY_ID": "OA",
        "OBS_SECRET_ACCESS_KEY": "OS",
        "OBS_ENDPOINT": "https://obs.cn-north-4.myhuaweicloud.com",
    }
    options = store_options(obs, env)
    assert options["endpoint"] == "https://tts.obs.cn-north-4.myhuaweicloud.com"
    assert options["virtual_hosted_style_request"] is True
    assert options["region"] == "cn-north-4"
    assert options["access_key_id"] == "OA"


def test_missing_bucket_credentials_name_the_variables() -> None:
    """No bucket credentials: the error names the variables to set, not the API's."""
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID") as caught:
        store_options(BucketUrl("s3", "tts", ""), {"HUAWEICLOUD_SDK_AK": "A"})
    assert "HUAWEICLOUD" not in str(caught.value)
    with pytest.raises(ConfigError, match="OBS_ENDPOINT"):
        store_options(
            BucketUrl("obs", "tts", ""), {"OBS_ACCESS_KEY_ID": "A", "OBS_SECRET_ACCESS_KEY": "S"}
        )


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1000, 9 * 1024 * 1024])  # one PUT; a multipart upload
async def test_an_upload_carries_its_sha256_and_size(
    s3: S3Server, tmp_path: Path, size: int
) -> None:
    """The object holds the file's bytes; its metadata lets `intact` tell it from a stale one."""
    bucket = make_bucket(s3, f"up-{size}")
    data = os.urandom(size)
    local = tmp_path / "a.wav"
    local.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    key = await bucket.put_file(local, "a.wav", sha256=sha, size=size)
    assert key == "night/1/a.wav"
    client: Any = s3.client()
    got = client.get_object(Bucket=f"up-{size}", Key=key)
    assert got["Body"].read() == data
    assert got["Metadata"]["watcher-sha256"] == sha
    assert await bucket.intact(key, sha256=sha, size=size)
    assert not await bucket.intact(key, sha256="0" * 64, size=size)
    assert not await bucket.intact(key, sha256=sha, size=size + 1)
    assert not await bucket.intact("night/1/none.wav", sha256=sha, size=size)


@pytest.mark.anyio
async def test_an_upload_to_a_missing_bucket_is_a_named_error(s3: S3Server, tmp_path: Path) -> None:
    """A bucket that does not exist costs that file a DownloadError naming the bucket."""
    url = BucketUrl.parse("s3://no-such-bucket/x")
    assert url is not None
    bucket = Bucket.open(url, s3.env())
    local = tmp_path / "a.srt"
    local.write_bytes(b"1\n")
    with pytest.raises(DownloadError, match=r"a\.srt"):
        await bucket.put_file(local, "a.srt", sha256="0" * 64, size=2)


@pytest.mark.anyio
async def test_the_ledger_lives_in_segments_and_compacts(s3: S3Server) -> None:
    """Segments read back in order; compaction folds them into manifest.jsonl, losing nothing."""
    bucket = make_bucket(s3, "ledger")
    assert await bucket.read_ledger() == b""
    await bucket.append("20261201T010000Z-1", 0, b'{"job_id":"a"}\n')
    await bucket.append("20261201T010000Z-1", 1, b'{"job_id":"b"}\n{"job_id":"c"}\n')
    assert await bucket.read_ledger() == b'{"job_id":"a"}\n{"job_id":"b"}\n{"job_id":"c"}\n'
    await bucket.compact()
    client: Any = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="ledger")["Contents"]]
    assert keys == ["night/1/manifest/compacted-all.jsonl"]
    await bucket.append("20261202T010000Z-1", 0, b'{"job_id":"d"}\n')
    lines = (await bucket.read_ledger()).splitlines()
    assert lines == [b'{"job_id":"a"}', b'{"job_id":"b"}', b'{"job_id":"c"}', b'{"job_id":"d"}']


@pytest.mark.anyio
async def test_shards_sharing_a_prefix_keep_to_their_own_ledger_objects(s3: S3Server) -> None:
    """Two writers on one prefix: each compacts only its own segments; the ledger holds both."""
    shared = make_bucket(s3, "shared")
    url = shared.url
    one, two = (Bucket(url, shared._store, writer) for writer in ("shard-0-of-2", "shard-1-of-2"))
    await one.append("r1", 0, b'{"job_id":"a"}\n')
    await two.append("r2", 0, b'{"job_id":"b"}\n')
    await one.compact()
    client: Any = s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="shared")["Contents"])
    assert keys == [
        "night/1/manifest/compacted-shard-0-of-2.jsonl",
        "night/1/manifest/segment-shard-1-of-2--r2-00000000.jsonl",
    ]
    assert sorted((await shared.read_ledger()).splitlines()) == [
        b'{"job_id":"a"}',
        b'{"job_id":"b"}',
    ]
