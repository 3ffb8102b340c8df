"""The compliance officer's questions (`ptsp-gate flagged`, `ptsp-gate employer`), as SQL over the
compliance projection: each costs what it returns, whatever the size of the history."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ptsp_gate.contract.identifiers import canonical_npwp
from ptsp_gate.reports.render import FORMULA_STARTS

# The flagged list's order, which its index (employer_compliance_flagged) keeps.
_FLAGGED_COLUMNS = """
    nib, employer_name, region_code, reason_codes, blocked_applications, open_applications,
    first_flagged_at, flagged_since, decided_at AS last_flagged_at, enrolment_as_of,
    policy_version
"""


class BadCursor(ValueError):
    """An `--after` value this program did not print."""


@dataclass(frozen=True, slots=True)
class FlaggedCursor:
    """Where a page of the flagged list ended: the last row's place in the list's order."""

    region_code: str
    first_flagged_at: datetime
    nib: str

    def encode(self) -> str:
        raw = json.dumps([self.region_code, self.first_flagged_at.isoformat(), self.nib])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> FlaggedCursor:
        if len(text) > 200:
            raise BadCursor("the cursor is longer than any this program prints")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            region, at, nib = json.loads(raw)
            cursor = cls(str(region), datetime.fromisoformat(at), str(nib))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise BadCursor("not a cursor this program printed") from None
        if cursor.first_flagged_at.tzinfo is None:
            raise BadCursor("not a cursor this program printed")
        return cursor

    @classmethod
    def after(cls, row: asyncpg.Record | dict[str, Any]) -> FlaggedCursor:
        return cls(row["region_code"], row["first_flagged_at"], row["nib"])


def _flagged_sql(
    region: str | None,
    reason: str | None,
    after: FlaggedCursor | None,
    limit: bool,
    regions: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    # One statement text per combination of filters, rather than `$1 IS NULL OR ...`: a generic
    # plan of the latter cannot use the index, and asyncpg reuses plans.
    where = ["outcome = 'BLOCKED'"]
    params: list[Any] = []
    if region is not None:
        params.append(region)
        where.append(f"region_code = ${len(params)}")
    if regions is not None:
        # An officer's scope: the index is read region by region, still in the list's order.
        params.append(list(regions))
        where.append(f"region_code = ANY(${len(params)}::text[])")
    if reason is not None:
        params.append(reason)
        where.append(f"${len(params)} = ANY(reason_codes)")
    if after is not None:
        params += [after.region_code, after.first_flagged_at, after.nib]
        n = len(params)
        where.append(f"(region_code, first_flagged_at, nib) > (${n - 2}, ${n - 1}, ${n})")
    sql = (
        f"SELECT {_FLAGGED_COLUMNS} FROM employer_compliance WHERE {' AND '.join(where)}"
        " ORDER BY region_code, first_flagged_at, nib"
    )
    if limit:
        sql += f" LIMIT ${len(params) + 1}"
    return sql, params


async def flagged_page(
    conn: asyncpg.Connection,
    *,
    region: str | None = None,
    reason: str | None = None,
    after: FlaggedCursor | None = None,
    limit: int = 100,
    regions: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], FlaggedCursor | None]:
    """One page of flagged employers and the cursor of the next (None on the last page)."""
    sql, params = _flagged_sql(region, reason, after, limit=True, regions=regions)
    rows = await conn.fetch(sql, *params, limit + 1)
    more = len(rows) > limit
    page = [dict(r) for r in rows[:limit]]
    return page, FlaggedCursor.after(page[-1]) if more and page else None


async def flagged_all(
    conn: asyncpg.Connection,
    *,
    region: str | None = None,
    reason: str | None = None,
    after: FlaggedCursor | None = None,
    batch_size: int = 5000,
    regions: Sequence[str] | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Every flagged employer (after `after`), in batches through a server-side cursor: memory
    stays flat however many there are. Runs in a read-only repeatable-read transaction of its
    own, so an export is one consistent state of the projection."""
    sql, params = _flagged_sql(region, reason, after, limit=False, regions=regions)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(sql, *params)
        while rows := await cursor.fetch(batch_size):
            yield rows


def _sql_text(expr: str) -> str:
    """`expr` as render.spreadsheet_text writes it: the same rule, computed by PostgreSQL."""
    starts = ", ".join("'" + c.replace("'", "''") + "'" for c in FORMULA_STARTS)
    return f"CASE WHEN left({expr}, 1) IN ({starts}) THEN '''' || {expr} ELSE {expr} END"


def _sql_time(expr: str) -> str:
    """`expr` (timestamptz) as Python's isoformat() writes the UTC datetimes asyncpg returns."""
    utc = f"({expr} AT TIME ZONE 'UTC')"
    whole = f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS')"""
    # isoformat() leaves out a zero fraction of a second, and writes a non-zero one in full.
    fraction = f"""CASE WHEN date_trunc('second', {utc}) = {utc} THEN ''
                        ELSE to_char({utc}, '.US') END"""
    return f"{whole} || {fraction} || '+00:00'"


# The CSV columns of the flagged list (render.FLAGGED_COLUMNS), formatted by PostgreSQL.
# Named apart from the table's columns, which the ORDER BY means (and its index serves).
_FLAGGED_CSV = ", ".join(
    f"{expr} AS csv_{n}"
    for n, expr in enumerate(
        (
            "nib",
            _sql_text("employer_name"),
            _sql_text("region_code"),
            _sql_text("array_to_string(reason_codes, ',')"),
            "blocked_applications",
            _sql_time("first_flagged_at"),
            _sql_time("decided_at"),
            _sql_time("enrolment_as_of"),
        )
    )
)


