"""Version 1 of the users API: one ``name``, a bare array with limit/offset."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, jsonify
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from lockgate import operation
from lockgate.bodies import read_json
from lockgate.runtime import cached

from ..domain import User, split_name
from ..web import Email, create, created, existing, query, reject_nulls, remove, store, update

bp = Blueprint("users", __name__, url_prefix="/users")

FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=201)]


class UserV1(BaseModel):
    id: int
    name: str
    email: str


class NewUserV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: FullName
    email: Email


class UserPatchV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: FullName | None = None
    email: Email | None = None


#: The most users one v1 page holds; a larger ``?limit`` is clamped, not refused.
MAX_LIMIT = 100


class ListQueryV1(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: Annotated[int, AfterValidator(lambda limit: min(limit, MAX_LIMIT))] = Field(
        MAX_LIMIT, ge=1, description=f"At most {MAX_LIMIT}; a larger value gives {MAX_LIMIT}"
    )
    offset: int = Field(0, ge=0)


def represent(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email}


@bp.get("")
@cached("users")
@operation(query=ListQueryV1, response=list[UserV1], summary="List users")
def list_users() -> Response:
    """Users by id, as a bare array; limit (at most 100) and offset."""
    params = query(ListQueryV1)
    users = store().page(limit=params.limit, offset=params.offset)
    return jsonify([represent(user) for user in users])


@bp.post("")
@operation(
    request=NewUserV1,
    response=UserV1,
    status=201,
    responses={409: "Email already used", 422: "Invalid fields"},
)
def create_user() -> tuple[Response, int, dict[str, str]]:
    """Create a user; the name is split at its first space."""
    body = read_json(NewUserV1)
    first, last = split_name(body.name)
    user = create(first, last, body.email)
    return created(represent(user), user)


@bp.get("/<int:user_id>")
@cached("users")
@operation(response=UserV1, responses={404: "No such user"})
def get_user(user_id: int) -> Response:
    """One user."""
    return jsonify(represent(existing(user_id)))


@bp.patch("/<int:user_id>")
@operation(
    request=UserPatchV1,
    response=UserV1,
    responses={404: "No such user", 409: "Email already used", 422: "Invalid fields"},
)
def update_user(user_id: int) -> Response:
    """Change the name or email; a new name is split again."""
    body = read_json(UserPatchV1)
    fields = body.model_dump(exclude_unset=True)
    reject_nulls(fields)
    changes: dict[str, str] = {}
    if "name" in fields:
        changes["first_name"], changes["last_name"] = split_name(fields["name"])
    if "email" in fields:
        changes["email"] = fields["email"]
    return jsonify(represent(update(user_id, changes)))


@bp.delete("/<int:user_id>")
@operation(responses={404: "No such user"})
def delete_user(user_id: int) -> Response:
    """Delete a user."""
    return remove(user_id)
