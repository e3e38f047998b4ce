"""The job store's promises, on SQLite and PostgreSQL: a claim per delivery, a lease that only
its holder may use, deliveries bounded, the outbox held by one relay at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, update

from lockgate.jobs import JobStore
from lockgate.jobs.store import job_tables
from tests.servers import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """The store on SQLite and on the machine's PostgreSQL (a schema of its own)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'jobs.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        engine = create_engine(url)
        stack.callback(engine.dispose)
        metadata = MetaData()
        job_tables(metadata, "svc")
        metadata.create_all(engine)
        yield JobStore(engine, "svc", metadata=metadata)


def accept(store: JobStore, max_attempts: int = 3) -> str:
    with store.transaction() as connection:
        job = store.accept(
            connection, type="svc.work", queue="svc", params={"n": 1}, max_attempts=max_attempts
        )
    return job.id


def expire(store: JobStore, job_id: str) -> None:
    """The holder died: its lease lies in the past."""
    from datetime import UTC, datetime, timedelta

    with store.engine.begin() as connection:
        connection.execute(
            update(store.jobs)
            .where(store.jobs.c.id == job_id)
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_job_is_claimed_once_while_its_lease_lives(store: JobStore) -> None:
    job_id = accept(store)
    first = store.claim(job_id, lease=30)
    assert first.state == "claimed" and first.token
    assert store.claim(job_id, lease=30).state == "busy"
    assert store.succeed(job_id, first.token, {"ok": True})
    again = store.claim(job_id, lease=30)
    assert again.state == "finished"
    assert again.job is not None and again.job.result == {"ok": True}


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_can_finish_nothing(
    store: JobStore,
) -> None:
    job_id = accept(store)
    first = store.claim(job_id, lease=30)
    expire(store, job_id)
    second = store.claim(job_id, lease=30)
    assert second.state == "claimed"
    assert second.job is not None and second.job.attempts == 2
    assert first.token is not None and second.token is not None
    assert not store.succeed(job_id, first.token, {"by": "the dead one"})
    assert store.renew(job_id, first.token, 30) == "lost"
    assert store.succeed(job_id, second.token, {"by": "the second"})
    found = store.get(job_id)
    assert found is not None and found.result == {"by": "the second"}


def test_deliveries_are_bounded(store: JobStore) -> None:
    job_id = accept(store, max_attempts=2)
    for _ in range(2):
        claim = store.claim(job_id, lease=30)
        assert claim.state == "claimed"
        expire(store, job_id)  # each delivery dies mid-task
    exhausted = store.claim(job_id, lease=30)
    assert exhausted.state == "exhausted"
    assert exhausted.job is not None and exhausted.job.status == "failed"
    assert exhausted.job.error is not None
    assert exhausted.job.error["code"] == "TooManyDeliveries"


def test_a_failed_delivery_is_retried_through_the_outbox_after_its_backoff(
    store: JobStore,
) -> None:
    job_id = accept(store)
    (entry,) = store.due()
    store.published(entry)
    claim = store.claim(job_id, lease=30)
    assert claim.token is not None
    assert store.fail(job_id, claim.token, {"code": "E"}, retry_in=0.3) == "retrying"
    assert store.claim(job_id, lease=30).state == "early"  # a duplicate before its time
    assert store.due() == []
    time.sleep(0.35)
    (retry,) = store.due()
    assert retry.job_id == job_id
    assert store.claim(job_id, lease=30).state == "claimed"


def test_an_outbox_entry_is_held_by_one_relay_at_a_time(store: JobStore) -> None:
    accept(store)
    assert len(store.due(hold=30)) == 1
    assert store.due(hold=30) == []  # another relay skips it meanwhile


def test_the_reaper_republishes_a_dead_workers_job(store: JobStore) -> None:
    job_id = accept(store)
    (entry,) = store.due()
    store.published(entry)
    assert store.claim(job_id, lease=30).state == "claimed"
    assert store.reap(republish_after=300) == 0  # its worker is alive (the lease holds)
    expire(store, job_id)
    assert store.reap(republish_after=300) == 1
    assert store.reap(republish_after=300) == 0  # once: it is in the outbox now
    (again,) = store.due()
    assert again.job_id == job_id


def test_cancel_a_queued_job_at_once_and_a_running_one_by_asking(store: JobStore) -> None:
    queued = accept(store)
    cancelled = store.cancel(queued)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert store.claim(queued, lease=30).state == "finished"
    running = accept(store)
    claim = store.claim(running, lease=30)
    assert claim.token is not None
    asked = store.cancel(running)
    assert asked is not None and asked.status == "running" and asked.cancel_requested
    assert store.renew(running, claim.token, 30) == "cancel"
    assert store.cancelled(running, claim.token)
    found = store.get(running)
    assert found is not None and found.status == "cancelled"
