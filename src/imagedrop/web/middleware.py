"""Request middlewares: API-key access control and JSON errors for every failure."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TypedDict

import structlog
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestPayloadError

from imagedrop.errors import InputError, TransientError
from imagedrop.events.tokens import matches_any
from imagedrop.tracing import Tracing

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes with their own proof: liveness probes, signed download links (a signature), and
#: notification intake (the intake token, or an API key in whatever way a store can send it).
OPEN_PATHS = ("/health", "/ready", "/events", "/ui")
OPEN_PREFIXES = ("/files/", "/ui/")  # signed links; the dashboard guards itself


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
REQUEST_ID = web.RequestKey("request_id", str)
TRACEPARENT = web.RequestKey("traceparent", str)


def request_middleware(tracing: Tracing) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Give every request an id (`X-Request-Id` when the caller sent a sane one, else a new
    one), bind it into every log line the request causes and return it; with tracing on, a
    server span around the handler, continuing the caller's `traceparent`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        incoming = request.headers.get("traceparent", "").strip().lower()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request[REQUEST_ID] = rid
        with structlog.contextvars.bound_contextvars(request_id=rid), tracing.span(
                f"{request.method} {route}", kind="server",
                parent=incoming if _TRACEPARENT.fullmatch(incoming) else None,
                **{"http.method": request.method, "http.route": route}) as traceparent:
            if traceparent:
                request[TRACEPARENT] = traceparent
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers["X-Request-Id"] = rid
                raise
        response.headers["X-Request-Id"] = rid
        return response

    return middleware


class Provenance(TypedDict):
    """Where work came from: recorded with it, continued by its log lines and spans."""

    request_id: str | None
    traceparent: str | None


def provenance(request: web.Request) -> Provenance:
    """The request id and trace context to record with the work a request starts."""
    return {"request_id": request.get(REQUEST_ID), "traceparent": request.get(TRACEPARENT)}


def json_error(status: int, message: str, *, field: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error body that says what was wrong."""
    body: dict[str, object] = {"error": message}
    if field:
        body["field"] = field
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def presented_key(request: web.Request) -> str | None:
    """The API key a request carries: `Authorization: Bearer K` or `X-API-Key: K`."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


_SAFE = ("GET", "HEAD", "OPTIONS")


def cross_site(request: web.Request) -> str | None:
    """Why a state-changing request that a browser sent from another site is refused, or None.
    API clients send neither header; a browser says where a request came from, so a page
    elsewhere cannot make one to this service (a local one without keys included)."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return "refused: a request a browser made from another site"
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        host = origin.split("://", 1)[-1].rstrip("/")
        if host.lower() != request.host.lower():
            return "refused: a request a browser made from another origin"
    elif origin == "null":
        return "refused: a request a browser made from an opaque origin"
    return None


def auth_middleware(api_keys: Iterable[str], *, also_open: Iterable[str] = (),
                    session: Callable[[web.Request], bool] | None = None,
                    ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Require one of `api_keys` on every route but the open ones and `also_open` (no keys: no
    check); `session(request)` True (the dashboard's signed-in page) stands in for a key."""
    api_keys = list(api_keys)
    open_paths = (*OPEN_PATHS, *also_open)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in _SAFE and (why := cross_site(request)):
            return json_error(403, why)
        if not api_keys or request.path in open_paths or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        if not matches_any(presented_key(request), api_keys) and not (
                session is not None and session(request)):
            return json_error(401, "missing or invalid API key: send 'Authorization: Bearer "
                                   "<key>' or 'X-API-Key: <key>'",
                              headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware


def _body_problem(exc: Exception) -> str:
    if "content-encoding" in str(exc).lower():
        return "its Content-Encoding does not decode (bad or truncated compressed data)"
    return f"cut short or malformed ({type(exc).__name__})"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a JSON answer; the service keeps serving."""
    try:
        return await handler(request)
    except InputError as exc:
        return json_error(exc.status, str(exc), field=getattr(exc, "field", None))
    except TransientError as exc:  # storage or ledger briefly unavailable: come back later
        log.warning("request_deferred", path=request.path, error=str(exc))
        wait = max(1, round(exc.retry_after or 5))
        return json_error(503, f"temporarily unavailable, retry in {wait} s: {exc}",
                          headers={"Retry-After": str(wait)})
    except (http_exceptions.BadHttpMessage, RequestPayloadError) as exc:  # e.g. bad gzip
        return json_error(400, f"request body could not be read: {_body_problem(exc)}")
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        return json_error(413, f"request body too large: at most {limit} bytes accepted "
                               "(IMAGEDROP_MAX_BODY_BYTES)")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return json_error(exc.status, exc.reason if not exc.text or exc.text.startswith(
            str(exc.status)) else exc.text, headers={k: v for k, v in exc.headers.items()
                                                     if k.lower() in ("allow", "cache-control")})
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and (
                request.transport is None or request.transport.is_closing()):
            # The caller left mid-body: nobody hears this answer, and it is nobody's bug.
            log.info("request_abandoned", path=request.path, method=request.method)
            return json_error(400, "the connection closed before the request was complete")
        log.exception("request_failed", path=request.path, method=request.method)
        return json_error(500, "internal error; the request was not accepted")
