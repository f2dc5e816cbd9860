"""Input images: decode base64, recognise the real format, refuse bombs, prepare for the provider.

Pure, synchronous functions (CPU-bound Pillow work); the `*_async` wrappers run them off the loop.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import io
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NewType, TypeVar

from PIL import Image, UnidentifiedImageError, features

from imagedrop.errors import ImageRejected

# The OpenAI edit API takes png/webp/jpeg under 50 MB; larger edges buy nothing but upload time.
PROVIDER_MAX_BYTES = 50 * 1024 * 1024
PROVIDER_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_EDGE = 4096

_MIME_BY_FORMAT = {
    "png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "mpo": "image/jpeg",
    "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff",
    "avif": "image/avif", "heic": "image/heic", "heif": "image/heif",
}
_EXTENSION_BY_MIME = {mime: fmt for fmt, mime in _MIME_BY_FORMAT.items()} | {
    "image/jpeg": "jpg", "image/tiff": "tif",
}
# Which Pillow plugins may open a sniffed type: never let Pillow guess (EPS would run Ghostscript).
_PILLOW_FORMATS = {
    "image/png": ("PNG",), "image/jpeg": ("JPEG", "MPO"), "image/webp": ("WEBP",),
    "image/gif": ("GIF",), "image/bmp": ("BMP",), "image/tiff": ("TIFF",),
} | ({"image/avif": ("AVIF",)} if features.check("avif") else {})
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"), (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"WEBP", 8, "image/webp"), (b"GIF87a", 0, "image/gif"), (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"), (b"MM\x00*", 0, "image/tiff"),
)
_ISO_BRANDS = (
    ((b"avif", b"avis"), "image/avif"),
    ((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"), "image/heic"),
    ((b"mif1", b"msf1"), "image/heif"),
)
_NOT_IMAGES = (
    (b"%pdf", "a PDF document"), (b"pk\x03\x04", "a ZIP archive (or Office document)"),
    (b"\x1f\x8b", "gzip-compressed data"), (b"8bps", "a Photoshop (PSD) file"),
    (b"%!ps", "a PostScript file"), (b"<?xml", "XML/text"), (b"<!doctype html", "HTML/text"),
    (b"<html", "HTML/text"), (b"{", "JSON/text"), (b"[", "JSON/text"),
)
_ENCODE: dict[str, tuple[str, dict[str, int]]] = {
    "image/jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    "image/webp": ("WEBP", {"quality": 90}), "image/png": ("PNG", {"compress_level": 6}),
}
_PASSTHROUGH_MODES = frozenset({"RGB", "RGBA", "L"})
_RGB_FAMILY = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA"})
# EXIF orientation → the transpose that makes the image upright (as in ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the header says: the real type and the stored (pre-EXIF-rotation) dimensions."""

    mime: str
    width: int
    height: int


#: Canonical base64 as ASCII bytes, checked (`checked_base64`, `jsoncut.cut_base64`): only
#: these are kept as they came, so a caller cannot hand over bytes nobody checked.
CheckedBase64 = NewType("CheckedBase64", bytes)


@dataclass(frozen=True, slots=True)
class Upload:
    """An image sent as base64, accepted: canonical base64 is kept as it came (`data` is then
    that ASCII text, decoded only when the job runs), anything else decoded now."""

    data: bytes
    base64: bool
    facts: ImageFacts


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """Bytes the provider accepts as they are, with their type and (displayed) dimensions."""

    data: bytes
    mime: str
    width: int
    height: int


def mime_for_format(fmt: str) -> str:
    """'png' → 'image/png', 'jpeg'/'jpg' → 'image/jpeg', …; ValueError for unknown formats."""
    try:
        return _MIME_BY_FORMAT[fmt.lower().lstrip(".")]
    except KeyError:
        raise ValueError(f"unknown image format {fmt!r}") from None


def extension_for_mime(mime: str) -> str:
    """'image/png' → 'png', 'image/jpeg' → 'jpg' (no dot); 'bin' for anything else."""
    return _EXTENSION_BY_MIME.get(mime.lower().split(";")[0].strip(), "bin")


