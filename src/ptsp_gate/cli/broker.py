"""`ptsp-gate broker`: a standalone local Kafka cluster with the configured topics, for trying
the services out or running them under a debugger. Development only: it needs the dev extra."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ptsp_gate.cli.common import bounded, require_dev_extra
from ptsp_gate.config import Settings

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("broker", help="a standalone local Kafka cluster")
    parser.set_defaults(handler=broker)
    parser.add_argument(
        "--engine",
        choices=("mock", "kafka"),
        default="mock",
        help="mock: librdkafka's in-process mock cluster; kafka: Apache Kafka nodes (needs Java "
        "17+ and the Apache Kafka that scripts/setup installs)",
    )
    parser.add_argument("--brokers", type=bounded(1, 9), default=3)
    parser.add_argument("--partitions", type=bounded(1, 64), default=3)
    parser.add_argument("--bootstrap-file", help="also write the bootstrap address to this file")


async def broker(args: argparse.Namespace, settings: Settings) -> int:
    # Both engines go through librdkafka: the mock is part of it, Apache Kafka's topics are
    # created with its admin client.
    require_dev_extra("confluent_kafka", "the embedded Kafka")
    from ptsp_gate.embedded import run_broker

    path = Path(args.bootstrap_file) if args.bootstrap_file else None
    # Blocks on the main thread on purpose: only the main thread receives SIGTERM/SIGINT.
    return run_broker(
        args.brokers,
        args.partitions,
        settings.all_topics(),
        path,
        engine=args.engine,
        compacted=[settings.topic_enrolment],
    )
