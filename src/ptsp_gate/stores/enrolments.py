"""Reading and writing the enrolment projection (used by both services and the bulk import),
and what the projection's metrics read from it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from ptsp_gate.contract.events import (
    ENROLMENT_FIELDS,
    EnrolmentState,
    EnrolmentStatus,
    PdsFlag,
    Program,
    Segment,
)

_COLUMNS = ", ".join(ENROLMENT_FIELDS)


# The version rule, shared by every path that writes the projection (stream and bulk import): an
# older or equal version never overwrites a newer one, whichever wrote first.
NEWER_VERSION_WINS = """ON CONFLICT (nib) DO UPDATE SET
    npwp = EXCLUDED.npwp, npp = EXCLUDED.npp, status = EXCLUDED.status,
    segment = EXCLUDED.segment, programs = EXCLUDED.programs,
    workers_enrolled = EXCLUDED.workers_enrolled,
    arrears_months = EXCLUDED.arrears_months, pds_flags = EXCLUDED.pds_flags,
    sanction_requested = EXCLUDED.sanction_requested, as_of = EXCLUDED.as_of,
    version = EXCLUDED.version, source = EXCLUDED.source,
    source_event_id = EXCLUDED.source_event_id, updated_at = now()
WHERE employer_enrolment.version < EXCLUDED.version"""


def from_row(row: asyncpg.Record) -> EnrolmentState:
    # Rows were validated on the way in; constructing without re-validation keeps lookups cheap.
    return EnrolmentState.model_construct(
        nib=row["nib"],
        npwp=row["npwp"],
        npp=row["npp"],
        status=EnrolmentStatus(row["status"]),
        segment=Segment(row["segment"]),
        programs=frozenset(Program(p) for p in row["programs"]),
        workers_enrolled=row["workers_enrolled"],
        arrears_months=row["arrears_months"],
        pds_flags=frozenset(PdsFlag(f) for f in row["pds_flags"]),
        sanction_requested=row["sanction_requested"],
        as_of=row["as_of"],
        version=row["version"],
    )


async def fetch_many(
    conn: asyncpg.Connection, nibs: Iterable[str], *, lock: bool = False
) -> dict[str, EnrolmentState]:
    """The stored states of these employers. With `lock`, the rows are share-locked until the
    caller's transaction ends: an update of the same employer then waits, and the re-decision it
    triggers sees the decisions made from the old state."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM employer_enrolment WHERE nib = ANY($1::text[])"
        + (" ORDER BY nib FOR SHARE" if lock else ""),
        list(set(nibs)),
    )
    return {r["nib"]: from_row(r) for r in rows}


async def apply_newer(
    conn: asyncpg.Connection,
    states: Sequence[EnrolmentState],
    source: str,
    event_ids: Sequence[str | None],
) -> set[str]:
    """Upsert the states whose version is newer than the stored one; returns the NIBs applied.

    The version rule lives in the WHERE clause of the upsert, so it holds whichever path (stream,
    import) or process wrote first: an older or equal version never overwrites a newer one.
    Callers pass at most one state per NIB (the newest of a batch).
    """
    if not states:
        return set()
    rows = await conn.fetch(
        f"""
        INSERT INTO employer_enrolment ({_COLUMNS}, source, source_event_id, updated_at)
        SELECT u.nib, u.npwp, u.npp, u.status, u.segment, string_to_array(u.programs, ','),
               u.workers_enrolled, u.arrears_months, string_to_array(u.pds_flags, ','),
               u.sanction_requested, u.as_of, u.version, u.source, u.source_event_id, now()
        FROM unnest(
            $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::int[], $8::int[], $9::text[], $10::bool[], $11::timestamptz[], $12::bigint[],
            $13::text[], $14::text[]
        ) AS u(nib, npwp, npp, status, segment, programs, workers_enrolled, arrears_months,
               pds_flags, sanction_requested, as_of, version, source, source_event_id)
        -- Rows are locked in NIB order, as the bulk import merges them: no lock-order deadlocks.
        ORDER BY u.nib
        {NEWER_VERSION_WINS}
        RETURNING nib
        """,
        [s.nib for s in states],
        [s.npwp for s in states],
        [s.npp for s in states],
        [s.status.value for s in states],
        [s.segment.value for s in states],
        # text[][] must be rectangular: pass each set as a comma-joined string, split in SQL.
        [",".join(sorted(p.value for p in s.programs)) for s in states],
        [s.workers_enrolled for s in states],
        [s.arrears_months for s in states],
        [",".join(sorted(f.value for f in s.pds_flags)) for s in states],
        [s.sanction_requested for s in states],
        [s.as_of for s in states],
        [s.version for s in states],
        [source] * len(states),
        list(event_ids),
    )
    return {r["nib"] for r in rows}


async def complete_regions(conn: asyncpg.Connection, regions: Iterable[str | None]) -> set[str]:
    """Regions whose complete BPJS TK snapshot has been loaded."""
    wanted = sorted({r for r in regions if r})
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT region_code FROM region_snapshot WHERE region_code = ANY($1::text[])", wanted
    )
    return {r["region_code"] for r in rows}


async def import_totals(conn: asyncpg.Connection | asyncpg.Pool) -> asyncpg.Record | None:
    """Rows applied, stale and rejected, and re-decisions, over every bulk import so far."""
    return await conn.fetchrow(
        """
        SELECT coalesce(sum(rows_applied), 0) AS applied,
               coalesce(sum(rows_stale), 0) AS stale,
               coalesce(sum(rows_rejected), 0) AS rejected,
               coalesce(sum(redecisions), 0) AS redecisions
        FROM enrolment_import
        """
    )


async def freshness(
    conn: asyncpg.Connection | asyncpg.Pool, max_age_days: int
) -> asyncpg.Record | None:
    """The newest as-of date, and how many states are within / beyond `max_age_days`. One scan
    of the projection: call it rarely, since a province holds up to a few million employers."""
    return await conn.fetchrow(
        """
        SELECT max(as_of) AS newest,
               count(*) FILTER (WHERE as_of >= now() - make_interval(days => $1)) AS fresh,
               count(*) FILTER (WHERE as_of < now() - make_interval(days => $1)) AS stale
        FROM employer_enrolment
        """,
        max_age_days,
    )
