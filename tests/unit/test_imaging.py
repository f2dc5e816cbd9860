"""imaging: base64 decoding, format sniffing, header checks and preparation for the provider."""

from __future__ import annotations

import base64
import io
import random
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imagedrop import imaging
from imagedrop.errors import ImageRejected
from tests.fixtures import images

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 64_000_000}


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


class TestDecodeBase64:
    """decode_base64_image accepts what callers really send and explains what it refuses."""

    def test_plain(self) -> None:
        data = images.png()
        assert imaging.decode_base64_image(base64.b64encode(data).decode(), max_bytes=10**6) == data

    def test_data_url_prefix(self) -> None:
        data = images.jpeg()
        text = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        assert imaging.decode_base64_image(text, max_bytes=10**6) == data

    def test_line_breaks_and_surrounding_whitespace(self) -> None:
        data = images.png()
        text = "\n  " + base64.encodebytes(data).decode().replace("\n", "\r\n") + "  \n"
        assert imaging.decode_base64_image(text, max_bytes=10**6) == data

    def test_missing_padding(self) -> None:
        data = images.png() + b"x"  # make the length need padding
        text = base64.b64encode(data).decode().rstrip("=")
        assert imaging.decode_base64_image(text, max_bytes=10**6) == data

    def test_url_safe_alphabet(self) -> None:
        data = bytes(range(256)) * 4
        text = base64.urlsafe_b64encode(data).decode()
        assert "-" in text or "_" in text
        assert imaging.decode_base64_image(text, max_bytes=10**6) == data

    @pytest.mark.parametrize("text", ["", "   ", "\n", "data:image/png;base64,"])
    def test_empty_is_refused(self, text: str) -> None:
        with pytest.raises(ImageRejected, match="empty"):
            imaging.decode_base64_image(text, max_bytes=10**6)

    @pytest.mark.parametrize("text", ["not base64 at all!", "abc%def", "aGVsbG8=aGVsbG8=", "a"])
    def test_garbage_is_refused_with_reason(self, text: str) -> None:
        with pytest.raises(ImageRejected, match=r"^image_base64 is not valid base64: .+") as info:
            imaging.decode_base64_image(text, max_bytes=10**6)
        assert info.value.status == 400

    def test_data_url_without_base64_is_refused(self) -> None:
        with pytest.raises(ImageRejected, match="base64"):
            imaging.decode_base64_image("data:image/png,rawbytes", max_bytes=10**6)

    def test_oversized_is_413_before_decoding(self) -> None:
        text = "!" * 4000  # invalid too: the size check must come first
        with pytest.raises(ImageRejected, match="limit") as info:
            imaging.decode_base64_image(text, max_bytes=1000)
        assert info.value.status == 413

    def test_exactly_at_the_limit_is_accepted(self) -> None:
        data = b"\x01" * 1000
        assert imaging.decode_base64_image(base64.b64encode(data).decode(), max_bytes=1000) == data


def _noisy_jpeg(w: int, h: int, *, exif_bytes: int = 0) -> bytes:
    """A photo-like JPEG (noise does not compress: ~`w*h/3` bytes), with an APP1 segment of
    `exif_bytes` before the frame header when asked (as a camera's thumbnail puts there)."""
    im = Image.frombytes("RGB", (w, h), random.Random(7).randbytes(w * h * 3))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    if exif_bytes:
        segment = b"Exif\x00\x00" + b"\x00" * (exif_bytes - 6)
        app1 = b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment
        data = data[:2] + app1 + data[2:]
    return data


