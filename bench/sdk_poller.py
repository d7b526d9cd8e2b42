"""The baseline of benchmark 2: what a user would write without the watcher.

    HOME=$(mktemp -d) python bench/sdk_poller.py --endpoint URL --ids FILE [--threads 32]

The official SDK (`huaweicloudsdkmetastudio`: MetaStudioClient built with `.with_endpoints`,
`show_async_tts_job`) in a `ThreadPoolExecutor(32)`, polling every job once per round, rounds no
closer than the 3 s cadence, dropping jobs that are final, until every job is final or SIGINT /
SIGTERM. The connection pool is sized to the thread count (`pool_maxsize=32`; the SDK's default
of 10 would make it reopen connections, which would handicap it). Credentials come from
HUAWEICLOUD_SDK_AK / SK / PROJECT_ID. On exit it prints one JSON line: polls answered, errors.
The SDK writes ~/.huaweicloud/application_id when imported: run it with HOME in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkmetastudio.v1 import MetaStudioClient, ShowAsyncTtsJobRequest

CADENCE = 3.0
FINAL = frozenset({"SUCCEED", "FAILED"})


def main() -> int:
    """Poll until done or signalled; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ids", required=True, help="one job id per line")
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    credentials = BasicCredentials(
        os.environ["HUAWEICLOUD_SDK_AK"], os.environ["HUAWEICLOUD_SDK_SK"]
    ).with_project_id(os.environ["HUAWEICLOUD_SDK_PROJECT_ID"])
    config = HttpConfig.get_default_config()
    config.pool_maxsize = args.threads
    client: Any = (
        MetaStudioClient.new_builder()
        .with_credentials(credentials)
        .with_http_config(config)
        .with_endpoints([args.endpoint])
        .build()
    )
    with open(args.ids, encoding="utf-8") as f:
        pending = [line.strip() for line in f if line.strip()]
    polls = errors = 0
    lock = threading.Lock()

    def poll(job_id: str) -> str | None:
        nonlocal polls, errors
        if stop.is_set():
            return None
        try:
            state: str = client.show_async_tts_job(ShowAsyncTtsJobRequest(job_id=job_id)).state
        except SdkException:
            with lock:
                errors += 1
            return None
        with lock:
            polls += 1
        return state

    with ThreadPoolExecutor(args.threads) as pool:
        while pending and not stop.is_set():
            started = time.monotonic()
            states = list(pool.map(poll, pending))
            pending = [j for j, s in zip(pending, states, strict=True) if s not in FINAL]
            stop.wait(max(0.0, started + CADENCE - time.monotonic()))
    print(json.dumps({"polls": polls, "errors": errors, "pending": len(pending)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
