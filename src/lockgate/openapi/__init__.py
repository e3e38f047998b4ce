"""OpenAPI: one document per version, the catalog, the changelog, ``/docs``, ``flask api``.

The rule of this folder: it reads versioning's state, the URL map and the
scopes views require (``lockgate.auth``), and nothing reads it back.
Versioning does not import it; importing it (as ``lockgate`` does) hooks
:func:`setup` into every ``Versioning.init_app``.
"""

from __future__ import annotations

from flask import Flask

from ..versioning import VersioningState, on_init
from .changelog import register_changelog
from .cli import api_cli, openapi_json, table_console, versions_table
from .docs import register_docs
from .documents import Operation, build_openapi, catalog_entry, operation

__all__ = [
    "Operation",
    "api_cli",
    "build_openapi",
    "catalog_entry",
    "openapi_json",
    "operation",
    "setup",
    "table_console",
    "versions_table",
]


def setup(app: Flask, state: VersioningState) -> None:
    """Serve the catalog, the documents, the changelog and ``/docs``; add ``flask api``."""
    register_docs(app, state)
    docs_url = app.config.get("LOCKGATE_DOCS_URL")
    register_changelog(app, state, "/" + docs_url.strip("/") if docs_url else None)
    app.cli.add_command(api_cli)


on_init(setup)
