"""The three WXO-compatible endpoints (SPEC §4.1): validate now, record durably, answer 202.

Everything a caller can get wrong is refused here with a 4xx that says what, not in a failed
callback minutes later. The job is committed to the ledger before the 202 is sent.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from typing import TypeVar

import pydantic
from aiohttp import web

from imagedrop import imaging, jsondoc
from imagedrop.config import ImagingSettings
from imagedrop.delivery import policy
from imagedrop.errors import CallbackRefused, DeliveryTransient, InputError, RequestInvalid
from imagedrop.imaging import CheckedBase64
from imagedrop.jsoncut import cut_base64
from imagedrop.ledger import JobKind, NewBatch, NewJob
from imagedrop.manifests.naming import result_key
from imagedrop.metrics import Metrics
from imagedrop.providers import EditSpec, spec_from_settings
from imagedrop.recipes import Recipe
from imagedrop.storage.names import InvalidObjectName
from imagedrop.web import keys
from imagedrop.web.body import read_capped
from imagedrop.web.middleware import provenance
from imagedrop.web.models import (
    BatchRequest,
    ImageRequest,
    safe_filename,
    validation_error_message,
)
from imagedrop.web.offload import run_cpu

routes = web.RouteTableDef()
M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")


async def callback_url(request: web.Request) -> str:
    """The `callbackUrl` header (any case), checked against the callback policy."""
    url = request.headers.get("callbackUrl", "").strip()
    if not url:
        raise CallbackRefused("the callbackUrl header is required: the result is POSTed there")
    settings = request.app[keys.SETTINGS].callbacks
    policy.check_syntax(url)
    target, rewritten = policy.apply_rewrites(url, settings.rewrites)
    try:
        await policy.check_destination(target, allow_private=settings.allow_private,
                                       rewritten=rewritten)
    except DeliveryTransient:
        pass  # the name does not resolve now; delivery checks again and retries
    return url


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated against `model`; 4xx with a clear message otherwise."""
    data, _ = await _read_json(request)
    return _validated(model, data)


async def _image_request(request: web.Request) -> tuple[ImageRequest, str | CheckedBase64]:
    """The body of an image request, and its image: canonical base64 as bytes cut out of the
    raw body (`cut_base64`; what nearly every caller sends), else the string as parsed."""
    data, cut = await _read_json(request, cut="image_base64")
    body = _validated(ImageRequest, data)
    return body, body.image_base64 if cut is None else cut


async def _read_json(request: web.Request, cut: str | None = None
                     ) -> tuple[object, CheckedBase64 | None]:
    """The body parsed (and the top-level string `cut`, when it could be cut out as base64)."""
    if request.content_type not in ("application/json", "", "text/plain"):
        raise RequestInvalid(f"send JSON (Content-Type: application/json), not "
                       f"{request.content_type}", None, status=415)
    limit = request.client_max_size or sys.maxsize
    raw = await read_capped(request, limit, lambda size: web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=size))

    def decode() -> tuple[object, CheckedBase64 | None]:
        if cut is not None:
            with contextlib.suppress(jsondoc.JsonRefused):  # the whole body words the error
                found = cut_base64(raw, cut, lambda doc: doc.get(cut) if isinstance(
                    doc, dict) else None, jsondoc.loads)
                if found is not None:
                    return found
        return jsondoc.loads(raw or b"null"), None

    timed = request.app[keys.RUNTIME].metrics.timed("receive", decode)
    try:
        return await run_cpu(request, len(raw), timed)
    except jsondoc.JsonRefused as exc:
        raise InputError(str(exc)) from None


def _validated(model: type[M], data: object) -> M:
    if not isinstance(data, dict):
        raise InputError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        err = validation_error_message(exc)
        raise RequestInvalid(err.error, err.field) from exc


def check_names(request: web.Request, bucket: str, *, key: str | None = None,
                prefix: str | None = None, bucket_field: str = "bucket",
                key_field: str = "prefix") -> None:
    """The store's own name rules, at request time: a 400 naming the field, not a 500 or a
    failed job later."""
    try:
        request.app[keys.STORAGE].check_name(bucket, key, prefix=prefix)
    except InvalidObjectName as exc:
        exc.field = bucket_field if exc.field == "bucket" else key_field
        raise


