"""The persona studio page, driven in a real headless Chromium against the real sidecar process.

The browser is the one support/browser.py finds; without one these tests are skipped, except
in CI (CI=true), where `make test` installs Debian's chromium and a missing one fails. Each
test saves a screenshot of the page into $S2_STUDIO_SCREENSHOTS, or its pytest tmp dir.
"""

from __future__ import annotations

import io
import json
import os
import re
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from s2_sidecar import studio
from support import browser as browsers
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.signals import speechlike

from s2_plugin.audio import float_to_pcm16, wav_bytes
from s2_plugin.prompt import EXAMPLE_TAGS

WAIT_MS = 60_000
"""Generous: the machine is shared, and every wait is for an event, not a measured time."""

TAGGED = "Hello there. [whisper] Can you keep a secret?"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if browsers.find() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(browsers.HOW)
        pytest.skip(browsers.HOW)
    with sync_playwright() as p:
        browser = browsers.launch(p)
        yield browser
        browser.close()


def test_the_browser_is_found_on_path_or_named_by_s2_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chrome = tmp_path / "google-chrome"
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    monkeypatch.delenv(browsers.ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert browsers.find() == str(chrome)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(browsers.ENV, str(chrome))
    assert browsers.find() == str(chrome)
    monkeypatch.setenv(browsers.ENV, str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match=browsers.ENV):
        browsers.find()


@pytest.fixture(scope="module")
def studio_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A sidecar of its own: these tests add and delete personas."""
    root = tmp_path_factory.mktemp("studio")
    with SidecarProcess(root / "store", personas=PERSONAS_TOML) as process:
        yield process


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """`open_page(url)`: a fresh tab (its own sessionStorage) on the studio, loaded."""
    contexts = []
    errors: list[str] = []
    pages: list[Page] = []

    def open_(url: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]")
        pages.append(page)
        return page

    yield open_
    folder = Path(os.environ.get("S2_STUDIO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(pages):
        page.screenshot(path=folder / f"{request.node.name}-{i}.png", full_page=True)
    for context in contexts:
        context.close()
    assert not errors, f"the page threw: {errors}"


def clip(seconds: float, rate: int = 22050) -> dict[str, object]:
    """A speech-like WAV as Playwright's file payload."""
    data = wav_bytes(float_to_pcm16(speechlike(seconds, rate)), rate)
    return {"name": f"clip-{seconds:g}s.wav", "mimeType": "audio/wav", "buffer": data}


def add_persona(page: Page, name: str, transcript: str) -> None:
    page.fill("#add-name", name)
    page.fill("#add-transcript", transcript)
    page.click("#add-submit")
    page.wait_for_selector("#add-result.ok, #add-result.error")


def api_get(page: Page, url: str) -> Any:
    response = page.request.get(url)
    assert response.ok, response.text()
    return response.json()


# --- the page and its files ----------------------------------------------------------------


def test_page_and_assets_are_served_with_a_strict_policy(studio_sidecar: SidecarProcess) -> None:
    for path in studio.PATHS:
        with urllib.request.urlopen(studio_sidecar.url + path) as r:
            assert r.status == 200, path
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(studio_sidecar.url + studio.CONFIG_PATH) as r:
        config = json.load(r)
    assert set(EXAMPLE_TAGS) <= set(config["palette"])
    assert "wav" in config["formats"]


def test_health_and_the_preview_are_said_plainly(
    studio_sidecar: SidecarProcess, open_page: Any
) -> None:
    page = open_page(studio_sidecar.url)
    page.wait_for_selector("#health[data-status=ready]")
    assert "CPU preview voice" in page.inner_text("#engine")
    assert "does not clone" in page.inner_text("#preview-note")
    assert page.is_visible("#tags-note")
    palette = page.locator("#palette button").all_inner_texts()
    assert "[whisper]" in palette and "[professional broadcast tone]" in palette


# --- personas ------------------------------------------------------------------------------


def test_upload_lists_the_persona_with_its_warnings_then_delete(
    studio_sidecar: SidecarProcess, open_page: Any
) -> None:
    page = open_page(studio_sidecar.url)
    page.set_input_files("#clip-file", files=[clip(5)])  # type: ignore[list-item]
    page.wait_for_selector("#clip-info:not([hidden])")
    add_persona(page, "ava", "A five second clip, under what S2 likes.")

    info = api_get(page, studio_sidecar.url + "/v1/audio/voices/ava")
    assert info["warnings"], "a 5 s clip should be warned about"
    row = page.locator("li.persona[data-persona=ava]")
    assert row.locator(".warning").all_inner_texts() == info["warnings"]
    assert row.locator(".duration").inner_text() == f"{info['duration_s']:.1f} s"
    assert page.locator("#add-result .warning").all_inner_texts() == info["warnings"]
    assert page.input_value("#voice") == "voice:ava"  # ready to hear it

    row.locator(".delete").click()
    row.locator(".confirm").click()
    row.wait_for(state="detached")
    assert page.request.get(studio_sidecar.url + "/v1/audio/voices/ava").status == 404
    assert page.locator("li.persona[data-persona=joe]").count() == 1


def _silent() -> dict[str, object]:
    return {
        "name": "silent.wav",
        "mimeType": "audio/wav",
        "buffer": wav_bytes(bytes(2 * 22050 * 12), 22050),
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (_silent(), "audio_silent"),
        (
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not audio" * 100},
            "audio_undecodable",
        ),
    ],
    ids=["silent", "undecodable"],
)
def test_a_bad_clip_shows_the_sidecars_message(
    studio_sidecar: SidecarProcess, open_page: Any, payload: dict[str, object], code: str
) -> None:
    page = open_page(studio_sidecar.url)
    direct = page.request.post(
        studio_sidecar.url + "/v1/audio/voices",
        multipart={"name": "bad", "transcript": "x", "audio": payload},  # type: ignore[dict-item]
    )
    assert direct.status == 400
    expected = direct.json()["error"]

    page.set_input_files("#clip-file", files=[payload])  # type: ignore[list-item]
    add_persona(page, "bad", "x")
    result = page.locator("#add-result.error")
    assert result.inner_text() == expected["message"]
    assert result.get_attribute("data-code") == expected["code"] == code
    assert page.locator("li.persona[data-persona=bad]").count() == 0


