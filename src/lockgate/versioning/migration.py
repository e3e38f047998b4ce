"""Every version served by the head's views: a plan per version and route, and its view.

At startup the head blueprints are registered under every version, and for
each version and route a :class:`RoutePlan` is built from the changes
between that version and the head: the methods it serves, its models, the
request migrations (oldest change first) and the response migrations
(newest first). Everything that can be wrong (a path no route has, a field
a schema lacks) raises then, naming the change. A route whose plan has
nothing to do keeps the head's view function itself: the head version pays
nothing. The others get :func:`served_view`, which validates the request
against its version's model (422 names that version's fields), migrates it
up, calls the head's view and migrates the response down.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import re
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, current_app, has_request_context, request
from flask.json.provider import JSONProvider
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import EnvironHeaders, Headers
from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule
from werkzeug.utils import cached_property as werkzeug_cached_property

from ..bodies import PARSED_KEY, parse_json_body, query_problem, validation_problem
from ..errors import ConfigurationError
from ..problems import Problem
from ..views import OPERATION_ATTR, SERVED_ATTR, Operation
from .changes import EndpointChange, Migration, RequestInfo, ResponseInfo, VersionChange
from .schemas import SchemaVersions, models_in
from .versions import Label, Version

__all__ = [
    "DeferringJSON",
    "HeadPlan",
    "HeadRoute",
    "RoutePlan",
    "build_plans",
    "normal_path",
    "served_view",
]

_CONVERTER = re.compile(r"<(?:[a-zA-Z_][a-zA-Z0-9_]*(?:\([^)]*\))?:)?(\w+)>")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Walks a body, calling ``visit`` on each object of one schema; returns the body.
Walker = Callable[[Any, Callable[[Any], Any]], Any]


def normal_path(path: str) -> str:
    """``/users/<int:user_id>`` and ``/users/{user_id}`` as one spelling."""
    path = _CONVERTER.sub(lambda match: "{" + match[1] + "}", path)
    return "/" + path.strip("/") if path.strip("/") else "/"


@dataclass(frozen=True, slots=True)
class ResponseStep:
    migration: Migration
    #: By schema: how to reach its objects in this step's body shape.
    walker: Walker | None


@dataclass(slots=True)
class RoutePlan:
    """What serving one head route in one version takes."""

    label: Label
    path: str
    #: The methods served; ``None``: all of the rule's.
    served: frozenset[str] | None
    operation: Operation
    #: This version's body and query models, where they differ from the head's.
    request_model: type[BaseModel] | None
    query_model: type[BaseModel] | None
    #: Fields of :attr:`request_model` the head lacks, with a default here:
    #: passed up even when the client left them out.
    fill: frozenset[str]
    #: Per method: request migrations, oldest change first; response steps, newest first.
    upgrades: dict[str, tuple[Migration, ...]]
    downgrades: dict[str, tuple[ResponseStep, ...]]

    @property
    def idle(self) -> bool:
        """Nothing to do: the head's view serves this version as it is."""
        return (
            self.served is None
            and self.request_model is None
            and self.query_model is None
            and not any(self.upgrades.values())
            and not any(self.downgrades.values())
        )


@dataclass(frozen=True, slots=True)
class HeadRoute:
    """A route of a head blueprint, as registered for the head version."""

    rule: Rule
    #: The plain endpoint, ``<blueprint>.<view>``, as :func:`url_for` takes it.
    endpoint: str
    path: str
    methods: frozenset[str]
    operation: Operation


@dataclass(frozen=True, slots=True)
class HeadPlan:
    """How the head serves every version: the plans, the models, and which
    head models are read (request bodies, queries) and which are written."""

    plans: dict[Label, dict[str, RoutePlan]]
    schemas: SchemaVersions
    request_models: frozenset[type[BaseModel]]
    response_models: frozenset[type[BaseModel]]


