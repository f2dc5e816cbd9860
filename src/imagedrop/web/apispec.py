"""The API described as data: a route (`Route`, `Param`), an async WXO tool route
(`async_route`) and a subscriber webhook (`Webhook`). `api_doc` lists the API's own;
`openapi.build_openapi` renders them (pure, no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from imagedrop.web.models import Accepted


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: str  # "path" | "query" | "header"
    description: str
    schema: dict[str, Any]
    required: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the API, as data.

    `ok` is the success response's models (several: one of them), or raw `ok_content` (`{}`:
    no body). `request_content` is a raw request body, for bodies no model describes.
    `callback` lists the payload models POSTed to the `callbackUrl` header later (several: one
    of them); a route with a callback gets the header (`callback_required`) automatically.
    `errors` are (status, when it happens); 401 is added to every non-public route when auth is on.
    `intake_token`: the route takes the notification intake token (`INTAKE_SCHEMES`), not the
    API keys.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    ok_status: int = 200
    ok: tuple[type[BaseModel], ...] = ()
    ok_description: str = "OK."
    ok_content: dict[str, Any] | None = None
    request: type[BaseModel] | None = None
    request_content: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[tuple[int, str], ...] = ()
    #: Other success answers: (status, model, when), e.g. a dry run's 200 beside a 202.
    also: tuple[tuple[int, type[BaseModel], str], ...] = ()
    callback: tuple[type[BaseModel], ...] = ()
    callback_description: str = ""
    callback_required: bool = True
    public: bool = False  # no credentials needed (security: [])
    intake_token: bool = False


@dataclass(frozen=True, slots=True)
class Webhook:
    """One subscriber event type, documented under the top-level `x-webhooks`."""

    event_type: str
    model: type[BaseModel]
    summary: str
    description: str


CALLBACK_HEADER_DESCRIPTION = (
    "URL the result is POSTed to (JSON) when the work is done. Must be http(s); private and "
    "loopback addresses are refused unless the service allows them."
)

def async_errors(*, image: bool, callback_required: bool = True
                 ) -> tuple[tuple[int, str], ...]:
    """The 4xx answers of an async tool endpoint; all are given before anything is queued."""
    img = "`image_base64` is not valid base64 or not a PNG/JPEG/WebP image, " if image else ""
    missing = "is missing or " if callback_required else "(optional) "
    return (
        (400, f"The body is not valid JSON (not UTF-8, nested over 64 levels, a lone "
              f"surrogate) or not a JSON object, {img}a bucket, folder or file name the store "
              f"cannot take (`..` or empty segments, control characters, too long; `field` "
              f"names it), or the `callbackUrl` header {missing}is not an allowed http(s) "
              f"URL."),
        (413, "The request body is larger than the service accepts"
              + (", or the image has too many bytes or pixels." if image else ".")),
        (415, "The Content-Type is not application/json."),
        (422, "The JSON body failed validation (a required field is missing or a value is out "
              "of range); `error` names each field and `detail` lists them."),
    )


def async_route(path: str, operation_id: str, summary: str, description: str, *,
                request: type[BaseModel], callback: tuple[type[BaseModel], ...],
                callback_description: str, image: bool, tag: str = "wxo",
                callback_required: bool = True, ok: tuple[type[BaseModel], ...] = (Accepted,),
                errors: tuple[tuple[int, str], ...] = (),
                also: tuple[tuple[int, type[BaseModel], str], ...] = ()) -> Route:
    """A WXO async tool endpoint: JSON in, 202 `ok` now, one callback POST later.

    `errors` are added to (or replace, by status) the usual 4xx answers.
    """
    usual = dict(async_errors(image=image, callback_required=callback_required))
    return Route(
        "post", path, operation_id, summary, description, tag, ok_status=202, ok=ok,
        ok_description="Accepted: the work is recorded; the result is POSTed to callbackUrl.",
        request=request, errors=tuple(sorted((usual | dict(errors)).items())), callback=callback,
        callback_description=callback_description, callback_required=callback_required,
        also=also,
    )
