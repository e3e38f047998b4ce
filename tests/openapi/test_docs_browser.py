"""The docs page in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import base64
import re
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.servers import Fleet, unique_email

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


@pytest.mark.server
@pytest.mark.parametrize("fleet", ["sqlite"], indirect=True)
def test_docs_authorize_with_client_credentials_then_try_it_out(fleet: Fleet) -> None:
    user_id = fleet.http.post(
        "/api/v2/users",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": unique_email("docs")},
    ).json()["id"]
    user_url = f"{fleet.base}/api/v2/users/{user_id}"
    token_url = f"{fleet.base}/oauth/token"
    basic = base64.b64encode(f"{fleet.client_id}:{fleet.client_secret}".encode()).decode()
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20000)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{fleet.base}/docs")
            operation = page.locator("#operations-users-get_user_get")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            operation.locator('tr[data-param-name="user_id"] input').fill(str(user_id))
            shown = operation.locator(".live-responses-table tbody")

            # Not authorized yet: no token is sent, and the page shows the 401.
            with page.expect_response(user_url) as anonymous:
                operation.locator("button.execute").click()
            assert anonymous.value.request.header_value("authorization") is None
            expect(shown.locator(".response-col_status")).to_have_text("401")

            page.locator(".scheme-container button.authorize").click()
            modal = page.locator(".modal-ux")
            modal.locator("#client_id_clientCredentials").fill(fleet.client_id)
            modal.locator("#client_secret_clientCredentials").fill(fleet.client_secret)
            # The checkboxes themselves are hidden behind their styled labels.
            modal.locator('label[for="users:read-clientCredentials-checkbox-oauth2"]').click()
            expect(modal.locator('input[data-value="users:read"]')).to_be_checked()
            expect(modal.locator('input[data-value="users:write"]')).not_to_be_checked()
            with page.expect_response(token_url) as token_answer:
                modal.locator("button.modal-btn.authorize").click()
            # Swagger UI's clientCredentials flow: the client in a Basic header,
            # the grant and the chosen scopes in a form body.
            token_request = token_answer.value.request
            assert token_request.method == "POST"
            assert token_request.header_value("authorization") == f"Basic {basic}"
            assert parse_qs(token_request.post_data or "") == {
                "grant_type": ["client_credentials"],
                "scope": ["users:read"],
            }
            assert token_answer.value.status == 200, token_answer.value.text()
            access_token = token_answer.value.json()["access_token"]
            expect(modal.locator("button.modal-btn", has_text="Logout")).to_be_visible()
            modal.locator("button.btn-done").click()
            expect(modal).to_have_count(0)
            expect(page.locator(".scheme-container button.authorize")).to_have_class(
                re.compile(r"\blocked\b")
            )

            with page.expect_response(user_url) as authorized:
                operation.locator("button.execute").click()
            assert authorized.value.request.header_value("authorization") == (
                f"Bearer {access_token}"
            )
            expect(shown.locator(".response-col_status")).to_have_text("200")
            expect(shown.locator(".response-col_description")).to_contain_text(f'"id": {user_id}')
        finally:
            browser.close()
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    assert token_url in requested
