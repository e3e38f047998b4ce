"""The docs page: Swagger UI from an installed package, a version switcher."""

from __future__ import annotations

import json
import re
from typing import Any


def test_docs_page_loads_only_local_assets(client: Any) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    for source in sources:
        assert source.startswith("/docs/"), source
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert asset.get_data()  # reads and closes the file
        asset.close()
    assert "http://" not in html
    assert "https://" not in html


def test_switcher_lists_served_versions_newest_first(client: Any) -> None:
    script = client.get("/docs/init.js").get_data(as_text=True)
    config = json.loads(re.search(r"const config = (\{.*\});", script)[1])  # type: ignore[index]
    assert [entry["url"] for entry in config["urls"]] == [
        "/api/v3/openapi.json",
        "/api/v2/openapi.json",
        "/api/v1/openapi.json",
    ]
    assert config["urls.primaryName"] == "v2 (current)"
    assert config["validatorUrl"] is None  # no call to an online validator


def test_docs_can_be_turned_off(clock: Any) -> None:
    from flask import Flask

    from lockgate import Version, Versioning

    app = Flask("t")
    app.config["LOCKGATE_DOCS_URL"] = None
    Versioning(app, versions=[Version("1")], clock=clock)
    assert app.test_client().get("/docs").status_code == 404
