"""``flask api``: the version catalog and OpenAPI documents from the command line."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table

from ..versioning import VersioningState, get_state
from ..versioning.versions import Label
from .documents import build_openapi, catalog_entry

__all__ = ["api_cli", "openapi_json", "table_console", "versions_table"]

api_cli = AppGroup("api", help="API versions and their OpenAPI documents.")


def table_console() -> Console:
    """A console for tables: to a pipe or a file, as wide as the rows need.

    Rich assumes 80 columns when stdout is not a terminal and would fold the
    dates and URLs, which scripts grep for.
    """
    return Console(width=None if sys.stdout.isatty() else 10_000)


def versions_table(state: VersioningState, title: str | None = None) -> Table:
    """The catalog as a rich table."""
    now = state.clock()
    table = Table(title=title)
    columns = ("version", "status", "deprecated", "sunset", "successor", "policy", "openapi")
    for column in columns:
        table.add_column(column, overflow="fold")
    for version in state.bundle.versions:
        entry = catalog_entry(state, version, now)
        table.add_row(*(str(entry[c] or "-") for c in columns))
    return table


def openapi_json(state: VersioningState, raw_label: str) -> str:
    """One version's OpenAPI document as indented JSON.

    :raises click.BadParameter: the label is malformed or not declared.
    """
    label = Label.parse(raw_label)
    if label is None or state.bundle.get(label) is None:
        known = ", ".join(v.label.text for v in state.bundle.versions)
        raise click.BadParameter(f"{raw_label!r} is not a declared version ({known})")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return json.dumps(build_openapi(app, state, label, state.clock()), indent=2)


@api_cli.command("versions")
def versions_command() -> None:
    """Print the version catalog as a table."""
    table_console().print(versions_table(get_state()))


@api_cli.command("openapi")
@click.option("--version", "label", required=True, help="The version, e.g. 2.")
def openapi_command(label: str) -> None:
    """Print one version's OpenAPI document."""
    click.echo(openapi_json(get_state(), label))
