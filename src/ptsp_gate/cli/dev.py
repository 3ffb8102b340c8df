"""`ptsp-gate dev`: the whole system on one machine, with a demo feed and a printed summary.

Both services run as separate processes (`ptsp-gate run ...`), exactly as in production, against
the embedded broker and PostgreSQL unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from aiokafka import AIOKafkaConsumer

from ptsp_gate import demo
from ptsp_gate.adapters import kafka, migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.cli.common import PORT, CommandError, database, require_dev_extra
from ptsp_gate.config import Settings, redact_dsn
from ptsp_gate.reports import render

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

READY_TIMEOUT_S = 45
DECISIONS_TIMEOUT_S = 45


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("dev", help="run the whole system locally with a demo feed")
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop once the demo's decisions are in (for scripts and CI)",
    )
    parser.add_argument("--permit-checker-port", type=PORT, default=9101)
    parser.add_argument("--enrolment-sync-port", type=PORT, default=9102)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    # Both up front, so that a missing engine is said before the other one has started.
    if not settings.kafka_bootstrap_servers:
        require_dev_extra(
            "confluent_kafka", "the embedded Kafka", otherwise="KAFKA_BOOTSTRAP_SERVERS"
        )
    if not settings.database_url:
        require_dev_extra("pgserver", "the embedded PostgreSQL", otherwise="DATABASE_URL")
    return await run_dev(args, settings)


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
) -> dict[str, tuple[subprocess.Popen[bytes], int, Path]]:
    logs = settings.data_dir / "logs"
    _private_dir(logs)
    procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    for name, port in (
        ("enrolment-sync", args.enrolment_sync_port),
        ("permit-checker", args.permit_checker_port),
    ):
        log_path = logs / f"{name}.log"
        log_file = stack.enter_context(_private_file(log_path))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ptsp_gate.cli.main",
                "run",
                name,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        stack.callback(_kill, proc)
        procs[name] = (proc, port, log_path)
    return procs


async def _wait_ready(
    args: argparse.Namespace,
    procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]],
    settings: Settings,
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = set(procs)
    while waiting:
        for name in list(waiting):
            proc, port, log_path = procs[name]
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [
                    "(no output)"
                ]
                raise CommandError(f"{name} exited with code {proc.returncode}: {tail[0][:300]}")
            if await asyncio.to_thread(_is_ready, port):
                waiting.discard(name)
        if time.monotonic() > deadline:
            raise CommandError(
                f"{', '.join(sorted(waiting))} not ready after {READY_TIMEOUT_S} s; "
                f"see {settings.data_dir / 'logs'}"
            )
        await asyncio.sleep(0.3)


def _ptsp_gate_command() -> str:
    local = Path(sys.executable).parent / "ptsp-gate"
    if local.exists():
        with contextlib.suppress(ValueError):
            return str(local.relative_to(Path.cwd()))
        return str(local)
    return "ptsp-gate"


def _is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


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
    conn = await connect(dsn)
    try:
        deadline = time.monotonic() + DECISIONS_TIMEOUT_S
        while time.monotonic() < deadline:
            n = await conn.fetchval(
                "SELECT count(*) FROM employer_enrolment WHERE nib = ANY($1) AND version >= $2",
                nibs,
                version,
            )
            if n == len(nibs):
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise CommandError("enrolment-sync did not apply the demo enrolment records in time")


async def _collect_decisions(
    settings: Settings,
    bootstrap: list[str],
    wanted: set[str],
    since: datetime,
    accept: Callable[[dict[str, Any]], bool] = lambda _d: True,
) -> dict[str, dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topic_decisions,
        **kafka.client_args(_with_servers(settings, bootstrap)),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + DECISIONS_TIMEOUT_S
        while not wanted <= found.keys() and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    d = json.loads(r.value)
                    if datetime.fromisoformat(d["decided_at"]) >= since and accept(d):
                        found[d["application_id"]] = d
    finally:
        await consumer.stop()
    return found


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


async def _wait_for_signal(procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        for name, (proc, _port, log_path) in procs.items():
            if proc.poll() is not None:
                _say(f"{name} exited with code {proc.returncode}; see {log_path}")
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _stop_services(procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]]) -> None:
    for proc, _port, _log in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _port, _log in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
