"""A Chromium-family browser, headless, for tests and benchmarks that drive the persona studio.

with sync_playwright() as p:
    browser = launch(p)

`find()` looks where people have one: $S2_BROWSER, `chromium` or `google-chrome` on PATH, the
macOS app bundles. Playwright only drives it; never `playwright install`, which downloads a
browser of its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Browser, Playwright

ENV = "S2_BROWSER"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAC_APPS = (
    "Google Chrome.app/Contents/MacOS/Google Chrome",
    "Chromium.app/Contents/MacOS/Chromium",
)
HOW = (
    "no browser for the persona studio's tests: install Chromium or Google Chrome "
    "(Debian: sudo apt-get install chromium; macOS: the Chrome app), or set "
    f"{ENV}=/path/to/chrome"
)

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


def find() -> str | None:
    """The browser to drive, or None; a $S2_BROWSER that is not a program is an error."""
    if chosen := os.environ.get(ENV):
        path = shutil.which(chosen)
        if path is None:
            raise FileNotFoundError(f"${ENV} is {chosen!r}, which is not a program")
        return path
    for name in NAMES:
        if path := shutil.which(name):
            return path
    for folder in (Path("/Applications"), Path.home() / "Applications"):
        for app in MAC_APPS:
            if os.access(folder / app, os.X_OK):
                return str(folder / app)
    return None


def launch(playwright: Playwright) -> Browser:
    """The browser `find()` finds, headless; a RuntimeError that says how to get one if none."""
    path = find()
    if path is None:
        raise RuntimeError(HOW)
    return playwright.chromium.launch(executable_path=path, args=FLAGS)
