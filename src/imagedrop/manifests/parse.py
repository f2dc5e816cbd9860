"""Turn manifest text (YAML or JSON) into a `Manifest`, or a `ManifestError` naming every problem.

Performs no I/O. Values from the file are never echoed in reasons: a manifest may hold a secret
by mistake, and the reasons end up in job records and callbacks.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from imagedrop.manifests.problems import ManifestError, ManifestProblem
from imagedrop.manifests.schema import Manifest, Output, Subscriber

#: Manifests are small config files; anything larger is a mistake or an attack.
MAX_MANIFEST_BYTES = 64 * 1024
_NOT_HERE = ("looks like a signing secret; secrets never live in manifests: keep it in the "
             "service's environment and write secret: env:NAME")


class _Loader(yaml.SafeLoader):
    """safe_load without aliases (no billion-laughs) and with duplicate keys recorded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, str]] = []  # (where, key)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # PyYAML
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed in manifests",
                                       problem_mark=mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append((f"line {mark.line + 1}, column {mark.column + 1}",
                                        f"duplicate key {json.dumps(str(key))[:60]}; the "
                                        "later one would silently win"))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load(text: str, fmt: str) -> tuple[Any, list[tuple[str, str]]]:
    """The document and any duplicate keys; raises (field, reason) as ValueError args."""
    if fmt == "json":
        duplicates: list[tuple[str, str]] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in items]
            duplicates.extend((k, "duplicate key; the later one would silently win")
                              for i, k in enumerate(keys) if k in keys[:i])
            return dict(items)

        try:
            return json.loads(text, object_pairs_hook=pairs), duplicates
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {exc.lineno}, column {exc.colno}", exc.msg) from None
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
        raise ValueError(where, f"YAML syntax: {reason}") from None
    except yaml.YAMLError as exc:
        raise ValueError("(file)", f"YAML syntax: {type(exc).__name__}") from None
    finally:
        loader.dispose()


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(manifest)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    if loc[:1] == ("output",):
        return Output
    if loc[:1] == ("subscribers",):
        return Subscriber
    return Manifest


def _reason(err: ErrorDetails) -> str:
    kind, loc = err["type"], err["loc"]
    if kind == "extra_forbidden":
        known = list(_model_at(loc).model_fields)
        near = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {near[0]}?" if near else "known: " + ", ".join(known)
        return f"unknown field; {hint}"
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    msg = str(err["msg"])
    for old, new in (("Input should", "must"), ("String should", "must"),
                     ("List should", "must"), ("Value should", "must")):
        if msg.startswith(old):
            msg = new + msg[len(old):]
    if kind.endswith("_type"):  # say what was found, never the value itself
        msg += f", not {_yaml_type(err.get('input'))}"
    return msg


def _yaml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "empty (null)"}
    return names.get(type(value), type(value).__name__)


def _strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _raw_checks(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks across fields, on the raw document so they come with the per-field problems."""
    found = [(_path(path), _NOT_HERE) for path, text in _strings(doc)
             if "whsec_" in text and path[-1:] != ("secret",)]  # .secret has its own check
    low, high = doc.get("min_bytes"), doc.get("max_bytes")
    if type(low) is int and type(high) is int and low > high:
        found.append(("min_bytes", f"is larger than max_bytes ({high}): nothing would be taken"))
    output = doc.get("output")
    if isinstance(output, dict) and output.get("prefix") == "" and output.get("bucket") is None:
        found.append(("output.prefix", "empty in the same bucket: results would land over the "
                      "inputs and every input would count as an output; use e.g. 'edited/'"))
    return found


def parse_manifest(text: str | bytes, *, fmt: Literal["yaml", "json"], source: str) -> Manifest:
    """Parse and validate one manifest; `source` names the file in every problem.

    Raises ManifestError listing every problem found (a syntax error stops further checks).
    """
    def fail(found: list[tuple[str, str]]) -> ManifestError:
        unique = list(dict.fromkeys(found))
        return ManifestError([ManifestProblem(source, field, reason) for field, reason in unique])

    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_MANIFEST_BYTES:
        raise fail([("(file)", f"{size} bytes; a manifest may be at most {MAX_MANIFEST_BYTES}")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise fail([("(file)", "not UTF-8 text")]) from None
    if not text.strip():
        raise fail([("(file)", "empty; a manifest needs at least a prompt")])
    try:
        doc, found = _load(text, fmt)
    except ValueError as exc:
        raise fail([exc.args]) from None
    except RecursionError:
        raise fail([("(file)", "nested too deeply")]) from None
    if doc is None:
        raise fail([*found, ("(file)", "empty; a manifest needs at least a prompt")])
    if not isinstance(doc, dict):
        raise fail([*found, ("(file)", f"must be a mapping of fields (prompt: ...), not "
                                       f"{_yaml_type(doc)}")])
    found.extend(_raw_checks(doc))
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as exc:
        # `from None`: the ValidationError's text quotes input values, perhaps a secret.
        errors = [(_path(e["loc"]), _reason(e)) for e in exc.errors()]
        raise fail(errors + found) from None
    if found:
        raise fail(found)
    return manifest


__all__ = ["MAX_MANIFEST_BYTES", "parse_manifest"]