class TestAcceptBase64:
    """accept_base64_image: canonical base64 kept as sent (only its header decoded), anything
    else decoded; the same facts and the same refusals as decoding everything."""

    def test_canonical_base64_is_kept_and_only_checked(self) -> None:
        data = _noisy_jpeg(400, 400)
        text = base64.b64encode(data).decode()
        assert len(text) > 128 * 1024  # longer than every head looked at
        upload = imaging.accept_base64_image(text, **LIMITS)
        assert upload.base64 and upload.data == text.encode()
        assert upload.facts == imaging.ImageFacts("image/jpeg", 400, 400)
        assert base64.b64decode(upload.data) == data

    @pytest.mark.parametrize("exif_bytes", [0, 65_000])
    def test_checked_bytes_are_accepted_as_their_text(self, exif_bytes: int) -> None:
        """Bytes already checked (cut out of a request body) give what their text gives,
        including the fallback to decoding when no head holds the header."""
        data = _noisy_jpeg(300, 200, exif_bytes=exif_bytes)
        if exif_bytes:
            data = data[:2] + data[2:65_006] + data[2:65_006] + data[65_006:]
        text = base64.b64encode(data).decode()
        checked = imaging.checked_base64(text)
        assert checked is not None
        assert imaging.accept_base64_image(checked, **LIMITS) == imaging.accept_base64_image(
            text, **LIMITS)

    @pytest.mark.parametrize("exif_bytes", [20_000, 65_000])
    def test_a_header_past_the_first_head_is_found(self, exif_bytes: int) -> None:
        data = _noisy_jpeg(500, 400, exif_bytes=exif_bytes)
        upload = imaging.accept_base64_image(base64.b64encode(data).decode(), **LIMITS)
        assert upload.facts == imaging.ImageFacts("image/jpeg", 500, 400)
        assert upload.base64 and base64.b64decode(upload.data) == data

    def test_a_header_past_every_head_falls_back_to_decoding(self) -> None:
        data = _noisy_jpeg(64, 48, exif_bytes=65_000)
        data = data[:2] + data[2:65_006] + data[2:65_006] + data[65_006:]  # two big segments
        upload = imaging.accept_base64_image(base64.b64encode(data).decode(), **LIMITS)
        assert not upload.base64 and upload.data == data
        assert upload.facts == imaging.ImageFacts("image/jpeg", 64, 48)

    @pytest.mark.parametrize("form", ["data_url", "line_breaks", "url_safe", "unpadded"])
    def test_other_forms_are_decoded_now(self, form: str) -> None:
        data = images.png(40, 30)
        text = base64.b64encode(data).decode()
        text = {"data_url": "data:image/png;base64," + text,
                "line_breaks": "\n".join(text[i:i + 76] for i in range(0, len(text), 76)),
                "url_safe": base64.urlsafe_b64encode(data).decode(),
                "unpadded": text.rstrip("=")}[form]
        upload = imaging.accept_base64_image(text, **LIMITS)
        assert upload.data == data
        assert upload.facts == imaging.ImageFacts("image/png", 40, 30)

    def test_formats_read_by_offset_are_decoded_whole(self) -> None:
        """A TIFF's tags may point past any head: cut short, Pillow would fill in defaults and
        pass an image that decoding everything refuses. Such formats are decoded at once."""
        far, w, h = 200_000, 16, 16
        entries = [struct.pack("<HHII", *e) for e in (
            (256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 1000), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, w * h),
            (339, 3, 3, far))]  # SampleFormat, stored out of line, far away
        data = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
                         + b"".join(entries) + struct.pack("<I", 0))
        data += b"\x00" * (1000 - len(data)) + b"\x80" * (w * h)
        data += b"\x00" * (far - len(data)) + struct.pack("<HHH", 3, 3, 3) + b"\x00" * 100
        text = base64.b64encode(bytes(data)).decode()
        try:
            expected: object = imaging.inspect_image(
                imaging.decode_base64_image(text, **{"max_bytes": LIMITS["max_bytes"]}),
                **LIMITS)
        except ImageRejected as exc:
            expected = str(exc)
        try:
            upload = imaging.accept_base64_image(text, **LIMITS)
            got: object = upload.facts
            assert not upload.base64
        except ImageRejected as exc:
            got = str(exc)
        assert got == expected

    def test_refusals_match_decoding_everything(self) -> None:
        bomb = base64.b64encode(images.png_header_only_huge()).decode()
        with pytest.raises(ImageRejected) as exc:
            imaging.accept_base64_image(bomb, max_bytes=10**8, max_pixels=1_000_000)
        assert exc.value.status == 413 and "pixels" in str(exc.value)
        pdf = base64.b64encode(b"%PDF-1.7 " + b"x" * 30_000).decode()
        with pytest.raises(ImageRejected, match="PDF"):
            imaging.accept_base64_image(pdf, **LIMITS)
        # A bad character far past the header: the whole text is checked, not just its head.
        text = base64.b64encode(_noisy_jpeg(320, 320)).decode()
        broken = text[:150_000] + "*" + text[150_001:]
        with pytest.raises(ImageRejected, match="not valid base64"):
            imaging.accept_base64_image(broken, **LIMITS)
        with pytest.raises(ImageRejected, match="limit"):
            imaging.accept_base64_image(text, max_bytes=50_000, max_pixels=10**8)


