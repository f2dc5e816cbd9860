#!/usr/bin/env python3
"""Drop a file, end to end, in one command: start `imagedrop serve`, a signature-checking
receiver, put a manifest and two generated food photos in a folder, wait for the signed events,
and say what happened.

    python examples/demo.py            # embedded default: local folder, SQLite, local provider

With no credentials it runs entirely in a temporary folder. With `COS_ENDPOINT` (and the other
COS_* settings) set, it uploads into `COS_BUCKET` under `imagedrop-demo/<run>/` with ibm_boto3
and asks for the folder with `POST /trigger` (no store notifications reach this machine); with
`OPENAI_API_KEY` set, the edits are made by OpenAI at `quality: low`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import mimetypes
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import yaml
from aiohttp import web

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling example modules, when run as a script
import make_samples  # noqa: E402
import receiver  # noqa: E402

from imagedrop.config import Settings, load_settings  # noqa: E402

IMAGES = make_samples.GROUPS["food"]
FOLDER = "photos/food/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(workdir: Path, secret: str) -> dict[str, str]:
    """imagedrop's environment: yours (COS_*, OPENAI_*), minus other IMAGEDROP_* settings, plus
    a private data folder, quick sweeps and loopback callbacks for the local receiver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEDROP_")}
    env.update({
        "IMAGEDROP_DATA_DIR": str(workdir / "data"),
        "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": "1",
        "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS": "1",
        "IMAGEDROP_POLL_INTERVAL": "0.2",
        "IMAGEDROP_CALLBACK_SCHEDULE": "0,1,2,5,10",
        "IMAGEDROP_LOG_JSON": "1",
        "IMAGEDROP_HOOK_SECRET_DEMO": secret,
        # On the local folder a sweep notices drops; on COS the demo triggers the folder itself.
        "IMAGEDROP_SWEEP_INTERVAL": "0" if env.get("COS_ENDPOINT") else "0.3",
    })
    return env


def demo_manifest(hook_url: str, settings: Settings) -> bytes:
    """The food-photos example manifest, with this run's receiver as its only subscriber."""
    manifest: dict[str, Any] = yaml.safe_load((HERE / "manifests" / "food-photos.yaml").read_text())
    manifest["subscribers"] = [{"url": hook_url, "secret": "env:IMAGEDROP_HOOK_SECRET_DEMO"}]
    manifest["settle_seconds"] = 1  # the two drops are one batch
    if settings.provider.kind == "openai":
        manifest["quality"] = "low"  # a demo should not cost much
    return yaml.safe_dump(manifest, sort_keys=False).encode()


