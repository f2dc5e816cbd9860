"""Convert pydantic's JSON Schema (2020-12) to an OpenAPI 3.0 Schema Object. Pure; no I/O.

3.0 predates `const`, `type: null`, numeric `exclusiveMinimum` and `$defs`; tools that read
3.0 (watsonx Orchestrate's ADK among them) also ignore keywords beside a `$ref`.
"""

from __future__ import annotations

from typing import Any

COMPONENTS = "#/components/schemas/"

# 2019-09/2020-12 keywords with no 3.0 meaning: dropped rather than left to fail validation.
_DROPPED = frozenset({
    "$schema", "$id", "$anchor", "$comment", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "contentMediaType", "contentEncoding", "contentSchema", "prefixItems", "unevaluatedItems",
    "unevaluatedProperties", "dependentRequired", "dependentSchemas", "propertyNames",
    "patternProperties", "contains", "minContains", "maxContains", "if", "then", "else",
})
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_NULL = {"type": "null"}


def to_openapi30(schema: dict[str, Any], hoisted: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 3.0 copy of `schema`; nested `$defs` go to `hoisted` (for components/schemas).

    `anyOf: [X, {type: null}]` becomes X with `nullable: true`, `const` a one-value `enum`,
    `#/$defs/N` refs point at components, and a `$ref` with siblings is wrapped in `allOf`.
    """
    return _convert(schema, {} if hoisted is None else hoisted)


def _convert(node: dict[str, Any], hoisted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$defs", "definitions"):
            for name, sub in value.items():
                hoisted[name] = _convert(sub, hoisted)
        elif key == "$ref":
            out["$ref"] = _rewrite_ref(value)
        elif key == "const":
            out["enum"] = [value]
        elif key == "examples":
            if value:
                out.setdefault("example", value[0])
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "type" and isinstance(value, list):
            _type_list(out, value)
        elif key in _SCHEMA_LISTS:
            out[key] = [o if o == _NULL else _convert(o, hoisted) for o in value]
        elif key == "properties":
            # pydantic titles each property after its name ("Job Id"): noise for readers.
            out[key] = {name: _convert(_untitled(sub), hoisted) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, hoisted)
        elif key == "discriminator":
            out[key] = {**value, "mapping": {k: _rewrite_ref(v) for k, v in
                                             value.get("mapping", {}).items()}}
            if not out[key]["mapping"]:
                del out[key]["mapping"]
        elif key not in _DROPPED:
            out[key] = value
    _fold_null(out)
    if out.get("type") == "null":  # a schema that only allows null
        del out["type"]
        out.update(nullable=True, enum=[None])
    if out.get("nullable") and "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]  # 3.0.3: a nullable enum must list null itself
    if "required" in out and not out["required"]:
        del out["required"]  # 3.0 requires at least one entry when present
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def _rewrite_ref(ref: str) -> str:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return COMPONENTS + ref[len(prefix):]
    return ref


def _type_list(out: dict[str, Any], types: list[str]) -> None:
    concrete = [t for t in types if t != "null"]
    if len(concrete) < len(types):
        out["nullable"] = True
    if len(concrete) == 1:
        out["type"] = concrete[0]
    elif concrete:
        out["anyOf"] = [{"type": t} for t in concrete]


def _fold_null(out: dict[str, Any]) -> None:
    """`anyOf`/`oneOf` with a null branch: drop the branch, mark nullable, unwrap a lone one."""
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if not options or _NULL not in options:
            continue
        rest = [o for o in options if o != _NULL]
        out["nullable"] = True
        if len(rest) > 1:
            out[key] = rest
            continue
        del out[key]
        if not rest:
            continue
        only = rest[0]
        if "$ref" in only:
            out["allOf"] = [only]  # a sibling `nullable` beside $ref would be ignored
        else:
            for k, v in only.items():
                out.setdefault(k, v)  # the outer description/default win
