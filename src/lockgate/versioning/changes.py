"""Version changes: how one version differs from its predecessor, Stripe and Cadwyn style.

The newest version (the head) is written once. Each version lists the
:class:`VersionChange` classes that lead to it from its predecessor; a change
says what its schemas and endpoints looked like before (:func:`field`,
:func:`endpoint`) and how to migrate a request up (:func:`request`) and a
response back down (:func:`response`). ``lockgate.versioning.migration``
turns the list into a plan per version and route at startup; this module is
only the vocabulary, so a service's ``versions.py`` reads like a changelog.

Field instructions name the field as the *newer* version has it:

=========================================  ==========================================
instruction                                the older version
=========================================  ==========================================
``field(M, "x").added()``                  has no ``x``
``field(M, "x").removed(int, default=0)``  has ``x: int = 0`` (the newer has no ``x``)
``field(M, "x").renamed(from_="y")``       calls ``x`` ``y``
``field(M, "y").renamed(to="x")``          the same, named from the older side
``field(M, "x").retyped(from_=str)``       has ``x: str`` (``default=`` makes it optional)
=========================================  ==========================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel
from werkzeug.datastructures import Headers, MultiDict

from ..errors import ConfigurationError

__all__ = [
    "EndpointChange",
    "EndpointRef",
    "FieldChange",
    "FieldRef",
    "Migration",
    "RequestInfo",
    "ResponseInfo",
    "VersionChange",
    "endpoint",
    "field",
    "request",
    "response",
]

#: A field instruction's kind.
FieldKind = Literal["added", "removed", "renamed", "retyped"]
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of one schema, as it differs in the older version."""

    model: type[BaseModel]
    #: The field's name in the newer version (for ``removed``: in the older).
    name: str
    kind: FieldKind
    #: ``renamed``: the older name. ``removed`` and ``retyped``: the older type.
    old_name: str | None = None
    annotation: Any = _MISSING
    default: Any = _MISSING
    description: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


@dataclass(frozen=True, slots=True)
class FieldRef:
    """``field(Model, "name")``: say what became of it with one of the methods."""

    model: type[BaseModel]
    name: str

    def added(self) -> FieldChange:
        """The field is new in this version: older versions do not have it."""
        return FieldChange(self.model, self.name, "added")

    def removed(
        self, annotation: Any = Any, *, default: Any = _MISSING, description: str | None = None
    ) -> FieldChange:
        """The field is gone in this version: older versions have it, as
        ``annotation`` (required unless ``default`` is given)."""
        return FieldChange(
            self.model,
            self.name,
            "removed",
            annotation=annotation,
            default=default,
            description=description,
        )

    def renamed(self, *, from_: str | None = None, to: str | None = None) -> FieldChange:
        """The field was renamed in this version: ``from_`` names it as older
        versions did (the ref being the newer name), or ``to`` as this version
        does (the ref being the older name)."""
        if (from_ is None) == (to is None):
            raise ConfigurationError(
                f"field({self.model.__name__}, {self.name!r}).renamed: give from_= or to="
            )
        if from_ is not None:
            return FieldChange(self.model, self.name, "renamed", old_name=from_)
        assert to is not None
        return FieldChange(self.model, to, "renamed", old_name=self.name)

    def retyped(
        self, from_: Any, *, default: Any = _MISSING, description: str | None = None
    ) -> FieldChange:
        """The field's type changed in this version: older versions had ``from_``."""
        return FieldChange(
            self.model,
            self.name,
            "retyped",
            annotation=from_,
            default=default,
            description=description,
        )


def field(model: type[BaseModel], name: str) -> FieldRef:
    """Refer to the field ``name`` of the pydantic ``model`` (a head schema)."""
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise ConfigurationError(f"field({model!r}, {name!r}): the schema must be a pydantic model")
    return FieldRef(model, name)


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """A route of the head that a version does not serve."""

    path: str
    #: ``None``: every method of the path.
    methods: frozenset[str] | None
    kind: Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class EndpointRef:
    path: str
    methods: frozenset[str] | None

    def added(self) -> EndpointChange:
        """New in this version: older versions answer 404 ``UnsupportedApiVersion``."""
        return EndpointChange(self.path, self.methods, "added")

    def removed(self) -> EndpointChange:
        """Gone in this version (and newer ones); older versions still serve
        it from the head's view, which stays for them."""
        return EndpointChange(self.path, self.methods, "removed")


def endpoint(path: str, methods: Iterable[str] | None = None) -> EndpointRef:
    """Refer to a route of the head by its path below the version
    (``/users/<int:user_id>`` or ``/users/{user_id}``) and methods (default: all)."""
    chosen = None if methods is None else frozenset(m.upper() for m in methods)
    return EndpointRef(path, chosen)


class RequestInfo:
    """A request in the older version's shape, to be changed into the newer's.

    ``body`` is the parsed JSON (``None`` without one); ``query`` (a
    :class:`~werkzeug.datastructures.MultiDict`) and ``headers`` (a
    :class:`~werkzeug.datastructures.Headers`) are mutable copies, made on
    first use. Whatever they hold afterwards is what the newer version's view
    reads.
    """

    __slots__ = ("_headers", "_query", "_source_headers", "_source_query", "body", "method", "path")

    def __init__(
        self,
        body: Any,
        query: Any = None,
        headers: Any = None,
        method: str = "GET",
        path: str = "/",
    ) -> None:
        self.body = body
        self.method = method
        #: The route below the version, as ``/users/{user_id}``.
        self.path = path
        self._source_query = query
        self._source_headers = headers
        self._query: MultiDict[str, str] | None = None
        self._headers: Headers | None = None

    @property
    def query(self) -> MultiDict[str, str]:
        if self._query is None:
            source = self._source_query() if callable(self._source_query) else self._source_query
            self._query = MultiDict(source or ())
        return self._query

    @query.setter
    def query(self, value: MultiDict[str, str]) -> None:
        self._query = MultiDict(value)

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            source = (
                self._source_headers() if callable(self._source_headers) else self._source_headers
            )
            self._headers = Headers(source or ())
        return self._headers

    @headers.setter
    def headers(self, value: Headers) -> None:
        self._headers = Headers(value)

    @property
    def touched_query(self) -> bool:
        """Whether a migration looked at the query (so it may have changed it)."""
        return self._query is not None

    @property
    def touched_headers(self) -> bool:
        return self._headers is not None


