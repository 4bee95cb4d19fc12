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
