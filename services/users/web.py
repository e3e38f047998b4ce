"""What every version of the users API shares: the views, the field types, the errors.

A version folder says how a user looks and what it accepts (a
:class:`Representation`); :func:`user_blueprint` turns that into the five
routes, so v1 and v2 differ exactly where their representations do.

The field types are exact: the JSON Schema pydantic derives from them (and the
OpenAPI document with it) describes precisely what the service accepts. Nothing
is stripped or coerced before a length or pattern check, a field that may be
left out is not thereby nullable, and query integers are plain decimal digits
within the 64-bit range every database holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, TypeVar

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
)

from lockgate import Problem, operation, url_for
from lockgate.auth import require_scope
from lockgate.bodies import read_json
from lockgate.runtime import cached, idempotent

from .domain import DuplicateEmail, User
from .store import BIGINT_MAX, UserStore

Q = TypeVar("Q", bound=BaseModel)

#: Text without control characters (Unicode ``Cc``: C0, DEL and C1, U+0085
#: among them), in the ECMA-262 syntax JSON Schema uses.
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
_DIGITS = re.compile(r"-?[0-9]+")


def _plain_email(value: object) -> object:
    """``EmailStr`` would strip surrounding whitespace; the format allows none."""
    if isinstance(value, str) and value != value.strip():
        raise ValueError("an email address has no surrounding whitespace")
    return value


def _decimal(value: object) -> object:
    """A query integer is decimal digits: no ``1.0``, ``+5``, ``1_000`` or spaces.

    Leading zeros are dropped (``0005`` is 5, however many zeros).
    """
    if not isinstance(value, str):
        return value
    if not _DIGITS.fullmatch(value):
        raise ValueError("not an integer in decimal digits")
    sign, digits = ("-", value[1:]) if value.startswith("-") else ("", value)
    return sign + (digits.lstrip("0") or "0")


def clamp(most: int) -> BeforeValidator:
    """Any integer above ``most`` counts as ``most``, however many digits it has
    (``int()`` itself refuses more than 4,300)."""

    def clamped(value: object) -> object:
        value = _decimal(value)
        if isinstance(value, str) and not value.startswith("-") and len(value) > len(str(most)):
            return most
        if isinstance(value, str | int) and not isinstance(value, bool) and int(value) > most:
            return most
        return value

    return BeforeValidator(clamped)


def omittable(**constraints: Any) -> Any:
    """A field that may be left out but is never null: ``None`` stands for "not
    given" (``model_dump(exclude_unset=True)`` leaves it out). Its model's
    config takes :func:`without_null_defaults`, so the document shows neither
    a null type nor a null default."""
    return Field(None, **constraints)


def without_null_defaults(schema: dict[str, Any]) -> None:
    """A model's ``json_schema_extra``: drop ``"default": null`` from its
    properties; :func:`omittable` fields are absent, never null."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


#: The config of request bodies (unknown fields are refused) and of query
#: strings (unknown parameters are ignored).
BODY = ConfigDict(extra="forbid", json_schema_extra=without_null_defaults)
QUERY = ConfigDict(extra="ignore", json_schema_extra=without_null_defaults)


def _special_use() -> str:
    """A pattern for an address at a domain email-validator refuses as special-use
    (``.test``, ``.localhost``, ...), case-insensitive, from the library's own list."""
    names = "|".join(
        "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in name)
        for name in SPECIAL_USE_DOMAIN_NAMES
    )
    return rf"@(?:[^@]*\.)?(?:{names})$"


#: Checked by email-validator through ``EmailStr`` (syntax and length, no DNS;
#: the domain comes back normalised). ``format: email`` alone would admit the
#: special-use domains it refuses, so the document excludes them too.
Email = Annotated[
    EmailStr,
    Field(
        max_length=254,
        description=(
            "An email address (no quoted local part, no IP-literal domain, "
            "no special-use domain such as .test or .localhost)"
        ),
        json_schema_extra={
            # What email-validator refuses anywhere in an address: spaces and controls.
            "pattern": r"^[^\x00-\x20\x7f-\xa0]*$",
            "not": {"pattern": _special_use()},
        },
    ),
    BeforeValidator(_plain_email),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROL)]
LastName = Annotated[str, StringConstraints(max_length=100, pattern=NO_CONTROL)]
#: An integer that reaches the database: 0 up to the 64-bit signed maximum.
Position = Annotated[int, Field(ge=0, le=BIGINT_MAX), BeforeValidator(_decimal)]
QueryInt = Annotated[int, BeforeValidator(_decimal)]


class Page(NamedTuple):
    """Users by id, and whether more follow."""

    users: list[User]
    more: bool


