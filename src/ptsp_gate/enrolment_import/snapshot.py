"""One snapshot file imported in one transaction: staged, merged, re-decided, recorded."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from ptsp_gate.enrolment_import.errors import ImportFailed
from ptsp_gate.enrolment_import.feed import Feed
from ptsp_gate.enrolment_import.progress import Progress
from ptsp_gate.enrolment_import.reading import Source
from ptsp_gate.enrolment_import.rejects import Rejects
from ptsp_gate.redecide import Redecider
from ptsp_gate.stores import enrolment_snapshots
from ptsp_gate.stores.enrolment_snapshots import ImportCounts
from ptsp_gate.stores.unit_of_work import PostgresStore


@dataclass(frozen=True, slots=True)
class ImportResult(ImportCounts):
    import_id: int
    source_file: str
    seconds: float
    rejects_file: Path | None
    region_code: str | None
    complete_as_of: datetime | None
    # False when --complete met a region already complete as of a later date.
    snapshot_recorded: bool


async def import_snapshot(
    conn: asyncpg.Connection,
    path: Path,
    *,
    redecider: Redecider,
    rejects_file: Path,
    region: str | None = None,
    complete: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportResult:
    """Import one snapshot file in one transaction. Raises ImportFailed (BrokenFile for an
    unreadable file) and database errors; either way nothing has changed."""
    if complete and not region:
        raise ImportFailed("--complete needs --region: the region the snapshot lists completely")
    t0 = time.perf_counter()
    started = clock()
    rejects = Rejects(rejects_file)
    source = Source(path)
    source_file = source.name
    feed = Feed(source, path, rejects, progress)
    try:
        import_id = await enrolment_snapshots.next_import_id(conn)
        async with conn.transaction():
            await enrolment_snapshots.stage(conn, feed)
            if complete and feed.rejected:
                # A complete snapshot turns "no record" into NOT_REGISTERED: employers whose rows
                # were rejected would be blocked for the file's mistakes. The rejects file is
                # kept: it lists the rows to fix.
                rejects.commit()
                raise ImportFailed(
                    f"--complete: {feed.rejected} row(s) rejected, so the snapshot is not "
                    f"complete (fix the rows listed in {rejects_file} and import again)"
                )
            if progress is not None:
                progress.merging(feed.staged)
            applied, open_nibs = await enrolment_snapshots.merge_newest(
                conn, f"import:{import_id}:"
            )
            complete_as_of, recorded = (
                await enrolment_snapshots.record_region_snapshot(
                    conn, region, source_file, feed.read
                )
                if complete and region
                else (None, False)
            )
            redecisions = await _redecide(conn, open_nibs, redecider, clock())
            counts = ImportCounts(
                rows_read=feed.read,
                rows_applied=applied,
                rows_stale=feed.staged - applied,
                rows_rejected=feed.rejected,
                redecisions=redecisions,
            )
            await enrolment_snapshots.record_import(
                conn,
                import_id,
                source_file=source_file,
                region=region,
                complete=complete,
                counts=counts,
                started_at=started,
            )
        rejects_path = rejects.commit()
    except BaseException:
        # The file broke part-way or the database failed: a partial list of rejects would
        # mislead, and an earlier rejects file stays as it was.
        rejects.discard()
        raise
    finally:
        source.close()
    return ImportResult(
        **asdict(counts),
        import_id=import_id,
        source_file=source_file,
        seconds=time.perf_counter() - t0,
        rejects_file=rejects_path,
        region_code=region,
        complete_as_of=complete_as_of,
        snapshot_recorded=recorded,
    )


async def _redecide(
    conn: asyncpg.Connection, nibs: Sequence[str], redecider: Redecider, now: datetime
) -> int:
    if not nibs:
        return 0
    return len(await redecider.employers(PostgresStore(conn), nibs, now))
