"""orchestrate-tools/ as WXO sees it: the ADK's own parsers, the flows, and the live service.

The ADK (ibm-watsonx-orchestrate) runs in a subprocess with HOME in a temporary folder: it
fixes its config paths from HOME at import and writes ~/.config/orchestrate/config.yaml.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagedrop.cli import main
from imagedrop.tools_export import SYNC_ONLY_FIELDS, TOOLS, export_tools
from imagedrop.web.openapi import CALLBACK_EXPRESSION
from tests.fixtures.images import png

if importlib.util.find_spec("ibm_watsonx_orchestrate") is None:  # find, not import: no config
    pytest.skip("the WXO ADK (ibm-watsonx-orchestrate) is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / "orchestrate-tools"
PLACEHOLDER = "https://imagedrop.example.com"
API_KEY = "tools-test-key"
ASYNC = {"processImageAsyncToBase64", "processImageAsyncToCos", "batchProcessImages",
         "triggerFolder"}


def run_adk(code: str, home: Path, *args: str, timeout: float = 120) -> Any:
    """Run `code` under the ADK in a fresh interpreter; it prints one JSON line last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WO_", "ORCHESTRATE"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               PYTEST_CURRENT_TEST="adk")  # ADK errors raise instead of sys.exit(1)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PARSE_SPECS = """
    import asyncio, json, sys
    from ibm_watsonx_orchestrate.agent_builder.tools.openapi_tool import (
        create_openapi_json_tools_from_uri)
    out = {}
    for path in sys.argv[1:]:
        tools = asyncio.run(create_openapi_json_tools_from_uri(path))
        out[path] = [t.__tool_spec__.model_dump(mode="json", exclude_none=True) for t in tools]
    print(json.dumps(out))
"""

PYTHON_TOOLS = """
    import json, sys
    from ibm_watsonx_orchestrate.agent_builder.tools.utils import extract_python_tools
    tools = extract_python_tools(sys.argv[1])
    by_name = {t.__tool_spec__.name: t for t in tools}
    png_b64 = sys.argv[2]
    calls = {
        "data_url": by_name["image_to_base64"]("data:image/png;base64," + png_b64),
        "plain": by_name["image_to_base64"](png_b64),
        "markdown": by_name["image_markdown"](png_b64, "image/png", "cat [1].png"),
    }
    def plain(r):
        r = getattr(r, "content", r)
        return r.model_dump() if hasattr(r, "model_dump") else r
    try:
        by_name["image_to_base64"]("not base64 at all!")
        refused = None
    except ValueError as exc:
        refused = str(exc)
    print(json.dumps({
        "specs": {n: t.__tool_spec__.model_dump(mode="json", exclude_none=True)
                  for n, t in by_name.items()},
        "calls": {k: plain(v) for k, v in calls.items()},
        "refused": refused,
    }))
"""


@pytest.fixture(name="adk_specs", scope="module")
def _adk_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each committed YAML as the ADK turns it into a tool spec: {operationId: spec}."""
    home = tmp_path_factory.mktemp("adk-home")
    paths = [str(TOOLS_DIR / t.filename) for t in TOOLS]
    parsed = run_adk(PARSE_SPECS, home, *paths)
    out = {}
    for path in paths:
        (tool,) = parsed[path]  # one file, one tool
        out[tool["name"]] = tool
    return out


@pytest.fixture(name="python_tools", scope="module")
def _python_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("adk-home")
    return run_adk(PYTHON_TOOLS, home, str(TOOLS_DIR / "python" / "image_tools.py"),
                   base64.b64encode(png()).decode())


def _flows() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((TOOLS_DIR / "flows").glob("*.json"))}


def _yaml(filename: str) -> dict[str, Any]:
    return yaml.safe_load((TOOLS_DIR / filename).read_text(encoding="utf-8"))


def _props(schema: dict[str, Any]) -> set[str]:
    """Property names of a (resolved) schema, through oneOf/anyOf alternatives."""
    names = set(schema.get("properties") or {})
    for key in ("oneOf", "anyOf"):
        for alt in schema.get(key) or []:
            names |= _props(alt)
    return names


