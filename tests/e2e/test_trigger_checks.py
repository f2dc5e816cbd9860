"""triggers/: the local check script against a running imagedrop, the notification shapes it
sends (the recorded producers' shapes), and the setup scripts' syntax."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from imagedrop.events import parse_notification
from tests.fixtures import images
from tests.unit.events.samples import parse_sample

ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = ROOT / "triggers"
TOKEN = "intake-token-for-the-check-0123"
ODD_KEY = "photos/food/red burger+fries é.jpg"
# Each producer of check.py, and a recorded sample of the same producer to compare with.
RECORDED = {"code-engine": ("ibm-cos", "write-token-odd-key"), "minio": ("minio", "put"),
            "ceph": ("ceph", "put-docs"), "aws-sns": ("sns", "notification-put-1"),
            "aws-eventbridge": ("eventbridge", "object-created-docs")}


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("triggers_check", TRIGGERS / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = load_check()


async def run_check(*args: str) -> tuple[int, list[dict]]:
    """check.py as a user runs it (a subprocess), with --json."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(TRIGGERS / "check.py"), "--json", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not err, err.decode()
    return proc.returncode, json.loads(out)


class TestShapes:
    """Each producer's notification parses as the recorded sample of that producer does."""

    @pytest.mark.parametrize("producer", sorted(check.PRODUCERS))
    def test_one_created_event_with_the_exact_key(self, producer):
        headers, body, query = check.PRODUCERS[producer]("my-bucket", ODD_KEY, "e7a9", 2048,
                                                         TOKEN)
        parsed = parse_notification(headers, body, query)
        [event] = parsed.events
        assert (event.bucket, event.key, event.etag, event.size, event.kind) == (
            "my-bucket", ODD_KEY, "e7a9", 2048, "created")
        recorded = parse_sample(*RECORDED[producer]).events[0]
        assert (event.producer, event.raw_type) == (recorded.producer, recorded.raw_type)

    @pytest.mark.parametrize("producer", sorted(set(check.PRODUCERS) - {"aws-eventbridge"}))
    def test_token_travels_where_the_producer_puts_it(self, producer):
        headers, body, query = check.PRODUCERS[producer]("b", "k.jpg", "e", 1, TOKEN)
        assert parse_notification(headers, body, query).token == TOKEN

    def test_eventbridge_token_is_the_api_key_header(self):
        headers, _, query = check.aws_eventbridge("b", "k.jpg", "e", 1, TOKEN)
        assert headers["X-API-Key"] == TOKEN and not query


class TestAgainstService:
    """check.py against imagedrop started in-process."""

    async def test_every_check_passes_with_the_right_token(self, start_service):
        svc = await start_service({"IMAGEDROP_INTAKE_TOKEN": TOKEN})
        code, verdicts = await run_check("--url", svc.url, "--token", TOKEN)
        assert code == 0, verdicts
        names = [v["name"] for v in verdicts]
        assert names == ["health", "minio-probe", *check.PRODUCERS, "token-enforced"]
        for verdict in verdicts:
            if verdict["name"] in check.PRODUCERS:
                assert "not an image file name" in verdict["detail"]

    async def test_a_wrong_token_fails_every_producer(self, start_service):
        svc = await start_service({"IMAGEDROP_INTAKE_TOKEN": TOKEN})
        code, verdicts = await run_check("--url", svc.url, "--token", "not-the-token-at-all")
        assert code == 1
        failed = {v["name"] for v in verdicts if not v["ok"]}
        # The probe carries the token like MinIO's does: a wrong one fails it too.
        assert failed == {"minio-probe", *check.PRODUCERS}
        assert all("401" in v["detail"] for v in verdicts if v["name"] in failed)

    async def test_an_open_intake_is_reported(self, start_service):
        svc = await start_service()  # no intake token, no API keys
        code, verdicts = await run_check("--url", svc.url, "--token", TOKEN,
                                         "--producer", "minio")
        assert code == 1
        [enforced] = [v for v in verdicts if v["name"] == "token-enforced"]
        assert not enforced["ok"] and "IMAGEDROP_INTAKE_TOKEN" in enforced["detail"]

    async def test_a_governed_image_is_recorded_once(self, start_service, tmp_path):
        svc = await start_service({"IMAGEDROP_INTAKE_TOKEN": TOKEN,
                                   "IMAGEDROP_SWEEP_INTERVAL": "0"})
        folder = tmp_path / "data" / "imagedrop" / "inbox"
        folder.mkdir(parents=True)
        (folder / "imagedrop.yaml").write_text("prompt: warmer\nsettle_seconds: 0\n")
        (folder / "a.png").write_bytes(images.png(40, 30))
        info = await svc.storage.head("imagedrop", "inbox/a.png")
        code, verdicts = await run_check("--url", svc.url, "--token", TOKEN, "--key",
                                         "inbox/a.png", "--etag", info.etag)
        assert code == 0, verdicts
        details = [v["detail"] for v in verdicts if v["name"] in check.PRODUCERS]
        assert sum("recorded 1 new job" in d for d in details) == 1
        assert sum("duplicate" in d for d in details) == len(check.PRODUCERS) - 1

    async def test_no_service_is_one_clear_failure(self):
        from tests.e2e.conftest import free_port

        code, verdicts = await run_check("--url", f"http://127.0.0.1:{free_port()}")
        assert code == 1 and [v["name"] for v in verdicts] == ["health"]


class TestSetupScripts:
    """The setup scripts are valid bash and name the store commands the docs promise."""

    SCRIPTS = sorted(TRIGGERS.glob("*/setup*.sh"))

    @pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(TRIGGERS)))
    def test_bash_syntax(self, script):
        bash = shutil.which("bash")
        assert bash
        subprocess.run([bash, "-n", str(script)], check=True)
        assert "run_check" in script.read_text()  # each ends with the local check

    def test_commands_and_flags(self):
        text = {p.parent.name + "/" + p.name: p.read_text() for p in self.SCRIPTS}
        ce = text["code-engine/setup.sh"]
        assert '"Notifications Manager"' in ce and "--path /events" in ce
        assert "--extension \"token=" in ce
        assert "arn:minio:sqs::IMAGEDROP:webhook" in text["minio/setup.sh"]
        assert '\\"persistent\\": \\"true\\"' in text["ceph/setup.sh"]
        assert "--protocol https" in text["aws/setup-sns.sh"]
        assert "EventBridgeConfiguration" in text["aws/setup-eventbridge.sh"]

    def test_minio_env_names_the_documented_variables(self):
        names = {line.split("=", 1)[0] for line in (TRIGGERS / "minio" / "minio.env")
                 .read_text().splitlines() if line and not line.startswith("#")}
        assert names == {f"MINIO_NOTIFY_WEBHOOK_{part}_IMAGEDROP" for part in
                         ("ENABLE", "ENDPOINT", "AUTH_TOKEN", "QUEUE_DIR", "QUEUE_LIMIT")}
