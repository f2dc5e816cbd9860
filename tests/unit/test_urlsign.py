"""Signed local download links: sign, build and verify without any I/O."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from imagedrop.storage.urlsign import download_url, sign_download, verify_download

KEY = b"k" * 32
NOW = 1_700_000_000.0
LATER = int(NOW) + 600


def _parts(url: str) -> tuple[str, str, str, str]:
    """(bucket, key, expires, sig) as the download route would see them."""
    split = urlsplit(url)
    _, files, bucket, key = split.path.split("/", 3)
    assert files == "files"
    query = parse_qs(split.query)
    return unquote(bucket), unquote(key), query["expires"][0], query["sig"][0]


class TestSignDownload:
    """sign_download is a deterministic hex HMAC over an unambiguous message."""

    def test_is_hex_sha256_and_deterministic(self) -> None:
        sig = sign_download(KEY, "b", "k.png", LATER)
        assert len(sig) == 64 and int(sig, 16) >= 0
        assert sig == sign_download(KEY, "b", "k.png", LATER)

    def test_field_boundaries_matter(self) -> None:
        assert sign_download(KEY, "ab", "c", LATER) != sign_download(KEY, "a", "bc", LATER)
        assert sign_download(KEY, "a", "b1", 23) != sign_download(KEY, "a", "b", 123)


class TestDownloadUrl:
    """download_url builds /files/{bucket}/{key}?expires=&sig= with a percent-encoded key."""

    def test_shape(self) -> None:
        url = download_url("http://h:8/", KEY, "bk", "a/b c+d.png", LATER)
        assert url.startswith("http://h:8/files/bk/a/b%20c%2Bd.png?")
        assert f"expires={LATER}" in url and "sig=" in url

    def test_roundtrip_verifies(self) -> None:
        url = download_url("http://h", KEY, "bk", "dir/photo.jpg", LATER)
        bucket, key, expires, sig = _parts(url)
        assert (bucket, key) == ("bk", "dir/photo.jpg")
        assert verify_download(KEY, bucket, key, expires, sig, now=NOW)

    @pytest.mark.parametrize("key", ["with space.png", "plus+sign.png", "ünï/cødé 写真.png",
                                     "percent%20literal.png", "q?uery&x=1#frag.png"])
    def test_awkward_keys_roundtrip(self, key: str) -> None:
        bucket, got, expires, sig = _parts(download_url("http://h", KEY, "bk", key, LATER))
        assert got == key
        assert verify_download(KEY, bucket, got, expires, sig, now=NOW)


class TestVerifyDownload:
    """verify_download refuses expired, tampered, foreign or malformed links."""

    def _sig(self) -> str:
        return sign_download(KEY, "bk", "a.png", LATER)

    def test_expired(self) -> None:
        assert not verify_download(KEY, "bk", "a.png", str(LATER), self._sig(), now=LATER)
        assert not verify_download(KEY, "bk", "a.png", str(LATER), self._sig(), now=LATER + 1)

    def test_tampered_key_bucket_or_expiry(self) -> None:
        sig = self._sig()
        assert not verify_download(KEY, "bk", "b.png", str(LATER), sig, now=NOW)
        assert not verify_download(KEY, "other", "a.png", str(LATER), sig, now=NOW)
        assert not verify_download(KEY, "bk", "a.png", str(LATER + 3600), sig, now=NOW)

    def test_wrong_signing_key(self) -> None:
        assert not verify_download(b"x" * 32, "bk", "a.png", str(LATER), self._sig(), now=NOW)

    @pytest.mark.parametrize(("expires", "sig"), [
        ("", "00"), ("abc", "00"), ("-5", "00"), ("1e12", "00"), ("١٢٣", "00"),
        (str(LATER), ""), (str(LATER), "zz"), (str(LATER), "é" * 64), ("9" * 400, "00"),
    ])
    def test_garbage_is_false(self, expires: str, sig: str) -> None:
        assert verify_download(KEY, "bk", "a.png", expires, sig, now=NOW) is False


def test_signature_compared_exactly() -> None:
    """An upper-cased (or otherwise altered) signature is not the signature."""
    from imagedrop.storage.urlsign import sign_download, verify_download

    sig = sign_download(b"k" * 32, "b", "a.png", 2_000_000_000)
    assert verify_download(b"k" * 32, "b", "a.png", "2000000000", sig, now=0)
    assert not verify_download(b"k" * 32, "b", "a.png", "2000000000", sig.upper(), now=0)
