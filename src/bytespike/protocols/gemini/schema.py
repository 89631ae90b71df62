"""JSON Schema -> the OpenAPI subset Gemini accepts in ``functionDeclarations[].parameters``.

Gemini answers 400 "Unknown name ..." for keywords outside its Schema type ($schema,
additionalProperties, exclusiveMinimum, const, propertyNames, ...), for non-string enums and type
arrays. This keeps what it accepts, rewrites what has an equivalent and drops the rest:
$ref/$defs are inlined (recursion cut to a plain object), ``anyOf: [X, {type: null}]`` and
``type: [X, "null"]`` become ``nullable``, ``const`` a one-value enum, ``oneOf`` ``anyOf``,
``allOf`` a merge, exclusive bounds inclusive ones; non-string enum values move into the description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

GEMINI_SCHEMA_KEYWORDS: Final = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
    }
)
"""Every keyword ``to_gemini_schema`` may emit at a schema position."""

GEMINI_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "array", "object"})
_FORMATS: Final[Mapping[str, frozenset[str]]] = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}
_COPY: Final = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
)
_MAX_DEPTH: Final = 32


def to_gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A sanitised copy of ``schema``; the input is not modified."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    return _clean(schema, defs, (), 0)


def _resolve(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> tuple[Mapping[str, Any], tuple[str, ...]] | None:
    """Follow local $ref chains; None when a reference loops back or cannot be found."""
    while isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        target = defs.get(ref)
        if ref in seen or not isinstance(target, Mapping):
            return None
        seen = (*seen, ref)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
    return node, seen


def _clean(node: Any, defs: Mapping[str, Any], seen: tuple[str, ...], depth: int) -> dict[str, Any]:
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        return {"type": "object"} if depth > _MAX_DEPTH else {}
    resolved = _resolve(node, defs, seen)
    if resolved is None:
        cut: dict[str, Any] = {"type": "object"}
        if isinstance(node.get("description"), str) and node["description"]:
            cut["description"] = node["description"]
        return cut
    node, seen = resolved
    node = _merge_all_of(node, defs, seen)

    nullable = node.get("nullable") is True
    raw_type = node.get("type")
    types = raw_type if isinstance(raw_type, list) else [raw_type]
    type_list = [t.lower() for t in types if isinstance(t, str)]
    if "null" in type_list:
        nullable = True
    type_list = list(dict.fromkeys(t for t in type_list if t in GEMINI_TYPES))
    description = node.get("description") if isinstance(node.get("description"), str) else None

    if len(type_list) > 1:
        rest = {
            k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf", "nullable", "description")
        }
        out: dict[str, Any] = {
            "anyOf": [_clean({**rest, "type": t}, defs, seen, depth + 1) for t in type_list]
        }
        return _finish(out, description, nullable)

    out = {}
    variants = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(variants, list):
        members = [v for v in variants if isinstance(v, Mapping)]
        non_null = [v for v in members if v.get("type") != "null"]
        nullable = nullable or len(non_null) < len(members)
        if len(non_null) == 1:
            inner = _clean(non_null[0], defs, seen, depth + 1)
            nullable = nullable or inner.pop("nullable", False)
            description = description or inner.pop("description", None)
            inner.pop("description", None)
            out.update(inner)
        elif non_null:
            out["anyOf"] = [_clean(v, defs, seen, depth + 1) for v in non_null]

    if type_list:
        out["type"] = type_list[0]
    elif "type" not in out and "anyOf" not in out:
        if isinstance(node.get("properties"), Mapping) and node["properties"]:
            out["type"] = "object"
        elif "items" in node or node.get("prefixItems"):
            out["type"] = "array"

    enum = (
        [node["const"]]
        if "const" in node
        else node.get("enum")
        if isinstance(node.get("enum"), list)
        else None
    )
    if enum:
        strings = [v for v in enum if isinstance(v, str) and v]
        if len(strings) == len(enum) and out.get("type") in (None, "string") and "anyOf" not in out:
            out["type"] = "string"
            out["enum"] = strings
        else:
            allowed = ", ".join(_show(v) for v in enum)
            description = (
                f"{description} (allowed values: {allowed})" if description else f"Allowed values: {allowed}"
            )

    if isinstance(node.get("format"), str):
        out["format"] = node["format"]
    if isinstance(node.get("pattern"), str):
        out["pattern"] = node["pattern"]
    for key in _COPY:
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    for bound, target in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and target not in node:
            out[target] = value

    properties = node.get("properties")
    if isinstance(properties, Mapping) and properties:
        props = {str(k): _clean(v, defs, seen, depth + 1) for k, v in properties.items()}
        out["properties"] = props
        required = node.get("required")
        names = (
            [r for r in required if isinstance(r, str) and r in props] if isinstance(required, list) else []
        )
        out.pop("required", None)
        if names:
            out["required"] = list(dict.fromkeys(names))
    items = node["items"] if "items" in node else node.get("prefixItems")
    if isinstance(items, Mapping):
        out["items"] = _clean(items, defs, seen, depth + 1)
    elif isinstance(items, list):
        cleaned = [_clean(i, defs, seen, depth + 1) for i in items if isinstance(i, Mapping)]
        if len(cleaned) == 1:
            out["items"] = cleaned[0]
        elif cleaned:
            out["items"] = {"anyOf": cleaned}
    return _finish(out, description, nullable)


_ONLY_FOR: Final[Mapping[str, frozenset[str]]] = {
    "enum": frozenset({"string"}),
    "pattern": frozenset({"string"}),
    "minLength": frozenset({"string"}),
    "maxLength": frozenset({"string"}),
    "minimum": frozenset({"number", "integer"}),
    "maximum": frozenset({"number", "integer"}),
    "items": frozenset({"array"}),
    "minItems": frozenset({"array"}),
    "maxItems": frozenset({"array"}),
    "properties": frozenset({"object"}),
    "required": frozenset({"object"}),
    "minProperties": frozenset({"object"}),
    "maxProperties": frozenset({"object"}),
}


def _finish(out: dict[str, Any], description: str | None, nullable: bool) -> dict[str, Any]:
    """Drop keywords that do not apply to the node's type (Gemini rejects them), then add the
    description and nullable flag."""
    kind = out.get("type")
    for key, kinds in _ONLY_FOR.items():
        if key in out and kind not in kinds:
            del out[key]
    if "format" in out and out["format"] not in _FORMATS.get(str(kind), frozenset()):
        del out["format"]
    if description:
        out["description"] = description
    if nullable:
        out["nullable"] = True
    return out


def _show(value: Any) -> str:
    """A JSON rendering of an enum value for a description (repr for what JSON cannot hold)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _merge_all_of(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> Mapping[str, Any]:
    """Fold ``allOf`` members (references resolved) into the node: properties and required lists
    are united, the first value of any other keyword wins."""
    members = node.get("allOf")
    if not isinstance(members, list):
        return node
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    for member in members:
        resolved = _resolve(member, defs, seen) if isinstance(member, Mapping) else None
        if resolved is None:
            continue
        member = _merge_all_of(resolved[0], defs, resolved[1])
        for key, value in member.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**value, **(merged.get("properties") or {})}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*(merged.get("required") or []), *value]))
            else:
                merged.setdefault(key, value)
    return merged
