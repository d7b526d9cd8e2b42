"""Results straight to object storage: `--out s3://bucket/prefix` or `--out obs://bucket/prefix`.

A file is saved to a bucket the way it is saved to a folder: streamed to a local spool file,
checked (size, audio), and only then given its final name, here by uploading it to
`prefix/<name>` (multipart above `MULTIPART_BYTES`; an upload is atomic, so a key never holds
part of a file, and a kill -9 mid-upload leaves nothing under it). The object carries its
sha256 and size as user metadata (`watcher-sha256`, `watcher-bytes`), so a rerun can tell an
intact object from a stale one with a HEAD, without the local disk.

The ledger lives in the bucket too, in a form object storage supports (no appends), under
`prefix/manifest/`: every group commit is a new object `segment-<writer>--<run>-<seq>.jsonl`,
and the end of a run folds its writer's segments into `compacted-<writer>.jsonl` (written first,
segments deleted after, so a crash between the two only repeats lines, which the counting rule
absorbs). The writer is `all`, or `shard-K-of-N` for `--shard K/N`: N shards can share one
prefix, each writing only its own objects, and the prefix's ledger is the whole batch's. Reading
it is every compacted object, then every segment, in key order.

Credentials and endpoint are the bucket's, never the API's, under the ecosystem's usual names:
- `s3://`: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
  `AWS_ENDPOINT_URL` (any S3-compatible store), `AWS_REGION` / `AWS_DEFAULT_REGION`;
- `obs://`: `OBS_ACCESS_KEY_ID`, `OBS_SECRET_ACCESS_KEY`, `OBS_SECURITY_TOKEN`, `OBS_ENDPOINT`
  (e.g. `https://obs.cn-north-4.myhuaweicloud.com`), falling back to the `AWS_*` names. OBS
  wants virtual-hosted-style requests (`https://bucket.obs.<region>.myhuaweicloud.com`).

The client is obstore (the Rust object_store crate, async, multipart built in). It sends no
checksum headers unless asked, which matters: S3-compatible stores such as OBS refuse the CRC32
`x-amz-checksum-*` / aws-chunked uploads that recent AWS SDKs send by default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from watcher._errors import ConfigError, DownloadError, LedgerError
from watcher._manifest import JobResult

SCHEMES = ("s3", "obs")
MULTIPART_BYTES = 8 * 1024 * 1024
SHA256_KEY = "watcher-sha256"
BYTES_KEY = "watcher-bytes"
LEDGER = "manifest"  # the folder under the prefix that holds the ledger's objects
COMPACTED = "compacted-"
SEGMENT = "segment-"
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class BucketUrl:
    """Where results go: a bucket and a key prefix (no leading or trailing `/`)."""

    scheme: str
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, name: str) -> str:
        """The object key for `name` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    @classmethod
    def parse(cls, text: str) -> BucketUrl | None:
        """`text` as a bucket URL; None when it is not one (a local path); ConfigError when it
        looks like one but is unusable."""
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            return None
        bucket, _, prefix = rest.partition("/")
        if not BUCKET_NAME.fullmatch(bucket):
            raise ConfigError(
                f"--out {text!r}: {bucket!r} is not a bucket name "
                "(3-63 lower-case letters, digits, '.' and '-')"
            )
        prefix = "/".join(part for part in prefix.split("/") if part)
        if any(part in (".", "..") for part in prefix.split("/")):
            raise ConfigError(f"--out {text!r}: '.' and '..' are not allowed in the prefix")
        return cls(scheme.lower(), bucket, prefix)


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if value := env.get(name, "").strip():
            return value
    return None


