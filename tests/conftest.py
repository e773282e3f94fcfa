from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# Hypothesis: deterministic enough for CI, no database in the source tree.
from hypothesis import settings

settings.register_profile("ci", deadline=None, database=None, print_blob=True)
settings.load_profile("ci")
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by .ci/run: Playwright downloads nothing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the slow end-to-end tests first: with pytest-xdist they then run beside the rest
    instead of after it, so the suite's wall time is the longest of them, not their sum plus it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (the dashboard tests)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
