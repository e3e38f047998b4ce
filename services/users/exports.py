"""Users export: ``POST /api/v2/users/exports`` starts a job that writes every
user to a CSV or JSON Lines file, which the job's result links.

The job reads the users a thousand at a time by id and writes each batch
before reading the next, so memory stays bounded however many users there
are; the file appears under its final name only once complete (written
beside it, then renamed), so a job run twice, or killed and run again,
leaves one whole file (a killed delivery's part is removed by the next).
Between batches it reports progress and stops if cancelled.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Literal

from flask import Blueprint, Response, current_app
from pydantic import BaseModel, ConfigDict

from lockgate import operation
from lockgate.auth import require_scope
from lockgate.bodies import read_json
from lockgate.jobs import JobContext, JobOut, Jobs, accepted
from lockgate.runtime import idempotent

from .store import UserStore
from .v2 import represent

__all__ = ["EXPORT", "blueprint", "declare"]

#: The job type.
EXPORT = "users.export"
FIELDS = ("id", "first_name", "last_name", "email", "created_at")


class ExportIn(BaseModel):
    """What to export to."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "jsonl"]


def declare(jobs: Jobs, store: UserStore) -> None:
    """Declare the export job on the service's jobs."""

    @jobs.job(EXPORT, scope="users:read")
    def export(context: JobContext) -> dict[str, Any]:
        fmt = str(context.params["format"])
        if fmt not in ("csv", "jsonl"):  # the API checks it; a message may still lie
            raise ValueError(f"unknown export format {fmt!r}")
        total = max(1, store.count())
        final = context.results_dir / context.job.id
        # A delivery cut off (its worker killed) left its part: this one holds
        # the job's lease now, so no one else is writing any of them.
        for stale in final.parent.glob(f"{final.name}.*.part"):
            stale.unlink(missing_ok=True)
        partial = final.with_name(f"{final.name}.{os.getpid()}.part")
        rows = 0
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out) if fmt == "csv" else None
                if writer is not None:
                    writer.writerow(FIELDS)
                for batch in store.batches():
                    for user in batch:
                        shown = represent(user)
                        if writer is not None:
                            writer.writerow([shown[name] for name in FIELDS])
                        else:
                            out.write(json.dumps(shown, separators=(",", ":")) + "\n")
                    rows += len(batch)
                    context.progress(min(0.99, rows / total))
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return {"format": fmt, "rows": rows}


def blueprint() -> Blueprint:
    bp = Blueprint("exports", __name__, url_prefix="/users/exports")
    require_scope("users:read")(bp)

    @bp.post("")
    @idempotent()
    @operation(
        request=ExportIn,
        response=JobOut,
        status=202,
        summary="Export every user",
        responses={503: "Jobs cannot be accepted now (the database is away)"},
    )
    def start_export() -> tuple[Response, int, dict[str, str]]:
        """Start an export job; poll its Location until it has succeeded,
        then download result.href."""
        body = read_json(ExportIn)
        jobs: Jobs = current_app.extensions["lockgate.jobs"]
        return accepted(jobs.accept(EXPORT, {"format": body.format}))

    return bp