class TestSniff:
    """sniff names the real format from magic bytes, never from names or declared types."""

    @pytest.mark.parametrize(
        ("make", "mime"),
        [
            (images.png, "image/png"), (images.tiny_png, "image/png"),
            (images.jpeg, "image/jpeg"), (images.cmyk_jpeg, "image/jpeg"),
            (images.webp, "image/webp"), (images.gif_animated, "image/gif"),
            (images.bmp, "image/bmp"), (images.tiff, "image/tiff"),
        ],
    )
    def test_images(self, make, mime: str) -> None:
        assert imaging.sniff(make()) == mime

    def test_iso_media_brands(self) -> None:
        assert imaging.sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1") == "image/avif"
        assert imaging.sniff(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "image/heic"
        assert imaging.sniff(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2") is None

    @pytest.mark.parametrize("name", sorted(images.NOT_IMAGES))
    def test_non_images(self, name: str) -> None:
        assert imaging.sniff(images.NOT_IMAGES[name][0]) is None

    def test_text_starting_with_bm_is_not_bmp(self) -> None:
        assert imaging.sniff(b"BMW sales report 2026, quarterly") is None


class TestInspectImage:
    """inspect_image reads only the header and refuses what must never reach a decoder."""

    def test_facts(self) -> None:
        assert imaging.inspect_image(images.jpeg(64, 48), **LIMITS) == imaging.ImageFacts(
            "image/jpeg", 64, 48
        )

    @pytest.mark.parametrize("name", sorted(images.NOT_IMAGES))
    def test_non_image_message_says_what_it_looks_like(self, name: str) -> None:
        data, words = images.NOT_IMAGES[name]
        with pytest.raises(ImageRejected, match=rf"not an image: .*{words}") as info:
            imaging.inspect_image(data, **LIMITS)
        assert info.value.status == 400

    def test_empty(self) -> None:
        with pytest.raises(ImageRejected, match="empty"):
            imaging.inspect_image(b"", **LIMITS)

    def test_too_many_bytes_is_413(self) -> None:
        with pytest.raises(ImageRejected, match="bytes") as info:
            imaging.inspect_image(images.png(), max_bytes=100, max_pixels=10**9)
        assert info.value.status == 413

    def test_bomb_refused_from_header_by_own_limit(self) -> None:
        # 81 MP: under Pillow's own warning threshold, over ours; the body holds no pixels, so
        # a decode attempt would report truncation instead of the pixel limit.
        bomb = images.png_header_only_huge(9000, 9000)
        with pytest.raises(ImageRejected, match=r"9000x9000.*decompression-bomb") as info:
            imaging.prepare_for_provider(bomb, **LIMITS)
        assert info.value.status == 413

    def test_small_pixel_limit_is_honoured(self) -> None:
        with pytest.raises(ImageRejected, match="pixels"):
            imaging.inspect_image(images.png(100, 100), max_bytes=10**6, max_pixels=9_999)

    def test_gigantic_header_refused(self) -> None:
        with pytest.raises(ImageRejected, match="decompression") as info:
            imaging.inspect_image(images.png_header_only_huge(100_000, 100_000), **LIMITS)
        assert info.value.status == 413

    def test_unsupported_but_recognised_format(self) -> None:
        heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
        with pytest.raises(ImageRejected, match="image/heic images are not supported"):
            imaging.inspect_image(heic, **LIMITS)


class TestPrepareForProvider:
    """prepare_for_provider hands the provider upright png/jpeg/webp RGB(A) within limits."""

    @pytest.mark.parametrize("make", [images.png, images.jpeg, images.webp, images.tiny_png])
    def test_acceptable_bytes_pass_untouched(self, make) -> None:
        data = make()
        prepared = imaging.prepare_for_provider(data, **LIMITS)
        assert prepared.data is data
        assert prepared.mime == imaging.sniff(data)
        assert (prepared.width, prepared.height) == _open(data).size

    def test_exif_rotation_is_applied(self) -> None:
        prepared = imaging.prepare_for_provider(images.jpeg_with_orientation(6, 64, 48), **LIMITS)
        im = _open(prepared.data)
        assert (prepared.width, prepared.height) == im.size == (48, 64)
        assert prepared.mime == "image/jpeg"
        assert im.getexif().get(0x0112, 1) == 1

    def test_cmyk_becomes_rgb(self) -> None:
        prepared = imaging.prepare_for_provider(images.cmyk_jpeg(), **LIMITS)
        assert _open(prepared.data).mode == "RGB"
        assert prepared.mime == "image/jpeg"

    def test_animated_gif_becomes_first_frame_png(self) -> None:
        prepared = imaging.prepare_for_provider(images.gif_animated(64, 48), **LIMITS)
        im = _open(prepared.data)
        assert (prepared.mime, im.format, im.size) == ("image/png", "PNG", (64, 48))
        first = _open(images.gif_animated(64, 48)).convert("RGB")
        assert im.convert("RGB").tobytes() == first.tobytes()

    @pytest.mark.parametrize("make", [images.bmp, images.tiff])
    def test_other_formats_become_png(self, make) -> None:
        prepared = imaging.prepare_for_provider(make(), **LIMITS)
        assert prepared.mime == "image/png"
        assert _open(prepared.data).mode == "RGB"

    def test_palette_with_transparency_becomes_rgba(self) -> None:
        prepared = imaging.prepare_for_provider(images.palette_png(), **LIMITS)
        assert _open(prepared.data).mode == "RGBA"

    def test_truncated_is_refused(self) -> None:
        with pytest.raises(ImageRejected, match=r"^image is truncated or corrupt: "):
            imaging.prepare_for_provider(images.truncated_jpeg(), **LIMITS)

    def test_large_edges_are_scaled_down(self) -> None:
        prepared = imaging.prepare_for_provider(images.jpeg(1000, 600), **LIMITS, max_edge=256)
        assert (prepared.width, prepared.height) == _open(prepared.data).size == (256, 154)

    async def test_async_wrapper_uses_the_given_executor(self) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="imaging-test") as pool:
            prepared = await imaging.prepare_for_provider_async(images.bmp(), executor=pool,
                                                                **LIMITS)
            names = await imaging.run_blocking(pool, lambda: threading.current_thread().name)
        assert prepared.mime == "image/png"
        assert names.startswith("imaging-test")


class TestNames:
    """mime_for_format and extension_for_mime map between formats, types and file names."""

    @pytest.mark.parametrize(
        ("fmt", "mime"),
        [("png", "image/png"), ("jpeg", "image/jpeg"), ("JPG", "image/jpeg"),
         ("webp", "image/webp")],
    )
    def test_mime_for_format(self, fmt: str, mime: str) -> None:
        assert imaging.mime_for_format(fmt) == mime

    def test_unknown_format(self) -> None:
        with pytest.raises(ValueError, match="svg"):
            imaging.mime_for_format("svg")

    def test_extension_for_mime(self) -> None:
        assert imaging.extension_for_mime("image/jpeg") == "jpg"
        assert imaging.extension_for_mime("image/png") == "png"
        assert imaging.extension_for_mime("image/webp") == "webp"
        assert imaging.extension_for_mime("application/x-unknown") == "bin"
