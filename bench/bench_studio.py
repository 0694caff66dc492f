"""Persona studio benchmark: what the page adds to first audio, against a plain HTTP client.

The preview sidecar serves both, in turns: a streaming request from Python (request sent ->
first PCM bytes), then the same line spoken from the page in headless Chromium (the page's own
`fetch` -> first PCM bytes, as it shows them), and the page's real-time factor and playback gaps.
"Beyond the audio" is the page's time from sending the request to Web Audio's last `ended`
event, minus the audio's duration: what a listener waits beyond the audio itself.

Run: .venv/bin/python bench/bench_studio.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.browser import launch  # noqa: E402
from support.sidecar import PERSONAS_TOML, SidecarProcess  # noqa: E402

from s2_plugin.protocol import SPEECH_PATH  # noqa: E402

TEXT = "Your order has shipped. [whisper] It should arrive on Friday."
RUNS = 10


def direct_ttfa_ms(url: str) -> float:
    body = json.dumps({"input": TEXT, "voice": "joe", "stream": True, "response_format": "pcm"})
    request = urllib.request.Request(
        url + SPEECH_PATH, body.encode(), {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        response.read1(1)
        first = time.perf_counter() - start
        response.read()
    return first * 1000


def summary(name: str, values: list[float], unit: str) -> str:
    p50, p90 = np.percentile(values, [50, 90])
    return f"{name:<36} p50 {p50:8.3g} {unit}   p90 {p90:8.3g} {unit}"


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SidecarProcess(Path(tmp) / "store", personas=PERSONAS_TOML) as sidecar,
        sync_playwright() as p,
    ):
        browser = launch(p)
        page = browser.new_page()
        page.set_default_timeout(120_000)
        page.goto(sidecar.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.select_option("#voice", "voice:joe")
        page.fill("#text", TEXT)
        direct_ttfa_ms(sidecar.url)  # warm up both paths
        page.click("#speak")
        page.wait_for_selector(".take[data-take='1'][data-state=played]")

        direct, studio, rtf, wait, gaps = [], [], [], [], 0
        for n in range(2, RUNS + 2):
            direct.append(direct_ttfa_ms(sidecar.url))
            page.click("#speak")
            take = page.locator(f".take[data-take='{n}'][data-state=played]")
            take.wait_for()
            data = take.evaluate("e => ({...e.dataset})")
            studio.append(float(data["ttfaMs"]))
            rtf.append(float(data["rtf"]))
            wait.append(float(data["doneMs"]) - int(data["samples"]) / int(data["rate"]) * 1000)
            gaps += int(data["gaps"])
        browser.close()

    print(f"preview engine, {RUNS} lines each way, alternating: {TEXT!r}")
    print(summary("first audio, Python client", direct, "ms"))
    print(summary("first audio, studio page", studio, "ms"))
    print(summary("page RTF (request -> last byte)", rtf, "x"))
    print(summary("request to played, beyond the audio", wait, "ms"))
    print(f"playback gaps (network behind Web Audio): {gaps} in {RUNS} takes")


if __name__ == "__main__":
    main()
