"""Base64 results passed through unchanged (issue 13): the cheap canonical-base64 check, the image
cut out of the provider's answer, the callback body spliced around the image, and an
EditResult's size and bytes either way."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from imagedrop import imaging, jsondoc
from imagedrop.jsoncut import cut_base64
from imagedrop.payloads import B64Completed
from imagedrop.providers import EditResult
from imagedrop.providers.openai import read_answer


def _png(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 90)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 300])
def test_canonical_base64_is_kept_as_it_came(length: int) -> None:
    text = base64.b64encode(bytes(range(length % 256)) * (1 + length // 256)).decode()
    checked = imaging.checked_base64(text)
    if length == 0:
        assert checked is None  # nothing is not an image
    else:
        assert checked == text.encode()


@pytest.mark.parametrize("text", [
    "aGVsbG8=\n",           # a line break (MIME encoders): decoded the forgiving way instead
    "aGVs bG8=",            # a space
    "aGVsbG8-",             # the URL-safe alphabet
    "aGV=bG8=",             # padding in the middle
    "aGVsbA=a",             # padding not at the end
    "aGVsbG8",              # length not a multiple of 4
    "aGVsbG8é",             # not ASCII
    "aGVsbG8\x00",          # a control character
])
def test_anything_else_is_not_canonical(text: str) -> None:
    assert imaging.checked_base64(text) is None


def test_sniffing_base64_reads_only_its_head() -> None:
    png = _png(64)
    b64 = base64.b64encode(png)
    assert imaging.sniff_base64(b64) == "image/png"
    # A broken tail does not matter to the sniff; the type is all it says.
    assert imaging.sniff_base64(b64[:1024] + b"!!!!") == "image/png"
    assert imaging.sniff_base64(base64.b64encode(b"<html>hello</html>")) is None


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 12])
def test_size_and_bytes_agree_either_way(n: int) -> None:
    raw = bytes(range(n))
    from_b64 = EditResult("image/png", "openai", "m", b64=base64.b64encode(raw))
    from_raw = EditResult("image/png", "local", "m", raw=raw)
    assert from_b64.size == from_raw.size == n
    assert from_b64.data == from_raw.data == raw
    assert from_b64.base64() == from_raw.base64() == base64.b64encode(raw)


@pytest.mark.parametrize("filename", [
    "a.png", 'quote".png', "back\\slash.png", "ünï\u2028code.png",
    'fake"result_image_base64":"".png',
])
def test_spliced_callback_body_is_the_serialised_one(filename: str) -> None:
    b64 = base64.b64encode(_png())
    spliced = B64Completed.body_with_image(b64, job_id="j1", filename=filename,
                                           result_mime_type="image/png")
    whole = B64Completed(job_id="j1", filename=filename, result_image_base64=b64.decode(),
                         result_mime_type="image/png").to_body()
    assert spliced == whole
    decoded = json.loads(spliced)
    assert decoded["filename"] == filename
    assert base64.b64decode(decoded["result_image_base64"]) == _png()


_B64 = base64.b64encode(_png()).decode()


@pytest.mark.parametrize("answer", [
    {"created": 1, "data": [{"b64_json": _B64}], "usage": {"input_tokens": 3}},
    # whatever else it says, whatever order and spacing, the first image is the one
    {"usage": {"output_tokens": 9}, "data": [{"revised_prompt": 'a "b64_json": "QUFB" here',
                                              "b64_json": _B64}, {"b64_json": "QUFB"}]},
])
@pytest.mark.parametrize("separators", [(",", ":"), (", ", " : ")])
def test_answer_image_is_cut_out_as_it_came(answer: dict, separators: tuple[str, str]) -> None:
    content = json.dumps(answer, separators=separators).encode()
    doc, image = read_answer(content)
    assert image == _B64.encode()
    assert doc["usage"] == answer["usage"]


@pytest.mark.parametrize(("content", "image"), [
    # a key that ends in b64_json is not the image: the document decides
    (json.dumps({'x"b64_json': "QUFB", "data": [{"b64_json": _B64}]}), _B64),
    # escapes, line breaks: not canonical, so read from the parsed document
    (json.dumps({"data": [{"b64_json": _B64[:8] + "\n" + _B64[8:]}]}), _B64[:8] + "\n" + _B64[8:]),
    ('{"data": [{"b64_json": "' + _B64.replace("/", "\\/") + '"}]}', _B64),
    (json.dumps({"data": [{"url": "https://x"}, {"b64_json": _B64}]}), None),  # not the first
    (json.dumps({"data": [{"b64_json": ""}]}), ""),
    (json.dumps({"data": [{"b64_json": None}]}), None),
    ("<html>gateway</html>", None),
    ("[1, 2]", None),
    # a document that holds a fixed stand-in for the cut cannot pass off another value
    ('{"x": {"b64_json": "QUFB"}, "data": [{"b64_json": "\\u0000cut"}]}', "\x00cut"),
    ('{"data": [{"b64_json": "' + _B64 + '"', None),  # cut off
])
def test_anything_else_is_read_from_the_parsed_answer(content: str, image: str | None) -> None:
    doc, value = read_answer(content.encode())
    assert value == image and not isinstance(value, bytes)
    assert isinstance(doc, dict)


def _upload_image(doc: object) -> object:
    return doc.get("image_base64") if isinstance(doc, dict) else None


@pytest.mark.parametrize(("body", "cut"), [
    ({"prompt": "p", "image_base64": _B64, "filename": "a.png"}, True),
    ({"image_base64": _B64}, True),
    ({"prompt": "p", "image_base64": "data:image/png;base64," + _B64}, False),  # not canonical
    ({"prompt": "p", "image_base64": ""}, False),
    ({"prompt": "p", "image_base64": 12}, False),
    ({"prompt": "p", "nested": {"image_base64": _B64}}, False),
])
def test_upload_image_is_cut_only_where_the_document_holds_it(body: dict, cut: bool) -> None:
    raw = json.dumps(body).encode()
    found = cut_base64(raw, "image_base64", _upload_image, jsondoc.loads)
    if not cut:
        assert found is None
        return
    assert found is not None
    doc, value = found
    assert value == _B64.encode()
    assert {k: v for k, v in doc.items() if k != "image_base64"} == {
        k: v for k, v in body.items() if k != "image_base64"}


def test_a_cut_document_is_still_checked_like_a_whole_one() -> None:
    """The rest of the document meets jsondoc's refusals (depth, lone surrogates)."""
    deep = '{"image_base64": "' + _B64 + '", "x": ' + "[" * 100 + "]" * 100 + "}"
    with pytest.raises(jsondoc.JsonRefused, match="nested too deeply"):
        cut_base64(deep.encode(), "image_base64", _upload_image, jsondoc.loads)
    lone = '{"image_base64": "' + _B64 + '", "prompt": "\\ud800"}'
    with pytest.raises(jsondoc.JsonRefused, match="surrogate"):
        cut_base64(lone.encode(), "image_base64", _upload_image, jsondoc.loads)


def test_pillow_plugins_load_at_start_not_in_the_first_request() -> None:
    """In a fresh interpreter: after `load_plugins` no image check imports anything (a first
    JPEG cost ~7 ms and a first TIFF ~30 ms of imports on the event loop's thread)."""
    script = (
        "import sys, io, base64\n"
        "from imagedrop import imaging\n"
        "imaging.load_plugins()\n"
        "from PIL import Image\n"
        "before = set(sys.modules)\n"
        "for fmt in ('TIFF', 'JPEG', 'PNG', 'WEBP', 'GIF', 'BMP'):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (8, 8)).save(buf, fmt)\n"
        "    imaging.accept_base64_image(base64.b64encode(buf.getvalue()).decode(),\n"
        "                                max_bytes=1 << 20, max_pixels=1 << 20)\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('PIL')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
