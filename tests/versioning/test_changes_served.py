"""The change-style app served over HTTP: schemathesis against each version's
document, and the changelog pages in a real browser (Debian's chromium)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from tests.openapi.test_docs_browser import ARGS, CHROMIUM
from tests.servers import schemathesis

from . import changes_app

SEED = 20261202
MAX_TIME = 15


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    # Three runs from one address within a minute can pass the default budget
    # (deprecated versions share half of it); limits are not what this tests.
    app = changes_app.create_app(
        clock=lambda: datetime(2026, 12, 1, tzinfo=UTC), LOCKGATE_RATE_LIMIT="1000000/minute"
    )
    app.config["TESTING"] = False
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_schemathesis_finds_nothing_in_any_version(base: str, version: str, tmp_path: Path) -> None:
    """Every check: the migrated bodies conform to each version's own document."""
    output = schemathesis(
        f"{base}/api/v{version}/openapi.json", seed=SEED, max_time=MAX_TIME, cwd=tmp_path
    )
    assert "Tested: 4" in output, output[-5000:]  # each version has four operations


def test_the_changelog_and_a_guide_in_a_browser(base: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/docs/changelog")
            assert page.locator("h1").inner_text() == "items changelog"
            versions = page.locator("section.version h2").all_inner_texts()
            assert versions == [
                "Version 3 (current)",
                "Version 2 (deprecated)",
                "Version 1 (deprecated)",
            ]
            rename = page.locator("#RenameName")
            assert "breaking" in rename.locator("h3").inner_text()
            assert rename.locator("code", has_text="full_name").count() >= 1
            page.locator("a", has_text="Migrating from v1").click()
            page.wait_for_url("**/docs/migrations/v1-to-v2")
            assert page.locator("h1").inner_text() == "Migrating from v1 to v2"
            todo = page.locator("li").all_inner_texts()
            assert "In ItemOut, use full_name where you used name." in todo
            assert page.locator("#RequireEmail").count() == 0  # v3's change is not on the way
        finally:
            browser.close()
