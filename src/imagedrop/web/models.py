"""The HTTP API's own bodies: requests, 202 answers, errors, service information.

Pure data and pure helpers; no I/O. What imagedrop sends by callback is in `payloads` (the core
builds it); status views are in `web.status`; `web.openapi` documents all of them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from imagedrop.config import StorageSettings
from imagedrop.payloads import JsonBody

Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- requests ----------------------------------------------------------------------------------


class ImageRequest(_Request):
    """Body of POST /process-image-async-b64 and POST /process-image-async."""

    prompt: Prompt = Field(description="What to do to the image (1-32000 characters).")
    filename: str | None = Field(
        None, max_length=255,
        description="Name of the image; any folder part is dropped. Echoed in the callback.",
    )
    image_base64: str = Field(
        min_length=1,
        description="The image (PNG, JPEG or WebP), base64-encoded; a data: URL prefix is fine.",
    )

    @field_validator("filename")
    @classmethod
    def _basename(cls, value: str | None) -> str | None:
        name = _strip_path(value or "")
        return name or None


class BatchRequest(_Request):
    """Body of POST /batch-process-images: edit every image under a folder."""

    prompt: Prompt = Field(description="What to do to every image (1-32000 characters).")
    bucket: str | None = Field(None, max_length=1024, description="Bucket to read; default: input.")
    prefix: str | None = Field(None, max_length=1024, description="Folder to read; default: input.")
    output_bucket: str | None = Field(None, max_length=1024, description="Bucket results go to.")
    output_prefix: str | None = Field(
        None, max_length=1024,
        description="Folder results go to; default: output prefix + batch id/."
    )
    model: str | None = Field(None, max_length=200, description="Image model id override.")
    quality: str | None = Field(None, max_length=50, description="Quality override, e.g. high.")
    size: str | None = Field(
        None, pattern=r"^(auto|\d{2,5}x\d{2,5})$", description="Size override: auto or WxH."
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="Result format override."
    )


# -- answers and callback payloads -------------------------------------------------------------


class Accepted(JsonBody):
    """202 answer: the work is recorded; its result comes by callback."""

    accepted: Literal[True] = Field(True, description="Always true.")
    job_id: str = Field(description="Id of the job (or, for a folder, the batch).")


# -- errors ------------------------------------------------------------------------------------


class FieldProblem(JsonBody):
    """One field that failed validation."""

    field: str = Field(description="Dotted path of the field; 'body' for the body as a whole.")
    message: str = Field(description="What is wrong with it.")


class ErrorBody(JsonBody):
    """Every 4xx/5xx answer: a human-readable message saying what was wrong."""

    omit_when_none = frozenset({"field", "detail"})
    error: str = Field(description="What was wrong, in words.")
    field: str | None = Field(None, description="The (first) offending field, if one is.")
    detail: list[FieldProblem] | None = Field(None, description="Each offending field.")


def validation_error_message(exc: ValidationError) -> ErrorBody:
    """One clear message naming each bad field: `prompt: field required; image_base64: ...`."""
    problems: list[FieldProblem] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(FieldProblem(field=where, message=msg[:1].lower() + msg[1:]))
    text = "; ".join(f"{p.field}: {p.message}" for p in problems) or "invalid request"
    first = problems[0].field if problems and problems[0].field != "body" else None
    return ErrorBody(error=text, field=first, detail=problems or None)


# -- service information -----------------------------------------------------------------------


class Health(JsonBody):
    """GET /health."""

    ok: Literal[True] = Field(True, description="Always true while the process serves.")


class Ready(JsonBody):
    """GET /ready."""

    omit_when_none = frozenset({"failed"})
    ready: bool = Field(description="True when the ledger and storage answered in time.")
    failed: dict[str, str] | None = Field(
        None, description="503 only: what did not answer (ledger, storage) and why.")


class CosConfig(JsonBody):
    """GET /cos/config: where images are read and written. Never a credential."""

    storage: Literal["cos", "local"] = Field(description="COS/S3 or the local folder.")
    endpoint: str | None = Field(description="COS endpoint, without credentials; null: local.")
    region: str | None = Field(description="COS region; null in local mode.")
    input_bucket: str = Field(description="Bucket the batch endpoint reads by default.")
    output_bucket: str = Field(description="Bucket results are written to by default.")
    input_prefix: str = Field(description="Folder the batch endpoint reads by default.")
    output_prefix: str = Field(description="Folder results are written under by default.")
    presign_expires: int = Field(description="Seconds a presigned result URL stays valid.")

    @classmethod
    def from_settings(cls, st: StorageSettings) -> CosConfig:
        """The public view of the storage settings."""
        return cls(
            storage="cos" if st.is_cos else "local",
            endpoint=_public_url(st.cos_endpoint) if st.is_cos else None,
            region=st.cos_region if st.is_cos else None,
            input_bucket=st.resolved_input_bucket, output_bucket=st.resolved_output_bucket,
            input_prefix=st.input_prefix, output_prefix=st.output_prefix,
            presign_expires=st.presign_expires,
        )


# -- pure helpers ------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,10}$")


def _strip_path(name: str) -> str:
    # Both separators: a Windows client's "C:\\photos\\a.jpg" is a basename too.
    base = _CONTROL.sub("", name).replace("\\", "/").rsplit("/", 1)[-1]
    return base.strip().lstrip(".").rstrip(". ")


def safe_filename(name: str | None, default_ext: str) -> str:
    """A basename safe inside an object key: no folders, no control characters, an extension.

    `default_ext` ("png" or ".png") is appended when the name has none; empty names become
    `image.<ext>`; names are cut to 255 characters, keeping the extension.
    """
    ext = default_ext.lstrip(".").lower() or "png"
    base = _strip_path(name or "") or "image"
    stem, dot, suffix = base.rpartition(".")
    if not (dot and stem and _EXTENSION.match(suffix)):
        stem, suffix = base, ext
    return f"{stem[: 254 - len(suffix)].rstrip('. ') or 'image'}.{suffix}"


def _public_url(url: str | None) -> str | None:
    # Credentials in the userinfo part or a signed query string must never be shown.
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    host_and_path = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, slash, path = host_and_path.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"

