"""Versioning's view of the URL map: which paths are neutral, each version's routes.

Built on the first request, when every blueprint is registered; the
dispatcher asks it whether a path is neutral before negotiating.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule

from ..views import NEUTRAL_ATTR, SERVED_ATTR
from .readers import split_url_version
from .versions import Label

__all__ = ["RouteIndex"]


@dataclass(slots=True)
class RouteIndex:
    """The URL map seen from versioning: neutral paths and each version's routes."""

    neutral_static: frozenset[str]
    neutral_dynamic: Map | None
    #: Version -> rule templates below the version segment (``/users/<int:id>``).
    templates: dict[Label, frozenset[str]]
    #: First segments of those templates (``users``) that cannot be read as a
    #: version: a path under the prefix starting with one is unversioned.
    resources: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, app: Flask, prefix: str, versions: Iterable[Label], blueprints: dict[str, Label]
    ) -> RouteIndex:
        """Read ``app``'s URL map; ``blueprints`` maps a registered blueprint
        name to the version it serves."""
        static: set[str] = set()
        dynamic: list[Rule] = []
        templates: dict[Label, set[str]] = {label: set() for label in versions}
        for rule in app.url_map.iter_rules():
            if not (rule.rule == prefix or rule.rule.startswith(prefix + "/")):
                continue
            blueprint = rule.endpoint.rpartition(".")[0].partition(".")[0]
            label = blueprints.get(blueprint)
            view = app.view_functions.get(rule.endpoint)
            owner = app.blueprints.get(blueprint)
            neutral = (
                label is None
                or getattr(view, NEUTRAL_ATTR, False)
                or getattr(owner, NEUTRAL_ATTR, False)
            )
            if neutral:
                if rule.arguments:
                    dynamic.append(Rule(rule.rule, endpoint=rule.endpoint))
                else:
                    static.add(rule.rule)
                continue
            assert label is not None
            if getattr(view, SERVED_ATTR, None) == frozenset():
                continue  # the head's view, which this version does not serve
            templates[label].add(rule.rule[len(f"{prefix}/v{label.text}") :])
        firsts = {
            template[1:].partition("/")[0] for paths in templates.values() for template in paths
        }
        return cls(
            neutral_static=frozenset(static),
            neutral_dynamic=Map(dynamic) if dynamic else None,
            templates={label: frozenset(paths) for label, paths in templates.items()},
            resources=frozenset(
                first
                for first in firsts
                if "<" not in first and split_url_version(f"/{first}", "") is None
            ),
        )

    def is_neutral(self, path: str) -> bool:
        if path in self.neutral_static:
            return True
        if self.neutral_dynamic is None:
            return False
        try:
            self.neutral_dynamic.bind("localhost").match(path, method="GET")
        except MethodNotAllowed:
            return True
        except HTTPException:
            return False
        return True