def test_a_recording_in_the_page_becomes_a_persona(
    studio_sidecar: SidecarProcess, open_page: Any
) -> None:
    page = open_page(studio_sidecar.url)
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not audio" * 100}
    page.set_input_files("#clip-file", files=[notes])  # type: ignore[list-item]
    add_persona(page, "mic", "Beep, beep, beep.")
    assert page.is_visible("#add-result.error")  # a file that is no audio, refused

    page.click("#record")
    page.wait_for_selector("#recorder[data-zone=good]")  # the guide's 10 s mark
    assert page.locator("#record").inner_text() == "Stop recording"
    assert "Input level" in page.inner_text("#level-label")
    assert page.inner_text("#good-min-label") == "10 s"
    assert page.inner_text("#good-max-label") == "30 s"
    page.click("#record")
    page.wait_for_selector("#clip-info[data-seconds]")  # the page's WAV, decoded back
    assert float(page.get_attribute("#clip-info", "data-seconds") or 0) >= 10
    # Only the recording is left to upload: the file and its error are gone.
    assert page.input_value("#clip-file") == "" and page.is_hidden("#add-result")
    assert page.inner_text("#clip-info").startswith("recording.wav")
    page.click("#add-submit")
    page.wait_for_selector("#add-result.ok, #add-result.error")
    assert page.locator("#add-result.ok").count() == 1, page.inner_text("#add-result")
    page.wait_for_selector("li.persona[data-persona=mic]")
    # Cleared for the next persona; the verdict stays.
    assert page.input_value("#add-name") == page.input_value("#add-transcript") == ""
    assert page.is_hidden("#clip-preview") and page.is_hidden("#clip-info")
    assert "Added mic" in page.inner_text("#add-result")
    info = api_get(page, studio_sidecar.url + "/v1/audio/voices/mic")
    assert info["duration_s"] >= 3.0
    page.request.delete(studio_sidecar.url + "/v1/audio/voices/mic")