def build_plans(versions: Sequence[Version], routes: Sequence[HeadRoute]) -> HeadPlan:
    """Every version's plan for every head route (by endpoint name below the
    version), checking every change against the head.

    :param versions: oldest first; the last is the head.
    :raises ConfigurationError: a change that cannot be applied, by name.
    """
    seen: dict[type[VersionChange], Label] = {}
    for version in versions:
        for change in version.changes:
            if change in seen:
                raise ConfigurationError(
                    f"{change.__name__} is listed by versions {seen[change]} and {version.label}"
                )
            seen[change] = version.label
    if versions[0].changes:
        names = ", ".join(c.__name__ for c in versions[0].changes)
        raise ConfigurationError(
            f"version {versions[0].label} is the oldest: its changes ({names}) lead from no version"
        )
    by_path: dict[str, list[HeadRoute]] = {}
    universe: set[type[BaseModel]] = set()
    request_models: set[type[BaseModel]] = set()
    read_models: set[type[BaseModel]] = set()
    response_models: set[type[BaseModel]] = set()
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
        op = route.operation
        for annotation in (op.request, op.query):
            if annotation is not None:
                read_models.update(models_in(annotation))
        universe |= read_models
        if _is_model(op.request):
            request_models.add(op.request)
        if op.response is not None:
            found = models_in(op.response)
            universe |= found
            response_models |= found
    chain = [(v.label, v.changes) for v in reversed(versions)]
    for version in versions:
        for change in version.changes:
            _check(change, version.label, by_path, request_models, response_models)
    schemas = SchemaVersions(chain, universe)
    plans: dict[Label, dict[str, RoutePlan]] = {}
    for index, version in enumerate(versions):
        newer = versions[index + 1 :]
        plans[version.label] = {
            route.endpoint: _plan(versions[: index + 1], newer, route, schemas) for route in routes
        }
    return HeadPlan(plans, schemas, frozenset(read_models), frozenset(response_models))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _check(
    change: type[VersionChange],
    label: Label,
    by_path: dict[str, list[HeadRoute]],
    request_models: set[type[BaseModel]],
    response_models: set[type[BaseModel]],
) -> None:
    where = f"{change.__name__} (version {label})"

    def route_methods(path: str, methods: frozenset[str] | None, what: str) -> None:
        routes = by_path.get(normal_path(path))
        if not routes:
            known = ", ".join(sorted(by_path)) or "none"
            raise ConfigurationError(f"{where}: {what} {path!r} is no route of the head ({known})")
        have = frozenset().union(*(r.methods for r in routes))
        if methods is not None and not methods <= have:
            missing = ", ".join(sorted(methods - have))
            raise ConfigurationError(f"{where}: {what} {path!r} has no method {missing}")

    for instruction in change.endpoint_changes:
        route_methods(instruction.path, instruction.methods, "endpoint")
    for migration in (*change.request_migrations, *change.response_migrations):
        what = f"@{migration.direction} {migration.name}"
        if migration.path is not None:
            route_methods(migration.path, migration.methods, f"{what}: path")
        elif migration.direction == "request" and migration.model not in request_models:
            assert migration.model is not None
            raise ConfigurationError(
                f"{where}: {what}: {migration.model.__name__} is the request body of no route"
            )
        elif migration.direction == "response" and migration.model not in response_models:
            assert migration.model is not None
            raise ConfigurationError(
                f"{where}: {what}: {migration.model.__name__} is in the response of no route"
            )


def _applies(migration: Migration, route: HeadRoute, method: str) -> bool:
    if migration.path is not None:
        if normal_path(migration.path) != route.path:
            return False
        return migration.methods is None or method in migration.methods
    if migration.direction == "request":
        return method in _BODY_METHODS and route.operation.request is migration.model
    return route.operation.response is not None and migration.model in models_in(
        route.operation.response
    )