def store_options(url: BucketUrl, env: Mapping[str, str]) -> dict[str, Any]:
    """The obstore S3Store settings for `url` from the environment; ConfigError names what is
    missing. The result holds secrets: never log it."""
    obs = url.scheme == "obs"
    key_names = ("OBS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID") if obs else ("AWS_ACCESS_KEY_ID",)
    secret_names = (
        ("OBS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY") if obs else ("AWS_SECRET_ACCESS_KEY",)
    )
    access_key, secret_key = _first(env, *key_names), _first(env, *secret_names)
    if not access_key or not secret_key:
        raise ConfigError(
            f"--out {url}: no credentials for the bucket; set {' or '.join(key_names)} and "
            f"{' or '.join(secret_names)} (the bucket's own, not the MetaStudio API's)"
        )
    options: dict[str, Any] = {"access_key_id": access_key, "secret_access_key": secret_key}
    token_names = ("OBS_SECURITY_TOKEN", "AWS_SESSION_TOKEN") if obs else ("AWS_SESSION_TOKEN",)
    if token := _first(env, *token_names):
        options["session_token"] = token
    endpoint_names = (
        ("OBS_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        if obs
        else ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    )
    endpoint = _first(env, *endpoint_names)
    region = _first(env, "AWS_REGION", "AWS_DEFAULT_REGION")
    if obs and endpoint is None:
        raise ConfigError(
            f"--out {url}: set OBS_ENDPOINT, e.g. https://obs.cn-north-4.myhuaweicloud.com"
        )
    if endpoint is not None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{endpoint_names[0]}: {endpoint!r} is not an http(s) URL")
        host = parts.netloc
        if obs:
            # OBS answers only virtual-hosted-style requests: the bucket is in the host name.
            if not host.startswith(f"{url.bucket}."):
                host = f"{url.bucket}.{host}"
            options["virtual_hosted_style_request"] = True
            if region is None and (m := re.match(r"obs\.([a-z0-9-]+)\.", parts.hostname)):
                region = m.group(1)
        options["endpoint"] = f"{parts.scheme}://{host}"
        if parts.scheme == "http":
            options["client_options"] = {"allow_http": True}
    options["region"] = region or "us-east-1"
    return options


def _reason(exc: BaseException) -> str:
    """A short, single-line reason from an obstore error (its messages carry debug dumps)."""
    text = " ".join(str(exc).split("Debug source:")[0].split())
    return text[:MAX_MESSAGE] or exc.__class__.__name__


def _lines(parts: list[bytes]) -> bytes:
    """Ledger objects joined as JSON lines (one without a last newline gets one)."""
    return b"".join(part if part.endswith(b"\n") or not part else part + b"\n" for part in parts)


def _base(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _name(path: str, base: Path) -> str:
    """A ledger file path as the object's name under the prefix (its path below `base`)."""
    return Path(os.path.relpath(path, base)).as_posix()


class Bucket:
    """Objects under one prefix of one bucket (see the module docstring)."""

    def __init__(self, url: BucketUrl, store: S3Store, writer: str = "all") -> None:
        self.url = url
        self._store = store
        self.writer = writer  # whose ledger objects this run writes: "all", or "shard-K-of-N"

    @classmethod
    def open(cls, url: BucketUrl, env: Mapping[str, str], writer: str = "all") -> Bucket:
        """A Bucket for `url`, configured from `env`; ConfigError when it cannot be."""
        options = store_options(url, env)
        client_options = options.pop("client_options", None)
        retry: Any = {"max_retries": 5, "retry_timeout": timedelta(seconds=120)}
        try:
            store = S3Store(
                url.bucket, client_options=client_options, retry_config=retry, **options
            )
        except (BaseError, ValueError) as exc:
            raise ConfigError(f"--out {url}: {_reason(exc)}") from exc
        return cls(url, store, writer)

    def uri(self, name: str) -> str:
        """The object's URL, as the ledger records it."""
        return f"{self.url.scheme}://{self.url.bucket}/{self.url.key(name)}"

    async def put_file(self, path: Path, name: str, *, sha256: str, size: int) -> str:
        """Upload the checked local file `path` as `name`; return its key. DownloadError (transient
        unless the bucket refused us) when it cannot be stored."""
        key = self.url.key(name)
        attributes = {SHA256_KEY: sha256, BYTES_KEY: str(size)}
        try:
            await obstore.put_async(
                self._store,
                key,
                path,
                attributes=attributes,
                use_multipart=size > MULTIPART_BYTES,
                chunk_size=MULTIPART_BYTES,
                max_concurrency=4,
            )
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            raise DownloadError(f"{name}: the bucket refused the upload: {_reason(exc)}") from exc
        except (BaseError, OSError) as exc:
            raise DownloadError(
                f"{name}: upload to {self.url} failed: {_reason(exc)}", transient=True
            ) from exc
        return key

    async def intact(self, key: str, *, sha256: str, size: int) -> bool:
        """Whether the object `key` exists with this size and the sha256 we stored with it."""
        try:
            found = await obstore.get_async(self._store, key, options={"head": True})
        except (NotFoundError, FileNotFoundError):
            return False
        except (BaseError, OSError) as exc:
            raise LedgerError(f"cannot check {key} in {self.url}: {_reason(exc)}") from exc
        attributes = found.attributes
        return found.meta["size"] == size and attributes.get(SHA256_KEY) == sha256

    async def sizes(self) -> dict[str, int]:
        """Every object under the prefix and its size (one listing, 1,000 keys a request)."""
        found: dict[str, int] = {}
        try:
            async for batch in obstore.list(self._store, self.url.prefix or None, chunk_size=1000):
                found.update((meta["path"], meta["size"]) for meta in batch)
        except (BaseError, OSError) as exc:
            raise LedgerError(f"cannot list {self.url}: {_reason(exc)}") from exc
        return found

    async def checker(self, base: Path, *, verify: bool) -> Callable[[JobResult], Awaitable[bool]]:
        """How a rerun tells a SUCCEED job's objects are intact: by one listing of the prefix
        (each object there with its recorded size: the cheap check), or with `verify` by a
        HEAD of each (its size and the sha256 stored with it). `base`: the folder the ledger's
        file paths are relative to (their names under the prefix)."""
        sizes = None if verify else await self.sizes()

        async def intact(result: JobResult) -> bool:
            for saved in result.files.values():
                key = self.url.key(_name(saved.path, base))
                if sizes is not None:
                    if sizes.get(key) != saved.bytes:
                        return False
                elif not await self.intact(key, sha256=saved.sha256, size=saved.bytes):
                    return False
            return True

        return intact

    async def _read(self, key: str) -> bytes:
        result = await obstore.get_async(self._store, key)
        return bytes(await result.bytes_async())

    async def read_ledger(self) -> bytes:
        """The whole ledger: every writer's compacted object, then every segment, in key order
        (each writer's own lines stay in the order it wrote them)."""
        try:
            keys = await self._ledger_keys()
            compacted = [k for k in keys if _base(k).startswith(COMPACTED)]
            segments = [k for k in keys if _base(k).startswith(SEGMENT)]
            parts = [await self._read(key) for key in (*compacted, *segments)]
        except (BaseError, OSError) as exc:
            raise LedgerError(f"cannot read the ledger in {self.url}: {_reason(exc)}") from exc
        return _lines(parts)

    async def _ledger_keys(self) -> list[str]:
        keys: list[str] = []
        async for batch in obstore.list(self._store, self.url.key(LEDGER)):
            keys.extend(meta["path"] for meta in batch if meta["path"].endswith(".jsonl"))
        return sorted(keys)

    async def append(self, run: str, seq: int, data: bytes) -> str:
        """Write one group commit of this writer's ledger lines as a segment object; its key."""
        key = self.url.key(f"{LEDGER}/{SEGMENT}{self.writer}--{run}-{seq:08d}.jsonl")
        try:
            await obstore.put_async(self._store, key, data, use_multipart=False)
        except (BaseError, OSError) as exc:
            raise LedgerError(
                f"cannot write the ledger to {self.url}: {_reason(exc)}; "
                "results not recorded will be watched again by the next run"
            ) from exc
        return key

    async def compact(self) -> None:
        """Fold this writer's segments into its compacted object (see the module docstring).
        Only its own: shards sharing a prefix never write each other's objects."""
        own = f"{SEGMENT}{self.writer}--"
        compacted = self.url.key(f"{LEDGER}/{COMPACTED}{self.writer}.jsonl")
        try:
            keys = await self._ledger_keys()
            segments = [k for k in keys if _base(k).startswith(own)]
            if not segments:
                return
            parts = []
            if compacted in keys:
                parts.append(await self._read(compacted))
            parts += [await self._read(key) for key in segments]
            await obstore.put_async(self._store, compacted, _lines(parts))
            for key in segments:
                await obstore.delete_async(self._store, key)
        except (BaseError, OSError) as exc:
            raise LedgerError(f"cannot compact the ledger in {self.url}: {_reason(exc)}") from exc
