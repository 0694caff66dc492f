"""Debian's Chromium, headless, for tests and benchmarks that drive the persona studio.

with sync_playwright() as p:
    browser = launch(p)
"""

from __future__ import annotations

import shutil

from playwright.sync_api import Browser, Playwright

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Web Audio plays without a click; with no sound card Chromium plays into a fake output
    # that runs in real time, so `ended` events fire as they would through speakers.
    "--autoplay-policy=no-user-gesture-required",
    # A fake microphone (a beep each second) that needs no permission prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def launch(playwright: Playwright, *flags: str) -> Browser:
    """The system's chromium (never Playwright's own download, which this project avoids),
    with `FLAGS` and any more `flags`."""
    chromium = shutil.which("chromium")
    assert chromium, "the studio needs Debian's chromium; `make install` installs it"
    return playwright.chromium.launch(executable_path=chromium, args=[*FLAGS, *flags])