def _served(version: Version, newer: Sequence[Version], route: HeadRoute) -> frozenset[str] | None:
    """The methods of ``route`` that ``version`` serves: not added by a newer
    version, not removed by this one or an older one."""
    absent: set[str] = set()

    def hit(instruction: EndpointChange) -> None:
        if normal_path(instruction.path) == route.path:
            absent.update(route.methods if instruction.methods is None else instruction.methods)

    for later in newer:
        for change in later.changes:
            for instruction in change.endpoint_changes:
                if instruction.kind == "added":
                    hit(instruction)
    return frozenset(route.methods - absent) if absent else None


def _plan(
    upto: Sequence[Version], newer: Sequence[Version], route: HeadRoute, schemas: SchemaVersions
) -> RoutePlan:
    """``route`` in ``upto[-1]``; ``upto`` holds it and the older versions
    (whose removals hold in it), ``newer`` the versions above it."""
    version = upto[-1]
    label = version.label
    served = _served(version, newer, route)
    removed: set[str] = set()
    for change in (change for earlier in upto for change in earlier.changes):
        for instruction in change.endpoint_changes:
            if instruction.kind == "removed" and normal_path(instruction.path) == route.path:
                removed.update(instruction.methods or route.methods)
    if removed:
        served = frozenset((served if served is not None else route.methods) - removed)
    op = route.operation
    request_model = query_model = None
    if op.request is not None:
        mine = schemas.annotation(label, op.request)
        request_model = mine if mine is not op.request else None
    if op.query is not None:
        mine = schemas.annotation(label, op.query)
        query_model = mine if mine is not op.query else None
    operation = dataclasses.replace(
        op,
        request=request_model or op.request,
        query=query_model or op.query,
        response=None if op.response is None else schemas.annotation(label, op.response),
    )
    upgrades: dict[str, tuple[Migration, ...]] = {}
    downgrades: dict[str, tuple[ResponseStep, ...]] = {}
    for method in route.methods:
        upgrades[method] = tuple(
            migration
            for later in newer
            for change in later.changes
            for migration in change.request_migrations
            if _applies(migration, route, method)
        )
        steps: list[ResponseStep] = []
        for later in reversed(newer):
            # The body is in ``later``'s shape when its changes migrate it down.
            shape = None if op.response is None else schemas.annotation(later.label, op.response)
            for change in reversed(later.changes):
                for migration in change.response_migrations:
                    if not _applies(migration, route, method):
                        continue
                    walker = None
                    if migration.model is not None:
                        target = schemas.model(later.label, migration.model)
                        walker = _walker(shape, target)
                    steps.append(ResponseStep(migration, walker))
        downgrades[method] = tuple(steps)
    fill: frozenset[str] = frozenset()
    if request_model is not None and _is_model(request_model) and _is_model(op.request):
        head_fields = typing.cast(type[BaseModel], op.request).model_fields
        fill = frozenset(
            name
            for name, info in request_model.model_fields.items()
            if not info.is_required()
            and (name not in head_fields or head_fields[name].is_required())
        )
    return RoutePlan(
        label,
        route.path,
        served,
        operation,
        request_model,
        query_model,
        fill,
        upgrades,
        downgrades,
    )


