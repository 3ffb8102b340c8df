"""The flagged list exported whole, in any of the officers' formats: `ptsp-gate flagged` without
--limit, and the officer console's downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptsp_gate.reports import export, render
from ptsp_gate.stores import officer_queries as queries


def sheet_name(language: str) -> str:
    return "Ditandai" if language == "id" else "Flagged"


async def export_flagged(
    conn: Any, *, fmt: str, language: str, output: Path | None, **filters: Any
) -> int:
    """Every flagged employer (as `filters` say) in `fmt`, to `output` or standard output; the
    rows written. CSV is written by PostgreSQL itself (COPY): the national list is its largest
    export, and the format that goes to spreadsheets."""
    if fmt == "csv":
        return await export.copy_csv(
            lambda emit: queries.flagged_csv(conn, emit, **filters),
            columns=render.FLAGGED_COLUMNS,
            language=language,
            output=output,
        )
    return await export.write(
        queries.flagged_all(conn, **filters),
        fmt=fmt,
        columns=render.FLAGGED_COLUMNS,
        language=language,
        output=output,
        sheet=sheet_name(language),
        noun="flagged employer",
    )
