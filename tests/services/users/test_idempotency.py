"""``Idempotency-Key`` on creating users, through the reference fleet under
`lockgate serve` (gunicorn, 4 workers, one Redis): one key creates one user
however many requests carry it at once. Only 127.0.0.1; the server is stopped
by its PID afterwards.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.servers import unique_email
from tests.serving.test_serving import ROOT, WORKER_STARTED, concurrently, serving


@pytest.mark.server
def test_fifty_requests_with_one_key_create_one_user(tmp_path: Path, redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    args = ("--server", "gunicorn", "--workers", "4")
    with serving(tmp_path, *args, env=env, manifest=ROOT / "fleet.toml") as served:
        auth = served.bearer()
        headers = {**auth, "Idempotency-Key": f'"{uuid.uuid4()}"'}
        email = unique_email("once")
        body = {"first_name": "Ada", "last_name": "Once", "email": email}
        url = f"{served.base}/api/v2/users"

        def create(_: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                return client.post(url, json=body, headers=headers)

        answers = concurrently(50, create)
        assert all(isinstance(a, httpx.Response) for a in answers), answers
        responses = [a for a in answers if isinstance(a, httpx.Response)]
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses  # none 5xx, no DuplicateEmail
        created = [r for r in responses if r.status_code == 201]
        originals = [r for r in created if "idempotent-replayed" not in r.headers]
        assert len(originals) == 1, statuses
        first = originals[0]
        for replay in created:
            assert replay.content == first.content
            assert replay.headers["location"] == first.headers["location"]
        for busy in (r for r in responses if r.status_code == 409):
            assert busy.json()["code"] == "IdempotencyKeyInUse", busy.text
            assert busy.headers["retry-after"] == "1"

        with httpx.Client(base_url=served.base, headers=auth, timeout=10) as client:
            found = client.get("/api/v2/users", params={"email": email})
            assert found.status_code == 200, found.text
            assert [u["id"] for u in found.json()["data"]] == [first.json()["id"]]
            # Once it is done, every repeat is the replay, on whichever worker.
            for _ in range(8):
                again = client.post("/api/v2/users", json=body, headers=headers)
                assert again.status_code == 201
                assert again.headers["idempotent-replayed"] == "true"
                assert (again.content, again.headers["location"]) == (
                    first.content,
                    first.headers["location"],
                )
        assert len(set(re.findall(WORKER_STARTED["gunicorn"], served.log.read_text()))) == 4