def decode_base64_image(text: str, *, max_bytes: int) -> bytes:
    """Decode `image_base64` as callers really send it: data-URL prefix, line breaks, missing
    padding or the URL-safe alphabet are fine; anything else is refused with the reason."""
    body = text.strip()
    if len(body) % 4 == 0 and len(body) * 3 // 4 - 2 <= max_bytes:
        # What nearly every caller sends, checked and decoded in one C pass; anything else
        # takes the forgiving path below, which also says what is wrong.
        try:
            data = binascii.a2b_base64(body, strict_mode=True)
        except binascii.Error:
            pass
        else:
            if data and len(data) <= max_bytes:
                return data
    if body[:5].lower() == "data:":
        header, comma, body = body.partition(",")
        if not comma or ";base64" not in header.lower():
            raise ImageRejected("image_base64 is not valid base64: a data: URL needs ';base64,'")
    body = "".join(body.split())  # line breaks from MIME-style encoders
    if not body:
        raise ImageRejected("image_base64 is empty")
    # Check the size before decoding: base64 carries 3 bytes per 4 characters.
    if len(body) * 3 // 4 - 2 > max_bytes:
        raise _too_big(len(body) * 3 // 4, max_bytes)
    body = body.replace("-", "+").replace("_", "/")  # the URL-safe alphabet
    if bad := _NOT_BASE64.search(body):
        where = f"character {bad.group()!r} at position {bad.start()}"
        raise ImageRejected(f"image_base64 is not valid base64: {where}")
    body = body.rstrip("=")
    if len(body) % 4 == 1:
        raise ImageRejected("image_base64 is not valid base64: its length is impossible")
    try:
        data = binascii.a2b_base64(body + "=" * (-len(body) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise ImageRejected(f"image_base64 is not valid base64: {exc}") from None
    if len(data) > max_bytes:
        raise _too_big(len(data), max_bytes)
    return data


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


# How much of canonical base64 is decoded to read the image's header (a JPEG's markers come
# before its pixels; an EXIF thumbnail or ICC profile can push them past the first).
_HEADS = (16 * 1024, 128 * 1024)
_HEAD_FORMATS = frozenset({"image/png", "image/jpeg", "image/webp"})


def accept_base64_image(text: str | CheckedBase64, *, max_bytes: int, max_pixels: int
                        ) -> Upload:
    """`image_base64` checked as `decode_base64_image` and `inspect_image` would, without
    decoding canonical base64 (what nearly every caller sends): its alphabet and padding are
    checked in C passes (unless already checked) and only the head that holds the header is
    decoded."""
    raw = text if isinstance(text, bytes) else checked_base64(text)
    # Only formats whose header Pillow reads in order, failing when it is cut short; others
    # (TIFF, AVIF) jump to offsets and would pass a cut head with defaults: decoded whole.
    if (raw is not None and len(raw) // 4 * 3 - raw[-2:].count(b"=") <= max_bytes
            and sniff_base64(raw) in _HEAD_FORMATS):
        for head in _HEADS:
            if head >= len(raw):
                break
            try:
                facts = inspect_image(binascii.a2b_base64(raw[:head]), max_bytes=max_bytes,
                                      max_pixels=max_pixels)
            except ImageRejected as exc:
                if exc.status == 413:  # the header alone says it is too many pixels
                    raise
                continue  # the header goes on past this head (or it is no image): look again
            return Upload(raw, True, facts)
    data = decode_base64_image(text if isinstance(text, str) else text.decode("ascii"),
                               max_bytes=max_bytes)
    return Upload(data, False, inspect_image(data, max_bytes=max_bytes, max_pixels=max_pixels))


def checked_base64(text: str) -> CheckedBase64 | None:
    """`text` as ASCII bytes when it is canonical base64 (standard alphabet, padded, no line
    breaks), else None; checked in a few C passes without decoding megabytes."""
    if not text or not text.isascii():
        return None
    raw = text.encode("ascii")
    return CheckedBase64(raw) if is_canonical_base64(raw) else None


def is_canonical_base64(raw: bytes) -> bool:
    """Whether `raw` is canonical base64 (as `checked_base64`), in C passes."""
    if not raw or len(raw) % 4 or raw.translate(None, _BASE64_ALPHABET):
        return False
    pad = raw.find(b"=")
    return pad == -1 or (pad >= len(raw) - 2 and raw[-1:] == b"=")


def sniff_base64(b64: bytes) -> str | None:
    """`sniff` of canonical base64 (`checked_base64`): only its head is decoded."""
    return sniff(binascii.a2b_base64(b64[:1024]))


def sniff(data: bytes) -> str | None:
    """The image type the magic bytes say (not the file name or the declared type), or None."""
    head = data[:32]
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    # "BM" alone is too common in text; also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "image/bmp"
    if head[4:8] == b"ftyp":  # ISO media: the brands say whether it is AVIF/HEIF or a video
        brands = data[8 : 8 + int.from_bytes(head[:4], "big")]
        for names, mime in _ISO_BRANDS:
            if any(name in brands for name in names):
                return mime
    return None


def describe(data: bytes) -> str:
    """A human name for bytes that are not a supported image, for error messages."""
    head = data[:512].lstrip()
    lower = head.lower()
    if b"<svg" in lower:
        return "an SVG drawing (vector images are not supported)"
    for magic, name in _NOT_IMAGES:
        if lower.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return "a video or other ISO media file"
    if any(b < 32 and b not in b"\t\r\n\f" for b in head):  # control bytes: not text
        return f"unrecognised binary data (starts {data[:8].hex(' ')})"
    return "text" if head else "empty data"


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageFacts:
    """Type and size from the header alone; ImageRejected for non-images, oversized files and
    pixel counts over `max_pixels` (decompression bombs are refused before any decode)."""
    im, mime = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    with im:
        return ImageFacts(mime, im.width, im.height)


def prepare_for_provider(
    data: bytes, *, max_bytes: int, max_pixels: int, max_edge: int = MAX_EDGE
) -> PreparedImage:
    """Bytes the edit API accepts: png/jpeg/webp, upright, RGB(A), at most `max_edge` pixels a
    side and under 50 MB. Acceptable input is returned untouched (after an integrity decode)."""
    im, mime = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    with im:
        try:
            return _prepare(im, mime, data, max_edge)
        except Image.DecompressionBombError as exc:
            raise _bomb(exc) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise ImageRejected(f"image is truncated or corrupt: {exc}") from None


def _prepare(im: Image.Image, mime: str, data: bytes, max_edge: int) -> PreparedImage:
    orientation = _orientation(im, mime, data)
    too_big = max(im.size) > max_edge or len(data) > PROVIDER_MAX_BYTES
    animated = getattr(im, "is_animated", False) and mime != "image/jpeg"  # MPO is still a JPEG
    if (mime in PROVIDER_MIME_TYPES and im.mode in _PASSTHROUGH_MODES and not too_big
            and orientation == 1 and not animated):
        size = im.size
        if mime == "image/jpeg":
            im.draft(im.mode, (1, 1))  # decode at 1/8 scale: still reads every byte
        im.load()
        return PreparedImage(data, mime, *size)
    if max(im.size) > max_edge and mime == "image/jpeg":
        im.draft(im.mode, _fit(im.size, max_edge))  # libjpeg shrinks by 2/4/8 while decoding
    source_mode, icc = im.mode, im.info.get("icc_profile")
    im = _to_rgb(im)  # before resizing: palette images would otherwise resize as NEAREST
    if max(im.size) > max_edge:
        im = im.resize(_fit(im.size, max_edge), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation != 1:
        im = im.transpose(_TRANSPOSE[orientation])  # what ImageOps.exif_transpose does
    # A CMYK or grey ICC profile would mis-colour the converted pixels: keep only matching ones.
    if not ((source_mode in _RGB_FAMILY and im.mode != "L") or source_mode == im.mode == "L"):
        icc = None
    out_mime = "image/jpeg" if mime == "image/jpeg" and im.mode in ("RGB", "L") else "image/png"
    encoded = _encode(im, out_mime, icc)
    if len(encoded) > PROVIDER_MAX_BYTES:  # noisy RGBA can outgrow PNG's limit; lossy WebP fits
        out_mime, encoded = "image/webp", _encode(im, "image/webp", icc)
    if len(encoded) > PROVIDER_MAX_BYTES:
        raise _too_big(len(encoded), PROVIDER_MAX_BYTES)
    return PreparedImage(encoded, out_mime, *im.size)


def _orientation(im: Image.Image, mime: str, data: bytes) -> int:
    # PNG keeps EXIF in an eXIf chunk that Pillow only finds by decoding; look for it first.
    if mime == "image/png" and b"eXIf" not in data:
        return 1
    value = im.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _fit(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    scale = max_edge / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, RGBA or L: alpha kept when present; 16-bit greys scaled down, not clipped."""
    if im.mode in _PASSTHROUGH_MODES:
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        im = im.convert("I")
        if im.getextrema()[1] > 255:  # type: ignore[operator]
            im = im.point(lambda v: v * (1 / 256))
        return im.convert("L")
    has_alpha = im.mode in ("LA", "La", "PA", "RGBa") or "transparency" in im.info
    return im.convert("RGBA" if has_alpha else "RGB")


def _encode(im: Image.Image, mime: str, icc: bytes | None) -> bytes:
    buf = io.BytesIO()
    fmt, params = _ENCODE[mime]
    im.save(buf, fmt, icc_profile=icc, **params)
    return buf.getvalue()


def load_plugins() -> None:
    """Import every Pillow format plugin now (at start, off the loop) rather than inside the
    first image's check: small uploads are checked on the event loop's thread, where the first
    JPEG paid ~7 ms of imports and the first TIFF or MPO ~30 ms, with every request waiting."""
    Image.init()


def _open(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[Image.Image, str]:
    """Open bytes with the plugin for their sniffed type and enforce the byte/pixel limits."""
    if not data:
        raise ImageRejected("image is empty")
    if len(data) > max_bytes:
        raise _too_big(len(data), max_bytes)
    mime = sniff(data)
    if mime is None:
        raise ImageRejected(f"not an image: the data looks like {describe(data)}")
    if mime not in _PILLOW_FORMATS:
        raise ImageRejected(f"{mime} images are not supported; send PNG, JPEG or WebP")
    try:
        im = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS[mime])
    except Image.DecompressionBombError as exc:
        raise _bomb(exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"image is truncated or corrupt: {exc}") from None
    # Our own policy, not Pillow's process-global MAX_IMAGE_PIXELS: checked before any decode.
    if im.width * im.height > max_pixels:
        im.close()
        raise ImageRejected(
            f"image is {im.width}x{im.height} = {im.width * im.height} pixels; the limit is "
            f"{max_pixels} (decompression-bomb guard)", status=413,
        )
    return im, mime


def _bomb(exc: Exception) -> ImageRejected:
    return ImageRejected(f"image refused as a decompression bomb: {exc}", status=413)


def _too_big(size: int, limit: int) -> ImageRejected:
    return ImageRejected(f"image is {size} bytes; the limit is {limit} bytes", status=413)


async def run_blocking(executor: Executor | None, fn: Callable[..., _T], /, *args: Any,
                       **kwargs: Any) -> _T:
    """Run `fn` off the event loop: in `executor`, or the default thread pool when None."""
    if executor is None:
        return await asyncio.to_thread(fn, *args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))


async def decode_base64_image_async(
    text: str, *, max_bytes: int, executor: Executor | None = None
) -> bytes:
    """`decode_base64_image` off the event loop (70 MB of base64 takes a while)."""
    return await run_blocking(executor, decode_base64_image, text, max_bytes=max_bytes)


async def inspect_image_async(
    data: bytes, *, max_bytes: int, max_pixels: int, executor: Executor | None = None
) -> ImageFacts:
    """`inspect_image` off the event loop."""
    return await run_blocking(executor, inspect_image, data, max_bytes=max_bytes,
                              max_pixels=max_pixels)


async def prepare_for_provider_async(
    data: bytes, *, max_bytes: int, max_pixels: int, max_edge: int = MAX_EDGE,
    executor: Executor | None = None,
) -> PreparedImage:
    """`prepare_for_provider` off the event loop."""
    return await run_blocking(executor, prepare_for_provider, data, max_bytes=max_bytes,
                              max_pixels=max_pixels, max_edge=max_edge)