class Demo:
    """One run: the service, the receiver, the drop and the summary."""

    def __init__(self, workdir: Path, settings: Settings, env: dict[str, str], secret: str,
                 timeout: float) -> None:
        self.workdir, self.settings, self.env, self.timeout = workdir, settings, env, timeout
        self.secret = secret
        self.events: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = settings.storage.resolved_input_bucket
        self.folder = (f"imagedrop-demo/{uuid.uuid4().hex[:8]}/" if settings.storage.is_cos
                       else FOLDER)

    def on_event(self, event: dict[str, Any], msg_id: str) -> None:
        print("  <- " + receiver.describe(event), flush=True)
        self.events.append(event)
        images = [e for e in self.events if e["type"] in ("image.completed", "image.failed")]
        if len(images) >= len(IMAGES) and any(e["type"] == "batch.completed"
                                              for e in self.events):
            self.done.set()

    async def run(self) -> int:
        started = time.monotonic()
        runner = web.AppRunner(receiver.make_app(self.secret, on_event=self.on_event))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
        log_path = self.workdir / "imagedrop.log"
        with _open_log(log_path) as log:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imagedrop", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), env=self.env, stdout=log, stderr=log)
        try:
            await self._wait_healthy(proc)
            print(f"imagedrop   {self.url}  ({self._where()})")
            print(f"receiver    {hook_url}  (checks Standard Webhooks signatures)")
            await self._drop(demo_manifest(hook_url, self.settings))
            ok = await self._wait_events(proc)
        finally:
            await self._stop(proc)
            await runner.cleanup()
        return self._summary(ok, time.monotonic() - started, log_path)

    def _where(self) -> str:
        store = (f"COS {self.settings.storage.cos_endpoint}" if self.settings.storage.is_cos
                 else f"local folder {self.settings.storage.data_dir}")
        return f"{store}, provider {self.settings.provider.kind}"

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    raise RuntimeError(f"imagedrop serve exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("imagedrop serve did not answer /health within 30 s")

    async def _drop(self, manifest: bytes) -> None:
        images = make_samples.write_samples(self.workdir / "samples", IMAGES)
        print(f"dropping    {self.bucket}/{self.folder}imagedrop.yaml and "
              + ", ".join(p.name for p in images))
        if not self.settings.storage.is_cos:
            folder = self.settings.storage.data_dir / self.bucket / self.folder
            folder.mkdir(parents=True, exist_ok=True)
            _place(folder / "imagedrop.yaml", manifest)
            for path in images:  # a hidden name first: the sweep never sees half a file
                _place(folder / path.name, path.read_bytes())
            return
        await asyncio.to_thread(self._upload, manifest, images)
        async with aiohttp.ClientSession() as session, session.post(
                self.url + "/trigger", json={"bucket": self.bucket, "prefix": self.folder}) as r:
            answer = await r.json()
            if r.status != 202:
                raise RuntimeError(f"POST /trigger answered {r.status}: {answer}")
        print(f"triggered   batch {answer['batch_id']}")

    def _upload(self, manifest: bytes, images: list[Path]) -> None:
        import ibm_boto3
        from ibm_botocore.client import Config

        st = self.settings.storage
        if st.cos_access_key_id:
            client = ibm_boto3.client("s3", endpoint_url=st.cos_endpoint,
                                      aws_access_key_id=st.cos_access_key_id,
                                      aws_secret_access_key=st.cos_secret_access_key)
        else:
            client = ibm_boto3.client("s3", endpoint_url=st.cos_endpoint,
                                      ibm_api_key_id=st.cos_api_key,
                                      ibm_service_instance_id=st.cos_instance_crn,
                                      config=Config(signature_version="oauth"))
        client.put_object(Bucket=self.bucket, Key=self.folder + "imagedrop.yaml", Body=manifest)
        for path in images:
            client.put_object(Bucket=self.bucket, Key=self.folder + path.name,
                              Body=path.read_bytes(),
                              ContentType=mimetypes.guess_type(path.name)[0] or "image/jpeg")

    async def _wait_events(self, proc: asyncio.subprocess.Process) -> bool:
        waiter = asyncio.ensure_future(self.done.wait())
        died = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait({waiter, died}, timeout=self.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, died):
                task.cancel()
        return self.done.is_set()

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def _summary(self, ok: bool, seconds: float, log_path: Path) -> int:
        completed = [e["data"] for e in self.events if e["type"] == "image.completed"]
        failed = [e["data"] for e in self.events if e["type"] == "image.failed"]
        print()
        print(f"{len(completed)} of {len(IMAGES)} images edited, {len(failed)} failed, "
              f"{len(self.events)} signed events verified, in {seconds:.1f} s")
        for data in completed:
            result = data["result"]
            line = f"  {data['source']['key']} -> {result['bucket']}/{result['key']}"
            if not self.settings.storage.is_cos:
                path = self.settings.storage.data_dir / result["bucket"] / result["key"]
                line += f" ({path.stat().st_size} bytes)" if path.exists() else " (missing!)"
            print(line)
        for data in failed:
            print(f"  {data['source']['key']} FAILED: {data.get('error')}")
        if not ok:
            print(f"did not see every event within {self.timeout:.0f} s; imagedrop's log: "
                  f"{log_path}")
            return 1
        return 0 if not failed else 1


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")


def _place(path: Path, data: bytes) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    os.replace(part, path)


async def _main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="imagedrop-demo-"))
    try:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        env = service_env(workdir, secret)
        settings = load_settings(env)  # the service's own rules: a bad setting stops us here
        timeout = args.timeout or (300.0 if settings.provider.kind == "openai" else 60.0)
        demo = Demo(workdir, settings, env, secret, timeout)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await demo.run()
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, help="seconds to wait for the events")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM: everything started was stopped on the way out
        return 143
    except Exception as exc:  # a demo ends with a sentence, not a traceback
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