class TestAdkReadsTheSpecs:
    """WXO's own parser turns each YAML into the intended tool."""

    def test_one_tool_per_file_named_by_operation_id(self, adk_specs) -> None:
        assert set(adk_specs) == {t.operation_id for t in TOOLS}

    def test_async_tools_are_async_and_hide_callback_url(self, adk_specs) -> None:
        for name, spec in adk_specs.items():
            assert spec.get("is_async", False) == (name in ASYNC), name
            inputs = spec["input_schema"]["properties"]
            assert not any(k.endswith("callbackUrl") for k in inputs), name

    def test_async_output_is_the_callback_body(self, adk_specs) -> None:
        for name in ASYNC:
            spec = adk_specs[name]
            body = spec["output_schema"]["properties"]["__requestBody__"]
            assert {"status", "job_id"} <= _props(body), name
            binding = spec["binding"]["openapi"]
            assert binding["callback"]["callback_url"] == CALLBACK_EXPRESSION
            # found under the operation's own success code (202), not an empty lookup
            assert binding["callback"]["output_schema"].get("description"), name
            assert "job_id" in binding["acknowledgement"]["output_schema"]["properties"]

    def test_b64_callback_carries_the_image(self, adk_specs) -> None:
        body = adk_specs["processImageAsyncToBase64"]["output_schema"]["properties"][
            "__requestBody__"]
        assert {"result_image_base64", "result_mime_type", "error"} <= _props(body)

    def test_one_server_and_one_bearer_scheme(self, adk_specs) -> None:
        for spec in adk_specs.values():
            binding = spec["binding"]["openapi"]
            assert binding["servers"] == [PLACEHOLDER]
            assert [(s["type"], s.get("scheme")) for s in binding["security"]] == [
                ("http", "bearer")]

    def test_job_status_takes_the_job_id(self, adk_specs) -> None:
        assert adk_specs["getJob"]["input_schema"]["required"] == ["path_job_id"]


class TestPythonTools:
    """The `@tool` file imports the way `orchestrate tools import -k python` reads it."""

    def test_tools_found(self, python_tools) -> None:
        assert set(python_tools["specs"]) == {"image_to_base64", "image_markdown"}
        for spec in python_tools["specs"].values():
            assert spec["description"]
            assert spec["binding"]["python"]["requirements"] == []  # stdlib only

    def test_upload_input_is_a_file(self, python_tools) -> None:
        image = python_tools["specs"]["image_to_base64"]["input_schema"]["properties"]["image"]
        assert image["format"] == "wxo-file"

    def test_data_url_and_plain_base64_become_clean_base64(self, python_tools) -> None:
        want = base64.b64encode(png()).decode()
        for call in ("data_url", "plain"):
            out = python_tools["calls"][call]
            assert out == {"image_base64": want, "mime_type": "image/png",
                           "size_bytes": len(png())}

    def test_not_base64_is_refused(self, python_tools) -> None:
        assert "base64" in python_tools["refused"]

    def test_markdown_shows_the_image(self, python_tools) -> None:
        md = python_tools["calls"]["markdown"]["markdown"]
        assert md.startswith("![cat  1 .png](data:image/png;base64,")


