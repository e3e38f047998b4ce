"""A test app in the change style: three versions, one head implementation.

- v3 (head, current): items have ``full_name`` and a required ``email``;
  ``POST /items/<id>/archive`` is new; the legacy ``GET /items/search`` is gone.
- v2 (deprecated): no ``email``, no archive; the search exists.
- v1 (deprecated, sunset later): ``name`` instead of ``full_name``, inside the
  list envelope too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from lockgate import (
    Problem,
    RequestInfo,
    ResponseInfo,
    Version,
    VersionChange,
    Versioning,
    endpoint,
    field,
    operation,
    url_for,
)
from lockgate import request as migrate_request
from lockgate import response as migrate_response
from lockgate.bodies import query_problem, read_json
from lockgate.runtime import Runtime, cached, invalidate

FALLBACK_EMAIL = "unknown@example.com"


class ItemOut(BaseModel):
    id: int
    full_name: str
    email: str
    archived: bool = False


class ItemPage(BaseModel):
    """A page of items."""

    items: list[ItemOut]
    total: int


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str = Field(min_length=1, max_length=50)
    email: str = Field(min_length=3, max_length=100)


class Listing(BaseModel):
    limit: int = Field(10, ge=1, le=100)


class Search(BaseModel):
    q: str = Field(min_length=1)


class RenameName(VersionChange):
    """`name` became `full_name`, in items and in the bodies that create them."""

    schemas = [
        field(ItemOut, "full_name").renamed(from_="name"),
        field(ItemIn, "full_name").renamed(from_="name"),
    ]

    @migrate_request(ItemIn)
    def upgrade(req: RequestInfo) -> None:
        req.body["full_name"] = req.body.pop("name")

    @migrate_response(ItemOut)
    def downgrade(res: ResponseInfo) -> None:
        res.body["name"] = res.body.pop("full_name")


class RequireEmail(VersionChange):
    """Items need an `email`; items can be archived; the legacy search is gone
    (list with `GET /items` instead)."""

    schemas = [field(ItemIn, "email").added(), field(ItemOut, "email").added()]
    endpoints = [
        endpoint("/items/search", ["GET"]).removed(),
        endpoint("/items/<int:item_id>/archive", ["POST"]).added(),
    ]

    @migrate_request(ItemIn)
    def fill_email(req: RequestInfo) -> None:
        req.body["email"] = FALLBACK_EMAIL

    @migrate_response(ItemOut)
    def drop_email(res: ResponseInfo) -> None:
        res.body.pop("email", None)


def versions() -> list[Version]:
    return [
        Version(
            "1",
            deprecated="2026-01-01",
            sunset="2027-12-31",
            successor="3",
            policy="https://example.com/items-v1",
        ),
        Version("2", deprecated="2026-06-01", successor="3", changes=[RenameName]),
        Version("3", changes=[RequireEmail]),
    ]


def _items() -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = current_app.extensions["items"]
    return found


def _one(item_id: int) -> dict[str, Any]:
    item = _items().get(item_id)
    if item is None:
        raise Problem(404, f"there is no item {item_id}", code="ItemNotFound")
    return item


def _listing(model: type[BaseModel]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise query_problem(error) from None


def head_blueprint() -> Blueprint:
    """The head (v3) implementation: written once, serving all three versions."""
    bp = Blueprint("items", __name__, url_prefix="/items")

    @bp.get("")
    @operation(query=Listing, response=ItemPage, summary="List items")
    def list_items() -> Any:
        listing = _listing(Listing)
        items = sorted(_items().values(), key=lambda item: item["id"])
        return jsonify(items=items[: listing.limit], total=len(items))

    @bp.post("")
    @operation(request=ItemIn, response=ItemOut, status=201, responses={422: "Invalid fields"})
    def create_item() -> Any:
        body = read_json(ItemIn)
        items = _items()
        item_id = max(items, default=0) + 1
        items[item_id] = {
            "id": item_id,
            "full_name": body.full_name,
            "email": body.email,
            "archived": False,
        }
        invalidate("items")
        location = url_for("items.get_item", item_id=item_id)
        return jsonify(items[item_id]), 201, {"Location": location}

    @bp.get("/<int:item_id>")
    @cached("items")
    @operation(response=ItemOut, responses={404: "No such item"})
    def get_item(item_id: int) -> Any:
        return jsonify(_one(item_id))

    @bp.post("/<int:item_id>/archive")
    @operation(response=ItemOut, responses={404: "No such item"})
    def archive_item(item_id: int) -> Any:
        item = _one(item_id)
        item["archived"] = True
        invalidate("items")
        return jsonify(item)

    @bp.get("/search")
    @operation(query=Search, response=ItemPage, summary="Search items (legacy)")
    def search_items() -> Any:
        search = _listing(Search)
        found = [i for i in _items().values() if search.q.lower() in i["full_name"].lower()]
        return jsonify(items=found, total=len(found))

    return bp


def create_app(clock: Any = None, **config: Any) -> Flask:
    """The items app, with lockgate's runtime (ETags, the cache, limits) in process."""
    app = Flask("items")
    app.config.update(TESTING=True, LOCKGATE_VENDOR="items", **config)
    app.extensions["items"] = {}
    Versioning(app, versions=versions(), head=head_blueprint(), clock=clock)
    Runtime(app)
    return app


def fixed_clock(moment: datetime) -> Any:
    return lambda: moment
