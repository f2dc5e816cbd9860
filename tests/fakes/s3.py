"""S3 over real HTTP for tests: one in-process moto server per session, reset before each test.

Fixtures: `moto_server` (session), `s3_endpoint`, `cos_settings`; helper `ibm_s3_client`.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import ibm_boto3
import pytest
from ibm_botocore.client import Config
from moto.server import ThreadedMotoServer

from imagedrop.config import StorageSettings

TEST_BUCKET = "imagedrop-test"


@pytest.fixture(name="moto_server", scope="session")
def _moto_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL.

    moto posts SNS HTTP notifications synchronously inside the S3 request: never make S3 calls
    on the event loop that serves such a target (the stores run them in threads).
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(name="s3_endpoint")
def _s3_endpoint(moto_server: str) -> str:
    """The moto endpoint with all state (buckets, objects, topics) cleared."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    return moto_server


@pytest.fixture(name="cos_settings")
def _cos_settings(s3_endpoint: str) -> StorageSettings:
    """StorageSettings for COS mode against the fresh moto server (bucket not yet created)."""
    return StorageSettings(
        cos_endpoint=s3_endpoint,
        cos_region="us-east-1",
        cos_bucket=TEST_BUCKET,
        cos_access_key_id="test",
        cos_secret_access_key="test",
    )


def ibm_s3_client(endpoint: str) -> Any:
    """A raw, synchronous ibm_boto3 S3 client for tests that arrange objects directly.

    Call it from a thread (asyncio.to_thread) inside async tests, never on the loop itself.
    """
    return ibm_boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )


__all__ = ["TEST_BUCKET", "ibm_s3_client"]