@dataclass(slots=True)
class ResponseInfo:
    """A response in the newer version's shape, to be changed into the older's.

    For a migration by schema ``body`` is one object of that schema (each one
    of a list or envelope in turn); by path it is the whole body. ``status_code``
    and ``headers`` are the response's, and may be changed.
    """

    body: Any
    status_code: int
    headers: Headers
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class Migration:
    """A migration function with what it applies to (see :func:`request`)."""

    direction: Literal["request", "response"]
    func: Callable[[Any], None]
    #: By schema: the head model it applies to.
    model: type[BaseModel] | None = None
    #: By path: the route and its methods (``None``: all).
    path: str | None = None
    methods: frozenset[str] | None = None
    #: Responses by path: error responses (status >= 400) too.
    errors: bool = False
    name: str = ""

    def __call__(self, info: Any) -> None:
        self.func(info)


def _target(
    direction: Literal["request", "response"],
    what: type[BaseModel] | str,
    methods: Sequence[str] | None,
    errors: bool,
) -> Callable[[Callable[[Any], None]], Migration]:
    if isinstance(what, str):
        model, path = None, what
    elif inspect.isclass(what) and issubclass(what, BaseModel):
        if methods is not None:
            raise ConfigurationError(f"@{direction}({what.__name__}): methods= goes with a path")
        model, path = what, None
    else:
        raise ConfigurationError(f"@{direction}({what!r}): give a pydantic model or a path")
    chosen = None if methods is None else frozenset(m.upper() for m in methods)

    def decorate(func: Callable[[Any], None]) -> Migration:
        func = func.__func__ if isinstance(func, staticmethod) else func
        parameters = list(inspect.signature(func).parameters)
        if len(parameters) != 1 or parameters[0] in ("self", "cls"):
            raise ConfigurationError(
                f"@{direction} {func.__qualname__}: a migration takes one argument, the "
                f"{'RequestInfo' if direction == 'request' else 'ResponseInfo'} (no self)"
            )
        return Migration(direction, func, model, path, chosen, errors, func.__name__)

    return decorate


def request(
    what: type[BaseModel] | str, methods: Sequence[str] | None = None
) -> Callable[[Callable[[RequestInfo], None]], Migration]:
    """Migrate requests up, from the older version to this one: every request
    whose body is the head model ``what``, or every request to the path
    ``what`` (with ``methods``, default all). The function takes a
    :class:`RequestInfo` and changes it in place."""
    return _target("request", what, methods, False)


def response(
    what: type[BaseModel] | str,
    methods: Sequence[str] | None = None,
    *,
    errors: bool = False,
) -> Callable[[Callable[[ResponseInfo], None]], Migration]:
    """Migrate responses down, from this version to the older one: every
    object of the head model ``what`` wherever a success body holds it (lists
    and envelopes too), or the whole response of the path ``what``. Error
    responses (problem+json) pass through unless ``errors=True`` (by path)."""
    return _target("response", what, methods, errors)


class VersionChange:
    """One change from a version's predecessor to it; its docstring is the
    changelog entry.

    Give ``schemas`` (and ``endpoints``) as lists of :func:`field` and
    :func:`endpoint` instructions, and migrations as methods decorated with
    :func:`request` and :func:`response` (no ``self``). ``breaking`` is
    derived from the instructions unless set.
    """

    schemas: ClassVar[Sequence[FieldChange | EndpointChange]] = ()
    endpoints: ClassVar[Sequence[FieldChange | EndpointChange]] = ()
    breaking: ClassVar[bool | None] = None
    #: Filled from the class body by ``__init_subclass__``.
    field_changes: ClassVar[tuple[FieldChange, ...]] = ()
    endpoint_changes: ClassVar[tuple[EndpointChange, ...]] = ()
    request_migrations: ClassVar[tuple[Migration, ...]] = ()
    response_migrations: ClassVar[tuple[Migration, ...]] = ()
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[FieldChange] = []
        endpoints: list[EndpointChange] = []
        for item in (*cls.__dict__.get("schemas", ()), *cls.__dict__.get("endpoints", ())):
            if isinstance(item, FieldChange):
                fields.append(item)
            elif isinstance(item, EndpointChange):
                endpoints.append(item)
            elif isinstance(item, FieldRef | EndpointRef):
                raise ConfigurationError(
                    f"{cls.__name__}: {item!r} says which field or endpoint, not what became "
                    "of it (add .added(), .removed(), .renamed() or .retyped())"
                )
            else:
                raise ConfigurationError(
                    f"{cls.__name__}: {item!r} is not a field() or endpoint() instruction"
                )
        migrations = [value for value in cls.__dict__.values() if isinstance(value, Migration)]
        cls.field_changes = tuple(fields)
        cls.endpoint_changes = tuple(endpoints)
        cls.request_migrations = tuple(m for m in migrations if m.direction == "request")
        cls.response_migrations = tuple(m for m in migrations if m.direction == "response")
        cls.description = inspect.cleandoc(cls.__doc__ or "")

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is a description; list the class, do not call it")
