"""A real headless Chromium (the system's ``chromium`` package, driven by Playwright) for the tests that look at the
Dagster UI as a person does. Never Playwright's own browser downloads (no network at run time).

Without chromium the browser tests skip, except in CI (``CI`` set), where ``.ci/run`` installs it and a skipped
``@pytest.mark.browser`` test is a failure (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_ENV = "SEGMENTATION_UI_SCREENSHOTS"  # where the screenshots go (default: the test's tmp_path)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def browser_page(width: int = 1600, height: int = 1000) -> Iterator[object]:
    """A Playwright page in a fresh Chromium profile (so every first-visit prompt would show)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("the browser tests need chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
