"""Version 2 of the users API: split names, ``created_at``, cursor pages."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from lockgate import Problem, operation
from lockgate.bodies import read_json
from lockgate.runtime import cached

from ..domain import User, rfc3339
from ..web import (
    Email,
    LastName,
    Name,
    create,
    created,
    existing,
    query,
    reject_nulls,
    remove,
    store,
    update,
)

bp = Blueprint("users", __name__, url_prefix="/users")


class UserV2(BaseModel):
    id: int
    first_name: str
    last_name: str
    email: str
    created_at: str = Field(description="RFC 3339 timestamp")


class UserPageV2(BaseModel):
    data: list[UserV2]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class NewUserV2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: Name
    last_name: LastName
    email: Email


class UserPatchV2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: Name | None = None
    last_name: LastName | None = None
    email: Email | None = None


class ListQueryV2(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, description="Opaque; from next_cursor")
    email: str | None = Field(None, description="Exact email (case-insensitive)")


def represent(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "created_at": rfc3339(user.created_at),
    }


def encode_cursor(after: int) -> str:
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise Problem(
            400,
            "the cursor is not one this API issued",
            code="InvalidQuery",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        )
    return after


@bp.get("")
@cached("users")
@operation(query=ListQueryV2, response=UserPageV2, summary="List users")
def list_users() -> Response:
    """A page of users by id; follow next_cursor for the next one."""
    params = query(ListQueryV2)
    after = None if params.cursor is None else decode_cursor(params.cursor)
    # One extra row tells whether another page exists.
    users = store().page(limit=params.limit + 1, after=after, email=params.email)
    page = users[: params.limit]
    more = len(users) > params.limit
    return jsonify(
        {
            "data": [represent(user) for user in page],
            "next_cursor": encode_cursor(page[-1].id) if more else None,
        }
    )


@bp.post("")
@operation(
    request=NewUserV2,
    response=UserV2,
    status=201,
    responses={409: "Email already used", 422: "Invalid fields"},
)
def create_user() -> tuple[Response, int, dict[str, str]]:
    """Create a user."""
    body = read_json(NewUserV2)
    user = create(body.first_name, body.last_name, body.email)
    return created(represent(user), user)


@bp.get("/<int:user_id>")
@cached("users")
@operation(response=UserV2, responses={404: "No such user"})
def get_user(user_id: int) -> Response:
    """One user."""
    return jsonify(represent(existing(user_id)))


@bp.patch("/<int:user_id>")
@operation(
    request=UserPatchV2,
    response=UserV2,
    responses={404: "No such user", 409: "Email already used", 422: "Invalid fields"},
)
def update_user(user_id: int) -> Response:
    """Change any of first name, last name and email."""
    body = read_json(UserPatchV2)
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes)
    return jsonify(represent(update(user_id, changes)))


@bp.delete("/<int:user_id>")
@operation(responses={404: "No such user"})
def delete_user(user_id: int) -> Response:
    """Delete a user."""
    return remove(user_id)
