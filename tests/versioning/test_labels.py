"""Version labels of any length: a long one is invalid, never a server error.

Python refuses to convert more than 4,300 digits to an ``int``; a label parser
that reached ``int()`` with such a label raised ``ValueError``, which left the
dispatcher as a 500 ``text/html`` page. Labels are bounded before parsing.
"""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.versioning.versions import MAX_LABEL_LENGTH, Label

#: One digit past Python's int-conversion limit.
HUGE = "1" * 4301
PROBLEM = "application/problem+json"


def test_a_label_at_the_bound_parses_and_one_past_it_does_not() -> None:
    longest = "1." + "2" * (MAX_LABEL_LENGTH - 2)
    label = Label.parse(longest)
    assert label is not None
    assert label.text == longest
    assert Label.parse(longest + "3") is None
    assert MAX_LABEL_LENGTH == 64


@pytest.mark.parametrize(
    "raw",
    [HUGE, "v" + HUGE, f"1.{HUGE}", " " * 65 + "1", "1" * 65],
    ids=["4301-digits", "v-4301-digits", "minor-4301-digits", "padded-65", "65-digits"],
)
def test_labels_past_the_bound_are_not_labels(raw: str) -> None:
    assert Label.parse(raw) is None


def invalid(response: Any, source: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["code"] == "InvalidApiVersion"
    assert body["source"] == source


def test_every_reader_refuses_a_huge_label_with_400(client: Any) -> None:
    invalid(client.get(f"/api/v{HUGE}/users"), "url")
    invalid(client.get("/api/users", headers={"API-Version": HUGE}), "header")
    invalid(client.get(f"/api/users?version={HUGE}"), "query")
    vendor = f"application/vnd.myapp.v{HUGE}+json"
    invalid(client.get("/api/users", headers={"Accept": vendor}), "accept")
    invalid(
        client.get("/api/users", headers={"Accept": f"application/vnd.myapp+json; version={HUGE}"}),
        "accept",
    )
    invalid(client.post("/api/users", data=b"{}", headers={"Content-Type": vendor}), "content-type")


def test_a_label_of_ordinary_length_still_works_everywhere(client: Any) -> None:
    assert client.get("/api/v2/users").status_code == 200
    assert client.get("/api/users", headers={"API-Version": " 2 "}).status_code == 200
    assert client.get("/api/users?version=v2.0").status_code == 200