async def flagged_csv(
    conn: asyncpg.Connection,
    write: Callable[[bytes], Awaitable[None]],
    *,
    region: str | None = None,
    reason: str | None = None,
    after: FlaggedCursor | None = None,
    regions: Sequence[str] | None = None,
) -> int:
    """Every flagged employer (after `after`) as CSV rows without a heading, written by
    PostgreSQL's COPY: a national list at the speed the server writes it, the same cells as
    render.flagged writes. Returns the rows written."""
    sql, params = _flagged_sql(region, reason, after, limit=False, regions=regions)
    sql = sql.replace(f"SELECT {_FLAGGED_COLUMNS}", f"SELECT {_FLAGGED_CSV}", 1)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        status = await conn.copy_from_query(sql, *params, output=write, format="csv")
    return int(status.split()[-1])


# --- one employer --------------------------------------------------------------------------------

_MATCH_COLUMNS = """
    c.nib, c.employer_name, c.region_code, c.outcome, c.reason_codes, c.decided_at,
    c.open_applications, c.blocked_applications
"""


def npwp_forms(npwp: str) -> list[str]:
    """The forms one NPWP is stored under: a legacy 15-digit number and its 16-digit form (a
    leading 0, PMK 112/2022) are the same taxpayer."""
    forms = {npwp, canonical_npwp(npwp)}
    if len(npwp) == 16 and npwp.startswith("0"):
        forms.add(npwp[1:])
    return sorted(forms)


def _scope(regions: Sequence[str] | None, param: int) -> str:
    """The condition that employer `c` is within `regions` (parameter `param`): its latest
    decision, or any of its applications', is in one of them. Empty for every region."""
    if regions is None:
        return ""
    return f"""
        (c.region_code = ANY(${param}::text[]) OR EXISTS (
            SELECT 1 FROM application_standing s
            WHERE s.nib = c.nib AND s.region_code = ANY(${param}::text[]))) AND
    """


async def by_npwp(
    conn: asyncpg.Connection, npwp: str, regions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Employers that applied with this NPWP, or that BPJS TK records under it, in either form;
    within `regions` when given."""
    scope = _scope(regions, 2)
    sql = f"""
        SELECT {_MATCH_COLUMNS} FROM employer_compliance c
        WHERE {scope} c.npwp = ANY($1::text[])
        UNION
        SELECT {_MATCH_COLUMNS} FROM employer_enrolment e
        JOIN employer_compliance c ON c.nib = e.nib WHERE {scope} e.npwp = ANY($1::text[])
        ORDER BY nib
        """
    args: list[Any] = [npwp_forms(npwp)] + ([list(regions)] if regions is not None else [])
    rows = await conn.fetch(sql, *args)
    return [dict(r) for r in rows]


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def by_name(
    conn: asyncpg.Connection, name: str, limit: int = 50, regions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Employers whose name (as last applied) contains `name`, any case; the closest first;
    within `regions` when given."""
    sql = f"""
        SELECT {_MATCH_COLUMNS} FROM employer_compliance c
        WHERE {_scope(regions, 3)} c.employer_name ILIKE $1
        ORDER BY length(c.employer_name), c.employer_name, c.nib
        LIMIT $2
        """
    args: list[Any] = [_like_pattern(name), limit]
    rows = await conn.fetch(sql, *args, *([list(regions)] if regions is not None else []))
    return [dict(r) for r in rows]


async def in_scope(conn: asyncpg.Connection, nib: str, regions: Sequence[str]) -> bool:
    """Whether the employer's latest decision, or any of its applications', is in `regions`."""
    return bool(
        await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM employer_compliance
                           WHERE nib = $1 AND region_code = ANY($2::text[]))
                OR EXISTS (SELECT 1 FROM application_standing
                           WHERE nib = $1 AND region_code = ANY($2::text[]))
            """,
            nib,
            list(regions),
        )
    )


async def employer(conn: asyncpg.Connection, nib: str) -> dict[str, Any]:
    """One employer: its enrolment state, its standing, its flagged episodes and its decisions."""
    enrolment = await conn.fetchrow(
        """
        SELECT nib, npwp, npp, status, segment, programs, workers_enrolled, arrears_months,
               pds_flags, sanction_requested, as_of, version, source, updated_at
        FROM employer_enrolment WHERE nib = $1
        """,
        nib,
    )
    standing = await conn.fetchrow(
        """
        SELECT employer_name, region_code, outcome, reason_codes, decided_at, policy_version,
               first_flagged_at, flagged_since, open_applications, blocked_applications
        FROM employer_compliance WHERE nib = $1
        """,
        nib,
    )
    episodes = await conn.fetch(
        """
        SELECT began_at, region_code, reason_codes, ended_at, ended_outcome, ended_by
        FROM compliance_episode WHERE nib = $1 ORDER BY began_seq DESC
        """,
        nib,
    )
    decisions = await conn.fetch(
        """
        SELECT decision_id, application_id, action, region_code, outcome, reason_codes, reasons,
               enrolment_as_of, policy_version, decided_at, supersedes
        FROM compliance_decision WHERE nib = $1
        ORDER BY seq DESC
        """,
        nib,
    )
    return {
        "nib": nib,
        "enrolment": dict(enrolment) if enrolment is not None else None,
        "standing": dict(standing) if standing is not None else None,
        "episodes": [dict(e) for e in episodes],
        "decisions": [dict(d) for d in decisions],
    }
