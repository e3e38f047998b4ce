"""The orders service through `lockgate run`: v2 (the head) and v1 through its change.

Orders checks every new order's user through the users service over HTTP,
with a token of its own; the module runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.servers import Fleet, unique_email

PROBLEM = "application/problem+json"


def new_user(fleet: Fleet) -> int:
    body = {"first_name": "Ada", "last_name": "Lovelace", "email": unique_email("buyer")}
    response = fleet.http.post("/api/v2/users", json=body)
    assert response.status_code == 201, response.text
    user_id: int = response.json()["id"]
    return user_id


ITEMS = [
    {"sku": "tea-1kg", "quantity": 2, "unit_price_cents": 625},
    {"sku": "cup", "quantity": 1, "unit_price_cents": 0},
]


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def test_an_order_for_a_known_user_in_v2(fleet: Fleet) -> None:
    user_id = new_user(fleet)
    created = fleet.http.post("/api/v2/orders", json={"user_id": user_id, "items": ITEMS})
    assert created.status_code == 201, created.text
    order = created.json()
    assert created.headers["Location"] == f"/api/v2/orders/{order['id']}"
    assert order["user_id"] == user_id and order["items"] == ITEMS
    assert order["total_cents"] == 1250 and order["status"] == "pending"
    assert order["created_at"].endswith("Z")
    assert fleet.http.get(created.headers["Location"]).json() == order


def test_v1_speaks_customer_id_a_decimal_total_and_open(fleet: Fleet) -> None:
    user_id = new_user(fleet)
    created = fleet.http.post("/api/v1/orders", json={"customer_id": user_id, "items": ITEMS})
    assert created.status_code == 201, created.text
    order = created.json()
    assert created.headers["Location"] == f"/api/v1/orders/{order['id']}"
    assert order["customer_id"] == user_id and "user_id" not in order
    assert order["total"] == "12.50" and "total_cents" not in order
    assert order["status"] == "open"
    assert created.headers["Deprecation"]  # v1 is deprecated (RFC 9745)
    # The same order through v2.
    v2 = fleet.http.get(f"/api/v2/orders/{order['id']}").json()
    assert v2["user_id"] == user_id and v2["total_cents"] == 1250 and v2["status"] == "pending"
    listed = fleet.http.get("/api/v1/orders", params={"customer_id": user_id}).json()
    assert [o["id"] for o in listed["data"]] == [order["id"]]
    # v1 has no cancel; v2 does.
    problem(fleet.http.post(f"/api/v1/orders/{order['id']}/cancel"), 404, "UnsupportedApiVersion")
    cancelled = fleet.http.post(f"/api/v2/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert fleet.http.get(f"/api/v1/orders/{order['id']}").json()["status"] == "cancelled"
    # v1 refuses the v2 field names, naming its own.
    refused = fleet.http.post("/api/v1/orders", json={"user_id": user_id, "items": ITEMS})
    errors = problem(refused, 422, "ValidationFailed")["errors"]
    assert {e["field"] for e in errors} >= {"customer_id"}


def test_an_unknown_user_is_404_unknown_user(fleet: Fleet) -> None:
    body = {"user_id": 987654321, "items": ITEMS}
    found = problem(fleet.http.post("/api/v2/orders", json=body), 404, "UnknownUser")
    assert "987654321" in found["detail"]
    v1 = {"customer_id": 987654321, "items": ITEMS}
    problem(fleet.http.post("/api/v1/orders", json=v1), 404, "UnknownUser")


def test_pages_by_cursor_for_one_user(fleet: Fleet) -> None:
    user_id = new_user(fleet)
    made = [
        fleet.http.post("/api/v2/orders", json={"user_id": user_id, "items": ITEMS}).json()["id"]
        for _ in range(5)
    ]
    seen: list[int] = []
    params: dict[str, Any] = {"user_id": user_id, "limit": 2}
    while True:
        page = fleet.http.get("/api/v2/orders", params=params).json()
        seen.extend(order["id"] for order in page["data"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == made
    bad_cursor = fleet.http.get("/api/v2/orders", params={"cursor": "not-a-cursor"})
    problem(bad_cursor, 400, "InvalidQuery")
    problem(fleet.http.get("/api/v2/orders", params={"limit": 0}), 400, "InvalidQuery")


def test_bad_orders_are_422_and_lose_nothing(fleet: Fleet) -> None:
    user_id = new_user(fleet)
    for items in (
        [],
        [{"sku": "x", "quantity": 0, "unit_price_cents": 1}],
        [{"sku": "x", "quantity": 1, "unit_price_cents": -1}],
    ):
        refused = fleet.http.post("/api/v2/orders", json={"user_id": user_id, "items": items})
        problem(refused, 422, "ValidationFailed")
    page = fleet.http.get("/api/v2/orders", params={"user_id": user_id}).json()
    assert page["data"] == []


def test_scopes(fleet: Fleet) -> None:
    user_id = new_user(fleet)
    reader = {"Authorization": f"Bearer {fleet.token('orders:read')}"}
    assert fleet.anonymous.get("/api/v2/orders").status_code == 401
    assert fleet.anonymous.get("/api/v2/orders", headers=reader).status_code == 200
    refused = fleet.anonymous.post(
        "/api/v2/orders", json={"user_id": user_id, "items": ITEMS}, headers=reader
    )
    assert problem(refused, 403, "insufficient_scope")["scope"] == "orders:write"
    # A client with orders:write only still gets its order: orders calls users
    # with its own token, not the caller's.
    writer = {"Authorization": f"Bearer {fleet.token('orders:write')}"}
    made = fleet.anonymous.post(
        "/api/v2/orders", json={"user_id": user_id, "items": ITEMS}, headers=writer
    )
    assert made.status_code == 201, made.text


def test_each_service_is_mounted_whole_under_services(fleet: Fleet) -> None:
    for version in ("1", "2"):
        document = fleet.anonymous.get(f"/services/orders/api/v{version}/openapi.json").json()
        assert f"/api/v{version}/orders" in document["paths"], version
        assert document["info"]["title"] == "lockgate orders"
    page = fleet.anonymous.get("/services/orders/docs").text
    assert 'src="/services/orders/docs/init.js"' in page
    script = fleet.anonymous.get("/services/orders/docs/init.js").text
    assert '"/services/orders/api/v2/openapi.json"' in script
    # The fleet's shared paths stay the default service's (users).
    assert "/api/v2/users" in fleet.anonymous.get("/api/v2/openapi.json").json()["paths"]
    assert fleet.anonymous.get("/services/nobody/docs").status_code == 404
