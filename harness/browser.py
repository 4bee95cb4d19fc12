"""A real browser for the web app's tests and benchmark: Debian's Chromium (`make tools`)
driven by Playwright for Python through ``executable_path`` (Playwright's own browser
download is never used: this machine cannot reach it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

# Headless, and quiet on a closed network: without the background-networking flags Chromium
# keeps trying Google's hosts (component updates, sync) at every start.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage")


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed: run `make tools` (Debian's chromium)")
    return path


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (a Playwright Browser); closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def drag_crop(page, left: float, top: float, right: float, bottom: float) -> None:
    """Drag the query preview's crop from (left, top) to (right, bottom), fractions of the
    drawing shown: as an examiner selects the part to search for."""
    box = page.locator("#query-preview").bounding_box()
    page.mouse.move(box["x"] + box["width"] * left, box["y"] + box["height"] * top)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * right, box["y"] + box["height"] * bottom, steps=5)
    page.mouse.up()
