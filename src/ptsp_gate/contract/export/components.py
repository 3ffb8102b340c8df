"""Building blocks of the AsyncAPI document: its components, references to them, and the Kafka
binding of a message."""

from __future__ import annotations

from typing import Any, Final

from ptsp_gate.contract.export.json_schema import JsonObject

KAFKA_BINDING_VERSION: Final = "0.5.0"


def _rewrite_refs(node: Any, old_prefix: str, new_prefix: str) -> Any:
    if isinstance(node, dict):
        out: JsonObject = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(old_prefix):
                out[key] = new_prefix + value[len(old_prefix) :]
            else:
                out[key] = _rewrite_refs(value, old_prefix, new_prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, old_prefix, new_prefix) for item in node]
    return node


def add_component(components: JsonObject, name: str, schema: JsonObject) -> None:
    existing = components.get(name)
    if existing is not None and existing != schema:
        raise ValueError(f"two different schemas are both named {name!r}")
    components[name] = schema


def lift_definitions(schema: JsonObject, components: JsonObject) -> JsonObject:
    """Move `$defs` into `components` (AsyncAPI `components/schemas`) and repoint the `$ref`s."""
    schema = dict(schema)
    defs: JsonObject = schema.pop("$defs", {})
    for name, definition in defs.items():
        add_component(
            components, name, _rewrite_refs(definition, "#/$defs/", "#/components/schemas/")
        )
    lifted: JsonObject = _rewrite_refs(schema, "#/$defs/", "#/components/schemas/")
    return lifted


def schema_ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def message_ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/messages/{name}"}


def kafka_binding(key: JsonObject) -> JsonObject:
    return {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}}
