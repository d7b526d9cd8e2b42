"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

ACCESS_KEY = "TESTS3ACCESSKEY00000"
SECRET_KEY = "tests3-secret-key-not-a-real-one-000000"


@dataclass(frozen=True, slots=True)
class S3Server:
    """Where the server listens, and the environment a watcher needs to use it."""

    url: str

    def env(self, scheme: str = "s3") -> dict[str, str]:
        """Bucket credentials and endpoint, under `scheme`'s variable names."""
        if scheme == "obs":
            return {
                "OBS_ACCESS_KEY_ID": ACCESS_KEY,
                "OBS_SECRET_ACCESS_KEY": SECRET_KEY,
                "OBS_ENDPOINT": self.url,
            }
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> object:
        """A boto3 client, for arranging and checking what is in the buckets."""
        boto3 = pytest.importorskip("boto3")
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run moto's S3 server on 127.0.0.1:0 for the block; skip when moto is missing."""
    server_module = pytest.importorskip("moto.server", reason="needs moto[server]")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
