"""Order confirmation: every new order gets a job that confirms it once the
users service says its user exists.

The job is accepted in the transaction that writes the order, so no order is
ever left without one. It asks users through the fleet's resilient client
(timeouts, retries, the shared breaker); users being down fails this
delivery, and the job is tried again with a backoff. The confirmation, its
``order_events`` row and the job's end commit together, under a
``WHERE status = 'pending'``: a cancelled order is never confirmed, and a job
delivered twice confirms once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from lockgate.jobs import Job, JobContext, JobFailed, Jobs

from .store import OrderStore

__all__ = ["CONFIRM", "JOB_REL", "declare", "enqueue"]

#: The job type.
CONFIRM = "orders.confirm"
#: The link relation of a new order's ``Link`` to its confirmation job (RFC 8288
#: extension relations are URIs).
JOB_REL = "https://lockgate.dev/rels/confirmation"


def enqueue(jobs: Jobs, accepted: list[Job]) -> Any:
    """``then`` for :meth:`OrderStore.create`: the confirmation job, in the
    order's own transaction (appended to ``accepted``)."""

    def accept(connection: Connection, order_id: int) -> None:
        accepted.append(jobs.accept(CONFIRM, {"order_id": order_id}, connection=connection))

    return accept


def declare(jobs: Jobs, store: OrderStore, users: Any) -> None:
    # Not cancellable: an order's state rests on it (cancel the order instead).
    @jobs.job(CONFIRM, scope="orders:read", cancellable=False)
    def confirm(context: JobContext) -> dict[str, Any] | None:
        order_id = int(context.params["order_id"])
        order = store.get(order_id)
        if order is None:
            raise JobFailed("OrderNotFound", f"there is no order {order_id}")
        if order.status != "pending":
            return {"order_id": order_id, "status": order.status}
        response = users.get(f"/api/v2/users/{order.user_id}")
        if response.status_code == 404:
            outcome = "cancelled"  # its user has gone: nothing to confirm it for
        elif response.status_code == 200:
            outcome = "confirmed"
        else:
            raise RuntimeError(f"the users service answered {response.status_code}")
        context.check()
        with store.engine.begin() as connection:
            changed = store.change(connection, order_id, outcome, job_id=context.job.id)
            current = outcome if changed else _status(store, order_id, connection)
            result: dict[str, Any] = {"order_id": order_id, "status": current}
            if changed and outcome == "cancelled":
                result["reason"] = "UnknownUser"
            context.complete(result, connection)
        return None


def _status(store: OrderStore, order_id: int, connection: Connection) -> str:
    from sqlalchemy import select

    from .store import orders

    found = connection.execute(select(orders.c.status).where(orders.c.id == order_id)).scalar()
    return str(found)
