"""Faults between imagedrop and its store and provider, through a real TCP proxy: connections
reset, stalled, answered 500, cut mid-body or dripped. Every job ends completed or failed with a
reason (none stays running), retries stay within their budget, and every stored result decodes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.e2e.procs import ServeProcess, serve_env
from tests.fakes.openai_server import API_KEY as OPENAI_KEY
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.s3 import ibm_s3_client
from tests.faults.proxy import FaultProxy
from tests.fixtures import images
from tests.hostile.harness import API_KEY, Receiver, Target

BUCKET = "faults"
MAX_ATTEMPTS = 4


@dataclass
class Stack:
    """imagedrop on COS and OpenAI, each reached through its own fault proxy."""

    target: Target
    s3: FaultProxy
    openai: FaultProxy
    s3_endpoint: str
    seq: int = 0

    def submit(self, n: int) -> list[str]:
        """n new images (each different: an earlier result is never reused for them)."""
        ids = []
        for _ in range(n):
            self.seq += 1
            image = images.png(16 + self.seq, 16)
            answer = self.target.request(
                "POST", "/process-image-async",
                json_body={"prompt": "make it pop", "filename": "p.png",
                           "image_base64": base64.b64encode(image).decode()},
                headers={"callbackUrl": self.target.receiver.url})
            assert answer.status == 202, answer
            ids.append(answer.json()["job_id"])
        return ids

    def settle(self, ids: list[str]) -> list[dict[str, Any]]:
        """Every job final (completed, or failed with a reason); stored results decode."""
        jobs = [self.target.wait_job(job_id, timeout=60) for job_id in ids]
        client = ibm_s3_client(self.s3_endpoint)
        for job in jobs:
            assert job["attempts"] <= MAX_ATTEMPTS, job
            if job["state"] == "failed":
                assert job["error"], job
                continue
            result = job["result"]
            body = client.get_object(Bucket=result["bucket"], Key=result["key"])["Body"].read()
            with Image.open(io.BytesIO(body)) as im:
                im.load()  # the whole object, not a prefix of it
        return jobs


@pytest.fixture(name="stack", scope="module")
def _stack(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    ibm_s3_client(moto_server).create_bucket(Bucket=BUCKET)
    moto = urlsplit(moto_server)
    receiver = Receiver()
    with FakeOpenAI() as fake:
        s3 = FaultProxy((moto.hostname or "127.0.0.1", moto.port or 80))
        oai = FaultProxy(("127.0.0.1", fake.port))
        target = Target("cos", tmp, receiver, s3_endpoint=moto_server)
        target.data_dir.mkdir()
        target.outside.mkdir()
        env = serve_env(
            IMAGEDROP_DATA_DIR=str(target.data_dir), IMAGEDROP_API_KEYS=API_KEY,
            COS_ENDPOINT=s3.url, COS_BUCKET=BUCKET, COS_REGION="us-east-1",
            COS_ACCESS_KEY_ID="test", COS_SECRET_ACCESS_KEY="test",
            OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=oai.url + "/v1",
            IMAGEDROP_PROVIDER_TIMEOUT="1.5", IMAGEDROP_STORAGE_TIMEOUT="2",
            IMAGEDROP_MAX_ATTEMPTS=str(MAX_ATTEMPTS), IMAGEDROP_RETRY_BASE="0.05",
            IMAGEDROP_RETRY_CAP="0.3", IMAGEDROP_ALLOW_PRIVATE_CALLBACKS="1",
            IMAGEDROP_SWEEP_INTERVAL="0")
        target.proc = ServeProcess(env, tmp / "serve.log")
        try:
            yield Stack(target, s3, oai, moto_server)
        finally:
            target.stop()
            s3.close()
            oai.close()
            receiver.close()


@pytest.mark.parametrize("where", ["s3", "openai"])
@pytest.mark.parametrize("mode", ["reset", "stall", "http500", "cut", "drip"])
def test_fault_then_recovery(stack: Stack, where: str, mode: str) -> None:
    """The fault hits the jobs' first attempts, then passes: they complete (or fail with a
    reason if the budget ran out), and nothing stays running."""
    proxy = stack.s3 if where == "s3" else stack.openai
    before = proxy.hits
    proxy.set(mode)
    try:
        ids = stack.submit(2)
        Target.wait(lambda: proxy.hits > before, 20, f"the {mode} fault to hit {where}")
    finally:
        proxy.set("pass")
    jobs = stack.settle(ids)
    if mode == "drip":  # slow, not broken: it gets through
        assert all(j["state"] == "completed" for j in jobs), jobs
    stack.target.check_after_case()


def test_persistent_provider_500s_exhaust_the_budget(stack: Stack) -> None:
    """A provider that keeps answering 500: each job is tried exactly MAX_ATTEMPTS times and
    fails saying why."""
    stack.openai.set("http500")
    try:
        jobs = stack.settle(stack.submit(2))
    finally:
        stack.openai.set("pass")
    for job in jobs:
        assert job["state"] == "failed" and job["attempts"] == MAX_ATTEMPTS, job
        assert "gave up after" in job["error"], job
    stack.target.check_after_case()


def test_store_down_at_request_time_is_503(stack: Stack) -> None:
    """A folder trigger while the store resets every connection: 503 with Retry-After (or a
    recorded batch), never a 500; recovery afterwards."""
    stack.s3.set("reset")
    try:
        answer = stack.target.request("POST", "/trigger",
                                      json_body={"prefix": "in/", "prompt": "x"})
    finally:
        stack.s3.set("pass")
    assert answer.status in (202, 503), answer
    if answer.status == 503:
        assert int(answer.headers["Retry-After"]) >= 1
    stack.target.check_after_case()
    assert all(j["state"] == "completed" for j in stack.settle(stack.submit(1)))




def test_persistent_provider_stall_fails_within_the_budget(stack: Stack) -> None:
    """A provider that accepts the request and never answers: each attempt ends at the
    provider timeout, and the job fails saying why instead of staying running."""
    stack.openai.set("stall")
    try:
        jobs = stack.settle(stack.submit(1))
    finally:
        stack.openai.set("pass")
    assert jobs[0]["state"] == "failed" and jobs[0]["attempts"] == MAX_ATTEMPTS, jobs
    assert "did not answer" in jobs[0]["error"], jobs
    stack.target.check_after_case()


def test_nothing_left_running(stack: Stack) -> None:
    """After every fault above: no job is still queued or running."""
    for state in ("running", "queued"):
        answer = stack.target.request("GET", f"/jobs?state={state}&limit=100")
        assert answer.status == 200 and answer.json()["items"] == [], answer.json()
