"""The checked-in contract artefacts (schemas/) match the models, and are well-formed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ptsp_gate.contract import dead_letter, export
from ptsp_gate.contract.cloudevents import BINARY_HEADERS
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_DECISION, PermitApplication
from ptsp_gate.contract.topics import DLQ_SUFFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO_ROOT / "schemas"
REGENERATE = (
    f"Regenerate them from the repository root with:\n    {export.REGENERATE_COMMAND}\n"
    "(without an installed package: "
    "PYTHONPATH=src .venv/bin/python -m ptsp_gate.contract.export schemas)\n"
    "then review and commit the diff of schemas/."
)
EXPECTED_FILES = {
    "permit-application.v1.schema.json",
    "employer-enrolment.v1.schema.json",
    "compliance-decision.v1.schema.json",
    "asyncapi.json",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("schemas")
    return {path.name: path for path in export.write_all(out)}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _refs(item, f"{where}/{index}")


def _resolve(document: Any, ref: str) -> Any:
    assert ref.startswith("#/"), f"non-local $ref {ref!r}"
    node = document
    for raw in ref[2:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            assert isinstance(node, dict), f"{ref}: {token!r} is below a scalar"
            assert token in node, f"{ref}: no {token!r}"
            node = node[token]
    return node


def test_write_all_writes_the_expected_files(generated: dict[str, Path]) -> None:
    assert set(generated) == EXPECTED_FILES
    for path in generated.values():
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert text == json.dumps(_load(path), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_generation_is_deterministic(tmp_path: Path, generated: dict[str, Path]) -> None:
    again = {path.name: path.read_bytes() for path in export.write_all(tmp_path)}
    assert again == {name: path.read_bytes() for name, path in generated.items()}


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_checked_in_file_matches_the_models(name: str, generated: dict[str, Path]) -> None:
    checked_in = CHECKED_IN / name
    assert checked_in.is_file(), f"schemas/{name} is missing. {REGENERATE}"
    assert checked_in.read_bytes() == generated[name].read_bytes(), (
        f"schemas/{name} is out of date with the models in src/ptsp_gate/contract. {REGENERATE}"
    )


def test_no_stray_json_in_schemas_dir() -> None:
    stray = {p.name for p in CHECKED_IN.glob("*.json")} - EXPECTED_FILES
    assert not stray, f"schemas/ holds JSON files the generator does not write: {sorted(stray)}"


def test_main_writes_into_the_given_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export.main([str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == EXPECTED_FILES
    assert len(capsys.readouterr().out.splitlines()) == len(EXPECTED_FILES)


# --- the payload JSON Schemas -------------------------------------------------------------------


@pytest.mark.parametrize("payload", export.PAYLOADS, ids=lambda p: p.file_name)
def test_payload_schema_is_self_contained_2020_12(
    payload: export.Payload, generated: dict[str, Path]
) -> None:
    schema = _load(generated[payload.file_name])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:ptsp-gate:schema:")
    assert payload.model.__name__ in schema["title"]
    assert schema["type"] == "object"
    for ce_type in payload.ce_types:
        assert ce_type in schema["description"]
    refs = list(_refs(schema))
    assert refs, "nested models are expected under $defs"
    for where, ref in refs:
        assert ref.startswith("#/$defs/"), f"{where}: {ref}"
        _resolve(schema, ref)


def test_inbound_schemas_are_open_and_decision_closed(generated: dict[str, Path]) -> None:
    application = _load(generated["permit-application.v1.schema.json"])
    enrolment = _load(generated["employer-enrolment.v1.schema.json"])
    decision = _load(generated["compliance-decision.v1.schema.json"])
    assert "additionalProperties" not in application
    assert "additionalProperties" not in enrolment
    assert decision["additionalProperties"] is False
    assert decision["$defs"]["Reason"]["additionalProperties"] is False


def test_identifier_patterns_are_ascii_digits(generated: dict[str, Path]) -> None:
    employer = _load(generated["permit-application.v1.schema.json"])["$defs"]["Employer"]
    assert employer["properties"]["nib"]["pattern"] == "^[0-9]{13}$"
    assert employer["properties"]["npwp"]["pattern"] == "^[0-9]{15,16}$"
    text = "".join(path.read_text(encoding="utf-8") for path in generated.values())
    assert "\\\\d" not in text, "use [0-9]: \\d also matches non-ASCII digits in some engines"


def test_renewal_rule_is_in_the_application_schema(generated: dict[str, Path]) -> None:
    schema = _load(generated["permit-application.v1.schema.json"])
    assert schema["if"]["properties"]["action"]["const"] == "RENEWAL"
    assert schema["then"]["properties"]["permit"]["required"] == ["previous_permit_number"]


# --- the AsyncAPI document ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi(generated: dict[str, Path]) -> dict[str, Any]:
    document: dict[str, Any] = _load(generated["asyncapi.json"])
    return document


def test_asyncapi_version_and_server(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"] == "ptsp-gate"
    assert asyncapi["info"]["version"]
    assert asyncapi["defaultContentType"] == "application/json"
    (server,) = asyncapi["servers"].values()
    assert server["protocol"] == "kafka"
    assert server["host"] == "{bootstrap}"
    assert "default" in server["variables"]["bootstrap"]


def test_every_asyncapi_ref_resolves(asyncapi: dict[str, Any]) -> None:
    refs = list(_refs(asyncapi))
    assert len(refs) > 20
    for where, ref in refs:
        assert not ref.startswith("#/$defs/"), f"{where}: pydantic $defs ref not rewritten: {ref}"
        _resolve(asyncapi, ref)


def test_asyncapi_has_no_leftover_defs_or_ids(asyncapi: dict[str, Any]) -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            # An embedded $id would move the base URI of the "#/components/..." refs below it.
            assert "$defs" not in node, where
            assert "$id" not in node, where
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}/{index}")

    walk(asyncapi["components"], "#/components")
    for model in ("PermitApplication", "EnrolmentState", "ComplianceDecision", "Employer"):
        assert model in asyncapi["components"]["schemas"]


# Each payload's default topic with its event types, received or sent; each input topic's DLQ.
EXPECTED_CHANNELS = {
    **{p.topic: (set(p.ce_types), "receive" if p.inbound else "send") for p in export.PAYLOADS},
    **{p.topic + DLQ_SUFFIX: (set(), "send") for p in export.PAYLOADS if p.inbound},
}


def test_asyncapi_channels_operations_and_ce_types(asyncapi: dict[str, Any]) -> None:
    channels = asyncapi["channels"]
    by_address = {channel["address"]: key for key, channel in channels.items()}
    assert set(by_address) == set(EXPECTED_CHANNELS)

    for address, (ce_types, action) in EXPECTED_CHANNELS.items():
        key = by_address[address]
        ops = [
            op
            for op in asyncapi["operations"].values()
            if op["channel"] == {"$ref": f"#/channels/{key}"}
        ]
        assert [op["action"] for op in ops] == [action], address
        # AsyncAPI 3: an operation's messages must be messages of its own channel.
        for message_ref in ops[0]["messages"]:
            assert message_ref["$ref"].startswith(f"#/channels/{key}/messages/")
            _resolve(asyncapi, message_ref["$ref"])
        assert len(ops[0]["messages"]) == len(channels[key]["messages"])

        seen: set[str] = set()
        for ref in channels[key]["messages"].values():
            message = _resolve(asyncapi, ref["$ref"])
            assert "payload" in message
            headers = _resolve(asyncapi, message["headers"]["$ref"])
            assert headers["type"] == "object"
            key_schema = message["bindings"]["kafka"]["key"]
            assert key_schema
            if not ce_types:  # dead letters: original headers plus the error headers
                assert set(headers["required"]) == set(dead_letter.REQUIRED_HEADERS)
                continue
            props = headers["properties"]
            assert set(headers["required"]) >= set(BINARY_HEADERS)
            assert props["ce_specversion"]["const"] == "1.0"
            assert props["content-type"]["const"] == "application/json"
            seen.add(props["ce_type"]["const"])
            key_schema = _resolve(asyncapi, key_schema["$ref"])
            nib_schema = key_schema["anyOf"][0] if "anyOf" in key_schema else key_schema
            if "$ref" in nib_schema:
                nib_schema = _resolve(asyncapi, nib_schema["$ref"])
            assert nib_schema["pattern"] == "^[0-9]{13}$"
        assert seen == ce_types, address


def test_enrolment_channel_is_compacted(asyncapi: dict[str, Any]) -> None:
    binding = asyncapi["channels"]["employerEnrolment"]["bindings"]["kafka"]
    assert binding["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_dlq_error_codes_are_documented(asyncapi: dict[str, Any]) -> None:
    properties = asyncapi["components"]["schemas"]["DeadLetterHeaders"]["properties"]
    header = properties[dead_letter.ERROR_CODE]
    assert header["enum"] == list(dead_letter.ERROR_CODES)
    for code, meaning in dead_letter.ERROR_CODE_MEANINGS.items():
        assert f"- `{code}`: {meaning}" in header["description"]
    # Every header a dead letter gets; a replay's marker is not one of them.
    assert set(properties) == dead_letter.ADDED_HEADERS - {dead_letter.REPLAYED_FROM}


def test_asyncapi_examples_validate_against_the_models(asyncapi: dict[str, Any]) -> None:
    models = {ce_type: p.model for p in export.PAYLOADS for ce_type in p.ce_types}
    checked = set()
    for message in asyncapi["components"]["messages"].values():
        for example in message.get("examples", []):
            ce_type = example["headers"]["ce_type"]
            headers = _resolve(asyncapi, message["headers"]["$ref"])
            assert headers["properties"]["ce_type"]["const"] == ce_type
            models[ce_type].model_validate_json(json.dumps(example["payload"]))
            checked.add(ce_type)
    assert checked == set(models)


# --- the document agrees with the code that produces the headers --------------------------------


def _check_headers(schema: dict[str, Any], headers: list[tuple[str, bytes]]) -> None:
    """The subset of JSON Schema the header schemas use, applied to Kafka headers."""
    values = {name: value.decode("utf-8") for name, value in headers}
    missing = set(schema["required"]) - set(values)
    assert not missing, f"headers lack {sorted(missing)}"
    for name, prop in schema["properties"].items():
        if name not in values:
            continue
        value = values[name]
        if "const" in prop:
            assert value == prop["const"], name
        if "enum" in prop:
            assert value in prop["enum"], name
        if "pattern" in prop:
            assert re.search(prop["pattern"], value), name
        if "format" in prop and prop["format"] == "date-time":
            assert datetime.fromisoformat(value).utcoffset() is not None, name
        assert len(value) >= prop.get("minLength", 0), name


def test_decision_headers_match_binary_headers(asyncapi: dict[str, Any]) -> None:
    """The headers of a decision as the gate queues it, trace context included."""
    from ptsp_gate.contract.events import ComplianceDecision
    from ptsp_gate.contract.export.examples import payload_examples
    from ptsp_gate.stores.decisions import announcement

    schema = asyncapi["components"]["schemas"]["ComplianceDecisionHeaders"]
    decision = ComplianceDecision.model_validate(payload_examples()[CE_TYPE_DECISION])
    trace = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("tracestate", b"vendor=abc"),
        ("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("ce_tracestate", b"vendor=abc"),
    ]
    row = announcement(decision, "compliance.permit-decisions.v1", "urn:ptsp-gate:x", trace)
    _check_headers(schema, row.headers)
    assert dict(row.headers)["ce_dataschema"].decode() == schema_id_of_decision()


def schema_id_of_decision() -> str:
    return json.loads((REPO_ROOT / "schemas/compliance-decision.v1.schema.json").read_text())["$id"]


def test_dead_letter_headers_match_intake(asyncapi: dict[str, Any]) -> None:
    from ptsp_gate.runtime import intake

    schemas = asyncapi["components"]["schemas"]
    schema = schemas["DeadLetterHeaders"]
    kept = f"truncated to its first {dead_letter.OVERSIZED_KEEP_BYTES} bytes for OVERSIZED"
    assert kept in schemas["DeadLetterPayload"]["description"]

    @dataclass(frozen=True)
    class Record:
        topic: str = "ptsp.permit-applications.v1"
        partition: int = 2
        offset: int = 41
        key: bytes | None = b"9120001234567"
        value: bytes | None = b"x" * 2000
        headers: tuple[tuple[str, bytes], ...] = (("ce_id", b"\xff"), ("traceparent", b"00-1"))

    for invalid in (
        intake.read(Record(), PermitApplication, [CE_TYPE_APPLICATION], max_bytes=1024),
        intake.read(Record(value=b"{}"), PermitApplication, [CE_TYPE_APPLICATION], 1 << 20),
    ):
        headers = intake.dlq_headers(invalid, datetime(2025, 3, 4, tzinfo=UTC))
        assert headers[:2] == [("ce_id", b"\xff"), ("traceparent", b"00-1")]
        _check_headers(schema, headers[2:])
        assert {name for name, _ in headers[2:]} <= set(schema["properties"])