def _accept_image(text: str | CheckedBase64, limits: ImagingSettings, metrics: Metrics
                  ) -> imaging.Upload:
    # Canonical base64 is only checked (the job decodes it): its CPU is the check's (when it
    # was cut out of the body, its alphabet pass counted as receiving).
    start, stage = time.thread_time(), "decode"
    try:
        upload = imaging.accept_base64_image(text, max_bytes=limits.max_bytes,
                                             max_pixels=limits.max_pixels)
        stage = "check" if upload.base64 else "decode"
        return upload
    finally:
        metrics.add_cpu(stage, time.thread_time() - start)


async def _image_job(request: web.Request, kind: JobKind) -> web.Response:
    settings = request.app[keys.SETTINGS]
    st = settings.storage
    if kind is JobKind.COS and st.is_cos and not st.cos_access_key_id:
        raise web.HTTPNotImplemented(
            text="this service has no COS HMAC keys, so it cannot make presigned result URLs; "
                 "use /process-image-async-b64, or set COS_ACCESS_KEY_ID and "
                 "COS_SECRET_ACCESS_KEY")
    cb = await callback_url(request)
    body, image = await _image_request(request)
    upload = await run_cpu(request, len(image), _accept_image, image, settings.imaging,
                           request.app[keys.RUNTIME].metrics)
    filename = safe_filename(body.filename, imaging.extension_for_mime(upload.facts.mime))
    spec = spec_from_settings(settings.provider, body.prompt)
    job_id = str(uuid.uuid4())
    output_bucket = output_key = None
    if kind is JobKind.COS:
        output_bucket = settings.storage.resolved_output_bucket
        output_key = result_key(f"{settings.storage.output_prefix}{job_id}/", filename,
                                spec.output_format)
        # A name the store would refuse later is refused now (e.g. a file name too long).
        check_names(request, output_bucket, key=output_key, bucket_field="filename",
                    key_field="filename")
    await request.app[keys.LEDGER].create_jobs([NewJob(
        id=job_id, kind=kind, filename=filename, recipe=_recipe(spec),
        input_data=upload.data, input_base64=upload.base64,
        output_bucket=output_bucket, output_key=output_key, callback_url=cb,
        max_attempts=settings.worker.max_attempts, **provenance(request),
    )])
    return _accepted(job_id)


@routes.post("/process-image-async-b64")
async def process_image_b64(request: web.Request) -> web.Response:
    """Edit one image; the result comes back base64-encoded in the callback."""
    return await _image_job(request, JobKind.B64)


@routes.post("/process-image-async")
async def process_image_cos(request: web.Request) -> web.Response:
    """Edit one image; the result is stored and a presigned URL comes back in the callback."""
    return await _image_job(request, JobKind.COS)


@routes.post("/batch-process-images")
async def batch_process_images(request: web.Request) -> web.Response:
    """Edit every image in a folder; one summary comes back in the callback."""
    settings = request.app[keys.SETTINGS]
    cb = await callback_url(request)
    body = await parse_body(request, BatchRequest)
    st = settings.storage
    spec = spec_from_settings(settings.provider, body.prompt, model=body.model,
                              quality=body.quality, size=body.size,
                              output_format=body.output_format)
    batch_id = str(uuid.uuid4())
    output_prefix = body.output_prefix if body.output_prefix is not None else (
        f"{st.output_prefix}{batch_id}/")
    bucket = body.bucket or st.resolved_input_bucket
    prefix = body.prefix if body.prefix is not None else st.input_prefix
    output_bucket = body.output_bucket or st.resolved_output_bucket
    check_names(request, bucket, prefix=prefix)
    check_names(request, output_bucket, prefix=output_prefix, bucket_field="output_bucket",
                key_field="output_prefix")
    if output_bucket == bucket and (not output_prefix or prefix.startswith(output_prefix)):
        raise RequestInvalid("output_prefix: results would be written over or around the inputs "
                       f"(input {prefix!r}, output {output_prefix!r}); choose an output folder "
                       "outside the input folder", "output_prefix")
    batch = await request.app[keys.LEDGER].create_batch(NewBatch(
        id=batch_id, kind="wxo", bucket=bucket, prefix=prefix, output_bucket=output_bucket,
        output_prefix=output_prefix, recipe=_recipe(spec), callback_url=cb,
        **provenance(request),
    ))
    return _accepted(batch.id)


def _recipe(spec: EditSpec) -> Recipe:
    return Recipe.of(spec)


def _accepted(job_id: str) -> web.Response:
    return web.json_response({"accepted": True, "job_id": job_id}, status=202)
