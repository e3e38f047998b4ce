"""Background jobs on Celery that lose nothing: 202, a job resource, a worker.

A service declares its job types and accepts jobs; the job row and its
outbox entry are written in one transaction, a relay publishes the entry,
and a worker claims the job by id under a lease it renews, so a job that got
its 202 runs to an end whether the broker was down, the web process died
after answering, or the worker was killed mid-task::

    jobs = Jobs(app, engine=engine)

    @jobs.job("users.export", scope="users:read")
    def export(context: JobContext) -> dict[str, object]:
        ...
        return {"format": "csv", "rows": 100}

    job = jobs.accept("users.export", {"format": "csv"})
    return accepted(job)      # 202, Location: /api/v2/jobs/<id>, Retry-After

The rule of this folder: it builds on the runtime (request ids, metrics),
auth (who owns a job) and versioning (the job routes live in every version);
it knows nothing of the fleet, serving or the services that use it.
"""

from __future__ import annotations

from .extension import (
    DEFAULTS,
    JobCancelled,
    JobContext,
    JobFailed,
    JobLost,
    Jobs,
    get_jobs,
)
from .store import FINISHED, STATUSES, Job, JobStore, create_job_tables, drop_job_tables
from .web import JobOut, accepted, blueprint, represent

__all__ = [
    "DEFAULTS",
    "FINISHED",
    "STATUSES",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobLost",
    "JobOut",
    "JobStore",
    "Jobs",
    "accepted",
    "blueprint",
    "create_job_tables",
    "drop_job_tables",
    "get_jobs",
    "represent",
]
