"""The local Pillow provider: a deterministic, visibly labelled colour grade (no AI, no network).

Used when no OpenAI key is set and as the fallback after billing_hard_limit_reached. The tint
depends on the prompt, so different recipes give different (but repeatable) results.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import Executor

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from imagedrop.imaging import mime_for_format, run_blocking
from imagedrop.providers import EditResult, EditSpec

LABEL = "imagedrop local edit"
MODEL = "local-pillow"
_OPEN_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF")
_SAVE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


class LocalProvider:
    """Edits images on this machine with Pillow, off the event loop."""

    name = "local"

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor  # not owned: the caller shuts it down

    async def edit(self, image: bytes, mime_type: str, filename: str, spec: EditSpec) -> EditResult:
        """The graded, labelled image in spec.output_format; same input and spec → same bytes."""
        fmt = spec.output_format.lower()
        if fmt not in _SAVE_FORMATS:
            fmt = "png"
        data = await run_blocking(self._executor, render, image, spec.prompt, fmt)
        return EditResult(raw=data, mime_type=mime_for_format(fmt), provider="local", model=MODEL)

    async def close(self) -> None:
        """Nothing to release: the executor belongs to the caller."""


def tint_for(prompt: str) -> tuple[int, int, int]:
    """A warm colour picked by the prompt's hash: reds, oranges and golds only."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return 200 + digest[0] % 56, 110 + digest[1] % 80, 40 + digest[2] % 60


def render(image: bytes, prompt: str, fmt: str) -> bytes:
    """Grade `image` (contrast, saturation, a prompt-dependent warm tint), add the corner label
    and encode it as `fmt` (png/jpeg/webp). Pure and deterministic."""
    # Only raster plugins: the input was checked by imaging, but never let Pillow run Ghostscript.
    with Image.open(io.BytesIO(image), formats=_OPEN_FORMATS) as src:
        im = ImageOps.exif_transpose(src)
        alpha = im.getchannel("A") if "A" in im.getbands() else None
        im = im.convert("RGB")
    im = ImageEnhance.Contrast(im).enhance(1.15)
    im = ImageEnhance.Color(im).enhance(1.2)
    im = Image.blend(im, Image.new("RGB", im.size, tint_for(prompt)), 0.18)
    _label(im)
    if alpha is not None and fmt != "jpeg":
        im.putalpha(alpha)
    buf = io.BytesIO()
    params: dict[str, object] = {"quality": 90} if fmt in ("jpeg", "webp") else {}
    im.save(buf, _SAVE_FORMATS[fmt], **params)
    return buf.getvalue()


def _label(im: Image.Image) -> None:
    """Write LABEL in the bottom-left corner on a dark box, scaled to the image."""
    size = max(8, min(im.width, im.height) // 24)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), LABEL, font=font)
    pad = max(2, size // 4)
    box_h = bottom - top + 2 * pad
    y = max(0, im.height - box_h)
    draw.rectangle((0, y, right - left + 2 * pad, im.height), fill=(20, 20, 20))
    draw.text((pad - left, y + pad - top), LABEL, font=font, fill=(255, 236, 200))
