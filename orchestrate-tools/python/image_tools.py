"""Python tools (ADK `@tool`) the imagedrop flows need: an uploaded image as base64, and an
edited image as markdown chat can show. Standard library only, beside the ADK WXO provides.
"""

# No `from __future__ import annotations`: the ADK reads these annotations as real types.
import base64
import binascii
import re

from ibm_watsonx_orchestrate.agent_builder.tools import WXOFile, tool
from pydantic import BaseModel, Field

MAX_BYTES = 20 * 1024 * 1024  # what imagedrop accepts by default; larger is refused there anyway
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,", re.IGNORECASE)
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


class ImageBase64(BaseModel):
    """An image ready for imagedrop's `image_base64` field."""

    image_base64: str = Field(description="The image, base64-encoded (no data: prefix).")
    mime_type: str = Field(description="MIME type read from the bytes, e.g. image/png; "
                                        "application/octet-stream when not PNG, JPEG or WebP.")
    size_bytes: int = Field(description="Size of the decoded image in bytes.")


def sniff_mime(data: bytes) -> str:
    """The image type of `data` from its first bytes (the formats imagedrop accepts)."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def encode_image(data: bytes | str) -> ImageBase64:
    """Bytes, a `data:` URL or a base64 string -> clean base64 for `image_base64`.

    Raises ValueError when the text is not base64 or the image is empty or too large.
    """
    if isinstance(data, str):
        text = _DATA_URL.sub("", data.strip(), count=1)
        try:  # validate=True: stray characters mean it was not base64 at all
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the image is neither a data: URL nor base64") from exc
    else:
        raw = bytes(data)
    if not raw:
        raise ValueError("the image is empty")
    if len(raw) > MAX_BYTES:
        raise ValueError(f"the image has {len(raw)} bytes; at most {MAX_BYTES} are accepted")
    return ImageBase64(image_base64=base64.b64encode(raw).decode("ascii"),
                       mime_type=sniff_mime(raw), size_bytes=len(raw))


class MarkdownImage(BaseModel):
    """Markdown the chat renders as the image."""

    markdown: str = Field(description="A markdown image with a data: URL; shows it in chat.")


def markdown_image(image_base64: str, mime_type: str = "image/png", alt: str = "edited image"
                   ) -> str:
    """Markdown that shows a base64 image inline (a data: URL)."""
    safe_alt = re.sub(r"[\[\]\n]", " ", alt).strip() or "image"
    mime = mime_type if re.fullmatch(r"image/[\w.+-]+", mime_type or "") else "image/png"
    return f"![{safe_alt}](data:{mime};base64,{image_base64})"


@tool(name="image_to_base64",
      description="Turns an uploaded image (a file, or a data: URL or base64 text) into the "
                  "base64 text imagedrop's image_base64 field takes, with its MIME type.")
def image_to_base64(image: WXOFile) -> ImageBase64:
    """Read the uploaded image and return it base64-encoded.

    Args:
        image: The uploaded image file; a data: URL or base64 text also works.

    Returns:
        The image as base64, its MIME type and size.
    """
    ref = str(image)
    if _DATA_URL.match(ref.strip()) or not ref.strip().lower().startswith(("http://", "https://")):
        return encode_image(ref)
    return encode_image(WXOFile.get_content(ref))


@tool(name="image_markdown",
      description="Shows an edited image in chat: returns markdown with the base64 image inline.")
def image_markdown(result_image_base64: str, result_mime_type: str = "image/png",
                   filename: str = "edited image") -> MarkdownImage:
    """Markdown that displays a base64 image in the chat.

    Args:
        result_image_base64: The edited image, base64-encoded (imagedrop's callback field).
        result_mime_type: Its MIME type, e.g. image/png.
        filename: Name shown as the image's alt text.

    Returns:
        The markdown image (a data: URL).
    """
    return MarkdownImage(markdown=markdown_image(result_image_base64, result_mime_type, filename))