def _walker(annotation: Any, target: type[BaseModel]) -> Walker | None:
    """How to reach every ``target`` object in a body of type ``annotation``,
    or ``None`` when it holds none.

    A walker returns a new body: the lists and objects on the way to a target
    are copied (shallowly), never changed in place, because the body may be
    the view's own data (a dict from its store), not yet serialized."""
    memo: dict[type[BaseModel], Walker | None] = {}

    def compile_(annotation: Any) -> Walker | None:
        if _is_model(annotation):
            return model(annotation)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return compile_(args[0])
        if origin in (list, set, frozenset, tuple) or (
            origin is not None and origin.__name__ in ("Sequence", "Iterable", "List")
        ):
            inner = [w for w in (compile_(arg) for arg in args if arg is not Ellipsis) if w]
            if not inner:
                return None
            each = inner[0]

            def items(data: Any, visit: Callable[[Any], Any]) -> Any:
                if isinstance(data, list):
                    return [each(item, visit) for item in data]
                return data

            return items
        if origin is dict or (origin is not None and origin.__name__ == "Mapping"):
            value = compile_(args[1]) if len(args) == 2 else None
            if value is None:
                return None

            def values(data: Any, visit: Callable[[Any], Any]) -> Any:
                if isinstance(data, dict):
                    return {key: value(item, visit) for key, item in data.items()}
                return data

            return values
        if args:  # a union: each object goes to the member it is an instance of
            return union(args)
        return None

    def union(members: tuple[Any, ...]) -> Walker | None:
        models = [m for m in (_unwrap(arg) for arg in members) if _is_model(m)]
        others = [w for w in (compile_(arg) for arg in members if not _is_model(_unwrap(arg))) if w]
        # One model (``X | None``): every object is one; several: by their fields.
        choices = [
            ((lambda data: True) if len(models) == 1 else _matcher(m), compile_(m)) for m in models
        ]
        if not others and not any(walker for _, walker in choices):
            return None
        other = others[0] if others else None

        def pick(data: Any, visit: Callable[[Any], Any]) -> Any:
            if isinstance(data, dict):
                for matches, walker in choices:
                    if matches(data):
                        return walker(data, visit) if walker is not None else data
                return data
            return other(data, visit) if other is not None else data

        return pick

    def model(cls: type[BaseModel]) -> Walker | None:
        if cls in memo:
            known = memo[cls]
            if known is None:
                return None
            return lambda data, visit: memo[cls](data, visit)  # type: ignore[misc]
        memo[cls] = None  # a recursive reference while compiling
        fields: list[tuple[str, Walker]] = []
        for name, info in cls.model_fields.items():
            inner = compile_(info.annotation)
            if inner is not None:
                fields.append((info.serialization_alias or info.alias or name, inner))
        is_target = cls is target

        def walk(data: Any, visit: Callable[[Any], Any]) -> Any:
            if not isinstance(data, dict):
                return data
            data = dict(data)  # copied on the way: the view's own objects stay as they are
            for key, inner in fields:
                if key in data:
                    data[key] = inner(data[key], visit)
            return visit(data) if is_target else data

        result: Walker | None = walk if (fields or is_target) else None
        memo[cls] = result
        return result

    return compile_(annotation)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _matcher(cls: type[BaseModel]) -> Callable[[dict[str, Any]], bool]:
    """Whether a JSON object is one of ``cls``: its ``Literal`` fields (a
    discriminator) hold one of their values, and its required fields are there."""
    required = []
    literals = []
    for name, info in cls.model_fields.items():
        key = info.serialization_alias or info.alias or name
        annotation = _unwrap(info.annotation)
        if typing.get_origin(annotation) is typing.Literal:
            literals.append((key, frozenset(typing.get_args(annotation))))
        if info.is_required():
            required.append(key)

    def matches(data: dict[str, Any]) -> bool:
        for key, allowed in literals:
            if key in data and data[key] not in allowed:
                return False
        return all(key in data for key in required)

    return matches


#: In the environ while a migrating view runs: the JSON it answers is kept as
#: an object (:class:`Deferred`) until the response migrations have run.
DEFER_KEY = "lockgate.defer_json"


class Deferred:
    """A JSON body not serialized yet: the response migrations change the
    object itself, and it is serialized once, after them. Anything that reads
    the body before (``get_data``, an ETag) serializes it as it is, and the
    migrations then parse it back."""

    __slots__ = ("done", "dumps", "obj")

    def __init__(self, obj: Any, dumps: Callable[[Any], str]) -> None:
        self.obj = obj
        self.dumps = dumps
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        self.done = True
        yield f"{self.dumps(self.obj)}\n".encode()