# --- speaking ------------------------------------------------------------------------------


def test_a_tagged_line_streams_plays_and_reports_its_timing(
    studio_sidecar: SidecarProcess, open_page: Any, tmp_path: Path
) -> None:
    page = open_page(studio_sidecar.url)
    page.select_option("#voice", "voice:joe")
    page.fill("#text", "")
    page.locator("#palette button", has_text="[whisper]").click()
    page.locator("#text").press_sequentially("Can you keep a secret?")
    assert page.input_value("#text") == "[whisper] Can you keep a secret?"
    page.fill("#text", TAGGED)

    with page.expect_response("**/v1/audio/speech") as answer:
        page.click("#speak")
    response = answer.value
    sent = json.loads(response.request.post_data or "{}")
    assert sent["input"] == TAGGED and sent["voice"] == "joe"
    assert (sent["stream"], sent["response_format"]) == (True, "pcm")

    take = page.locator(".take[data-state=played]")
    take.wait_for()
    pcm = response.body()
    rate = int(response.headers["x-sample-rate"])
    samples = len(pcm) // 2
    assert samples > rate  # over a second of speech
    # Every streamed sample was scheduled, and Web Audio played each buffer to its end.
    assert int(take.get_attribute("data-samples") or 0) == samples
    assert int(take.get_attribute("data-played") or 0) == samples
    assert int(take.get_attribute("data-rate") or 0) == rate
    # The take's <audio> element reads the page's WAV as exactly the request's duration.
    duration = page.evaluate(
        """a => a.readyState >= 1 ? a.duration
           : new Promise(ok => a.addEventListener('loadedmetadata', () => ok(a.duration)))""",
        take.locator("audio").element_handle(),
    )
    assert duration == pytest.approx(samples / rate, abs=1e-3)

    assert re.fullmatch(r"\d+ ms", page.inner_text("#ttfa"))
    assert float(page.inner_text("#rtf")) > 0
    assert page.inner_text("#duration") == f"{samples / rate:.2f} s"
    assert "first audio" in take.locator(".stats").inner_text()

    with page.expect_download() as download:
        take.locator(".downloads a", has_text="wav").click()
    saved = tmp_path / "take.wav"
    download.value.save_as(saved)
    with wave.open(io.BytesIO(saved.read_bytes())) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
        assert w.readframes(w.getnframes()) == pcm  # the download is what was heard

    # Any other format the API offers is rendered again by the sidecar, with the take's seed.
    config = api_get(page, studio_sidecar.url + studio.CONFIG_PATH)
    for fmt in set(config["formats"]) - {"wav", "pcm"}:
        with page.expect_response("**/v1/audio/speech") as again, page.expect_download() as got:
            take.locator(".downloads a", has_text=fmt).click()
        assert json.loads(again.value.request.post_data or "{}")["seed"] == sent["seed"]
        assert got.value.suggested_filename.endswith(f".{fmt}")
        assert Path(got.value.path()).stat().st_size > 0, fmt


def test_takes_stay_to_compare(studio_sidecar: SidecarProcess, open_page: Any) -> None:
    page = open_page(studio_sidecar.url)
    for n, text in enumerate(("First take.", "[excited] Second take!"), 1):
        page.fill("#text", text)
        page.click("#speak")
        page.wait_for_selector(f".take[data-take='{n}'][data-state=played]")
    texts = page.locator(".take .text").all_inner_texts()
    assert texts == ["[excited] Second take!", "First take."]  # newest first


def test_a_refused_request_shows_the_apis_message_by_the_speak_button(
    studio_sidecar: SidecarProcess, open_page: Any
) -> None:
    page = open_page(studio_sidecar.url)
    page.fill("#text", "[whisper")
    with page.expect_response("**/v1/audio/speech") as answer:
        page.click("#speak")
    expected = answer.value.json()["error"]
    page.wait_for_selector(".take[data-state=failed]")
    assert page.inner_text("#speak-error") == expected["message"]
    assert answer.value.status == 400


# --- the API key ---------------------------------------------------------------------------

KEY = "studio-key"


