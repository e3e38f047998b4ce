"""`Jobs(app)`: Celery configured to lose nothing, per broker; a job not
accepted is a 503 problem, never a 202 with nothing behind it."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine
from werkzeug.exceptions import HTTPException

from lockgate.jobs import Jobs, accepted
from lockgate.problems import handle_http_exception


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded broker's file goes in the test's folder, not ./.lockgate."""
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))


def make(tmp_path: Path, **config: object) -> Jobs:
    app = Flask("svc")
    app.config.update(LOCKGATE_SERVICE="svc", LOCKGATE_JOBS_RELAY=False, **config)
    return Jobs(app, engine=create_engine(f"sqlite:///{tmp_path / 'svc.db'}"))


def test_celery_runs_with_the_reliable_settings(tmp_path: Path) -> None:
    jobs = make(tmp_path, LOCKGATE_JOBS_TIME_LIMIT=120)
    conf = jobs.celery.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 120
    assert conf.task_soft_time_limit < 120
    assert conf.task_always_eager is False
    # The embedded default: a real broker, kombu's SQLAlchemy transport.
    assert conf.broker_url.startswith("sqla+sqlite:///")
    assert jobs.app.extensions["celery"] is jobs.celery


def test_rabbitmq_gets_quorum_queues_with_a_dead_letter_queue(tmp_path: Path) -> None:
    jobs = make(tmp_path, LOCKGATE_JOBS_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
                LOCKGATE_JOBS_MAX_DELIVERIES=4)  # fmt: skip
    arguments = jobs.queue.queue_arguments
    assert arguments["x-queue-type"] == "quorum"
    # The broker's own fuse is fixed (a quorum queue's arguments never change);
    # the database fails the job after LOCKGATE_JOBS_MAX_DELIVERIES.
    assert arguments["x-delivery-limit"] == 20
    assert jobs.max_deliveries == 4
    assert arguments["x-dead-letter-routing-key"] == jobs.dead_queue.name == "svc.dead"
    assert jobs.celery.conf.broker_transport_options["confirm_publish"] is True


def test_redis_hides_a_running_message_longer_than_the_longest_task(tmp_path: Path) -> None:
    jobs = make(tmp_path, LOCKGATE_JOBS_BROKER_URL="redis://127.0.0.1:6379/13",
                LOCKGATE_JOBS_TIME_LIMIT=300)  # fmt: skip
    options = jobs.celery.conf.broker_transport_options
    assert options["visibility_timeout"] > 300


def test_celery_settings_pass_through_from_the_flask_config(tmp_path: Path) -> None:
    jobs = make(tmp_path, CELERY_WORKER_CONCURRENCY=3, CELERY_BROKER_URL="redis://h:1/0")
    assert jobs.celery.conf.worker_concurrency == 3
    assert jobs.celery.conf.broker_url == "redis://h:1/0"


def test_a_job_not_accepted_is_a_503_problem(tmp_path: Path) -> None:
    # No tables: the database cannot take the job.
    jobs = make(tmp_path)
    jobs.job("svc.work")(lambda context: None)
    app = jobs.app
    app.register_error_handler(HTTPException, handle_http_exception)

    @app.post("/work")
    def work() -> object:
        return accepted(jobs.accept("svc.work", {}))

    response = app.test_client().post("/work")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.json is not None and response.json["code"] == "JobsUnavailable"
    assert response.headers["Retry-After"]
