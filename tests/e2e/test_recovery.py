"""Recovery in seconds: a SIGKILLed process's work is taken over as soon as its death shows,
never by waiting out its leases; and a live process's work is never taken, even while it is
frozen for longer than its leases.

Leases here are ten minutes long, so any recovery within the tests' deadlines is the liveness
mechanism's, not a lease running out.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from collections import Counter

import requests  # a plain sync client: these tests drive processes, not a loop

from tests.e2e.procs import serve_env
from tests.fixtures import images

LONG_LEASE = "600"


def batch_folder(tmp_path, n: int):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    photos = data / "imagedrop" / "photos"
    photos.mkdir(parents=True)
    for i in range(n):
        (photos / f"p{i:02d}.png").write_bytes(images.png(40 + i, 40))
    return data


def local_env(data, fake_openai, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return serve_env(**{
        "IMAGEDROP_DATA_DIR": str(data), "OPENAI_API_KEY": fake_openai.api_key,
        "OPENAI_BASE_URL": fake_openai.base_url, "IMAGEDROP_LEASE_SECONDS": LONG_LEASE,
        "IMAGEDROP_REAP_INTERVAL": "0.2", "IMAGEDROP_SWEEP_INTERVAL": "0",
        "COS_INPUT_PREFIX": "photos/", "COS_OUTPUT_PREFIX": "edited/", **extra})


def wait_until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s"
        time.sleep(0.05)
    return value


class TestRestart:
    """SIGKILL mid-batch, restart at once: the rest runs now, not after the leases."""

    def test_jobs_of_the_killed_process_resume_at_once(self, tmp_path, serve, fake_openai,
                                                       receiver):
        n, concurrency = 16, 4
        data = batch_folder(tmp_path, n)
        fake_openai.latency = 0.5
        env = local_env(data, fake_openai, IMAGEDROP_CONCURRENCY=str(concurrency))
        first = serve(env)
        resp = requests.post(first.url + "/batch-process-images", json={"prompt": "p"},
                             headers={"callbackUrl": receiver.url("/summary")}, timeout=10)
        assert resp.status_code == 202
        batch_id = resp.json()["job_id"]
        fake_openai.wait_for_calls(concurrency + 2, timeout=60)
        first.kill()  # with edits in flight: their jobs are "running" under a dead owner
        assert len(fake_openai.calls) < n
        killed_at = time.monotonic()

        second = serve(env)
        summary = json.loads(receiver.wait_for(1, path="/summary", timeout=60)[0].body)
        assert time.monotonic() - killed_at < 60  # far inside the 600 s lease
        assert summary["job_id"] == batch_id and summary["processed"] == n, summary
        outputs = sorted(p.name for p in (data / "imagedrop" / "edited" / batch_id).iterdir())
        assert outputs == [f"p{i:02d}.png" for i in range(n)]
        # Only the edits in flight at the kill were paid for twice.
        assert len(fake_openai.calls) <= n + concurrency
        second.stop()
        assert len(receiver.requests_for("/summary")) == 1

    def test_a_callback_in_flight_at_the_kill_is_sent_again_at_once(
        self, tmp_path, serve, fake_openai, receiver,
    ):
        data = tmp_path / "data"
        # The first delivery hangs in the receiver: it is in flight when the process dies.
        receiver.respond("/cb", [(200, {}, 30.0)])
        env = local_env(data, fake_openai, IMAGEDROP_CALLBACK_TIMEOUT="40")  # lease: 110 s
        first = serve(env)
        body = {"prompt": "p", "image_base64": base64.b64encode(images.png()).decode()}
        resp = requests.post(first.url + "/process-image-async-b64", json=body,
                             headers={"callbackUrl": receiver.url("/cb")}, timeout=10)
        assert resp.status_code == 202
        receiver.wait_for(1, path="/cb", timeout=30)
        first.kill()
        second = serve(env)
        [hung, again] = receiver.wait_for(2, path="/cb", timeout=30)
        assert json.loads(again.body)["status"] == "completed"
        assert json.loads(again.body) == json.loads(hung.body)
        second.stop()


class TestFrozenOwner:
    """A process frozen (SIGSTOP) far past its leases keeps its work; thawed, it finishes."""

    def test_a_stalled_live_owner_is_never_taken_over(self, tmp_path, serve, fake_openai,
                                                      receiver):
        n = 12
        data = batch_folder(tmp_path, n)
        fake_openai.latency = 1.0
        short = {"IMAGEDROP_LEASE_SECONDS": "1", "IMAGEDROP_REAP_INTERVAL": "0.1"}
        frozen = serve(local_env(data, fake_openai, IMAGEDROP_CONCURRENCY="4", **short))
        resp = requests.post(frozen.url + "/batch-process-images", json={"prompt": "p"},
                             headers={"callbackUrl": receiver.url("/summary")}, timeout=10)
        assert resp.status_code == 202
        held = {c.image_sha256 for c in fake_openai.wait_for_calls(4, timeout=30)}
        frozen.proc.send_signal(signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            helper = serve(local_env(data, fake_openai, IMAGEDROP_CONCURRENCY="8", **short))
            # The helper does the rest of the folder ...
            wait_until(lambda: len({c.image_sha256 for c in fake_openai.calls}) >= n, 60,
                       "the other images edited by the helper")
            # ... and, with every lease of the frozen process long expired, never its four.
            wait_until(lambda: time.monotonic() - stopped_at > 5, 10, "leases expired 5 times")
            again = Counter(c.image_sha256 for c in fake_openai.calls)
            assert all(again[sha] == 1 for sha in held), "a live owner's job was taken over"
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        summary = json.loads(receiver.wait_for(1, path="/summary", timeout=60)[0].body)
        assert summary["processed"] == n and summary["failed"] == 0, summary
        assert Counter(c.image_sha256 for c in fake_openai.calls).most_common(1)[0][1] == 1
        helper.stop()
