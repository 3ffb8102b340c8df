"""Default topic names of the v1 contract. Each is configurable at deployment (config.py); the
schema export documents these defaults."""

from __future__ import annotations

from typing import Final

TOPIC_APPLICATIONS: Final = "ptsp.permit-applications.v1"
TOPIC_ENROLMENT: Final = "bpjstk.employer-enrolment.v1"
TOPIC_DECISIONS: Final = "compliance.permit-decisions.v1"
DLQ_SUFFIX: Final = ".dlq"
