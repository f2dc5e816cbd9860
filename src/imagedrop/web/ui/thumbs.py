"""Dashboard thumbnails: a bounded JPEG of an image (never the image itself), made with Pillow
off the event loop by the caller; JPEG inputs are decoded at reduced scale."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageOps

from imagedrop import imaging
from imagedrop.errors import ImageRejected

#: Longest side of a thumbnail, pixels.
THUMB_EDGE = 240


def thumbnail(data: bytes, *, max_bytes: int, max_pixels: int, edge: int = THUMB_EDGE) -> bytes:
    """A JPEG at most `edge` pixels a side; ImageRejected for what is not an image (the same
    checks as every input: type from the bytes, byte and pixel limits before decoding)."""
    imaging.inspect_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        return _thumbnail(data, edge)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageRejected(f"image is truncated or corrupt: {exc}") from None


def _thumbnail(data: bytes, edge: int) -> bytes:
    with Image.open(io.BytesIO(data)) as source:
        source.draft("RGB", (edge, edge))  # JPEG: libjpeg scales down while decoding
        im: Image.Image = ImageOps.exif_transpose(source)
        im.thumbnail((edge, edge))
        if im.mode in ("RGBA", "LA", "P", "PA"):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        elif im.mode != "RGB":
            im = im.convert("RGB")
        out = io.BytesIO()
        im.save(out, "JPEG", quality=80)
    return out.getvalue()


def thumb_etag(bucket: str, key: str, version: str, edge: int = THUMB_EDGE) -> str:
    """The ETag of a thumbnail: the object version it was made from, and its size."""
    digest = hashlib.sha256(f"{bucket}\x1f{key}\x1f{version}\x1f{edge}".encode()).hexdigest()
    return f'"t{digest[:24]}"'
