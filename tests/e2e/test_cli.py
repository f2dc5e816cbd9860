"""The `imagedrop` command: one-shot edits, start-up errors, warnings and graceful shutdown."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time

import requests
from PIL import Image

from tests.e2e.procs import serve_env
from tests.fixtures import images


def run_cli(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagedrop", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


class TestEdit:
    """`imagedrop edit IMAGE --prompt TEXT [-o OUT]`."""

    def test_local_edit_writes_result(self, tmp_path):
        src = tmp_path / "dish.jpg"
        src.write_bytes(images.jpeg(64, 40))
        done = run_cli("edit", str(src), "--prompt", "warmer", env=serve_env(), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        out = tmp_path / "dish.edited.png"
        assert done.stdout.strip() == str(out)
        assert Image.open(io.BytesIO(out.read_bytes())).size == (64, 40)

    def test_openai_edit_to_named_output(self, tmp_path, fake_openai):
        src = tmp_path / "a.png"
        src.write_bytes(images.png(32, 32))
        out = tmp_path / "result.png"
        env = serve_env(OPENAI_API_KEY=fake_openai.api_key, OPENAI_BASE_URL=fake_openai.base_url)
        done = run_cli("edit", str(src), "--prompt", "invert", "-o", str(out), env=env,
                       cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert len(fake_openai.calls) == 1 and fake_openai.calls[0]["prompt"] == "invert"
        assert Image.open(out).size == (32, 32)

    def test_not_an_image_is_a_clear_error(self, tmp_path):
        src = tmp_path / "doc.png"
        src.write_bytes(b"%PDF-1.7 not really a png")
        done = run_cli("edit", str(src), "--prompt", "x", env=serve_env(), cwd=tmp_path)
        assert done.returncode == 1 and "PDF" in done.stderr


class TestStartup:
    """Bad settings stop start-up with one message naming every problem."""

    def test_bad_settings_exit_2(self, tmp_path):
        env = serve_env(IMAGEDROP_PORT="x", COS_ENDPOINT="https://s3.example")
        done = run_cli("serve", env=env, cwd=tmp_path)
        assert done.returncode == 2
        assert "IMAGEDROP_PORT" in done.stderr and "COS_BUCKET" in done.stderr

    def test_public_bind_without_key_warns(self, tmp_path, serve):
        proc = serve(serve_env(IMAGEDROP_DATA_DIR=str(tmp_path / "d")), host="0.0.0.0")
        assert proc.stop() == 0
        lines = [json.loads(x) for x in proc.log_path.read_text().splitlines() if x.startswith("{")]
        events = {line["event"] for line in lines}
        assert "no_api_key_configured" in events
        runtime = next(line for line in lines if line["event"] == "imagedrop_runtime")
        assert (runtime["storage"], runtime["ledger"], runtime["provider"]) == (
            "local", "sqlite", "local")


class TestGracefulShutdown:
    """SIGTERM lets in-flight edits finish; nothing is lost."""

    def test_sigterm_drains_in_flight_jobs(self, tmp_path, serve, fake_openai, receiver):
        fake_openai.latency = 1.0
        env = serve_env(IMAGEDROP_DATA_DIR=str(tmp_path / "d"),
                        OPENAI_API_KEY=fake_openai.api_key, OPENAI_BASE_URL=fake_openai.base_url)
        proc = serve(env)
        ids = []
        image = base64.b64encode(images.png()).decode()
        for i in range(3):
            resp = requests.post(proc.url + "/process-image-async-b64",
                                 json={"prompt": f"p{i}", "image_base64": image},
                                 headers={"callbackUrl": receiver.url("/cb")}, timeout=10)
            ids.append(resp.json()["job_id"])
        deadline = time.monotonic() + 30
        while fake_openai.in_flight < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake_openai.in_flight == 3
        assert proc.stop() == 0  # returns once drained
        assert len(fake_openai.calls) == 3
        # The finished results were recorded before exit; restarting delivers any still due.
        again = serve(env)
        got = {json.loads(r.body)["job_id"]: json.loads(r.body)["status"]
               for r in receiver.wait_for(3, path="/cb", timeout=30)}
        assert got == dict.fromkeys(ids, "completed")
        assert len(fake_openai.calls) == 3  # nothing edited twice
        again.stop()


class TestEditErrors:
    """A missing file or an unwritable output: one clear line and a non-zero exit."""

    def test_missing_file(self, tmp_path):
        done = run_cli("edit", str(tmp_path / "nope.jpg"), "--prompt", "x", env=serve_env(),
                       cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            f"imagedrop: cannot use {tmp_path / 'nope.jpg'}: No such file or directory"]

    def test_unwritable_output(self, tmp_path):
        src = tmp_path / "a.png"
        src.write_bytes(images.png(16, 16))
        done = run_cli("edit", str(src), "--prompt", "x", "-o", str(tmp_path / "no" / "o.png"),
                       env=serve_env(), cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "cannot use" in done.stderr and "No such file or directory" in done.stderr
