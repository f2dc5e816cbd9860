"""The HTTP server's own refusals (before any route runs) answered as JSON like every other
error: 431 for a header too large, 414 for a request line too long, 400 otherwise."""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

log = structlog.get_logger(__name__)


#: The parser's limits; they differ by two bytes so that a LineTooLong says which was passed.
MAX_LINE = 8190
MAX_FIELD = 8192


def parser_refusal(exc: BaseException | None, status: int) -> tuple[int, str]:
    """(status, message) for an error the HTTP parser raised; never quotes the request."""
    if isinstance(exc, http_exceptions.LineTooLong):
        if len(exc.args) > 1 and str(exc.args[1]) == str(MAX_FIELD):
            return 431, f"request header too large: each header at most {MAX_FIELD} bytes"
        return 414, f"request line too long: the URL must fit in {MAX_LINE} bytes"
    if isinstance(exc, http_exceptions.BadHttpMessage):
        what = type(exc).__name__
        if "header" in str(exc).lower() and "too many" in str(exc).lower():
            return 431, "too many request headers"
        return 400, f"malformed HTTP request ({what})"
    if status >= 500:
        return status, "internal error; the request was not accepted"
    return status, "malformed HTTP request"


class JsonRequestHandler(RequestHandler):
    """aiohttp's connection handler with JSON bodies for the parser's refusals."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # some bytes already went out: nothing to add
            raise ConnectionError("response already started")
        status, text = parser_refusal(exc, status)
        if status >= 500:
            log.error("request_crashed", exc_info=exc)
        else:  # a client's garbage: one quiet line, without its bytes
            log.info("request_refused_by_parser", status=status,
                     error=type(exc).__name__ if exc else None)
        resp = web.Response(status=status, text=json.dumps({"error": text}),
                            content_type="application/json")
        resp.force_close()
        return resp


    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, http_exceptions.BadHttpMessage | RequestPayloadError):
            # A body that does not decode, met again when the rest is drained: answered.
            log.info("request_body_unreadable", error=type(exc).__name__)
            return
        super().log_exception(*args, **kw)


class JsonServer(web.Server):
    """A low-level server whose connections use `JsonRequestHandler`."""

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return JsonRequestHandler(self, loop=self._loop, **kwargs)


class JsonAppRunner(web.AppRunner):
    """`web.AppRunner` serving through `JsonServer`."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE)
        kwargs.setdefault("max_field_size", MAX_FIELD)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonServer  # same state, JSON refusals
        return server


__all__ = ["MAX_FIELD", "MAX_LINE", "JsonAppRunner", "parser_refusal"]
