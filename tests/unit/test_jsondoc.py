"""The one JSON decoder: deep, non-UTF-8, lone-surrogate and non-standard documents are refused
with a reason, never a RecursionError or a value that cannot be stored."""

from __future__ import annotations

import pytest

from imagedrop import jsondoc


@pytest.mark.parametrize(("raw", "why"), [
    (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"a": "\xc3"}', "not UTF-8"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"\\udfff": 1}', "surrogate"),
    (b'["\\ud83d x"]', "surrogate"),
    (b"NaN", "NaN is not a JSON number"),
    (b'{"a": -Infinity}', "Infinity"),
    (b"{not json", "Expecting property name"),
    (b"[" + b"9" * 5000 + b"]", "too long"),
])
def test_refused_with_reason(raw: bytes, why: str) -> None:
    with pytest.raises(jsondoc.JsonRefused, match=why) as info:
        jsondoc.loads(raw, "request body")
    assert str(info.value).startswith("request body is not JSON")


@pytest.mark.parametrize(("raw", "value"), [
    (b"[" * 64 + b"]" * 64, None),
    (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001F600"}),
    (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
    (b'{"a": "[[[[{{{{"}', {"a": "[[[[{{{{"}),
])
def test_accepted(raw: bytes, value: object) -> None:
    decoded = jsondoc.loads(raw)
    if value is not None:
        assert decoded == value


def test_integers_past_64_bits_stay_exact() -> None:
    # The fast parser rounds them to floats; the standard one keeps them.
    assert jsondoc.loads(b'{"x": 18446744073709551616}') == {"x": 18446744073709551616}
    assert jsondoc.loads(b'[100000000000000000001, 1e20]') == [100000000000000000001, 1e20]
