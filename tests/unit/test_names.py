"""One check of bucket names, keys and prefixes for both stores: a caller error that says what."""

from __future__ import annotations

import pytest

from imagedrop.storage import names
from imagedrop.storage.names import InvalidObjectName

BAD_KEYS_EVERYWHERE = ["", "../x.png", "a/../b.png", "/abs.png", "a//b.png", "a/./b.png",
                       "nul\0.png", "line\nbreak.png", "tab\t.png", "del\x7f.png",
                       "\udc80.png", "k" * 1025, "é" * 513]
BAD_KEYS_LOCAL = [".hidden.png", "a/.git/config", "a\\b.png", "n" * 250 + ".png"]
GOOD_KEYS = ["a.png", "with space/写真 1.jpg", "a+b=c&d.png", "n" * 245 + ".png",
             "deep/" * 50 + "x.png"]


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("key", BAD_KEYS_EVERYWHERE)
def test_bad_keys(key: str, local: bool) -> None:
    with pytest.raises(InvalidObjectName) as err:
        names.check_key(key, local=local)
    assert err.value.status == 400 and err.value.field == "key"
    assert "\0" not in str(err.value) and "\n" not in str(err.value)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("key", BAD_KEYS_LOCAL)
def test_bad_local_keys(key: str) -> None:
    with pytest.raises(InvalidObjectName):
        names.check_key(key, local=True)


@pytest.mark.parametrize("local", [True, False])
@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys(key: str, local: bool) -> None:
    names.check_key(key, local=local)


@pytest.mark.parametrize("prefix", ["", "photos/", "photos/fo", "a/b/"])
def test_good_prefixes(prefix: str) -> None:
    names.check_prefix(prefix, local=True)
    names.check_prefix(prefix, local=False)


@pytest.mark.parametrize("prefix", ["../", "a//b/", "a/../", "/", "a\0/", "..", "a/../b"])
def test_bad_prefixes(prefix: str) -> None:
    for local in (True, False):
        if prefix == ".." and not local:
            continue  # S3: ".." may start a partial name (e.g. "..foo")
        with pytest.raises(InvalidObjectName):
            names.check_prefix(prefix, local=local)


@pytest.mark.parametrize("bucket", ["", "..", ".hidden", "a/b", "a\\b", "nul\0", "x" * 256])
def test_bad_local_buckets(bucket: str) -> None:
    with pytest.raises(InvalidObjectName):
        names.check_bucket(bucket, local=True)


@pytest.mark.parametrize("bucket", ["", "..", "ab", "UPPER", "a_b", "a..b", "-ab", "x" * 64])
def test_bad_s3_buckets(bucket: str) -> None:
    with pytest.raises(InvalidObjectName):
        names.check_bucket(bucket, local=False)


def test_good_buckets() -> None:
    names.check_bucket("imagedrop-test", local=False)
    names.check_bucket("My Photos", local=True)
