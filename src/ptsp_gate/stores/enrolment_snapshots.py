"""The bulk import's SQL: a staging table filled by COPY, one set-wise merge into the enrolment
projection under the stream's version rule, the region's completeness date, and the import's own
record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ptsp_gate.contract.events import ENROLMENT_FIELDS
from ptsp_gate.stores.enrolments import NEWER_VERSION_WINS

_RECORD = ", ".join(ENROLMENT_FIELDS)
# What each staged COPY line holds: the row's line in the file, then the record's fields.
STAGING_COLUMNS = ("line", *ENROLMENT_FIELDS)

# The projection's own column types, so that the two cannot drift apart. No constraints: every
# line was checked before it was sent.
_STAGING = f"""
CREATE TEMP TABLE enrolment_staging ON COMMIT DROP AS
SELECT 0::bigint AS line, {_RECORD} FROM employer_enrolment WITH NO DATA
"""

# One set-wise statement. The version rule is the stream's (enrolments.apply_newer): the
# ON CONFLICT ... WHERE keeps it whichever path wrote first, and in READ COMMITTED it is checked
# against the row as committed by a concurrent writer. Within the file the highest version of a
# NIB wins, the first of equal versions (as if applied in file order). Rows go in NIB order, so
# two imports take their row locks in the same order.
#
# Only changed employers with some PENDING or BLOCKED decision can have an open application to
# re-decide (the re-decider's own condition is narrower: latest decision PENDING or BLOCKED,
# within the window); filtering here keeps a million-row import from shipping a million NIBs
# back and forth for nothing. A semi-join, not `IN (subquery)`: once the decisions outgrow
# work_mem, that becomes a linear search per row, while a hash join only spills.
_MERGE = f"""
WITH newest AS (
    SELECT DISTINCT ON (nib) line, {_RECORD}
    FROM enrolment_staging
    ORDER BY nib, version DESC, line
), applied AS (
    INSERT INTO employer_enrolment ({_RECORD}, source, source_event_id, updated_at)
    SELECT {_RECORD}, 'import', $1::text || line, now() FROM newest
    {NEWER_VERSION_WINS}
    RETURNING nib
)
SELECT (SELECT count(*) FROM applied) AS applied,
       coalesce(
           (SELECT array_agg(a.nib) FROM applied a WHERE EXISTS (
               SELECT FROM compliance_decision d
               WHERE d.nib = a.nib AND d.outcome IN ('PENDING', 'BLOCKED'))),
           '{{}}') AS open_nibs
"""

_SNAPSHOT = """
INSERT INTO region_snapshot (region_code, complete_as_of, source_file, rows_in_file)
SELECT $1, max(as_of), $2, $3 FROM enrolment_staging
ON CONFLICT (region_code) DO UPDATE SET
    complete_as_of = EXCLUDED.complete_as_of, source_file = EXCLUDED.source_file,
    rows_in_file = EXCLUDED.rows_in_file, recorded_at = now()
WHERE region_snapshot.complete_as_of <= EXCLUDED.complete_as_of
RETURNING complete_as_of
"""

_RECORD_IMPORT = """
INSERT INTO enrolment_import (id, source_file, region_code, complete, rows_read, rows_applied,
    rows_stale, rows_rejected, redecisions, started_at, finished_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())
"""

_MERGE_ATTEMPTS = 5


async def next_import_id(conn: asyncpg.Connection) -> int:
    """The id the import will be recorded under, taken before its transaction starts."""
    return int(
        await conn.fetchval("SELECT nextval(pg_get_serial_sequence('enrolment_import', 'id'))")
    )


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def stage(conn: asyncpg.Connection, lines: Iterable[bytes]) -> None:
    """Fill a staging table, dropped when the caller's transaction ends, with `lines`: COPY text
    of STAGING_COLUMNS. An exception raised by `lines` ends the COPY and comes out of here."""
    # The merge sorts the whole file by NIB: a million rows sort in memory (about 230 MB)
    # rather than through temp files, about 1.5 s faster; larger files still spill.
    await conn.execute("SET LOCAL work_mem = '256MB'")
    await conn.execute(_STAGING)
    await conn.copy_to_table("enrolment_staging", source=_aiter(lines), columns=STAGING_COLUMNS)


async def merge_newest(conn: asyncpg.Connection, event_prefix: str) -> tuple[int, list[str]]:
    """Merge the newest staged row of each NIB into the projection; how many rows were applied,
    and the NIBs among them that have a PENDING or BLOCKED decision."""
    # The stream upserts its batches in arrival order, so a batch and the import can each hold a
    # row the other wants. PostgreSQL then aborts one of them; when it is the import, undo just
    # the merge (a savepoint) and run it again rather than lose the whole file.
    for attempt in range(1, _MERGE_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                row = await conn.fetchrow(_MERGE, event_prefix)
        except asyncpg.DeadlockDetectedError:
            if attempt == _MERGE_ATTEMPTS:
                raise
            continue
        assert row is not None
        return int(row["applied"]), list(row["open_nibs"])
    raise AssertionError("unreachable")


async def record_region_snapshot(
    conn: asyncpg.Connection, region: str, source_file: str, rows: int
) -> tuple[datetime, bool]:
    """The region's completeness date, and whether the staged file set it: an older snapshot
    loaded after a newer one does not move the date back."""
    recorded = await conn.fetchval(_SNAPSHOT, region, source_file, rows)
    if recorded is not None:
        return recorded, True
    kept = await conn.fetchval(
        "SELECT complete_as_of FROM region_snapshot WHERE region_code = $1", region
    )
    return kept, False


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import did, as its record keeps it."""

    rows_read: int
    rows_applied: int
    rows_stale: int
    rows_rejected: int
    redecisions: int


async def record_import(
    conn: asyncpg.Connection,
    import_id: int,
    *,
    source_file: str,
    region: str | None,
    complete: bool,
    counts: ImportCounts,
    started_at: datetime,
) -> None:
    await conn.execute(
        _RECORD_IMPORT,
        import_id,
        source_file,
        region,
        complete,
        counts.rows_read,
        counts.rows_applied,
        counts.rows_stale,
        counts.rows_rejected,
        counts.redecisions,
        started_at,
    )
