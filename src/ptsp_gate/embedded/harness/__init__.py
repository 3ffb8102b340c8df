"""One harness for everything that runs ptsp-gate locally: ``ptsp-gate dev``, the integration tests
and the benchmarks.

* :mod:`.databases`: a PostgreSQL server (``DATABASE_URL``'s or an embedded one) and fresh
  databases in it, migrated or cloned from a migrated template;
* :mod:`.services`: ``ptsp-gate run NAME`` as a child process on a port of its own, waited for
  until ``/ready`` answers, stopped with SIGTERM then SIGKILL; several at once;
* :mod:`.watch`: the records of a topic, the decisions published, the enrolment records applied.

Free ports and child processes in general are the engines' own (:mod:`ptsp_gate.embedded.ports`,
:mod:`ptsp_gate.embedded.processes`), exported here too. Development only: part of the ``dev``
extra, like the engines.
"""

from ptsp_gate.embedded.harness.databases import (
    create_database,
    database_name,
    drop_database,
    fresh_database,
    migrated_template,
    postgres_server,
    with_database,
)
from ptsp_gate.embedded.harness.services import (
    NotReady,
    ServiceExited,
    ServiceProcess,
    running_services,
    settings_env,
    start_service,
    wait_ready,
)
from ptsp_gate.embedded.harness.watch import collect_decisions, read_topic, wait_for_enrolments
from ptsp_gate.embedded.ports import free_port, free_ports
from ptsp_gate.embedded.processes import Process, stop_all

__all__ = [
    "NotReady",
    "Process",
    "ServiceExited",
    "ServiceProcess",
    "collect_decisions",
    "create_database",
    "database_name",
    "drop_database",
    "free_port",
    "free_ports",
    "fresh_database",
    "migrated_template",
    "postgres_server",
    "read_topic",
    "running_services",
    "settings_env",
    "start_service",
    "stop_all",
    "wait_for_enrolments",
    "wait_ready",
    "with_database",
]
