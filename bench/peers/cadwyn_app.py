"""Cadwyn (FastAPI) with the version in the path: ``/api/v2/users``."""

from __future__ import annotations

from typing import Any

from cadwyn import Cadwyn, HeadVersion, Version, VersionBundle, VersionedAPIRouter
from pydantic import BaseModel

from .store import first_users, limit_of


class UserOut(BaseModel):
    id: int
    first_name: str
    last_name: str
    email: str


class UserList(BaseModel):
    users: list[UserOut]


router = VersionedAPIRouter(prefix="/api/{api_version}")


@router.get("/users", response_model=UserList)
def list_users(limit: str | None = None) -> dict[str, Any]:
    return {"users": first_users(limit_of(limit))}


app = Cadwyn(
    versions=VersionBundle(HeadVersion(), Version("v2"), Version("v1")),
    api_version_location="path",
    api_version_format="string",
    api_version_parameter_name="api_version",
    docs_url=None,
    redoc_url=None,
)
app.generate_and_include_versioned_routers(router)
