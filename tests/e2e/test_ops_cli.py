"""The operator commands against a running service: listings as tables and JSON, replay,
subscribers, and the key taken from IMAGEDROP_API_KEY."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from standardwebhooks.webhooks import Webhook

from imagedrop.cli import main
from tests.fixtures import images

pytestmark = pytest.mark.asyncio
KEY = "cli-key"


async def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `imagedrop ARGS` off this loop (which serves the service) and capture its output."""
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _service_logs_to_stderr():
    """The service runs in this process: keep its log lines out of the CLI's stdout."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    yield
    structlog.reset_defaults()


@pytest.fixture(name="svc")
async def _svc(start_service, monkeypatch):
    monkeypatch.setenv("IMAGEDROP_API_KEY", KEY)
    svc = await start_service({"IMAGEDROP_API_KEYS": KEY, "IMAGEDROP_CALLBACK_SCHEDULE": "0",
                               "IMAGEDROP_HOOK_SECRET_MAIN":
                                   "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    svc.headers = {"Authorization": f"Bearer {KEY}"}
    return svc


async def jobs(svc, receiver, n: int, prompt: str = "warmer") -> list[str]:
    ids = []
    for _ in range(n):
        status, body = await svc.post("/process-image-async-b64", {
            "prompt": prompt, "image_base64": base64.b64encode(images.png()).decode()},
            callback=receiver.url("/cb"))
        assert status == 202
        ids.append(body["job_id"])
    for job_id in ids:
        await svc.wait_delivered(job_id)
    return ids


class TestJobs:
    async def test_list_table_json_and_every_page(self, svc, receiver, capsys):
        ids = await jobs(svc, receiver, 3)
        code, out, _ = await cli(capsys, "jobs", "list", "--url", svc.url)
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["ID", "STATE", "KIND"]
        assert [line.split()[0] for line in lines[1:]] == ids[::-1]
        code, out, _ = await cli(capsys, "jobs", "list", "--url", svc.url, "--json",
                                 "--limit", "2", "--all", "--state", "completed")
        assert [j["id"] for j in json.loads(out)] == ids[::-1]
        code, out, _ = await cli(capsys, "jobs", "show", ids[0], "--url", svc.url)
        assert code == 0 and json.loads(out)["state"] == "completed"

    async def test_errors_are_one_line(self, svc, capsys, monkeypatch):
        code, out, err = await cli(capsys, "jobs", "list", "--url", svc.url, "--state", "x")
        assert code == 1 and "imagedrop: 400: state:" in err and out == ""
        monkeypatch.setenv("IMAGEDROP_API_KEY", "wrong")
        code, _, err = await cli(capsys, "jobs", "list", "--url", svc.url)
        [line] = [x for x in err.splitlines() if x.startswith("imagedrop:")]
        assert code == 1 and line.startswith("imagedrop: 401: missing or invalid API key")
        assert "wrong" not in err


class TestDeliveriesAndReplay:
    async def test_failed_callbacks_listed_and_replayed(self, svc, receiver, capsys):
        receiver.respond("/cb", [503])
        [job_id] = await jobs(svc, receiver, 1)
        code, out, _ = await cli(capsys, "deliveries", "list", "--url", svc.url, "--state",
                                 "failed", "--json")
        [failed] = json.loads(out)
        assert failed["job_id"] == job_id and failed["attempts"][0]["status"] == 503
        code, out, _ = await cli(capsys, "replay", "--url", svc.url, "--endpoint",
                                 receiver.url("/cb"))
        assert code == 0 and out.strip() == "queued again: 0 job(s), 1 delivery(ies)"
        await svc.wait_delivered(job_id)
        assert [r.path for r in receiver.requests_for("/cb")] == ["/cb", "/cb"]


class TestSubscribersAndSecrets:
    async def test_disable_enable_test(self, svc, receiver, capsys):
        url = receiver.url("/hook")
        code, out, _ = await cli(capsys, "subscribers", "disable", url, "--url", svc.url,
                                 "--reason", "maintenance")
        assert code == 0 and out.strip() == f"{url}: disabled"
        code, out, _ = await cli(capsys, "subscribers", "list", "--url", svc.url)
        assert url in out and "disabled" in out
        code, out, _ = await cli(capsys, "subscribers", "enable", url, "--url", svc.url)
        assert out.strip() == f"{url}: active"
        code, out, _ = await cli(capsys, "subscribers", "test", url, "--url", svc.url)
        assert code == 0 and out.startswith("delivered: 200")
        receiver.respond("/down", [500])
        code, out, _ = await cli(capsys, "subscribers", "test", receiver.url("/down"),
                                 "--url", svc.url)
        assert code == 1 and out.startswith("NOT delivered: 500")

    async def test_secret_new_needs_no_service(self, capsys):
        code, out, _ = await cli(capsys, "secret", "new")
        secret = out.strip()
        assert code == 0 and secret.startswith("whsec_")
        signature = Webhook(secret).sign("msg_1", datetime.now(UTC), "{}")
        assert signature.startswith("v1,")  # the reference library takes it as a secret


class TestEstimate:
    async def test_what_a_folder_would_cost(self, svc, capsys):
        folder = Path(svc.settings.storage.data_dir) / "imagedrop" / "est"
        folder.mkdir(parents=True)
        manifest = folder / "imagedrop.yaml"
        manifest.write_text("prompt: warmer\nbudget:\n  edits_per_day: 10\n")
        for i in range(3):
            (folder / f"p{i}.png").write_bytes(images.png(30 + i, 20))
        code, out, err = await cli(capsys, "manifest", "check", str(manifest), "--estimate",
                                   "imagedrop/est/", "--url", svc.url)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("ok: prompt")
        assert lines[1] == "imagedrop/est/: 3 images: 3 to edit, 0 already done, 0 skipped"
        # This service edits locally: nothing to pay.
        assert lines[2] == "estimated cost: US$0.0000 (prices as of 2026-11-05)"

    async def test_refusals(self, svc, capsys):
        code, _, err = await cli(capsys, "manifest", "check", "--estimate", "nobucket",
                                 "--url", svc.url)
        assert code == 1 and "BUCKET/PREFIX" in err
        code, _, err = await cli(capsys, "manifest", "check", "--estimate", "imagedrop/none/",
                                 "--url", svc.url)
        assert code == 1 and "no imagedrop.yaml governs" in err
        code, _, err = await cli(capsys, "manifest", "check")
        assert code == 2 and "--estimate" in err
