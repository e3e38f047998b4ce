"""The changelog and migration guides, generated from the version changes.

``<prefix>/changelog`` (JSON), ``/docs/changelog`` and
``/docs/migrations/v{A}-to-v{B}`` (HTML).

All three render :func:`lockgate.versioning.changelog.changelog`, so the
page, the JSON and the guide say the same thing. A guide is generated only
for an app served by changes (``Versioning(head=...)``); a folder-style
service keeps its hand-written one at the same path. The HTML is Jinja2 with
autoescaping; the changes' docstrings are text, with `code` spans kept.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template_string
from markupsafe import Markup, escape

from ..versioning import VersioningState
from ..versioning.changelog import change_entry, changelog, migration_steps
from ..versioning.versions import Label
from ..views import cache_control, mark_neutral

__all__ = ["register_changelog"]

_CODE = re.compile(r"`([^`]+)`")

_STYLE = """
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;
         padding: 0 1rem; }
  table { border-collapse: collapse; margin: .5rem 0 1rem; }
  th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
  .breaking { color: #a00; font-weight: 600; }
  .compatible { color: #070; }
  code { background: #f3f3f3; padding: 0 .2rem; }
"""

_CHANGES = """
{% for change in changes %}
<section class="change" id="{{ change.name }}">
  <h3>{{ change.name }} <span class="{{ 'breaking' if change.breaking else 'compatible' }}">
    {{- 'breaking' if change.breaking else 'compatible' }}</span></h3>
  <p>{{ change.description | prose }}</p>
  {% if change.endpoints %}
  <table><tr><th>endpoint</th><th>methods</th><th>change</th><th></th></tr>
  {% for e in change.endpoints %}
    <tr><td><code>{{ e.path }}</code></td><td>{{ (e.methods or ['all']) | join(', ') }}</td>
    <td>{{ e.change }}</td><td class="{{ 'breaking' if e.breaking else 'compatible' }}">
    {{- 'breaking' if e.breaking else 'compatible' }}</td></tr>
  {% endfor %}</table>
  {% endif %}
  {% if change.fields %}
  <table><tr><th>schema</th><th>field</th><th>change</th><th>in</th><th></th></tr>
  {% for f in change.fields %}
    <tr><td>{{ f.schema }}</td><td><code>{{ f.field }}</code>
    {%- if f.get('from') %} (was <code>{{ f['from'] }}</code>){% endif %}</td>
    <td>{{ f.change }}</td><td>{{ f['in'] | join(', ') }}</td>
    <td class="{{ 'breaking' if f.breaking else 'compatible' }}">
    {{- 'breaking' if f.breaking else 'compatible' }}</td></tr>
  {% endfor %}</table>
  {% endif %}
</section>
{% endfor %}
"""

_CHANGELOG_PAGE = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} changelog</title>
<style>"""
    + _STYLE
    + """</style></head>
<body>
<h1>{{ title }} changelog</h1>
{% for version in versions %}
<section class="version" id="v{{ version.version }}">
  <h2>Version {{ version.version }} <small>({{ version.status }})</small></h2>
  {% if version.deprecated %}<p>Deprecated since {{ version.deprecated }}.</p>{% endif %}
  {% if version.sunset %}<p>Sunset: {{ version.sunset }}.</p>{% endif %}
  {% if version.previous and version.served_by_changes %}
  <p><a href="{{ docs }}/migrations/v{{ version.previous }}-to-v{{ version.version }}">
    Migrating from v{{ version.previous }}</a></p>{% endif %}
  {% set changes = version.changes %}
  {% if changes %}"""
    + _CHANGES
    + """{% else %}<p>No changes listed.</p>{% endif %}
</section>
{% endfor %}
</body></html>
"""
)

_GUIDE_PAGE = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}: migrating from v{{ old }} to v{{ new }}</title>
<style>"""
    + _STYLE
    + """</style></head>
<body>
<h1>Migrating from v{{ old }} to v{{ new }}</h1>
<p>{{ title }} serves every version from one implementation; this guide
lists each change between v{{ old }} and v{{ new }}, oldest first.
{% if deprecated %}Version {{ old }} is deprecated since {{ deprecated }}.{% endif %}
{% if sunset %}It stops being served on {{ sunset }} (then it answers 410).{% endif %}</p>
{% if todo %}
<h2>What to change in a client</h2>
<ul>{% for line in todo %}<li>{{ line | prose }}</li>{% endfor %}</ul>
{% endif %}
{% for step in steps %}
<h2>Version {{ step.version }}</h2>
{% set changes = step.changes %}
{% if changes %}"""
    + _CHANGES
    + """{% else %}<p>No changes.</p>{% endif %}
{% endfor %}
<p><a href="{{ docs }}/changelog">The whole changelog</a></p>
</body></html>
"""
)


def _prose(text: str) -> Markup:
    """Escaped text with `code` spans as ``<code>``."""
    return Markup(_CODE.sub(lambda m: f"<code>{m[1]}</code>", str(escape(text))))


def register_changelog(app: Flask, state: VersioningState, docs_url: str | None) -> None:
    """``<prefix>/changelog`` always; the pages when the docs are on."""
    app.jinja_env.filters.setdefault("prose", _prose)

    def data() -> dict[str, Any]:
        statuses = state.bundle.snapshot(state.clock()).statuses
        return changelog(state.bundle.versions, statuses, state.head, state.prefix)

    def changelog_json() -> Response:
        return jsonify(data())

    _add(app, f"{state.prefix}/changelog", "lockgate_changelog", changelog_json)
    if not docs_url:
        return
    title = app.config.get("LOCKGATE_TITLE") or app.name

    def changelog_page() -> str:
        return render_template_string(
            _CHANGELOG_PAGE, title=title, versions=data()["versions"], docs=docs_url
        )

    _add(app, f"{docs_url}/changelog", "lockgate_docs_changelog", changelog_page)
    if state.head is None:
        return
    head = state.head

    def guide(old: str, new: str) -> str:
        old_label, new_label = Label.parse(old), Label.parse(new)
        versions = {v.label: v for v in state.bundle.versions}
        if (
            old_label is None
            or new_label is None
            or old_label not in versions
            or new_label not in versions
            or not old_label < new_label
        ):
            abort(404)
        # The lifecycle in force (a lifecycle file moves these dates).
        version = versions[old_label]
        steps = [
            {
                "version": later.label.text,
                "changes": [change_entry(change, later.label, head) for change in changes],
            }
            for later, changes in migration_steps(state.bundle.versions, old_label, new_label)
        ]
        return render_template_string(
            _GUIDE_PAGE,
            title=title,
            old=old_label.text,
            new=new_label.text,
            deprecated=_day(version.deprecated),
            sunset=_day(version.sunset),
            steps=steps,
            todo=_todo(steps),
            docs=docs_url,
        )

    _add(
        app,
        f"{docs_url}/migrations/v<old>-to-v<new>",
        "lockgate_docs_migration",
        guide,
    )


def _day(moment: Any) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d")


def _todo(steps: list[dict[str, Any]]) -> list[str]:
    """The client-side actions the field and endpoint changes imply, in order."""
    lines = []
    for step in steps:
        for change in step["changes"]:
            for item in change["endpoints"]:
                methods = ", ".join(item["methods"] or ["every method"])
                if item["change"] == "removed":
                    lines.append(f"Stop calling `{item['path']}` ({methods}): it is gone.")
                else:
                    lines.append(f"`{item['path']}` ({methods}) is new; you may use it.")
            for item in change["fields"]:
                name, schema = item["field"], item["schema"]
                if item["change"] == "renamed":
                    lines.append(f"In {schema}, use `{name}` where you used `{item['from']}`.")
                elif item["change"] == "removed":
                    lines.append(f"In {schema}, `{name}` is gone: stop reading or sending it.")
                elif item["change"] == "retyped":
                    lines.append(f"In {schema}, `{name}` has a new type: check how you read it.")
                elif item["breaking"]:
                    lines.append(f"In {schema}, send `{name}`: it is required now.")
                else:
                    lines.append(f"In {schema}, `{name}` is new.")
    return lines


def _add(app: Flask, rule: str, endpoint: str, view: Any) -> None:
    mark_neutral(view)
    cache_control("public, max-age=60")(view)
    app.add_url_rule(rule, endpoint, view)
