"""The `imagedrop` command: `serve` runs the service, `edit` edits one file from the shell,
`manifest check` and `tools export` work offline, and the operator commands (`jobs`,
`deliveries`, `replay`, `subscribers`, `secret`) talk to a running service (`ops_cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Literal

import structlog

from imagedrop import __version__, logs, ops_cli
from imagedrop.config import Settings, load_settings
from imagedrop.errors import ConfigError, ImagedropError

log = structlog.get_logger("imagedrop")
OPERATOR_COMMANDS = ("jobs", "deliveries", "replay", "subscribers", "secret")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagedrop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"imagedrop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API, workers and callback delivery")
    serve.add_argument("--host", help="interface to bind (default IMAGEDROP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default IMAGEDROP_PORT or 8080; 0 = any)")
    edit = sub.add_parser("edit", help="edit one image file with the configured provider")
    edit.add_argument("image", type=Path, help="the image file")
    edit.add_argument("--prompt", required=True, help="what to do to the image")
    edit.add_argument("-o", "--output", type=Path, help="where to write (default: NAME.edited.EXT)")
    manifest = sub.add_parser("manifest", help="work with folder manifests (imagedrop.yaml)")
    manifest_sub = manifest.add_subparsers(dest="manifest_command", required=True)
    check = manifest_sub.add_parser(
        "check", help="validate a manifest file (exit 1 on problems); with --estimate, ask a "
        "running service what a folder would cost")
    check.add_argument("file", type=Path, nargs="?", help="imagedrop.yaml, .yml or .json")
    check.add_argument("--estimate", metavar="BUCKET/PREFIX",
                       help="a dry run of POST /trigger on this folder: images, to edit, "
                       "already done, skipped, estimated cost (" + ops_cli.ENV_HELP + ")")
    check.add_argument("--url", help="the service for --estimate (default IMAGEDROP_URL or "
                       f"{ops_cli.DEFAULT_URL})")
    tools = sub.add_parser("tools", help="watsonx Orchestrate tool specs")
    tools_sub = tools.add_subparsers(dest="tools_command", required=True)
    export = tools_sub.add_parser(
        "export", help="write one OpenAPI YAML per WXO tool, cut from the service's document")
    export.add_argument("--server-url", required=True,
                        help="the one server URL WXO calls, e.g. https://imagedrop.example.com")
    export.add_argument("--out", type=Path, default=Path("orchestrate-tools"),
                        help="folder to write into (default: orchestrate-tools)")
    export.add_argument("--from-url", dest="from_url",
                        help="read /openapi.json from this running service instead of this "
                             "install's own routes")
    export.add_argument("--api-key", help="API key for --from-url, when the service needs one")
    ops_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command in OPERATOR_COMMANDS:  # a client of a running service (or offline)
        return ops_cli.run(args, os.environ)
    if args.command == "manifest":  # a file check needs no settings; an estimate, a service
        if args.file is None and args.estimate is None:
            print("imagedrop manifest check: give a manifest file, --estimate BUCKET/PREFIX "
                  "or both", file=sys.stderr)
            return 2
        code = manifest_check(args.file) if args.file is not None else 0
        if args.estimate is not None:
            code = max(code, ops_cli.estimate(args.estimate, args.url, os.environ))
        return code
    if args.command == "tools":  # builds from the routes, or fetches: needs no settings
        return tools_export(args.server_url, args.out, from_url=args.from_url,
                            api_key=args.api_key)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"imagedrop: {exc}", file=sys.stderr)
        return 2
    logs.configure(json=settings.log_json, level=settings.log_level,
                   secrets=settings.secret_values())
    try:
        if args.command == "serve":
            return asyncio.run(serve(settings, host=args.host, port=args.port))
        return asyncio.run(edit_file(settings, args.image, args.prompt, args.output))
    except ImagedropError as exc:
        print(f"imagedrop: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that is not there, a folder not writable, a port taken
        where = f" {exc.filename}" if exc.filename else ""
        print(f"imagedrop: cannot use{where}: {exc.strerror or type(exc).__name__}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    """Serve until SIGINT/SIGTERM, then drain in-flight work and stop."""
    from aiohttp import web

    from imagedrop.app import create_app
    from imagedrop.web.server import JsonAppRunner

    host = host or settings.server.host
    port = settings.server.port if port is None else port
    # Bind first so port 0 becomes a real port before local download links are built.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    public_url = settings.server.public_url or f"http://{shown}:{port}"
    if not _is_loopback(host) and not settings.server.api_keys:
        log.warning("no_api_key_configured",
                    message=f"serving on {host} with NO API key: anyone who can reach this port "
                            "can submit edits; set IMAGEDROP_API_KEYS")
    if settings.server.api_keys and not settings.drops.intake_token:
        log.warning("intake_uses_api_key",
                    message="POST /events accepts an API key because IMAGEDROP_INTAKE_TOKEN is "
                            "not set: stores would carry a key that also grants /trigger and "
                            "/replay; set a separate IMAGEDROP_INTAKE_TOKEN for them")
    app = create_app(settings, public_url=public_url)
    runner = JsonAppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    log.info("imagedrop_listening", url=public_url, version=__version__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("imagedrop_stopping")
    await runner.cleanup()
    return 0


async def edit_file(settings: Settings, image: Path, prompt: str, output: Path | None) -> int:
    """One-shot edit: read a file, edit it, write the result; no ledger, no server."""
    from imagedrop import imaging
    from imagedrop.editor import Editor
    from imagedrop.providers import open_provider, spec_from_settings
    from imagedrop.providers.local import LocalProvider

    data = await asyncio.to_thread(image.read_bytes)
    limits = settings.imaging
    prepared = await asyncio.to_thread(imaging.prepare_for_provider, data,
                                       max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
    provider = open_provider(settings.provider)
    local = provider if provider.name == "local" else LocalProvider()
    try:
        editor = Editor(provider, local, billing_pause=settings.provider.billing_pause)
        spec = spec_from_settings(settings.provider, prompt)
        result, fallback = await editor.edit(prepared.data, prepared.mime, image.name, spec)
    finally:
        await provider.close()
        if local is not provider:
            await local.close()
    ext = imaging.extension_for_mime(result.mime_type)
    output = output or image.with_name(f"{image.stem}.edited.{ext}")
    await asyncio.to_thread(output.write_bytes, result.data)
    log.info("edited", input=str(image), output=str(output), provider=result.provider,
             model=result.model, fallback_local=fallback, bytes=len(result.data))
    print(output)
    return 0


def manifest_check(file: Path) -> int:
    """Print `ok: <summary>` and return 0, or print `FILE: field: reason` per problem and
    return 1."""
    from imagedrop.manifests import ManifestError, parse_manifest

    try:
        data = file.read_bytes()
    except OSError as exc:
        print(f"{file}: (file): cannot read: {exc.strerror or exc}")
        return 1
    fmt: Literal["yaml", "json"] = "json" if file.suffix.lower() == ".json" else "yaml"
    try:
        manifest = parse_manifest(data, fmt=fmt, source=str(file))
    except ManifestError as exc:
        print(exc)
        return 1
    print(f"ok: {manifest.summary()}")
    return 0


def tools_export(server_url: str, out: Path, *, from_url: str | None = None,
                 api_key: str | None = None) -> int:
    """Write the WXO tool specs into `out` and print each path; 1 when it cannot."""
    from imagedrop.tools_export import export_tools, fetch_openapi, write_tools
    from imagedrop.web.openapi import build_openapi

    try:
        if from_url:
            doc = fetch_openapi(from_url, api_key=api_key)
        else:
            doc = build_openapi(server_url=server_url, version=__version__)
        files = export_tools(doc, server_url=server_url)
        paths = write_tools(files, out)
    except OSError as exc:  # never print the URL: it may carry a query string
        print(f"imagedrop: cannot read the OpenAPI document or write {out}: "
              f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}",
              file=sys.stderr)
        return 1
    except ValueError as exc:  # ExportError, or a fetched body that is not JSON
        print(f"imagedrop: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
