"""The job resource: ``GET`` and ``DELETE /jobs/<id>``, ``GET /jobs/<id>/result``.

A job is visible to the client that started it (holding the scope its job
type names, ``users:read`` for a users export) and to ``ops:read``; to
anyone else it does not exist (404, as an unknown id), so no one can probe
for job ids. A job that is not finished answers with ``Retry-After``; a
finished one with a file links it (``result.href``, and ``Link`` with the
relation :data:`RESULT_REL`),
and the file is streamed from disk, in bounded memory whatever its size.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify, send_file
from pydantic import BaseModel, Field

from ..auth import Client, authenticated
from ..problems import Problem
from ..versioning import url_for
from ..views import cache_control, operation
from .extension import Jobs, get_jobs
from .store import Job

__all__ = ["MEDIA_TYPES", "RESULT_REL", "JobOut", "accepted", "blueprint", "represent"]

#: A result file's media type by the result's ``format``.
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl",
    "json": "application/json",
}
#: The relation of a finished job's ``Link`` to its file (RFC 8288: an
#: extension relation type is a URI).
RESULT_REL = "https://lockgate.dev/rels/result"
#: Seconds a client waits before it asks again about an unfinished job.
POLL_AFTER = "1"


class JobOut(BaseModel):
    """A background job and, once it has finished, how it ended."""

    id: str
    type: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None = Field(description="The job's outcome; href links a file")
    error: dict[str, Any] | None = Field(description="Why it failed: code and detail")


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def represent(jobs: Jobs, job: Job) -> dict[str, Any]:
    result = None if job.result is None else dict(job.result)
    if job.status == "succeeded" and (jobs.results_dir / job.id).is_file():
        result = {"href": url_for("jobs.job_result", job_id=job.id), **(result or {})}
    return {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "progress": round(job.progress, 4),
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "result": result,
        "error": None if job.error is None else dict(job.error),
    }


def accepted(job: Job) -> tuple[Response, int, dict[str, str]]:
    """The answer to a request that started ``job``: 202, where to look, when."""
    jobs = get_jobs(current_app)
    location = url_for("jobs.get_job", job_id=job.id)
    headers = {"Location": location, "Retry-After": POLL_AFTER, "Cache-Control": "no-store"}
    return jsonify(represent(jobs, job)), 202, headers


def _visible(job: Job, client: Client) -> bool:
    if "ops:read" in client.scopes:
        return True
    return job.owner == client.client_id and (job.scope is None or job.scope in client.scopes)


def _find(job_id: str) -> tuple[Jobs, Job, Client]:
    client = authenticated()
    jobs = get_jobs(current_app)
    job = jobs.store.get(job_id) if len(job_id) <= 64 else None
    if job is None or not _visible(job, client):
        raise Problem(404, f"there is no job {job_id}", code="JobNotFound")
    return jobs, job, client


def _answer(jobs: Jobs, job: Job, status: int = 200) -> tuple[Response, int, dict[str, str]]:
    body = represent(jobs, job)
    headers = {}
    if not job.finished:
        headers["Retry-After"] = POLL_AFTER
    elif body["result"] and "href" in body["result"]:
        headers["Link"] = f'<{body["result"]["href"]}>; rel="{RESULT_REL}"'
    return jsonify(body), status, headers


def blueprint() -> Blueprint:
    """The job routes, for each version of a service's API."""
    bp = Blueprint("jobs", __name__, url_prefix="/jobs")

    @bp.get("/<job_id>")
    @cache_control("no-store")
    @operation(response=JobOut, responses={401: "No valid token", 404: "No such job"})
    def get_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
        """A job's status, progress and, once finished, its result or error."""
        jobs, job, _ = _find(job_id)
        return _answer(jobs, job)

    @bp.delete("/<job_id>")
    @cache_control("no-store")
    @operation(
        response=JobOut,
        responses={
            202: "Running: asked to stop between chunks",
            401: "No valid token",
            403: "Not the client that started it",
            404: "No such job",
            409: "Finished already",
        },
    )
    def cancel_job(job_id: str) -> tuple[Response, int, dict[str, str]]:
        """Cancel a queued job now, or ask a running one to stop."""
        jobs, job, client = _find(job_id)
        if job.owner != client.client_id:
            raise Problem(403, "only the client that started a job may cancel it",
                          code="NotJobOwner")  # fmt: skip
        kind = jobs.types.get(job.type)
        if kind is not None and not kind.cancellable:
            raise Problem(409, f"a {job.type} job cannot be cancelled", code="JobNotCancellable")
        found = job if job.finished else (jobs.store.cancel(job_id) or job)
        if (found.finished and found.status != "cancelled") or job.finished:
            # Finished already, or finished while the cancel was on its way.
            raise Problem(409, f"job {job_id} has finished ({found.status})", code="JobFinished",
                          status_now=found.status)  # fmt: skip
        return _answer(jobs, found, 202 if found.status == "running" else 200)

    @bp.get("/<job_id>/result")
    @cache_control("private, no-cache")
    @operation(responses={404: "No such job, or its file has gone", 409: "Not succeeded"})
    def job_result(job_id: str) -> Response:
        """The file a finished job made, streamed."""
        jobs, job, _ = _find(job_id)
        if job.status != "succeeded":
            raise Problem(409, f"job {job_id} is {job.status}, not succeeded",
                          code="JobNotSucceeded")  # fmt: skip
        path = jobs.results_dir / job.id
        if not path.is_file():
            raise Problem(404, f"job {job_id} has no result file", code="JobResultGone")
        fmt = str((job.result or {}).get("format") or "")
        return send_file(
            path,
            mimetype=MEDIA_TYPES.get(fmt, "application/octet-stream"),
            as_attachment=True,
            download_name=f"{job.type.replace('.', '-')}-{job.id}.{fmt or 'bin'}",
            conditional=True,
            etag=True,
        )

    return bp
