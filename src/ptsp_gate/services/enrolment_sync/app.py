"""Wiring of the enrolment-sync service."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.services.enrolment_sync.sync import EnrolmentSync
from ptsp_gate.services.runtime import ServiceSpec

NAME = "enrolment-sync"


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        topic=settings.topic_enrolment,
        group=settings.group_enrolment_sync,
        make_handler=lambda pool, metrics: (
            EnrolmentSync(
                pool=pool,
                metrics=metrics,
                dlq_topic=settings.dlq_topic,
                max_event_bytes=settings.max_event_bytes,
            ).handle_batch
        ),
    )
