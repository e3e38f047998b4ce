"""Version 2 of the users API: split names, ``created_at``, cursor pages.

Representation and validation only; the views are :mod:`..web`'s.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from ..domain import User, rfc3339
from ..web import (
    BODY,
    NO_CONTROL,
    QUERY,
    Email,
    LastName,
    Listing,
    Name,
    Page,
    QueryInt,
    Representation,
    omittable,
    user_blueprint,
)

#: A cursor is the last id of a page, 8 bytes big-endian in unpadded base64url:
#: eleven characters, the first below ``g`` (the top bit clear: at most
#: 2**63 - 1) and the last with its two padding bits clear. Every string this
#: pattern admits decodes to a position, so the document describes exactly
#: the cursors the service accepts.
Cursor = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"),
]
#: The filter compares with stored addresses case-insensitively; any text is a
#: valid filter (it may simply match nobody).
EmailFilter = Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=NO_CONTROL)]


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
    model_config = BODY
    first_name: Name
    last_name: LastName
    email: Email


class UserPatchV2(BaseModel):
    model_config = BODY
    first_name: Name = omittable()
    last_name: LastName = omittable()
    email: Email = omittable()


class ListQueryV2(BaseModel):
    model_config = QUERY
    limit: QueryInt = Field(20, ge=1, le=100)
    cursor: Cursor = omittable(description="Opaque; from next_cursor")
    email: EmailFilter = omittable(description="Exact email (case-insensitive)")


def represent(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "created_at": rfc3339(user.created_at),
    }


def fields(body: dict[str, Any]) -> dict[str, str]:
    """v2's fields are the domain's."""
    return dict(body)


def encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(after.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a :data:`Cursor` names (it has been validated: always 0 to 2**63 - 1)."""
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


def listing(params: ListQueryV2) -> Listing:
    after = None if params.cursor is None else decode_cursor(params.cursor)
    return Listing(limit=params.limit, after=after, email=params.email)


def present(page: Page) -> dict[str, Any]:
    return {
        "data": [represent(user) for user in page.users],
        "next_cursor": encode_cursor(page.users[-1].id) if page.more else None,
    }


representation = Representation(
    user=UserV2,
    new=NewUserV2,
    patch=UserPatchV2,
    query=ListQueryV2,
    page=UserPageV2,
    represent=represent,
    fields=fields,
    listing=listing,
    present=present,
    update_doc="Change any of first name, last name and email.",
)
bp = user_blueprint(__name__, representation)
