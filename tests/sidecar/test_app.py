"""The sidecar's app as a real process (preview engine): health, metrics, and what applies to
every route."""

from __future__ import annotations

from pathlib import Path

from support.sidecar import SidecarProcess
from support.sidecar_http import post_speech, tone, upload

from s2_plugin.client import S2Client


def test_health_announces_the_preview(sidecar: SidecarProcess) -> None:
    status, body = sidecar.health()
    assert status == 200
    assert body["status"] == "ready"
    assert body["engine"] == "preview"
    assert body["preview"] is True
    assert body["personas"] >= 1
    assert "not S2" in str(body["detail"])


async def test_errors_are_counted(sidecar: SidecarProcess) -> None:
    before = sidecar.metrics().value("s2_errors_total", code="unknown_voice")
    await post_speech(sidecar.url, json={"input": "Hi", "voice": "nobody"})
    assert sidecar.metrics().value("s2_errors_total", code="unknown_voice") == before + 1


async def test_api_key_required_and_checked(make_sidecar, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(api_key="s3cret")
    body = {"input": "Hello"}
    status, error = await post_speech(process.url, json=body)
    assert (status, error["error"]["code"]) == (401, "missing_api_key")  # type: ignore[index]
    status, error = await post_speech(
        process.url, json=body, headers={"Authorization": "Bearer wrong"}
    )
    assert (status, error["error"]["code"]) == (401, "bad_api_key")  # type: ignore[index]
    got, error = await upload(
        process.url,
        {"name": "x", "audio": tone(12), "transcript": "x"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert got == 401
    assert not list(process.store.glob("x*"))
    assert process.health()[0] == 200  # health stays open for probes
    async with S2Client(process.url, api_key="s3cret") as client:
        assert len(await client.synthesize("Hello.")) > 0
