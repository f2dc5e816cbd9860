"""The local download-link key: configured, or created once and shared by every process."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from imagedrop.config import load_settings
from imagedrop.runtime import _signing_key

KEY_FILE = ".imagedrop-url-key"


def _create_together(data_dir: Path, n: int) -> list[bytes]:
    """Run `n` first-time creators at once (a barrier lines them up) and collect their keys."""
    settings = load_settings({"IMAGEDROP_DATA_DIR": str(data_dir)})
    barrier = threading.Barrier(n)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(10)
            keys.append(_signing_key(settings))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    return keys


class TestSigningKey:
    """_signing_key() makes one key per data folder, private from its first byte."""

    def test_configured_key_is_used(self, tmp_path: Path) -> None:
        """IMAGEDROP_URL_SIGNING_KEY wins, and nothing is written."""
        settings = load_settings({"IMAGEDROP_DATA_DIR": str(tmp_path),
                                  "IMAGEDROP_URL_SIGNING_KEY": "configured-key"})
        assert _signing_key(settings) == b"configured-key"
        assert not (tmp_path / KEY_FILE).exists()

    def test_created_once_private_and_reused(self, tmp_path: Path) -> None:
        """The first call creates a 0600 key file; later calls read the same key."""
        settings = load_settings({"IMAGEDROP_DATA_DIR": str(tmp_path / "data")})
        first = _signing_key(settings)
        assert len(first) == 64 and _signing_key(settings) == first
        path = tmp_path / "data" / KEY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]

    def test_concurrent_creators_agree(self, tmp_path: Path) -> None:
        """Creators racing on a fresh folder all end with the one key on disk, no temp files."""
        for round_no in range(20):
            data_dir = tmp_path / str(round_no)
            keys = _create_together(data_dir, 8)
            on_disk = (data_dir / KEY_FILE).read_text().strip().encode()
            assert set(keys) == {on_disk}
            assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]
