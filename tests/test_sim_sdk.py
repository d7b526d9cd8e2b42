"""The proof of faithfulness: the official Huawei Cloud SDK drives the simulator unmodified."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import TEST_AK, TEST_PROJECT_ID, TEST_SK, wait_until

from watcher.sim import SimThread


@pytest.fixture
def sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The SDK's classes, imported with HOME in a temporary directory (it writes there)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkcore.http.http_handler import HttpHandler
    from huaweicloudsdkmetastudio.v1 import (
        CreateAsyncTtsJobRequest,
        CreateAsyncTtsJobRequestBody,
        MetaStudioClient,
        ShowAsyncTtsJobRequest,
        ShowTtsJobRequest,
    )

    return SimpleNamespace(
        BasicCredentials=BasicCredentials,
        ClientRequestException=ClientRequestException,
        HttpHandler=HttpHandler,
        CreateAsyncTtsJobRequest=CreateAsyncTtsJobRequest,
        CreateAsyncTtsJobRequestBody=CreateAsyncTtsJobRequestBody,
        MetaStudioClient=MetaStudioClient,
        ShowAsyncTtsJobRequest=ShowAsyncTtsJobRequest,
        ShowTtsJobRequest=ShowTtsJobRequest,
    )


def client(sdk: SimpleNamespace, url: str, ak: str = TEST_AK, sk: str = TEST_SK) -> Any:
    """A MetaStudioClient pointed at the simulator, built as the reference describes."""
    credentials = sdk.BasicCredentials(ak, sk).with_project_id(TEST_PROJECT_ID)
    return (
        sdk.MetaStudioClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([url])
        .build()
    )


def test_sdk_creates_shows_and_lists(sdk: SimpleNamespace, sim: SimThread) -> None:
    """Create, show until SUCCEED, and list, all through the official SDK."""
    c = client(sdk, sim.url)
    body = sdk.CreateAsyncTtsJobRequestBody(
        text="The SDK talks to the simulator.",
        voice_asset_id="voice-1",
        audio_format="WAV",
        need_timestamp=True,
        gen_srt=True,
        speed=100,
        priority=5,
    )
    created = c.create_async_tts_job(sdk.CreateAsyncTtsJobRequest(body=body))
    assert created.status_code == 200
    job_id = created.job_id
    assert len(job_id) == 32
    shows: list[Any] = []

    def final() -> bool:
        shows.append(c.show_async_tts_job(sdk.ShowAsyncTtsJobRequest(job_id=job_id)))
        return shows[-1].state in ("SUCCEED", "FAILED")

    wait_until(final, "the job final", timeout=5)
    shown = shows[-1]
    assert shown.state == "SUCCEED"
    assert shown.audio_file_url.startswith(f"{sim.url}/obs/")
    assert shown.audio_srt_file_url
    assert shown.audio_info_file_url
    listed = c.show_tts_job(
        sdk.ShowTtsJobRequest(limit=10, offset=0, job_type="ASYNC_JOB", job_id=job_id)
    )
    assert listed.count == 1
    detail = listed.data[0]
    assert detail.job_id == job_id
    assert detail.job_state == "SUCCEED"
    assert detail.text_length == len("The SDK talks to the simulator.")
    assert detail.files[0].audio_file_url.startswith(f"{sim.url}/obs/")
    windowed = c.show_tts_job(sdk.ShowTtsJobRequest(limit=100, create_since="2020-01-01T00:00:00Z"))
    assert windowed.count == 1
    assert sim.sim.stats.requests()["ShowAsyncTtsJob"] >= 1


def test_sdk_wrong_secret_key_gets_401(sdk: SimpleNamespace, sim: SimThread) -> None:
    """A wrong SK raises the SDK's ClientRequestException: 401 APIGW.0301 with a request id."""
    c = client(sdk, sim.url, sk="not-the-secret")
    with pytest.raises(sdk.ClientRequestException) as caught:
        c.show_async_tts_job(sdk.ShowAsyncTtsJobRequest(job_id="a" * 32))
    exc = caught.value
    assert exc.status_code == 401
    assert exc.error_code == "APIGW.0301"
    assert "verify aksk signature fail" in exc.error_msg
    assert len(exc.request_id) == 32


def test_sdk_unknown_job_gets_400(sdk: SimpleNamespace, sim: SimThread) -> None:
    """An unknown job id raises ClientRequestException 400 MSS.000000003."""
    c = client(sdk, sim.url)
    with pytest.raises(sdk.ClientRequestException) as caught:
        c.show_async_tts_job(sdk.ShowAsyncTtsJobRequest(job_id="b" * 32))
    assert caught.value.status_code == 400
    assert caught.value.error_code == "MSS.000000003"


def test_sdk_headers_are_the_documented_ones(sdk: SimpleNamespace, sim: SimThread) -> None:
    """The SDK signs content-type;host;user-agent;x-project-id;x-sdk-date and is accepted."""
    sent: list[dict[str, str]] = []

    def record(**kwargs: Any) -> None:
        sent.append(dict(kwargs["response"].request.headers))

    credentials = sdk.BasicCredentials(TEST_AK, TEST_SK).with_project_id(TEST_PROJECT_ID)
    c = (
        sdk.MetaStudioClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([sim.url])
        .with_http_handler(sdk.HttpHandler().add_response_handler(record))
        .build()
    )
    result = c.show_tts_job(sdk.ShowTtsJobRequest())
    assert result.status_code == 200
    assert result.count == 0
    (headers,) = sent
    assert (
        "SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date,"
        in (headers["Authorization"])
    )
    assert headers["X-Project-Id"] == TEST_PROJECT_ID
