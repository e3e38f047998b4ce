"""The README's example runs and behaves as the README says."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

README = Path(__file__).parent.parent / "README.md"
SUNSET = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)


def test_readme_example() -> None:
    code = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 20
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    client = namespace["app"].test_client()
    for path, headers in [
        ("/api/v1/users/7", {}),
        ("/api/users/7", {"API-Version": "1"}),
        ("/api/users/7?version=1", {}),
        ("/api/users/7", {"Accept": "application/vnd.myapp.v1+json"}),
    ]:
        response = client.get(path, headers=headers)
        if datetime.now(UTC) >= SUNSET:  # the example uses the real clock
            assert response.status_code == 410
            continue
        assert response.status_code == 200
        assert response.get_json()["version"] == "1"
        assert response.headers["Deprecation"] == "@1767225600"
        assert response.headers["Sunset"] == "Wed, 30 Jun 2027 23:59:59 GMT"
        assert response.headers["Link"] == '</api/v2/users/7>; rel="successor-version"'


def test_readme_change_style_example() -> None:
    code = README.read_text().split("```python\n")[2].split("```", 1)[0]
    assert "class SplitName(VersionChange)" in code
    namespace: dict[str, Any] = {"__name__": "readme_changes"}
    exec(compile(code, "README.md", "exec"), namespace)
    client = namespace["app"].test_client()
    old = client.post("/api/v1/users", json={"name": "Ada Lovelace"})
    assert old.status_code == 201
    assert old.get_json() == {"id": 1, "name": "Ada Lovelace"}
    new = client.post("/api/v2/users", json={"first_name": "Ada", "last_name": "Lovelace"})
    assert new.get_json() == {"id": 1, "first_name": "Ada", "last_name": "Lovelace"}
    refused = client.post("/api/v1/users", json={"first_name": "Ada"})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.get_json()["errors"]] == ["name"]  # v1's name
    v1 = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert set(v1["UserOut"]["properties"]) == {"id", "name"}
