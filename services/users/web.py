"""What both versions' views share: the store, the errors, query parsing."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from flask import Response, current_app, jsonify, request
from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError

from lockgate import Problem, url_for

from .domain import DuplicateEmail, User
from .store import UserStore

Q = TypeVar("Q", bound=BaseModel)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not a valid email address")
    return value


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=320), AfterValidator(_email)
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
LastName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


def store() -> UserStore:
    found: UserStore = current_app.extensions["users.store"]
    return found


def not_found(user_id: int) -> Problem:
    return Problem(404, f"there is no user {user_id}", code="UserNotFound")


def duplicate(error: DuplicateEmail) -> Problem:
    return Problem(
        409, f"a user with the email {error.args[0]!r} already exists", code="DuplicateEmail"
    )


def create(first_name: str, last_name: str, email: str) -> User:
    """Create a user; 409 when the email is taken."""
    try:
        return store().create(first_name, last_name, email)
    except DuplicateEmail as error:
        raise duplicate(error) from None


def update(user_id: int, changes: dict[str, str]) -> User:
    """Apply ``changes``; 404 for an unknown id, 409 when the email is taken."""
    try:
        user = store().update(user_id, changes)
    except DuplicateEmail as error:
        raise duplicate(error) from None
    if user is None:
        raise not_found(user_id)
    return user


def remove(user_id: int) -> Response:
    """Delete a user: 204, or 404 for an unknown id."""
    if not store().delete(user_id):
        raise not_found(user_id)
    response = current_app.response_class(status=204)
    # An empty answer has no media type; Flask would label it text/html.
    del response.headers["Content-Type"]
    return response


def created(body: dict[str, Any], user: User) -> tuple[Response, int, dict[str, str]]:
    """201 with the new user's URL in the scheme the client used."""
    location = url_for("users.get_user", user_id=user.id)
    return jsonify(body), 201, {"Location": location}


def existing(user_id: int) -> User:
    user = store().get(user_id)
    if user is None:
        raise not_found(user_id)
    return user


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


def reject_nulls(data: dict[str, Any]) -> None:
    """PATCH may leave a field out but not set it to null."""
    nulls = [name for name, value in data.items() if value is None]
    if nulls:
        raise Problem(
            422,
            "the request body has invalid fields",
            code="ValidationFailed",
            errors=[{"field": name, "message": "may not be null"} for name in nulls],
        )
