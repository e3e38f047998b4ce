"""Reading a JSON request body into a pydantic model, with one clear error per failure.

=====================================  ======  ===========================
failure                                status  ``code``
=====================================  ======  ===========================
body is not JSON (``Content-Type``)    415     ``UnsupportedMediaType``
body over ``MAX_CONTENT_LENGTH``       413     (Werkzeug's)
malformed JSON                         400     ``MalformedJson``
nested deeper than ``max_depth``       400     ``JsonTooDeep``
fields invalid, unknown or missing     422     ``ValidationFailed``
=====================================  ======  ===========================

A 422 carries ``errors``: ``[{"field": "email", "message": "..."}]``. Unknown
fields are rejected rather than ignored: give models ``extra="forbid"``.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from .problems import Problem

__all__ = ["MAX_DEPTH", "read_json", "validation_problem"]

M = TypeVar("M", bound=BaseModel)
#: The deepest nesting of arrays and objects accepted.
MAX_DEPTH = 32
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_BRACKET = re.compile(r"[\[\]{}]")


def read_json(model: type[M], *, max_depth: int = MAX_DEPTH) -> M:
    """Parse and validate the current request's JSON body.

    :raises Problem: 415, 400 or 422 as in the module's table (413 is
        raised by Werkzeug when the body exceeds ``MAX_CONTENT_LENGTH``).
    """
    if not request.is_json:
        raise Problem(
            415,
            f"the body must be JSON (application/json), not {request.mimetype or 'nothing'}",
            code="UnsupportedMediaType",
        )
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8", code="MalformedJson") from None
    if _depth(text) > max_depth:
        raise Problem(400, f"the JSON is nested deeper than {max_depth} levels", code="JsonTooDeep")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise Problem(400, f"the body is not valid JSON: {error}", code="MalformedJson") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_problem(error) from None


def validation_problem(error: ValidationError) -> Problem:
    """A 422 problem listing every invalid field of a pydantic error."""
    errors = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field; it cannot be written"
        errors.append({"field": field, "message": message})
    return Problem(
        422, "the request body has invalid fields", code="ValidationFailed", errors=errors
    )


def _depth(text: str) -> int:
    """How deeply arrays and objects nest, ignoring brackets inside strings."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match[0] in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
