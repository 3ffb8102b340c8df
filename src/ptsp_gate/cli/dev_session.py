"""What `ptsp-gate dev` does: the whole system on one machine, with a demo feed and a printed
summary. Development only: it runs on the embedded engines and the harness of the `dev` extra.

The services and the officer console run as separate processes (`ptsp-gate run ...`), exactly as
in production, against the embedded broker and PostgreSQL unless KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL point elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ptsp_gate import demo
from ptsp_gate.adapters import kafka, migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.cli.common import CommandError, database
from ptsp_gate.config import Settings, redact_dsn
from ptsp_gate.embedded import harness
from ptsp_gate.reports import render

READY_TIMEOUT_S = 45
DECISIONS_TIMEOUT_S = 45
STOP_TIMEOUT_S = 30


def _with_servers(settings: Settings, bootstrap: list[str]) -> Settings:
    """The settings, with the servers actually in use (the embedded cluster's, say)."""
    return settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})


def _say(text: str = "") -> None:
    print(text, flush=True)


def _private_dir(path: Path) -> None:
    """`path`, created for this user only (0700). An existing one of this user is tightened to
    0700 too, unless it is a shared sticky directory such as /tmp."""
    path.mkdir(mode=stat.S_IRWXU, parents=True, exist_ok=True)
    info = path.stat()
    if (
        info.st_uid == os.geteuid()
        and not info.st_mode & stat.S_ISVTX
        and stat.S_IMODE(info.st_mode) != stat.S_IRWXU
    ):
        path.chmod(stat.S_IRWXU)


