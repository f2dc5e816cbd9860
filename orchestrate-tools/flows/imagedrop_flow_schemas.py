"""Schemas the imagedrop flows share: flow inputs and outputs, and the tool nodes' shapes.

The tool-node models mirror what WXO derives from the tool specs (an OpenAPI tool takes its
JSON body as `__requestBody__`; an async tool's output is its callback body), so the flows
compile without a connection to a WXO server. tests/e2e/test_orchestrate_tools.py checks the
mirror against orchestrate-tools/*.yaml and python/image_tools.py.
"""

# No `from __future__ import annotations`: the flow builder reads these as real types.
from typing import Literal

from ibm_watsonx_orchestrate.agent_builder.tools import WXOFile
from pydantic import BaseModel, ConfigDict, Field

# --- Python tool nodes (python/image_tools.py) ----------------------------------------------


class ImageFileIn(BaseModel):
    image: WXOFile = Field(description="The uploaded image file; a data: URL or base64 text "
                                       "also works.")


class ImageBase64(BaseModel):
    image_base64: str = Field(description="The image, base64-encoded (no data: prefix).")
    mime_type: str = Field(description="MIME type read from the bytes.")
    size_bytes: int = Field(description="Size of the decoded image in bytes.")


class MarkdownIn(BaseModel):
    result_image_base64: str = Field(description="The edited image, base64-encoded.")
    result_mime_type: str = Field("image/png", description="Its MIME type.")
    filename: str = Field("edited image", description="Alt text.")


class Markdown(BaseModel):
    markdown: str = Field(description="A markdown image with a data: URL; shows it in chat.")


# --- OpenAPI tool nodes (orchestrate-tools/*.yaml) ---------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ImageRequest(BaseModel):
    prompt: str = Field(description="What to do to the image.")
    filename: str | None = Field(None, description="Name of the image.")
    image_base64: str = Field(description="The image, base64-encoded.")


class ImageRequestIn(_Body):
    request_body: ImageRequest = Field(alias="__requestBody__")


class B64Result(BaseModel):
    status: Literal["completed", "failed"] = Field(description="completed or failed.")
    job_id: str = Field(description="The job id.")
    filename: str = Field(description="Name of the image.")
    result_image_base64: str | None = Field(None, description="The edited image (base64).")
    result_mime_type: str | None = Field(None, description="Its MIME type.")
    error: str | None = Field(None, description="Why the edit failed.")


class B64ResultOut(_Body):
    request_body: B64Result = Field(alias="__requestBody__")


class CosResult(BaseModel):
    status: Literal["completed", "failed"] = Field(description="completed or failed.")
    job_id: str = Field(description="The job id.")
    filename: str = Field(description="Name of the image.")
    object_key: str | None = Field(None, description="Key of the edited image.")
    result_url: str | None = Field(None, description="Presigned GET URL of the edited image.")
    expires_in: int | None = Field(None, description="Seconds result_url stays valid.")
    error: str | None = Field(None, description="Why the edit failed.")


class CosResultOut(_Body):
    request_body: CosResult = Field(alias="__requestBody__")


class BatchRequest(BaseModel):
    prompt: str = Field(description="What to do to every image.")
    bucket: str | None = Field(None, description="Bucket to read; default: input.")
    prefix: str | None = Field(None, description="Folder to read; default: input.")
    output_bucket: str | None = Field(None, description="Bucket results go to.")
    output_prefix: str | None = Field(None, description="Folder results go to.")


class BatchRequestIn(_Body):
    request_body: BatchRequest = Field(alias="__requestBody__")


class TriggerRequest(BaseModel):
    bucket: str | None = Field(None, description="Bucket of the folder; default: input.")
    prefix: str = Field(description='Folder to process; "" is the bucket root.')
    prompt: str | None = Field(None, description="Overrides the folder manifest's prompt.")


class TriggerRequestIn(_Body):
    request_body: TriggerRequest = Field(alias="__requestBody__")


class BatchSummary(BaseModel):
    status: str = Field(description="completed, completed_with_errors or failed.")
    job_id: str = Field(description="The batch id.")
    total_files: int = Field(description="Images found in the folder.")
    processed: int = Field(description="Images edited by the image provider.")
    failed: int = Field(description="Images that could not be edited.")
    fallback_local: int = Field(description="Images edited locally after a billing limit.")
    output_bucket: str = Field(description="Bucket the results went to.")
    output_prefix: str = Field(description="Folder the results went to.")
    errors: list[str] = Field(description="Up to 20 error messages.")


class BatchSummaryOut(_Body):
    request_body: BatchSummary = Field(alias="__requestBody__")


# --- Flow inputs and outputs ----------------------------------------------------------------


class ImageFlowIn(BaseModel):
    image: WXOFile = Field(description="The image to edit (PNG, JPEG or WebP).")
    prompt: str = Field(description="What to do to the image.")


class ChatImageOut(BaseModel):
    status: str = Field(description="completed or failed.")
    image_markdown: str | None = Field(None, description="The edited image, shown in chat.")
    result_image_base64: str | None = Field(None, description="The edited image (base64).")
    error: str | None = Field(None, description="Why the edit failed.")


class CosImageOut(BaseModel):
    status: str = Field(description="completed or failed.")
    object_key: str | None = Field(None, description="Key of the edited image.")
    result_url: str | None = Field(None, description="Download link of the edited image.")
    expires_in: int | None = Field(None, description="Seconds the link stays valid.")
    error: str | None = Field(None, description="Why the edit failed.")


class FolderFlowIn(BaseModel):
    prompt: str = Field(description="What to do to every image.")
    bucket: str | None = Field(None, description="Bucket to read; default: the service's.")
    prefix: str | None = Field(None, description="Folder to read; default: the service's.")
    output_bucket: str | None = Field(None, description="Bucket results go to.")
    output_prefix: str | None = Field(None, description="Folder results go to.")


class TriggerFlowIn(BaseModel):
    prefix: str = Field(description='Folder to process; "" is the bucket root.')
    bucket: str | None = Field(None, description="Bucket of the folder; default: the service's.")
    prompt: str | None = Field(None, description="Overrides the folder manifest's prompt.")


class FolderSummaryOut(BaseModel):
    status: str = Field(description="completed, completed_with_errors or failed.")
    total_files: int = Field(description="Images found in the folder.")
    processed: int = Field(description="Images edited.")
    failed: int = Field(description="Images that could not be edited.")
    output_bucket: str = Field(description="Bucket the results went to.")
    output_prefix: str = Field(description="Folder the results went to.")
    errors: list[str] = Field(description="Up to 20 error messages.")
