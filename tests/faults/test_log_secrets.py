"""A credential in a URL never reaches a log line: a COS endpoint with user-info that cannot be
reached fails sweeps, triggers and readiness checks, and every line stays clean."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import free_port
from tests.e2e.procs import ServeProcess, serve_env
from tests.hostile.harness import API_KEY, Receiver, Target

PASSWORD = "pw-PLANTED-in-endpoint-0a1b"


def test_endpoint_credentials_never_logged(tmp_path: Path) -> None:
    receiver = Receiver()
    target = Target("cos", tmp_path, receiver)
    target.data_dir.mkdir()
    target.outside.mkdir()
    endpoint = f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there
    env = serve_env(IMAGEDROP_DATA_DIR=str(target.data_dir), IMAGEDROP_API_KEYS=API_KEY,
                    COS_ENDPOINT=endpoint, COS_BUCKET="photos", COS_REGION="us-east-1",
                    COS_ACCESS_KEY_ID="AKPLANTEDKEYID", COS_SECRET_ACCESS_KEY="sk-PLANTED-x",
                    IMAGEDROP_SWEEP_INTERVAL="0.2", IMAGEDROP_STORAGE_TIMEOUT="1",
                    IMAGEDROP_LOG_LEVEL="DEBUG")
    target.proc = ServeProcess(env, tmp_path / "serve.log")
    try:
        answer = target.request("POST", "/trigger", json_body={"prefix": "in/", "prompt": "x"})
        assert answer.status in (202, 503), answer
        assert PASSWORD not in answer.body.decode()
        ready = target.request("GET", "/ready")
        assert ready.status == 503 and PASSWORD not in ready.body.decode()
        config = target.request("GET", "/cos/config")
        assert PASSWORD not in config.body.decode()
        # Several sweeps fail meanwhile (a condition on the log, with a deadline).
        seen: list[str] = []
        Target.wait(lambda: seen.extend(target.new_log_lines()) or
                    sum("sweep" in line for line in seen) >= 2, 20, "failed sweeps logged")
        assert target.request("GET", "/health", auth=False).status == 200
    finally:
        target.stop()
        receiver.close()
    seen.extend(target.new_log_lines())
    leaks = [line for line in seen if "PLANTED" in line]
    assert not leaks, leaks[:3]
    assert not [line for line in seen if "Traceback" in line and "Unavailable" in line]
