"""Reading a JSON request body into a pydantic model, with one clear error per failure.

=====================================  ======  ===========================
failure                                status  ``code``
=====================================  ======  ===========================
body is not JSON (``Content-Type``)    415     ``UnsupportedMediaType``
body over ``MAX_CONTENT_LENGTH``       413     ``PayloadTooLarge``
malformed or ambiguous JSON            400     ``MalformedJson``
nested deeper than ``max_depth``       400     ``JsonTooDeep``
fields invalid, unknown or missing     422     ``ValidationFailed``
=====================================  ======  ===========================

A 422 carries ``errors``: ``[{"field": "email", "message": "..."}]``. Unknown
fields are rejected rather than ignored: give models ``extra="forbid"``.

Only what RFC 8259 allows is parsed: ``NaN`` and ``Infinity`` are refused, and
so is an object that names one key twice, since parsers disagree on which
value wins, and so is a string escaping a lone surrogate (``"\\ud800"``),
which is no Unicode character and cannot be stored or encoded as UTF-8. A
chunked body (no ``Content-Length``) is held to the same limit as one that
declares its length: it is refused once it passes the limit, never cut short
and then parsed.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.wsgi import get_input_stream

from .problems import Problem

__all__ = [
    "MAX_DEPTH",
    "PARSED_KEY",
    "parse_json_body",
    "query_problem",
    "read_body",
    "read_json",
    "validation_problem",
]

M = TypeVar("M", bound=BaseModel)
#: In the environ: ``(stream, object)`` of a body put there already parsed (a
#: version change's migrated body); the first :func:`parse_json_body` takes
#: the object while ``wsgi.input`` is still that stream, unread.
PARSED_KEY = "lockgate.parsed_body"
#: The deepest nesting of arrays and objects accepted.
MAX_DEPTH = 32
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_BRACKET = re.compile(r"[\[\]{}]")


def read_json(model: type[M], *, max_depth: int = MAX_DEPTH) -> M:
    """Parse and validate the current request's JSON body.

    :raises Problem: 415, 413, 400 or 422 as in the module's table.
    """
    data = parse_json_body(max_depth=max_depth)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_problem(error) from None


def parse_json_body(*, max_depth: int = MAX_DEPTH) -> Any:
    """The current request's JSON body, parsed as strictly as :func:`read_json`
    but not validated (for code that validates it later, or migrates it first).

    :raises Problem: 415, 413 or 400 as in the module's table.
    """
    if not request.is_json:
        raise Problem(
            415,
            f"the body must be JSON (application/json), not {request.mimetype or 'nothing'}",
            code="UnsupportedMediaType",
        )
    environ = request.environ
    parsed: Any = environ.pop(PARSED_KEY, None)
    if parsed is not None:
        stream, body = parsed
        if id(stream) == id(environ.get("wsgi.input")) and stream.tell() == 0:
            return body  # a version change's migrated body, parsed already, unread since
    raw = read_body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8", code="MalformedJson") from None
    if _depth(text) > max_depth:
        raise Problem(400, f"the JSON is nested deeper than {max_depth} levels", code="JsonTooDeep")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:
        raise Problem(400, f"the body is not valid JSON: {error}", code="MalformedJson") from None
    if "\\u" in text and _has_lone_surrogate(data):
        raise Problem(
            400,
            "the body escapes a lone UTF-16 surrogate (\\ud800-\\udfff), which is no character",
            code="MalformedJson",
        )
    return data


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


def query_problem(error: ValidationError) -> Problem:
    """A 400 problem listing every invalid query parameter of a pydantic error."""
    errors = [
        {"field": ".".join(map(str, item["loc"])), "message": item["msg"]}
        for item in error.errors(include_url=False)
    ]
    return Problem(400, "invalid query parameters", code="InvalidQuery", errors=errors)


def read_body() -> bytes:
    """The whole body, or a 413 once it passes ``MAX_CONTENT_LENGTH``.

    A body that declares its length goes through Werkzeug (cached, so other
    code may read it too). A chunked one does not: Werkzeug's stream stops
    quietly at the limit and would hand a truncated document to the parser.
    It is read here up to one byte past the limit, which tells a body that fits
    from one that does not, and put back in the environ for later readers.
    """
    limit = request.max_content_length
    length = request.content_length
    if length is not None and limit is not None and length > limit:
        raise _too_large(limit)
    if limit is None or length is not None:
        return request.get_data(cache=True)
    environ = request.environ
    stream = get_input_stream(environ, max_content_length=limit + 1)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    body = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the body is larger than {limit} bytes", code="PayloadTooLarge")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all distinct; a repeated key is ambiguous."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key!r} appears more than once in one object")
        data[key] = value
    return data


def _has_lone_surrogate(data: Any) -> bool:
    """Whether a string of ``data`` holds a surrogate no pair completes.

    Only a ``\\u`` escape can produce one (the body was decoded as UTF-8),
    and no database or encoder can store it (I-JSON, RFC 7493 section 2.1).
    """
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
