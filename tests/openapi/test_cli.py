"""``flask api versions`` and ``flask api openapi``."""

from __future__ import annotations

import json

from flask import Flask


def test_versions_table(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["api", "versions"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("1" in line and "deprecated" in line and "2027-06-30" in line for line in lines)
    assert any("0" in line and "retired" in line for line in lines)
    assert any("3" in line and "preview" in line for line in lines)
    # Not a terminal: nothing is folded, whatever the width.
    assert "2027-06-30T23:59:59Z" in result.output
    assert "/api/v1/openapi.json" in result.output
    assert "https://example.com/deprecations/v1" in result.output


def test_openapi_for_a_version(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["api", "openapi", "--version", "1"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["info"]["version"] == "1"
    assert "/api/v1/users" in document["paths"]


def test_openapi_for_an_unknown_version(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["api", "openapi", "--version", "9"])
    assert result.exit_code == 2
    assert "not a declared version" in result.output
