"""Version 1 of the users API: one ``name``, a bare array with limit/offset.

Representation and validation only; the views are :mod:`..web`'s.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from ..domain import User, split_name
from ..web import (
    BODY,
    QUERY,
    Email,
    Listing,
    Page,
    Position,
    Representation,
    clamp,
    omittable,
    user_blueprint,
)

#: A first name of 1 to 100 characters without a space, then optionally a
#: space and a last name of up to 100: ``name`` is split at its first space
#: into the two fields every version shares. No control characters.
FullName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=201,
        pattern=r"^[^\x00-\x1f\x7f-\x9f ]{1,100}( [^\x00-\x1f\x7f-\x9f]{0,100})?$",
    ),
]


class UserV1(BaseModel):
    id: int
    name: str
    email: str


class NewUserV1(BaseModel):
    model_config = BODY
    name: FullName
    email: Email


class UserPatchV1(BaseModel):
    model_config = BODY
    name: FullName = omittable()
    email: Email = omittable()


#: The most users one v1 page holds; a larger ``?limit`` is clamped, not refused.
MAX_LIMIT = 100


class ListQueryV1(BaseModel):
    model_config = QUERY
    limit: Annotated[int, clamp(MAX_LIMIT)] = Field(
        MAX_LIMIT, ge=1, description=f"At most {MAX_LIMIT}; a larger value gives {MAX_LIMIT}"
    )
    offset: Position = Field(0, description="Users to skip")


def represent(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email}


def fields(body: dict[str, Any]) -> dict[str, str]:
    """``name`` becomes first and last name; ``email`` is kept."""
    found = {"email": body["email"]} if "email" in body else {}
    if "name" in body:
        found["first_name"], found["last_name"] = split_name(body["name"])
    return found


def listing(params: ListQueryV1) -> Listing:
    return Listing(limit=params.limit, offset=params.offset)


def present(page: Page) -> list[dict[str, Any]]:
    """A bare array: v1 says nothing of further pages."""
    return [represent(user) for user in page.users]


representation = Representation(
    user=UserV1,
    new=NewUserV1,
    patch=UserPatchV1,
    query=ListQueryV1,
    page=list[UserV1],
    represent=represent,
    fields=fields,
    listing=listing,
    present=present,
    create_doc="The name is split at its first space into first and last name.",
    update_doc="Change the name or email; a new name is split again.",
)
bp = user_blueprint(__name__, representation)
