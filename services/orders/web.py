"""The head (v2) implementation of orders: written once, serving v1 through its changes.

Making an order asks the users service whether the user exists (with the
fleet's resilient client: timeouts, retries, the shared breaker); a user it
does not know is a 404 ``UnknownUser``, and users being down is the client's
503 ``UpstreamUnavailable`` or 504 ``UpstreamTimeout``, never a 500.
"""

from __future__ import annotations

import base64
from datetime import UTC
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from lockgate import Problem, operation, url_for
from lockgate.auth import require_scope
from lockgate.bodies import query_problem, read_json
from lockgate.jobs import Job
from lockgate.runtime import idempotent

from .confirmation import JOB_REL, enqueue
from .store import BIGINT_MAX, Item, Order, OrderStore

#: Any text without control characters (C0, DEL, C1), 1 to 64 characters.
Sku = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
]
#: A cursor is the last id of a page, 8 bytes big-endian in unpadded base64url
#: (as the users service's): every string the pattern admits is a position
#: from 0 to 2**63 - 1, so the document describes exactly what is accepted.
Cursor = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"),
]


def _json_integer(value: Any) -> Any:
    """A JSON integer (``2``, or ``2.0``, which JSON Schema calls an integer too);
    never ``"2"`` or ``true``, which pydantic's lax mode would take."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer, not a string or a boolean")
    return value


#: What the document's ``integer`` means, and nothing more.
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class LineItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: JsonInt = Field(ge=1, le=10_000)
    unit_price_cents: JsonInt = Field(ge=0, le=100_000_000)


class OrderIn(BaseModel):
    """A new order: whose, and what."""

    model_config = ConfigDict(extra="forbid")

    user_id: JsonInt = Field(ge=1, le=BIGINT_MAX)
    items: list[LineItem] = Field(min_length=1, max_length=100)


class OrderOut(BaseModel):
    id: int
    user_id: int
    items: list[LineItem]
    total_cents: int
    status: Literal["pending", "confirmed", "cancelled"]
    created_at: str


class OrderPage(BaseModel):
    """A page of orders, oldest first; ``next_cursor`` fetches the next one."""

    data: list[OrderOut]
    next_cursor: str | None


class OrderListing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    cursor: Cursor | None = None
    limit: int = Field(20, ge=1, le=100)


def store() -> OrderStore:
    found: OrderStore = current_app.extensions["orders.store"]
    return found


def represent(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "items": [
            {"sku": i.sku, "quantity": i.quantity, "unit_price_cents": i.unit_price_cents}
            for i in order.items
        ],
        "total_cents": order.total_cents,
        "status": order.status,
        "created_at": order.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def not_found(order_id: int) -> Problem:
    return Problem(404, f"there is no order {order_id}", code="OrderNotFound")


def encode_cursor(order_id: int) -> str:
    return base64.urlsafe_b64encode(order_id.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a :data:`Cursor` names (validated already: always 0 to 2**63 - 1)."""
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


def listing() -> OrderListing:
    try:
        return OrderListing.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise query_problem(error) from None


def check_user(user_id: int) -> None:
    """Ask the users service whether ``user_id`` exists (404: ``UnknownUser``)."""
    users = current_app.extensions["orders.users"]
    response = users.get(f"/api/v2/users/{user_id}")
    if response.status_code == 404:
        raise Problem(
            404, f"the users service knows no user {user_id}", code="UnknownUser", user_id=user_id
        )
    if response.status_code != 200:
        raise Problem(
            502,
            f"the users service answered {response.status_code}",
            code="UpstreamFailed",
            title="Bad gateway",
        )


def head_blueprint() -> Blueprint:
    bp = Blueprint("orders", __name__, url_prefix="/orders")
    require_scope("orders:read", methods=("GET", "HEAD"))(bp)
    require_scope("orders:write", methods=("POST", "PUT", "PATCH", "DELETE"))(bp)

    @bp.post("")
    @idempotent()
    @operation(
        request=OrderIn,
        response=OrderOut,
        status=201,
        responses={
            404: "The user does not exist (UnknownUser)",
            502: "Users failed",
            503: "Users unavailable",
            504: "Users too slow",
        },
    )
    def create_order() -> tuple[Response, int, dict[str, str]]:
        """Place an order for a user the users service knows."""
        body = read_json(OrderIn)
        check_user(body.user_id)
        items = [Item(i.sku, i.quantity, i.unit_price_cents) for i in body.items]
        jobs = current_app.extensions["lockgate.jobs"]
        confirming: list[Job] = []
        order = store().create(body.user_id, items, then=enqueue(jobs, confirming))
        location = url_for("orders.get_order", order_id=order.id)
        # The confirmation job, to follow if the client wants to know when.
        job = url_for("jobs.get_job", job_id=confirming[0].id)
        return (
            jsonify(represent(order)),
            201,
            {"Location": location, "Link": f'<{job}>; rel="{JOB_REL}"'},
        )

    @bp.get("")
    @operation(query=OrderListing, response=OrderPage, summary="List orders")
    def list_orders() -> Response:
        """Orders by id, a page at a time, optionally of one user."""
        query = listing()
        after = decode_cursor(query.cursor) if query.cursor else 0
        found = store().page(after=after, limit=query.limit + 1, user_id=query.user_id)
        page = found[: query.limit]
        more = len(found) > query.limit
        return jsonify(
            data=[represent(order) for order in page],
            next_cursor=encode_cursor(page[-1].id) if more and page else None,
        )

    @bp.get("/<int:order_id>")
    @operation(response=OrderOut, responses={404: "No such order"})
    def get_order(order_id: int) -> Response:
        """One order."""
        order = store().get(order_id)
        if order is None:
            raise not_found(order_id)
        return jsonify(represent(order))

    @bp.post("/<int:order_id>/cancel")
    @operation(response=OrderOut, responses={404: "No such order", 409: "Already confirmed"})
    def cancel_order(order_id: int) -> Response:
        """Cancel a pending order (a cancelled one stays cancelled)."""
        order = store().cancel(order_id)
        if order is None:
            raise not_found(order_id)
        if order.status == "confirmed":
            raise Problem(409, f"order {order_id} is confirmed already", code="OrderConfirmed")
        return jsonify(represent(order))

    return bp
