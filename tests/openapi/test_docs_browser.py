"""The docs page in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

from tests.servers import Fleet

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's notes say: no background traffic, no sandbox as root.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.server
@pytest.mark.parametrize("fleet", ["sqlite"], indirect=True)
def test_docs_render_switch_versions_and_stay_local(fleet: Fleet) -> None:
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{fleet.base}/docs")
            page.locator(".opblock-summary", has_text="/api/v2/users").first.wait_for(timeout=20000)
            v2_paths = page.locator(".opblock-summary").all_inner_texts()
            assert any("/api/v2/users" in path for path in v2_paths)
            assert not any("/api/v1/" in path for path in v2_paths)
            page.select_option("select#select", label="v1 (deprecated)")
            page.locator(".opblock-summary", has_text="/api/v1/users").first.wait_for(timeout=20000)
            v1_paths = page.locator(".opblock-summary").all_inner_texts()
            assert any("/api/v1/users" in path for path in v1_paths)
            assert not any("/api/v2/" in path for path in v1_paths)
            # a deprecated version's operations are shown as deprecated
            assert page.locator(".opblock-deprecated").count() >= 1
        finally:
            browser.close()
    assert requested, "the page made no request at all"
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts <= {"127.0.0.1", "localhost"}, hosts
    assert any(url.endswith("/api/v1/openapi.json") for url in requested)