def _private_file(path: Path) -> BinaryIO:
    """`path` opened for writing from scratch, readable by this user only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, stat.S_IRUSR | stat.S_IWUSR)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # a file of an earlier run keeps its mode
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _database_line(dsn: str) -> str:
    return f"PostgreSQL:  {redact_dsn(dsn)}"


def _try_lines(args: argparse.Namespace, settings: Settings, bootstrap: list[str]) -> list[str]:
    """What to try while the system runs. A configured DATABASE_URL is not repeated (it holds the
    password): the commands need the same variable as this one; the embedded database is found
    again by the officer commands without any variable."""
    exe = _ptsp_gate_command()
    kafka = f"KAFKA_BOOTSTRAP_SERVERS={','.join(bootstrap)} "
    return [
        "Try (with this command's DATABASE_URL or DATABASE_URL_FILE set):"
        if settings.database_url
        else "Try:",
        f"  curl -s localhost:{args.permit_checker_port}/metrics | grep ptsp_gate_decisions",
        f"  {exe} flagged",
        f"  {exe} employer {demo.nib(6)}",
        f"  {kafka}{exe} dlq list",
        f"  {exe} officer add me --role admin   # asks for a password (12+ characters), then",
        f"  open http://localhost:{args.officer_console_port}/ and sign in as `me`",
        f"Service logs: {settings.data_dir / 'logs'}",
    ]


async def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    # Logs and data are this user's alone. (Run by root, pgserver opens every directory above
    # its pgdata, this one included, to other users again: its server runs as another user.)
    _private_dir(settings.data_dir)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        bootstrap = list(settings.kafka_bootstrap_servers)
        if not bootstrap:
            from ptsp_gate.embedded import MockKafkaCluster

            topics = settings.all_topics()
            cluster = stack.enter_context(
                MockKafkaCluster(brokers=3, topics=dict.fromkeys(topics, 3))
            )
            bootstrap = list(cluster.bootstrap_servers)
            _say(f"Kafka (embedded, 3 brokers):  {','.join(bootstrap)}")
        else:
            _say(f"Kafka:       {','.join(bootstrap)}")
        async with database(settings) as dsn:
            _say(_database_line(dsn))
            conn = await connect(dsn)
            try:
                applied = await migrations.migrate(conn)
            finally:
                await conn.close()
            _say("Migrations:  " + (", ".join(applied) if applied else "current"))
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": ",".join(bootstrap),
                "DATABASE_URL": dsn,
                # The console on http://localhost, without TLS: cookies without `Secure`.
                "PTSP_GATE_CONSOLE_SECURE_COOKIES": "false",
            }
            procs = _start_services(args, settings, env, stack)
            await _wait_ready(args, procs, settings)
            _say(f"Services ready in {time.monotonic() - started:.1f} s; sending the demo feed...")
            ok = await _demo(settings, bootstrap, dsn)
            _say("")
            for line in _try_lines(args, settings, bootstrap):
                _say(line)
            if not args.exit_after_demo:
                _say("Running; press Ctrl-C to stop.")
                await _wait_for_signal(procs)
            _stop_services(procs)
            return 0 if ok else 1
    return 0


def _start_services(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], stack: contextlib.ExitStack
) -> dict[str, harness.ServiceProcess]:
    logs = settings.data_dir / "logs"
    _private_dir(logs)
    ports = {
        "enrolment-sync": args.enrolment_sync_port,
        "permit-checker": args.permit_checker_port,
        "officer-console": args.officer_console_port,
    }
    return stack.enter_context(
        harness.running_services(ports, env, logs=logs, open_log=_private_file)
    )


async def _wait_ready(
    args: argparse.Namespace, procs: dict[str, harness.ServiceProcess], settings: Settings
) -> None:
    try:
        await harness.wait_ready(procs.values(), READY_TIMEOUT_S)
    except harness.ServiceExited as exc:
        raise CommandError(str(exc)) from None
    except harness.NotReady as exc:
        raise CommandError(f"{exc}; see {settings.data_dir / 'logs'}") from None


def _ptsp_gate_command() -> str:
    local = Path(sys.executable).parent / "ptsp-gate"
    if local.exists():
        with contextlib.suppress(ValueError):
            return str(local.relative_to(Path.cwd()))
        return str(local)
    return "ptsp-gate"


async def _demo(settings: Settings, bootstrap: list[str], dsn: str) -> bool:
    now = datetime.now(UTC)
    # A version that grows with every run, so a re-run's enrolment records supersede the last.
    scenarios = demo.scenarios(now, version=int(now.timestamp()))
    producer = kafka.make_producer(_with_servers(settings, bootstrap))
    await producer.start()
    try:
        enrolments = [s.enrolment for s in scenarios if s.enrolment is not None]
        for data in enrolments:
            key, headers, value = demo.enrolment_record(data)
            await producer.send_and_wait(settings.topic_enrolment, value, key=key, headers=headers)
        await _wait_enrolments(dsn, [e["nib"] for e in enrolments], int(now.timestamp()))
        for s in scenarios:
            key, headers, value = demo.application_record(s.application, s.ce_type)
            await producer.send_and_wait(
                settings.topic_applications, value, key=key, headers=headers
            )
        # Not even JSON: dead-lettered, with no decision since no application id can be read.
        await producer.send_and_wait(
            settings.topic_applications,
            b"\x00garbage",
            key=b"garbage",
            headers=[("ce_id", str(uuid.uuid4()).encode())],
        )
    finally:
        await producer.stop()
    decisions = await _collect_decisions(
        settings, bootstrap, {s.application["application_id"] for s in scenarios}, now
    )
    ok = _summarise(scenarios, decisions, settings.dlq_topic(settings.topic_applications))
    return await _show_redecision(settings, bootstrap, scenarios, now) and ok


async def _show_redecision(
    settings: Settings, bootstrap: list[str], scenarios: list[demo.Scenario], now: datetime
) -> bool:
    """The employer in arrears pays: its blocked application clears on its own."""
    arrears = next(s for s in scenarios if s.expect_codes == ("ARREARS",))
    assert arrears.enrolment is not None
    paid = {**arrears.enrolment, "arrears_months": 0, "version": arrears.enrolment["version"] + 1}
    producer = kafka.make_producer(_with_servers(settings, bootstrap))
    await producer.start()
    try:
        key, headers, value = demo.enrolment_record(paid)
        await producer.send_and_wait(settings.topic_enrolment, value, key=key, headers=headers)
    finally:
        await producer.stop()
    app_id = arrears.application["application_id"]
    found = await _collect_decisions(
        settings, bootstrap, {app_id}, now, lambda d: d["supersedes"] is not None
    )
    _say("")
    if app_id not in found:
        _say(f"Re-decision: none arrived for {app_id} after its employer paid.")
        return False
    _say(
        f"Re-decision: the employer of {app_id} paid its arrears; the application went from "
        f"BLOCKED to {found[app_id]['outcome']} on its own "
        f"(decision {found[app_id]['decision_id']} supersedes {found[app_id]['supersedes']})."
    )
    return bool(found[app_id]["outcome"] == "CLEARED")


async def _wait_enrolments(dsn: str, nibs: list[str], version: int) -> None:
    if not await harness.wait_for_enrolments(dsn, nibs, version, DECISIONS_TIMEOUT_S):
        raise CommandError("enrolment-sync did not apply the demo enrolment records in time")


async def _collect_decisions(
    settings: Settings,
    bootstrap: list[str],
    wanted: set[str],
    since: datetime,
    accept: Callable[[dict[str, Any]], bool] = lambda _d: True,
) -> dict[str, dict[str, Any]]:
    return await harness.collect_decisions(
        kafka.client_args(_with_servers(settings, bootstrap)),
        settings.topic_decisions,
        wanted,
        since=since,
        accept=accept,
        timeout_s=DECISIONS_TIMEOUT_S,
    )


def _summarise(
    scenarios: list[demo.Scenario], decisions: dict[str, dict[str, Any]], dlq_topic: str
) -> bool:
    rows = []
    ok = True
    for s in scenarios:
        d = decisions.get(s.application["application_id"])
        outcome = d["outcome"] if d else "(none)"
        codes = tuple(r["code"] for r in d["reasons"]) if d else ()
        match = outcome == s.expect_outcome and codes == s.expect_codes
        ok &= match
        rows.append(
            {
                "scenario": s.name,
                "application": s.application["application_id"],
                "outcome": outcome,
                "reasons": ",".join(codes) or "-",
                "as expected": "yes" if match else f"NO (expected {s.expect_outcome})",
            }
        )
    _say("")
    _say(render.to_table(rows, ["scenario", "application", "outcome", "reasons", "as expected"]))
    counts: dict[str, int] = {}
    for d in decisions.values():
        counts[d["outcome"]] = counts.get(d["outcome"], 0) + 1
    _say(
        "Decisions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + "; plus 1 unreadable record dead-lettered to "
        + dlq_topic
    )
    if not ok:
        _say("Some outcomes differ from what the demo expects: see the table above.")
    return ok


async def _wait_for_signal(procs: dict[str, harness.ServiceProcess]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for name, proc in procs.items():
            if not proc.running():
                _say(f"{name} exited with code {proc.returncode}; see {proc.log}")
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _stop_services(procs: dict[str, harness.ServiceProcess]) -> None:
    harness.stop_all(list(procs.values()), STOP_TIMEOUT_S)
