"""Another Kafka client (librdkafka, as kcat uses) producing contract-conformant CloudEvents in
both content modes gets the decisions DESIGN §4 prescribes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_ENROLMENT

from .conftest import eventually
from .support import decisions, read_topic, services

pytestmark = pytest.mark.integration


def _produce(bootstrap: list[str], topic: str, messages: list[tuple[bytes, list, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": ",".join(bootstrap), "enable.idempotence": True})
    for key, headers, value in messages:
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(15) == 0


async def test_librdkafka_producer_binary_and_structured_mode(settings, bootstrap, db) -> None:
    now = datetime.now(UTC)
    enrolment = demo.enrolment(1, arrears=4, now=now)
    app_binary = demo.application(1, now=now)
    app_structured = {**demo.application(1, now=now), "application_id": "APP-STRUCTURED"}
    structured = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:ptsp:7314:oss",
        "type": CE_TYPE_APPLICATION,
        "time": now.isoformat(),
        "datacontenttype": "application/json",
        "data": app_structured,
    }
    async with services(settings):
        await asyncio.to_thread(
            _produce,
            bootstrap,
            settings.topic_enrolment,
            [
                (
                    enrolment["nib"].encode(),
                    [
                        ("ce_specversion", b"1.0"),
                        ("ce_id", b"bpjs-1"),
                        ("ce_source", b"urn:bpjstk"),
                        ("ce_type", CE_TYPE_ENROLMENT.encode()),
                        ("ce_time", now.isoformat().encode()),
                        ("content-type", b"application/json"),
                    ],
                    json.dumps(enrolment).encode(),
                ),
            ],
        )

        async def applied() -> bool:
            return await db.fetchval("SELECT count(*) FROM employer_enrolment") == 1

        await eventually(applied)
        _key, headers, value = demo.application_record(app_binary)
        await asyncio.to_thread(
            _produce,
            bootstrap,
            settings.topic_applications,
            [
                (app_binary["employer"]["nib"].encode(), headers, value),
                (
                    app_structured["employer"]["nib"].encode(),
                    [("content-type", b"application/cloudevents+json; charset=utf-8")],
                    json.dumps(structured).encode(),
                ),
            ],
        )
        out = decisions(await read_topic(bootstrap, settings.topic_decisions, 2))
    assert {
        d["application_id"]: (d["outcome"], [r["code"] for r in d["reasons"]]) for d in out
    } == {
        app_binary["application_id"]: ("BLOCKED", ["ARREARS"]),
        "APP-STRUCTURED": ("BLOCKED", ["ARREARS"]),
    }
    as_of = datetime.fromisoformat(enrolment["as_of"])
    assert all(datetime.fromisoformat(d["enrolment_as_of"]) == as_of for d in out)