def test_with_a_key_the_page_asks_for_it_and_the_api_refuses_without_it(
    make_sidecar: Any, open_page: Any
) -> None:
    process: SidecarProcess = make_sidecar(personas=PERSONAS_TOML, api_key=KEY)
    page = open_page(process.url)  # the page itself is served without the key
    refused = page.request.get(process.url + "/v1/audio/voices")
    assert refused.status == 401
    page.wait_for_selector("#key-panel:not([hidden])")
    assert page.inner_text("#key-error") == refused.json()["error"]["message"]
    assert page.locator("li.persona").count() == 0

    page.fill("#key-input", "not-the-key")
    page.click("#key-form button")
    page.wait_for_selector("#key-error[data-code=bad_api_key]")
    assert "wrong" in page.inner_text("#key-error")

    page.fill("#key-input", KEY)
    page.click("#key-form button")
    page.wait_for_selector("li.persona[data-persona=joe]")
    assert page.is_hidden("#key-panel")
    page.click("#speak")
    page.wait_for_selector(".take[data-state=played]")

    # A stored persona's clip plays back, fetched with the key (and refused without it).
    row = page.locator("li.persona[data-persona=joe]")
    row.locator(".play").click()
    row.locator("audio.clip[src^='blob:']").wait_for()
    seconds = row.locator("audio.clip").evaluate(
        "a => a.readyState >= 1 ? a.duration"
        " : new Promise(done => a.addEventListener('loadedmetadata', () => done(a.duration)))"
    )
    clip_url = process.url + "/v1/audio/voices/joe/clip"
    assert page.request.get(clip_url).status == 401
    stored = page.request.get(clip_url, headers={"Authorization": f"Bearer {KEY}"})
    assert stored.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(stored.body())) as w:
        assert abs(seconds - w.getnframes() / w.getframerate()) < 0.05

    # Kept for this tab only: a reload keeps it, a new tab asks again; never a cookie.
    assert page.evaluate("sessionStorage.getItem('s2-sidecar-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    page.reload()
    page.wait_for_selector("li.persona[data-persona=joe]")
    other = open_page(process.url)
    other.wait_for_selector("#key-panel:not([hidden])")
    assert page.request.get(process.url + "/v1/audio/voices").status == 401


# --- casts ---------------------------------------------------------------------------------


def test_a_cast_speaks_with_a_tag_per_speaker(
    studio_sidecar: SidecarProcess, open_page: Any
) -> None:
    page = open_page(studio_sidecar.url)
    page.set_input_files("#clip-file", files=[clip(12)])  # type: ignore[list-item]
    page.wait_for_selector("#clip-info[data-seconds]")
    add_persona(page, "ava", "Twelve seconds of a speech-like tone.")
    builder = page.locator("#cast-builder")
    builder.locator("summary").click()
    builder.get_by_label("joe").check()
    builder.get_by_label("ava").check()
    labels = builder.locator("#cast-members label").all_inner_texts()
    assert sorted(labels) == ["ava (speaker 1)", "joe (speaker 0)"]  # in the order ticked
    page.click("#cast-use")
    assert page.input_value("#voice") == "cast:joe,ava"
    page.fill("#text", "")
    page.locator("#palette button.speaker", has_text="joe").click()
    page.locator("#text").press_sequentially("Hello there.")
    page.locator("#palette button.speaker", has_text="ava").click()
    page.locator("#text").press_sequentially("Hi, Joe.")
    text = "<|speaker:0|> Hello there. <|speaker:1|> Hi, Joe."
    assert page.input_value("#text") == text

    with page.expect_response("**/v1/audio/speech") as answer:
        page.click("#speak")
    sent = json.loads(answer.value.request.post_data or "{}")
    assert sent["cast"] == ["joe", "ava"] and sent["input"] == text
    take = page.locator(".take[data-state=played]")
    take.wait_for()
    assert int(take.get_attribute("data-played") or 0) == len(answer.value.body()) // 2
    assert take.locator(".voice").inner_text().endswith("joe + ava")
    page.request.delete(studio_sidecar.url + "/v1/audio/voices/ava")
