"""Order confirmation: each new order's job confirms it through the users
service; a cancelled order is never confirmed; users down means retries, not
a lost or wrong confirmation.

`lockgate run` for the web side, the worker started by the test (so it can
be held back), on the machine's Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs.fleet import (
    REDIS_CONFIRMATION,
    all_finished,
    jobs_fleet,
    order_events,
    place_order,
)
from tests.servers import unique_email, wait_for

pytestmark = pytest.mark.server


def test_orders_are_confirmed_once_and_a_cancelled_one_never(tmp_path: Path) -> None:
    with jobs_fleet(tmp_path, REDIS_CONFIRMATION, start_worker=False) as (fleet, worker):
        data = Path(fleet.env["LOCKGATE_DATA_DIR"])
        made = fleet.http.post(
            "/api/v2/users",
            json={"first_name": "Ada", "last_name": "L", "email": unique_email("confirm")},
        )
        user = made.json()["id"]
        kept = [place_order(fleet.http, user) for _ in range(3)]
        cancelled_id, cancelled_job = place_order(fleet.http, user)
        assert fleet.http.post(f"/api/v2/orders/{cancelled_id}/cancel").status_code == 200
        # Its user deleted before the job runs: the order is cancelled, not confirmed.
        orphan_user = fleet.http.post(
            "/api/v2/users",
            json={"first_name": "Gone", "last_name": "Soon", "email": unique_email("gone")},
        ).json()["id"]
        orphan_id, orphan_job = place_order(fleet.http, orphan_user)
        assert fleet.http.delete(f"/api/v2/users/{orphan_user}").status_code == 204
        pending = fleet.http.get(f"/api/v2/orders/{kept[0][0]}").json()
        assert pending["status"] == "pending"
        # Its confirmation is the service's own business: not the client's to cancel.
        refused = fleet.http.delete(kept[0][1])
        assert refused.status_code == 409
        assert refused.json()["code"] == "JobNotCancellable"

        worker.start()
        jobs = [location for _, location in kept] + [cancelled_job, orphan_job]
        states = wait_for(lambda: all_finished(fleet.http, jobs), 60, "the confirmations")
        assert [s["status"] for s in states] == ["succeeded"] * 5, states
        assert [s["result"]["status"] for s in states] == ["confirmed"] * 3 + ["cancelled"] * 2
        assert states[-1]["result"]["reason"] == "UnknownUser"
        for order_id, _ in kept:
            assert fleet.http.get(f"/api/v2/orders/{order_id}").json()["status"] == "confirmed"
        assert fleet.http.get(f"/api/v2/orders/{cancelled_id}").json()["status"] == "cancelled"
        assert fleet.http.get(f"/api/v2/orders/{orphan_id}").json()["status"] == "cancelled"
        events = order_events(data)
        assert [events[order_id] for order_id, _ in kept] == [["confirmed"]] * 3
        assert events[cancelled_id] == ["cancelled"]
        assert events[orphan_id] == ["cancelled"]
        # A confirmed order can no longer be cancelled.
        late = fleet.http.post(f"/api/v2/orders/{kept[0][0]}/cancel")
        assert late.status_code == 409


def test_users_down_means_retries_then_confirmation(tmp_path: Path) -> None:
    # The worker's users calls go to a closed port first: each delivery fails,
    # and the job is retried with a backoff; with users back, it confirms.
    with jobs_fleet(tmp_path, REDIS_CONFIRMATION, start_worker=False,
                    LOCKGATE_JOBS_MAX_DELIVERIES="20") as (fleet, worker):  # fmt: skip
        user = fleet.http.post(
            "/api/v2/users",
            json={"first_name": "Ada", "last_name": "L", "email": unique_email("retry")},
        ).json()["id"]
        order_id, job = place_order(fleet.http, user)
        from tests.servers import free_port

        worker.env = {**worker.env, "LOCKGATE_FLEET_URL": f"http://127.0.0.1:{free_port()}"}
        worker.base = worker.env["LOCKGATE_FLEET_URL"]
        worker.start()
        wait_for(lambda: fleet.http.get(job).json()["error"] is not None, 60, "a failed try")
        state = fleet.http.get(job).json()
        assert state["status"] in ("queued", "running"), state
        assert fleet.http.get(f"/api/v2/orders/{order_id}").json()["status"] == "pending"
        worker.stop()
        worker.env = {**worker.env, "LOCKGATE_FLEET_URL": fleet.base}
        worker.base = fleet.base
        worker.start()
        done = wait_for(lambda: all_finished(fleet.http, [job]), 60, "the confirmation")
        assert done[0]["status"] == "succeeded", done
        assert fleet.http.get(f"/api/v2/orders/{order_id}").json()["status"] == "confirmed"
