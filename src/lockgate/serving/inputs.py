"""A request body that cannot be read is the client's error: a 400, never a 500.

Each server signals a body it cannot read in its own way while the app reads
``wsgi.input``: gunicorn raises its ``ParseException`` (an invalid chunk size),
Werkzeug's development server and uWSGI's chunked reader raise ``OSError``,
and so does any server whose client went away mid-body. Werkzeug turns an
``OSError`` into a 400 only when it limits the stream (``MAX_CONTENT_LENGTH``
set); otherwise it reaches the view and becomes a 500. :func:`guard_input`
makes every such error a :class:`~werkzeug.exceptions.BadRequest`, which the
app answers as a 400 problem+json like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import BadRequest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["GuardedInput", "guard_input"]


class GuardedInput:
    """``wsgi.input`` whose read errors are :class:`BadRequest`.

    :param stream: the server's input stream.
    :param malformed: the server's own exceptions for a malformed body, besides
        ``OSError``.
    """

    def __init__(self, stream: Any, malformed: tuple[type[Exception], ...] = ()) -> None:
        self._stream = stream
        self._errors: tuple[type[Exception], ...] = (OSError, *malformed)

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._stream.read(-1 if size is None else size)
        except self._errors as error:
            raise _unreadable(error) from error
        return data

    def readline(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._stream.readline(-1 if size is None else size)
        except self._errors as error:
            raise _unreadable(error) from error
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        for line in self:
            lines.append(line)
            if 0 < hint <= sum(map(len, lines)):
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _unreadable(error: Exception) -> BadRequest:
    return BadRequest(f"the request body could not be read: {error}")


def guard_input(
    app: WSGIApplication, malformed: tuple[type[Exception], ...] = ()
) -> WSGIApplication:
    """Wrap ``app`` so that a request body that cannot be read is a 400.

    Only requests that have a body (a ``Content-Length`` or a
    ``Transfer-Encoding``) get the wrapped stream.
    """

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], malformed)
        return app(environ, start_response)

    return guarded
