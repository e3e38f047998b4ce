"""Version-neutral documentation routes: the catalog, OpenAPI documents, ``/docs``.

The docs page is Swagger UI 5 with its version switcher; its assets are served
from the installed ``flask_swagger_ui`` package, never from a CDN.
"""

from __future__ import annotations

import json
from pathlib import Path

import flask_swagger_ui
from flask import Flask, Response, jsonify, request, send_from_directory
from markupsafe import Markup

from ..versioning import VersioningState, VersionStatus
from ..views import cache_control, mark_neutral
from .documents import build_openapi, catalog_entry

__all__ = ["register_docs"]

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} API docs</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{assets}/swagger-ui-standalone-preset.js"></script>
  <script src="{docs}/init.js"></script>
</body>
</html>
"""


def register_docs(app: Flask, state: VersioningState) -> None:
    """Add ``<prefix>/versions``, ``<prefix>/v<N>/openapi.json`` and the docs page."""

    def catalog() -> Response:
        now = state.clock()
        return jsonify([catalog_entry(state, v, now) for v in state.bundle.versions])

    # The catalog and the documents change only at lifecycle instants or deploys.
    cache_control("public, max-age=60")(catalog)
    _add(app, f"{state.prefix}/versions", "lockgate_versions", catalog)
    for version in state.bundle.versions:
        label = version.label

        def spec(label: object = label) -> Response:
            return jsonify(build_openapi(app, state, label, state.clock()))  # type: ignore[arg-type]

        cache_control("public, max-age=60")(spec)
        _add(
            app,
            f"{state.prefix}/v{label.text}/openapi.json",
            f"lockgate_openapi_{label.text.replace('.', '_').replace('-', '_')}",
            spec,
        )

    docs_url = app.config.get("LOCKGATE_DOCS_URL")
    if not docs_url:
        return
    docs_url = "/" + docs_url.strip("/")

    def page() -> Response:
        title = Markup.escape(app.config.get("LOCKGATE_TITLE") or app.name)
        # Below SCRIPT_NAME when the service is mounted (the fleet's /services/<name>).
        here = Markup.escape(request.script_root + docs_url)
        html = _PAGE.format(title=title, assets=f"{here}/assets", docs=here)
        return Response(html, mimetype="text/html")

    def init_js() -> Response:
        root = request.script_root
        snapshot = state.bundle.snapshot(state.clock())
        urls = []
        for version in reversed(state.bundle.versions):
            status = snapshot.statuses[version.label]
            if status is VersionStatus.RETIRED:
                continue
            urls.append(
                {
                    "url": f"{root}{state.prefix}/v{version.label.text}/openapi.json",
                    "name": f"v{version.label.text} ({status})",
                }
            )
        primary = snapshot.default or next(
            v for v in reversed(state.bundle.versions) if snapshot.statuses[v.label] != "retired"
        )
        config = {
            "dom_id": "#swagger-ui",
            "urls": urls,
            "urls.primaryName": f"v{primary.label.text} ({snapshot.statuses[primary.label]})",
            "deepLinking": True,
            "validatorUrl": None,
            "layout": "StandaloneLayout",
        }
        script = (
            f"window.onload = function () {{\n  const config = {json.dumps(config)};\n"
            "  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset];\n"
            "  window.ui = SwaggerUIBundle(config);\n};\n"
        )
        return Response(script, mimetype="text/javascript")

    def asset(filename: str) -> Response:
        return send_from_directory(ASSETS, filename, max_age=3600)

    _add(app, docs_url, "lockgate_docs", page)
    _add(app, f"{docs_url}/init.js", "lockgate_docs_init", init_js)
    _add(app, f"{docs_url}/assets/<path:filename>", "lockgate_docs_asset", asset)


def _add(app: Flask, rule: str, endpoint: str, view: object) -> None:
    mark_neutral(view)
    app.add_url_rule(rule, endpoint, view)  # type: ignore[arg-type]
