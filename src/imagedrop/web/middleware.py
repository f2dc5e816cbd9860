"""Request middlewares: API-key access control and JSON errors for every failure."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable

import structlog
from aiohttp import web

from imagedrop.errors import InputError, TransientError
from imagedrop.events.tokens import matches_any

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes with their own proof: liveness probes, signed download links (a signature), and
#: notification intake (the intake token, or an API key in whatever way a store can send it).
OPEN_PATHS = ("/health", "/ready", "/events")
OPEN_PREFIXES = ("/files/",)


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


def auth_middleware(api_keys: Iterable[str], *, also_open: Iterable[str] = ()
                    ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Require one of `api_keys` on every route but the open ones and `also_open` (no keys: no
    check)."""
    api_keys = list(api_keys)
    open_paths = (*OPEN_PATHS, *also_open)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not api_keys or request.path in open_paths or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        if not matches_any(presented_key(request), api_keys):
            return json_error(401, "missing or invalid API key: send 'Authorization: Bearer "
                                   "<key>' or 'X-API-Key: <key>'",
                              headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return middleware


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
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        return json_error(413, f"request body too large: at most {limit} bytes accepted "
                               "(IMAGEDROP_MAX_BODY_BYTES)")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return json_error(exc.status, exc.reason if not exc.text or exc.text.startswith(
            str(exc.status)) else exc.text, headers={k: v for k, v in exc.headers.items()
                                                     if k.lower() == "allow"})
    except Exception:
        log.exception("request_failed", path=request.path, method=request.method)
        return json_error(500, "internal error; the request was not accepted")
