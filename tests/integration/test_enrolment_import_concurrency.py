"""The bulk import while the stream writes the same employers: the newest version ends up stored,
and a deadlock with a stream batch costs the import a retry of its merge, not the file."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from ptsp_gate import demo
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.enrolment_import import ImportResult
from ptsp_gate.stores import enrolments

from .conftest import eventually
from .import_support import record, run_import, state, stored, write

pytestmark = pytest.mark.integration


async def test_import_and_stream_concurrently_end_with_the_newest_version(
    db, db_dsn, tmp_path
) -> None:
    rng = random.Random(7)
    employers = range(1, 20_001)
    # Even versions come by file, odd ones by stream: whichever is higher must win.
    file_version = {n: rng.randrange(2, 41, 2) for n in employers}
    path = write(
        tmp_path / "s.csv", [record(n, v, npp=f"FILE-{v}") for n, v in file_version.items()]
    )
    stream_max: dict[int, int] = {}
    import_done = asyncio.Event()
    batches_during_import = 0

    async def stream() -> None:
        nonlocal batches_during_import
        conn = await connect(db_dsn)
        try:
            rounds_after = 0
            while rounds_after < 3:
                if import_done.is_set():
                    rounds_after += 1
                # Batches in arrival order, not NIB order: the import must cope with deadlocks.
                batch = rng.sample(list(employers), 500)
                versions = {n: rng.randrange(1, 42, 2) for n in batch}
                while True:
                    try:
                        async with conn.transaction():
                            await enrolments.apply_newer(
                                conn,
                                [state(n, v, npp=f"STREAM-{v}") for n, v in versions.items()],
                                "stream",
                                [None] * len(versions),
                            )
                        break
                    except asyncpg.DeadlockDetectedError:
                        continue  # what enrolment-sync does: retry the batch
                for n, v in versions.items():
                    stream_max[n] = max(stream_max.get(n, 0), v)
                if not import_done.is_set():
                    batches_during_import += 1
                await asyncio.sleep(0)
        finally:
            await conn.close()

    async def importer() -> ImportResult:
        try:
            return await run_import(db, path)
        finally:
            import_done.set()

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.05)
    result = await importer()
    await streaming

    assert batches_during_import > 0
    got = await stored(db)
    assert len(got) == len(employers)
    wrong = []
    for n in employers:
        newest = max(file_version[n], stream_max.get(n, 0))
        row = got[demo.nib(n)]
        want = (newest, f"FILE-{newest}" if newest % 2 == 0 else f"STREAM-{newest}")
        if (row["version"], row["npp"]) != want:
            wrong.append((n, (row["version"], row["npp"]), want))
    assert wrong == []
    assert result.rows_applied + result.rows_stale == len(employers)


async def test_the_import_survives_a_deadlock_with_the_stream(db, db_dsn, tmp_path) -> None:
    async with db.transaction():
        await enrolments.apply_newer(db, [state(n, 1) for n in (1, 2, 3)], "stream", [None] * 3)
    path = write(tmp_path / "s.csv", [record(n, 10, npp="FILE") for n in (1, 2, 3)])
    stream = await connect(db_dsn)
    watcher = await connect(db_dsn)
    try:
        try:
            # Only the import's backend looks for the deadlock, so the import is the victim.
            await stream.execute("SET deadlock_timeout = '60s'")
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("steering deadlock detection needs a superuser")
        batch = stream.transaction()
        await batch.start()
        await enrolments.apply_newer(stream, [state(3, 5)], "stream", [None])
        importing = asyncio.create_task(run_import(db, path))

        async def import_waits_for_a_lock() -> bool:
            event = await watcher.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                db.get_server_pid(),
            )
            return str(event) == "Lock"

        await eventually(import_waits_for_a_lock, timeout=10, interval=0.01)
        # The import holds NIBs 1 and 2 and waits for 3; the batch now wants 1: a deadlock.
        await enrolments.apply_newer(stream, [state(1, 6)], "stream", [None])
        await batch.commit()
        result = await importing
    finally:
        await stream.close()
        await watcher.close()
    assert (result.rows_applied, result.rows_stale) == (3, 0)
    got = await stored(db)
    assert {(r["version"], r["npp"]) for r in got.values()} == {(10, "FILE")}