@dataclass(frozen=True)
class Listing:
    """Which users a list request asks for, in the domain's terms."""

    limit: int
    offset: int = 0
    #: Keyset paging: only ids above this one.
    after: int | None = None
    email: str | None = None


@dataclass(frozen=True)
class Representation:
    """How one version shows users and what it accepts: all a version folder defines."""

    #: Response body of one user.
    user: type[BaseModel]
    #: Bodies of ``POST`` and ``PATCH``.
    new: type[BaseModel]
    patch: type[BaseModel]
    #: The list's query parameters and its response body type.
    query: type[BaseModel]
    page: Any
    #: A user as this version's JSON.
    represent: Callable[[User], dict[str, Any]]
    #: The given fields of a validated body as the domain's
    #: (``first_name``, ``last_name``, ``email``).
    fields: Callable[[dict[str, Any]], dict[str, str]]
    #: The list's query as a :class:`Listing`, and a :class:`Page` as its body.
    listing: Callable[[Any], Listing]
    present: Callable[[Page], Any]
    #: What this version's create and update do, for the document.
    create_doc: str | None = None
    update_doc: str | None = None


def store() -> UserStore:
    found: UserStore = current_app.extensions["users.store"]
    return found


def not_found(user_id: int) -> Problem:
    return Problem(404, f"there is no user {user_id}", code="UserNotFound")


def duplicate(error: DuplicateEmail) -> Problem:
    return Problem(
        409, f"a user with the email {error.args[0]!r} already exists", code="DuplicateEmail"
    )


def query(model: type[Q]) -> Q:
    """The query string as ``model``; 400 with the offending parameters."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        errors = [
            {"field": ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in error.errors(include_url=False)
        ]
        raise Problem(400, "invalid query parameters", code="InvalidQuery", errors=errors) from None


def page(listing: Listing) -> Page:
    """One page of users; one extra row tells whether another page exists."""
    users = store().page(
        limit=listing.limit + 1, offset=listing.offset, after=listing.after, email=listing.email
    )
    return Page(users[: listing.limit], len(users) > listing.limit)


def user_blueprint(import_name: str, rep: Representation) -> Blueprint:
    """The ``users`` routes of one version, drawn from its representation."""
    bp = Blueprint("users", import_name, url_prefix="/users")
    # In every version: reading needs users:read, writing users:write.
    require_scope("users:read", methods=("GET", "HEAD"))(bp)
    require_scope("users:write", methods=("POST", "PUT", "PATCH", "DELETE"))(bp)
    changes = {409: "Email already used", 422: "Invalid fields"}

    @bp.get("")
    @cached("users")
    @operation(query=rep.query, response=rep.page, summary="List users")
    def list_users() -> Response:
        """Users by id, a page at a time."""
        return jsonify(rep.present(page(rep.listing(query(rep.query)))))

    @bp.post("")
    @idempotent()
    @operation(
        request=rep.new,
        response=rep.user,
        status=201,
        responses=changes,
        description=rep.create_doc,
    )
    def create_user() -> tuple[Response, int, dict[str, str]]:
        """Create a user."""
        fields = rep.fields(read_json(rep.new).model_dump(exclude_unset=True))
        try:
            user = store().create(fields["first_name"], fields["last_name"], fields["email"])
        except DuplicateEmail as error:
            raise duplicate(error) from None
        # The new user's URL in the scheme the client used.
        location = url_for("users.get_user", user_id=user.id)
        return jsonify(rep.represent(user)), 201, {"Location": location}

    @bp.get("/<int:user_id>")
    @cached("users")
    @operation(response=rep.user, responses={404: "No such user"})
    def get_user(user_id: int) -> Response:
        """One user."""
        user = store().get(user_id)
        if user is None:
            raise not_found(user_id)
        return jsonify(rep.represent(user))

    @bp.patch("/<int:user_id>")
    @operation(
        request=rep.patch,
        response=rep.user,
        responses={404: "No such user", **changes},
        description=rep.update_doc,
    )
    def update_user(user_id: int) -> Response:
        """Change a user; fields left out stay as they are."""
        fields = rep.fields(read_json(rep.patch).model_dump(exclude_unset=True))
        try:
            user = store().update(user_id, fields)
        except DuplicateEmail as error:
            raise duplicate(error) from None
        if user is None:
            raise not_found(user_id)
        return jsonify(rep.represent(user))

    @bp.delete("/<int:user_id>")
    @operation(responses={404: "No such user"})
    def delete_user(user_id: int) -> Response:
        """Delete a user."""
        if not store().delete(user_id):
            raise not_found(user_id)
        response = current_app.response_class(status=204)
        # An empty answer has no media type; Flask would label it text/html.
        del response.headers["Content-Type"]
        return response

    return bp
