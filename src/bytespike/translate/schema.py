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
        out: dict[str, Any] = {"type": "object"}
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        return out
    node, seen = resolved
    node = _merge_all_of(node, defs, seen)

    out = {}
    nullable = node.get("nullable") is True
    types = node.get("type")
    type_list = (
        [t for t in types if isinstance(t, str)]
        if isinstance(types, list)
        else [types]
        if isinstance(types, str)
        else []
    )
    if "null" in type_list:
        nullable = True
        type_list = [t for t in type_list if t != "null"]
    type_list = [t.lower() for t in type_list if t.lower() in GEMINI_TYPES]

    variants = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(variants, list):
        members = [v for v in variants if isinstance(v, Mapping)]
        non_null = [v for v in members if v.get("type") != "null"]
        if len(non_null) < len(members):
            nullable = True
        if len(non_null) == 1:
            inner = _clean(non_null[0], defs, seen, depth + 1)
            for key, value in inner.items():
                if key == "description" and isinstance(node.get("description"), str):
                    continue
                out[key] = value
        elif non_null:
            out["anyOf"] = [_clean(v, defs, seen, depth + 1) for v in non_null]

    if len(type_list) > 1:
        rest = {k: v for k, v in node.items() if k not in ("type", "anyOf", "oneOf", "nullable")}
        out["anyOf"] = [_clean({**rest, "type": t}, defs, seen, depth + 1) for t in type_list]
    elif type_list:
        out["type"] = type_list[0]
    elif "type" not in out and "anyOf" not in out:
        if isinstance(node.get("properties"), Mapping):
            out["type"] = "object"
        elif "items" in node:
            out["type"] = "array"

    description = node.get("description") if isinstance(node.get("description"), str) else None
    kind = out.get("type")
    enum = node.get("enum") if isinstance(node.get("enum"), list) else None
    if "const" in node:
        enum = [node["const"]]
    if enum is not None and "anyOf" not in out:
        strings = [v for v in enum if isinstance(v, str) and v]
        if strings and len(strings) == len(enum) and kind in (None, "string"):
            out["type"] = "string"
            out["enum"] = strings
        elif enum:
            allowed = ", ".join(orjson.dumps(v).decode() for v in enum)
            description = (
                f"{description} (allowed values: {allowed})" if description else f"Allowed values: {allowed}"
            )
    if description:
        out["description"] = description

    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type")), frozenset()):
        out["format"] = fmt
    if isinstance(node.get("pattern"), str) and out.get("type") == "string":
        out["pattern"] = node["pattern"]
    for key in _COPY:
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    for bound, target in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and target not in out:
            out[target] = value

    properties = node.get("properties")
    if isinstance(properties, Mapping) and out.get("type") in (None, "object"):
        props = {str(k): _clean(v, defs, seen, depth + 1) for k, v in properties.items()}
        if props:
            out["properties"] = props
            required = node.get("required")
            if isinstance(required, list):
                names = [r for r in required if isinstance(r, str) and r in props]
                if names:
                    out["required"] = list(dict.fromkeys(names))
    items = node.get("items")
    if out.get("type") == "array":
        if isinstance(items, Mapping):
            out["items"] = _clean(items, defs, seen, depth + 1)
        elif isinstance(items, list) and items:
            members = [_clean(i, defs, seen, depth + 1) for i in items if isinstance(i, Mapping)]
            out["items"] = members[0] if len(members) == 1 else {"anyOf": members}
        elif isinstance(node.get("prefixItems"), list) and node["prefixItems"]:
            members = [
                _clean(i, defs, seen, depth + 1) for i in node["prefixItems"] if isinstance(i, Mapping)
            ]
            out["items"] = members[0] if len(members) == 1 else {"anyOf": members}
    if nullable:
        out["nullable"] = True
    return out


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
