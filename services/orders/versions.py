"""The orders API's versions: v2 is the head, v1 is served through one change.

v1 (deprecated) said ``customer_id`` for the user, gave the total as a
decimal string (``"12.50"``), called a pending order ``open`` and could not
cancel. :class:`CentsAndCancel` turns a v1 request into the head's and the
head's answers back into v1's.
"""

from __future__ import annotations

from typing import Literal

from lockgate import RequestInfo, ResponseInfo, Version, VersionChange, endpoint, field
from lockgate import request as migrate_request
from lockgate import response as migrate_response

from .web import OrderIn, OrderListing, OrderOut


class CentsAndCancel(VersionChange):
    """`customer_id` is now `user_id`; the total is `total_cents`, an integer of
    cents, instead of the decimal string `total`; a pending order's status is
    `pending`, not `open`; orders can be cancelled."""

    schemas = [
        field(OrderIn, "user_id").renamed(from_="customer_id"),
        field(OrderOut, "user_id").renamed(from_="customer_id"),
        field(OrderListing, "user_id").renamed(from_="customer_id"),
        field(OrderOut, "total_cents").added(),
        field(OrderOut, "total").removed(str),
        field(OrderOut, "status").retyped(from_=Literal["open", "confirmed", "cancelled"]),
    ]
    endpoints = [endpoint("/orders/<int:order_id>/cancel", ["POST"]).added()]

    @migrate_request(OrderIn)
    def customer_to_user(req: RequestInfo) -> None:
        req.body["user_id"] = req.body.pop("customer_id")

    @migrate_request("/orders", ["GET"])
    def customer_query(req: RequestInfo) -> None:
        query = req.query  # a mutable copy of the request's
        if "customer_id" in query:
            query.setlist("user_id", query.poplist("customer_id"))

    @migrate_response(OrderOut)
    def to_v1(res: ResponseInfo) -> None:
        body = res.body
        body["customer_id"] = body.pop("user_id")
        cents = body.pop("total_cents")
        body["total"] = f"{cents // 100}.{cents % 100:02d}"
        if body["status"] == "pending":
            body["status"] = "open"


def orders_versions() -> list[Version]:
    return [
        Version(
            "1",
            deprecated="2026-12-01",
            sunset="2027-12-31T23:59:59Z",
            successor="2",
        ),
        Version("2", changes=[CentsAndCancel]),
    ]
