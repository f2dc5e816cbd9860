"""A hostile caller's view of a real `imagedrop serve` (local folder or COS via moto) with
planted secrets: raw HTTP, and the checks every case ends with (healthy, no 5xx, no secret or
error in the log, nothing outside the data folder)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.e2e.procs import ServeProcess, serve_env
from tests.fakes.s3 import ibm_s3_client

BUCKET = "imagedrop-test"
API_KEY = "ak-PLANTED-apikey-7f3a9c21"
INTAKE_TOKEN = "it-PLANTED-intake-51bd77e0"
HOOK_SECRET = "whsec_UExBTlRFRC1ob29rLXNlY3JldC0xMjM0NTY3OA=="
COS_SECRET = "cs-PLANTED-cos-secret-99aa"
#: Any of these in a log line is a leak (the PLANTED marker also catches values the cases
#: send in user-info, query strings and tokens).
PLANTED = ("PLANTED", HOOK_SECRET.removeprefix("whsec_"), "UExBTlRFRC")


@dataclass
class Answer:
    """One HTTP answer as a hostile client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback callback receiver that answers 200 to everything and counts requests."""

    def __init__(self) -> None:
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.count += 1
                if self.path.endswith("/redirect"):  # an SSRF attempt by a receiver
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cb"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Target:
    """A running imagedrop under attack, and what it has said so far."""

    kind: str  # "local" | "cos"
    tmp: Path
    receiver: Receiver
    s3_endpoint: str | None = None
    proc: ServeProcess | None = None
    log_offset: int = 0
    answers: list[Answer] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def outside(self) -> Path:
        return self.tmp / "outside"

    @property
    def url(self) -> str:
        assert self.proc is not None
        return self.proc.url

    def start(self) -> None:
        self.data_dir.mkdir(parents=True)
        self.outside.mkdir()
        env = serve_env(
            IMAGEDROP_DATA_DIR=str(self.data_dir), IMAGEDROP_API_KEYS=API_KEY,
            IMAGEDROP_INTAKE_TOKEN=INTAKE_TOKEN, IMAGEDROP_HOOK_SECRET_MAIN=HOOK_SECRET,
            IMAGEDROP_ALLOW_PRIVATE_CALLBACKS="1", IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS="1",
            IMAGEDROP_MAX_BODY_BYTES=str(4 * 1024 * 1024),
            IMAGEDROP_MAX_EVENT_BYTES=str(64 * 1024), IMAGEDROP_SWEEP_INTERVAL="0",
            IMAGEDROP_MAX_IMAGE_PIXELS="40000000", IMAGEDROP_STORAGE_TIMEOUT="5",
            IMAGEDROP_LOG_LEVEL="INFO")
        if self.kind == "cos":
            assert self.s3_endpoint
            ibm_s3_client(self.s3_endpoint).create_bucket(Bucket=BUCKET)
            env |= {"COS_ENDPOINT": self.s3_endpoint, "COS_BUCKET": BUCKET,
                    "COS_REGION": "us-east-1", "COS_ACCESS_KEY_ID": "test",
                    "COS_SECRET_ACCESS_KEY": COS_SECRET}
        self.proc = ServeProcess(env, self.tmp / "serve.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    # -- arranging objects --------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        """Drop an object as a bucket writer would (straight into the store)."""
        if self.kind == "cos":
            assert self.s3_endpoint
            ibm_s3_client(self.s3_endpoint).put_object(Bucket=BUCKET, Key=key, Body=data)
        else:
            path = self.data_dir / BUCKET / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    # -- talking to it ------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None,
                json_body: Any = None, headers: dict[str, str] | None = None,
                auth: bool = True, timeout: float = 20) -> Answer:
        hdrs = {"Authorization": f"Bearer {API_KEY}"} if auth else {}
        hdrs |= headers or {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        resp = requests.request(method, self.url + path, data=body, headers=hdrs,
                                timeout=timeout, allow_redirects=False)
        answer = Answer(resp.status_code, dict(resp.headers), resp.content)
        self.answers.append(answer)
        return answer

    def raw(self, data: bytes, timeout: float = 10) -> Answer:
        """Bytes straight onto a connection: what a broken or malicious client sends."""
        assert self.proc is not None
        with socket.create_connection(("127.0.0.1", self.proc.port), timeout=timeout) as sock:
            sock.sendall(data)
            with sock.makefile("rb") as stream:
                reply = stream.read()
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        headers = dict(line.decode("latin-1").split(": ", 1) for line in lines[1:]
                       if b": " in line)
        answer = Answer(status, headers, body)
        self.answers.append(answer)
        return answer

    def wait_job(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        """The job once it is completed or failed (a deadline, not a fixed sleep)."""
        return self.wait(lambda: self._final(job_id), timeout, f"job {job_id} to end")

    def _final(self, job_id: str) -> dict[str, Any] | None:
        answer = self.request("GET", f"/jobs/{job_id}")
        doc = answer.json() if answer.status == 200 else None
        return doc if doc and doc.get("state") in ("completed", "failed") else None

    @staticmethod
    def wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    # -- what every case ends with ------------------------------------------------------
    def new_log_lines(self) -> list[str]:
        assert self.proc is not None
        if not self.proc._log.closed:
            self.proc._log.flush()
        with open(self.proc.log_path, "rb") as fh:
            fh.seek(self.log_offset)
            data = fh.read()
        self.log_offset += len(data)
        return data.decode(errors="replace").splitlines()

    def check_after_case(self) -> None:
        # A 503 with Retry-After is the answer while a store or ledger is down; nothing else.
        served = [(a.status, a.headers.get("Retry-After")) for a in self.answers]
        self.answers.clear()
        assert all(s < 500 or (s == 503 and wait) for s, wait in served), f"a 5xx: {served}"
        health = self.request("GET", "/health", auth=False)
        self.answers.clear()
        assert health.status == 200 and health.json() == {"ok": True}
        assert self.proc is not None and self.proc.proc.poll() is None, "imagedrop died"
        lines = self.new_log_lines()
        leaks = [line for line in lines if any(p in line for p in PLANTED)]
        assert not leaks, f"a planted secret in the log: {leaks[:3]}"
        crashed = [line[:600] for line in lines if '"level": "error"' in line]
        assert not crashed, f"an error in the log: {crashed[:2]}"
        names = sorted(p.name for p in self.outside.rglob("*"))
        assert names in (["secret.png"], []), f"written outside the data folder: {names}"