class TestFlows:
    """The flow JSON is current, well formed and calls tools that exist with their shapes."""

    def test_the_four_workshop_flows(self) -> None:
        flows = _flows()
        assert set(flows) == {"edit_image_in_chat", "edit_image_to_cos", "edit_folder",
                              "scheduled_folder_trigger"}
        schedulable = {n for n, f in flows.items() if f["spec"].get("schedulable")}
        assert schedulable == {"scheduled_folder_trigger"}

    def test_graph_is_closed(self) -> None:
        for name, f in _flows().items():
            assert f["spec"]["kind"] == "flow" and f["spec"]["description"], name
            nodes = set(f["nodes"])
            assert {"__start__", "__end__"} <= nodes, name
            ends = {e["start"] for e in f["edges"]} | {e["end"] for e in f["edges"]}
            assert ends == nodes, name
            for node in f["nodes"].values():
                for key in ("input_schema", "output_schema"):
                    ref = node["spec"].get(key, {}).get("$ref")
                    assert ref is None or ref.removeprefix("#/schemas/") in f["schemas"], name

    def test_tool_nodes_reference_existing_tools(self, adk_specs, python_tools) -> None:
        known = set(adk_specs) | set(python_tools["specs"])
        used = {n["spec"]["tool"] for f in _flows().values() for n in f["nodes"].values()
                if n["spec"]["kind"] == "tool"}
        assert used <= known
        assert {"processImageAsyncToBase64", "processImageAsyncToCos", "batchProcessImages",
                "triggerFolder", "image_to_base64", "image_markdown"} <= used

    def test_tool_node_shapes_mirror_the_tools(self, adk_specs, python_tools) -> None:
        for name, f in _flows().items():
            for node in f["nodes"].values():
                spec = node["spec"]
                if spec["kind"] != "tool":
                    continue
                node_in = f["schemas"][spec["input_schema"]["$ref"].removeprefix("#/schemas/")]
                node_out = f["schemas"][spec["output_schema"]["$ref"].removeprefix("#/schemas/")]
                tool = adk_specs.get(spec["tool"]) or python_tools["specs"][spec["tool"]]
                tool_in = tool["input_schema"]["properties"]
                tool_out = tool["output_schema"]
                where = f"{name}.{spec['name']}"
                if spec["tool"] in adk_specs:
                    body_in = _resolve(f, node_in["properties"]["__requestBody__"])
                    assert _props(body_in) <= _props(tool_in["__requestBody__"]), where
                    body_out = _resolve(f, node_out["properties"]["__requestBody__"])
                    assert _props(body_out) <= _props(
                        tool_out["properties"]["__requestBody__"]), where
                else:
                    assert set(node_in["properties"]) == set(tool_in), where
                    assert _props(node_out) == _props(tool_out), where

    def test_recompiling_gives_the_committed_json(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        env["HOME"] = str(tmp_path)
        proc = subprocess.run(
            [sys.executable, str(TOOLS_DIR / "flows" / "compile_flows.py"), "--check"],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, (
            f"flows JSON is stale; run python orchestrate-tools/flows/compile_flows.py\n"
            f"{proc.stderr[-2000:]}")


def _resolve(flow: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return flow["schemas"][ref.removeprefix("#/schemas/")] if ref else schema


class TestLiveService:
    """The specs match what a running imagedrop serves at GET /openapi.json."""

    async def test_exported_operations_match_the_live_document(self, start_service) -> None:
        svc = await start_service({"IMAGEDROP_API_KEYS": API_KEY})
        status, live = await svc.get("/openapi.json",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
        assert status == 200
        for tool in TOOLS:
            committed = _yaml(tool.filename)
            ((path, methods),) = committed["paths"].items()
            ((method, op),) = methods.items()
            live_op = live["paths"][path][method]
            assert (path, method, op["operationId"]) == (
                tool.path, tool.method, live_op["operationId"])
            body = _deref(live, live_op.get("requestBody"))
            if "callbacks" in live_op and body:  # the tool leaves out its synchronous form
                for field in SYNC_ONLY_FIELDS:
                    body["content"]["application/json"]["schema"]["properties"].pop(field, None)
            assert body == _deref(committed, op.get("requestBody")), tool.operation_id
            assert _callback_bodies(live, live_op) == _callback_bodies(committed, op), (
                tool.operation_id)
        # and exporting the live document gives the committed files, server aside
        exported = export_tools(live, server_url=PLACEHOLDER)
        for name, text in exported.items():
            assert text == (TOOLS_DIR / name).read_text(encoding="utf-8"), name

    async def test_cli_exports_from_a_running_service(self, start_service, tmp_path) -> None:
        svc = await start_service({"IMAGEDROP_API_KEYS": API_KEY})
        out = tmp_path / "tools"
        # The CLI blocks on its HTTP GET: run it off this loop, which serves the service.
        code = await asyncio.to_thread(main, [
            "tools", "export", "--server-url", PLACEHOLDER, "--out", str(out),
            "--from-url", svc.url, "--api-key", API_KEY])
        assert code == 0
        for tool in TOOLS:
            assert (out / tool.filename).read_text(encoding="utf-8") == (
                TOOLS_DIR / tool.filename).read_text(encoding="utf-8")

    async def test_cli_reports_a_wrong_key_without_the_url(self, start_service, tmp_path,
                                                          capsys) -> None:
        svc = await start_service({"IMAGEDROP_API_KEYS": API_KEY})
        code = await asyncio.to_thread(main, [
            "tools", "export", "--server-url", PLACEHOLDER, "--out", str(tmp_path),
            "--from-url", svc.url + "/?token=secret", "--api-key", "wrong"])
        assert code == 1
        err = capsys.readouterr().err
        assert "cannot read the OpenAPI document" in err and "secret" not in err


def _deref(doc: dict[str, Any], node: Any) -> Any:
    """`node` with every #/components/schemas/ reference replaced by its schema."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return _deref(doc, doc["components"]["schemas"][ref.rsplit("/", 1)[-1]])
        return {k: _deref(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(doc, v) for v in node]
    return node


def _callback_bodies(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    return {name: {expr: {m: _deref(doc, cb.get("requestBody")) for m, cb in ops.items()}
                   for expr, ops in exprs.items()}
            for name, exprs in (op.get("callbacks") or {}).items()}