class DeferringJSON(JSONProvider):
    """The app's JSON provider, unchanged, except that inside a migrating view
    its responses carry their object (:class:`Deferred`) instead of bytes."""

    def __init__(self, app: Flask, inner: JSONProvider) -> None:
        super().__init__(app)
        self.inner = inner

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.inner.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return self.inner.loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if has_request_context() and request.environ.get(DEFER_KEY):
            obj = self._prepare_response_obj(args, kwargs)
            mimetype = getattr(self.inner, "mimetype", "application/json")
            body: Any = Deferred(obj, self.inner.dumps)
            made = self._app.response_class(body, mimetype=mimetype)
            return typing.cast(Response, made)
        return typing.cast(Response, self.inner.response(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the inner provider's settings (sort_keys, ...)


def served_view(view: Callable[..., Any], plan: RoutePlan) -> Callable[..., Any]:
    """``view`` (the head's) serving ``plan``'s version."""
    served = plan.served
    upgrades = plan.upgrades
    downgrades = plan.downgrades
    upgrading = frozenset(
        method
        for method in plan.upgrades
        if upgrades[method] or plan.request_model is not None or plan.query_model is not None
    )

    @wraps(view)
    def serve(*args: Any, **kwargs: Any) -> Any:
        method = request.method
        if method == "HEAD":
            method = "GET"
        if served is not None and method not in served:
            raise NotFound()  # answered as UnsupportedApiVersion where another version has it
        if method in upgrading:
            _upgrade(plan, method, upgrades[method])
        steps = downgrades.get(method)
        if not steps:
            return view(*args, **kwargs)
        environ = request.environ
        environ[DEFER_KEY] = True
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except Exception as error:
            environ.pop(DEFER_KEY, None)
            if not any(step.migration.errors for step in steps):
                raise
            response = current_app.make_response(current_app.handle_user_exception(error))
        finally:
            environ.pop(DEFER_KEY, None)
        _downgrade(plan, method, steps, response)
        return response

    setattr(serve, OPERATION_ATTR, plan.operation)
    if served is not None:
        setattr(serve, SERVED_ATTR, served)
    return serve


def _upgrade(plan: RoutePlan, method: str, migrations: Sequence[Migration]) -> None:
    """Validate the request in its version's shape and migrate it up, in place.

    A request that should carry a JSON body and does not is left alone: the
    head's view answers it (415, 400) as it answers the head's own clients.
    """
    environ = request.environ
    if plan.query_model is not None:
        try:
            plan.query_model.model_validate(request.args.to_dict())
        except ValidationError as error:
            raise query_problem(error) from None
    body: Any = None
    has_body = False
    validated = False
    if method in _BODY_METHODS and (
        request.content_length or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        if not request.is_json:
            return  # the view refuses it (415) in every version alike
        body = parse_json_body()
        has_body = True
        if plan.request_model is not None:
            try:
                model = plan.request_model.model_validate(body)
            except ValidationError as error:
                raise validation_problem(error) from None
            body = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if plan.fill:
                # What this version defaults, the newer versions may require.
                body.update(model.model_dump(mode="json", by_alias=True, include=set(plan.fill)))
            validated = True
    elif method in _BODY_METHODS and plan.operation.request is not None:
        return  # no body where one is required: the view answers it
    if not migrations:
        if validated:
            _put_body(environ, body)
        return
    info = RequestInfo(body, lambda: request.args, lambda: request.headers, method, plan.path)
    for migration in migrations:
        try:
            migration(info)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            if validated or not has_body:
                raise  # the body was this version's: the migration itself is wrong
            # An unvalidated body the migration cannot read: the client's input.
            raise Problem(
                422,
                f"the body does not fit API version {plan.label}: {error!r}",
                code="ValidationFailed",
                errors=[],
            ) from None
    if has_body or info.body is not None:
        _put_body(environ, info.body)
    if info.touched_query and info.query != request.args:
        environ["QUERY_STRING"] = urlencode(list(info.query.items(multi=True)))
        # Werkzeug read the query string once, when it made the request.
        current = request._get_current_object()  # type: ignore[attr-defined]
        current.query_string = environ["QUERY_STRING"].encode("latin-1")
        _forget(current, ("args", "values", "url", "full_path"))
    if info.touched_headers and info.headers != Headers(request.headers):
        for key in [k for k in environ if k.startswith("HTTP_")]:
            if key != "HTTP_TRANSFER_ENCODING":
                del environ[key]
        for name, value in info.headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue  # the body's, set with it
            environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        current = request._get_current_object()  # type: ignore[attr-defined]
        current.headers = EnvironHeaders(environ)
        _forget(current, _cached_names(type(current)))


def _put_body(environ: dict[str, Any], body: Any) -> None:
    """``body`` as the request's JSON: its bytes for any reader, and the object
    itself for :func:`~lockgate.bodies.read_json`, which need not parse it again."""
    data = current_app.json.dumps(body).encode()
    stream = io.BytesIO(data)
    environ["wsgi.input"] = stream
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input_terminated"] = True
    environ[PARSED_KEY] = (stream, body)
    _forget(request._get_current_object(), _BODY_CACHED)  # type: ignore[attr-defined]


#: What Werkzeug's request derives from the body.
_BODY_CACHED = (
    "stream",
    "form",
    "files",
    "values",
    "_cached_data",
    "_cached_json",
    "content_length",
)
_NAMES: dict[type, tuple[str, ...]] = {}


def _cached_names(cls: type) -> tuple[str, ...]:
    """Every attribute a request class computes once and keeps (its cached properties)."""
    names = _NAMES.get(cls)
    if names is None:
        found = {"_cached_data", "_cached_json", "_parsed_content_type"}
        for klass in cls.__mro__:
            for name, value in vars(klass).items():
                if isinstance(value, functools.cached_property | werkzeug_cached_property):
                    found.add(name)
        names = _NAMES[cls] = tuple(sorted(found))
    return names


def _forget(target: Any, names: Sequence[str]) -> None:
    """Drop what ``target`` (the request itself, not its proxy) computed and kept."""
    kept = vars(target)
    for name in names:
        kept.pop(name, None)


def _downgrade(
    plan: RoutePlan, method: str, steps: Sequence[ResponseStep], response: Response
) -> None:
    """Migrate ``response`` from the head's shape down to ``plan``'s version,
    and serialize its body once."""
    deferred = response.response if isinstance(response.response, Deferred) else None
    if deferred is not None and deferred.done:
        deferred = None  # read already (an ETag, a cache entry): parse it back
    elif deferred is None and (response.is_streamed or response.direct_passthrough):
        return
    error = response.status_code >= 400
    body: Any
    if deferred is not None:
        body = deferred.obj
    else:
        body = response.get_json(silent=True) if response.is_json else None
    info = ResponseInfo(body, response.status_code, response.headers, method, plan.path)
    touched = copied = False
    for step in steps:
        migration = step.migration
        if error and not migration.errors:
            continue
        if step.walker is None:
            if deferred is not None and not copied:
                body = copy.deepcopy(body)  # the whole body: the view's data stays its own
                copied = True
            info.body = body
            migration(info)
            body = info.body
            touched = True
        elif body is not None:

            def visit(item: Any, migration: Migration = migration) -> Any:
                info.body = item
                migration(info)
                return info.body

            body = step.walker(body, visit)
            touched = True
    if info.status_code != response.status_code:
        response.status_code = info.status_code
    if deferred is not None:
        response.set_data(f"{current_app.json.dumps(body)}\n")
    elif touched and body is not None:
        response.set_data(f"{current_app.json.dumps(body)}\n")
        if "ETag" in response.headers and not response.get_etag()[1]:
            del response.headers["ETag"]  # it named the head's bytes; one for these is made
