"""WXO tool specs cut from the OpenAPI document: WXO rules hold; committed files are current."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from imagedrop import __version__
from imagedrop.cli import main
from imagedrop.tools_export import (
    CALLBACK_HEADER,
    SCHEME,
    TOOLS,
    ExportError,
    ToolOp,
    export_tools,
    write_tools,
)
from imagedrop.web.openapi import CALLBACK_EXPRESSION, build_openapi

PLACEHOLDER = "https://imagedrop.example.com"
TOOLS_DIR = Path(__file__).resolve().parents[2] / "orchestrate-tools"
REGENERATE = f"imagedrop tools export --server-url {PLACEHOLDER} --out orchestrate-tools/"
ASYNC = {"processImageAsyncToBase64", "processImageAsyncToCos", "batchProcessImages",
         "triggerFolder"}


def _doc(**kw: Any) -> dict[str, Any]:
    return build_openapi(server_url=PLACEHOLDER, version=__version__, **kw)


def _specs(**kw: Any) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in export_tools(_doc(**kw)).items()}


def _only_op(spec: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    ((path, methods),) = spec["paths"].items()
    ((method, op),) = methods.items()
    return path, method, op


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


class TestCommittedFiles:
    """orchestrate-tools/*.yaml are exactly what the exporter makes from today's routes."""

    def test_no_drift(self) -> None:
        expected = export_tools(_doc())
        committed = {p.name: p.read_text(encoding="utf-8")
                     for p in sorted(TOOLS_DIR.glob("*.yaml"))}
        assert set(committed) == set(expected), (
            f"orchestrate-tools/ has {sorted(committed)}, the exporter makes {sorted(expected)}; "
            f"regenerate with: {REGENERATE}")
        stale = [name for name, text in expected.items() if committed[name] != text]
        assert not stale, (f"{stale} differ from the live API's OpenAPI document; "
                           f"regenerate with: {REGENERATE}")


@pytest.fixture(name="specs", scope="module")
def _exported_specs() -> dict[str, dict[str, Any]]:
    return _specs()


class TestCommand:
    """`imagedrop tools export` writes what the drift test expects."""

    def test_export_writes_the_committed_files(self, tmp_path: Path, capsys) -> None:
        out = tmp_path / "tools"
        assert main(["tools", "export", "--server-url", PLACEHOLDER, "--out", str(out)]) == 0
        written = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.yaml")}
        assert written == export_tools(_doc())
        assert len(capsys.readouterr().out.splitlines()) == len(TOOLS)

    def test_server_url_is_required(self, capsys) -> None:
        with pytest.raises(SystemExit):
            main(["tools", "export"])
        assert "--server-url" in capsys.readouterr().err


class TestWxoRules:
    """Each spec is a valid OpenAPI 3.0 document WXO imports as one tool."""

    def test_one_tool_per_file_with_the_expected_operation_ids(self, specs) -> None:
        assert {_only_op(s)[2]["operationId"] for s in specs.values()} == {
            "processImageAsyncToBase64", "processImageAsyncToCos", "batchProcessImages",
            "triggerFolder", "replay", "getJob"}

    def test_valid_openapi_30(self, specs) -> None:
        for name, spec in specs.items():
            assert spec["openapi"].startswith("3.0."), name
            validate(spec, cls=OpenAPIV30SpecValidator)

    def test_exactly_one_server_without_variables(self, specs) -> None:
        for spec in specs.values():
            assert spec["servers"] == [{"url": PLACEHOLDER}]

    def test_operation_id_and_description(self, specs) -> None:
        for spec in specs.values():
            op = _only_op(spec)[2]
            assert op["operationId"] and op["description"].strip()

    def test_numeric_response_codes_only(self, specs) -> None:
        # A `2XX` key crashes the ADK's int(code).
        for spec in specs.values():
            assert all(code.isdigit() for code in _only_op(spec)[2]["responses"])

    def test_one_security_scheme_the_service_accepts(self, specs) -> None:
        for spec in specs.values():
            assert spec["security"] == [{SCHEME: []}]
            assert spec["components"]["securitySchemes"] == {
                SCHEME: {"type": "http", "scheme": "bearer",
                         "description": "An API key sent as `Authorization: Bearer <key>`."}}
            assert "security" not in _only_op(spec)[2]

    def test_async_tools_follow_the_callback_rules(self, specs) -> None:
        for spec in specs.values():
            op = _only_op(spec)[2]
            if op["operationId"] not in ASYNC:
                assert "callbacks" not in op
                continue
            headers = [p for p in op["parameters"] if p["in"] == "header"]
            assert [p["name"] for p in headers] == [CALLBACK_HEADER]
            ((expressions),) = op["callbacks"].values()
            assert list(expressions) == [CALLBACK_EXPRESSION]
            (cb,) = expressions[CALLBACK_EXPRESSION].values()
            assert list(cb["requestBody"]["content"]) == ["application/json"]
            # The ADK looks the callback's answer up under the operation's own success code.
            assert "202" in op["responses"] and "202" in cb["responses"]

    def test_callback_schemas_are_what_imagedrop_sends(self, specs) -> None:
        sent = {
            "processImageAsyncToBase64": {"B64Completed", "ImageFailed"},
            "processImageAsyncToCos": {"CosCompleted", "ImageFailed"},
            "batchProcessImages": {"BatchSummary"},
            "triggerFolder": {"BatchSummary"},
        }
        for spec in specs.values():
            op = _only_op(spec)[2]
            if op["operationId"] in sent:
                (cb,) = next(iter(op["callbacks"].values()))[CALLBACK_EXPRESSION].values()
                schema = cb["requestBody"]["content"]["application/json"]["schema"]
                assert _refs(schema) == sent[op["operationId"]]

    def test_components_hold_exactly_what_the_operation_needs(self, specs) -> None:
        for name, spec in specs.items():
            schemas = spec["components"]["schemas"]
            needed = _refs(_only_op(spec)[2])
            closure: set[str] = set()
            while needed - closure:
                closure |= needed
                needed = closure.union(*(_refs(schemas[n]) for n in closure))
            assert set(schemas) == closure, name
            assert _refs(schemas) <= set(schemas), name

    def test_no_webhooks_or_other_routes(self, specs) -> None:
        for spec in specs.values():
            assert "x-webhooks" not in spec and len(spec["paths"]) == 1

    def test_files_start_with_a_do_not_edit_line(self) -> None:
        for text in export_tools(_doc()).values():
            assert text.startswith("# Generated by `imagedrop tools export`")


class TestExportOptions:
    """Server URL, auth and the document's own shape."""

    def test_server_url_argument_wins_and_trailing_slash_goes(self) -> None:
        files = export_tools(_doc(), server_url="https://edit.example.org/")
        for text in files.values():
            assert yaml.safe_load(text)["servers"] == [{"url": "https://edit.example.org"}]

    def test_document_server_used_when_no_argument(self) -> None:
        spec = yaml.safe_load(export_tools(_doc())["replay.yaml"])
        assert spec["servers"] == [{"url": PLACEHOLDER}]

    def test_no_server_anywhere_is_an_error(self) -> None:
        with pytest.raises(ExportError, match="server"):
            export_tools(build_openapi(version="1"))

    def test_without_auth_no_security(self) -> None:
        for spec in _specs(auth=False).values():
            assert "security" not in spec
            assert "securitySchemes" not in spec["components"]

    def test_export_is_deterministic(self) -> None:
        assert export_tools(_doc()) == export_tools(_doc())

    def test_input_document_not_modified(self) -> None:
        doc = _doc()
        before = copy.deepcopy(doc)
        export_tools(doc)
        assert doc == before

    def test_write_tools_creates_the_folder(self, tmp_path: Path) -> None:
        paths = write_tools({"a.yaml": "x: 1\n"}, tmp_path / "out")
        assert paths == [tmp_path / "out" / "a.yaml"]
        assert paths[0].read_text() == "x: 1\n"


class TestBrokenDocuments:
    """A document that breaks WXO's rules is refused with the operation named."""

    def _op(self, doc: dict[str, Any], path: str = "/process-image-async-b64") -> dict[str, Any]:
        return doc["paths"][path]["post"]

    def test_missing_operation(self) -> None:
        doc = _doc()
        del doc["paths"]["/replay"]
        with pytest.raises(ExportError, match="/replay"):
            export_tools(doc)

    def test_renamed_operation_id(self) -> None:
        doc = _doc()
        self._op(doc)["operationId"] = "process_b64"
        with pytest.raises(ExportError, match="processImageAsyncToBase64"):
            export_tools(doc)

    def test_missing_description(self) -> None:
        doc = _doc()
        del self._op(doc)["description"]
        with pytest.raises(ExportError, match="description"):
            export_tools(doc)

    def test_callbacks_without_callback_url_header(self) -> None:
        doc = _doc()
        self._op(doc)["parameters"] = []
        with pytest.raises(ExportError, match="callbackUrl"):
            export_tools(doc)

    def test_wildcard_success_code(self) -> None:
        doc = _doc()
        responses = self._op(doc)["responses"]
        responses["2XX"] = responses.pop("202")
        with pytest.raises(ExportError, match="2xx"):
            export_tools(doc)

    def test_callback_keyed_otherwise(self) -> None:
        doc = _doc()
        (cb,) = self._op(doc)["callbacks"].values()
        cb["{$request.body#/callback}"] = cb.pop(CALLBACK_EXPRESSION)
        with pytest.raises(ExportError, match="keyed"):
            export_tools(doc)

    def test_ref_to_a_missing_schema(self) -> None:
        doc = _doc()
        del doc["components"]["schemas"]["ImageRequest"]
        with pytest.raises(ExportError, match="ImageRequest"):
            export_tools(doc)

    def test_a_subset_of_tools(self) -> None:
        only = (ToolOp("r.yaml", "post", "/replay", "replay"),)
        assert list(export_tools(_doc(), tools=only)) == ["r.yaml"]
        assert len(TOOLS) == 6
