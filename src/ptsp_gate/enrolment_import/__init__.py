"""Bulk snapshot import: a BPJS TK CSV file (optionally gzip) into the enrolment projection.

The file format
---------------
- UTF-8 (a leading byte-order mark is tolerated), RFC 4180 CSV: comma-separated, fields with
  commas, quotes or line breaks in double quotes, a quote inside doubled. gzip is recognised by
  its magic bytes, whatever the file is called.
- A header row naming exactly the twelve fields of the v1 enrolment record, in any order:
  nib, npwp, npp, status, segment, programs, workers_enrolled, arrears_months, pds_flags,
  sanction_requested, as_of, version. Then one employer per row. Blank lines are skipped.
- Limits, so that a hostile or broken file cannot stall the import or fill the memory: a header
  of at most MAX_HEADER_CELLS (64) cells, and a record (a line, or the lines a quoted field spans)
  of at most MAX_RECORD_BYTES (1 MiB). A longer record is a bad row, and the reading goes on at
  the next line: the part of a line beyond the limit is never taken for a row of its own.
- `programs` and `pds_flags` list their members separated by `|` (`JKK|JKM|JHT`); an empty cell
  is the empty set. `sanction_requested` is `true` or `false` (any case), or `1` or `0`. Counts and
  `version` are ASCII digits. `as_of` is an RFC 3339 timestamp with its offset
  (`2025-06-30T00:00:00+07:00`, `...Z`). Every other cell is taken as written (no trimming).
- Values follow the `EnrolmentState` model; the CSV is stricter in three places, on purpose:
  `as_of` must be RFC 3339 (the model also takes Unix times and other ISO 8601 forms), a cell may
  not contain a NUL character (PostgreSQL text cannot hold one), and `as_of` must stay within
  years 1–9999 once converted to UTC (otherwise it could not be read back).

What an import does
-------------------
The file is read as a stream (constant memory). Each row is validated; good rows go to a TEMP
staging table through one COPY, bad rows to a rejects CSV with their line number and reason (values
quoted in a reason are cut and have NPWP- and NIK-like numbers masked, as in the logs; cells a
spreadsheet would run as formulas are written as text, as in the reports' CSV). Then,
in the same transaction, one statement merges the newest row of each NIB into employer_enrolment
with the stream's version rule, the re-decisions run, and the import is recorded. A broken file
(header, encoding, compression) aborts before anything is committed.

The pieces: `cells` (what each cell may hold), `rows` (header and row parser), `reading` (bytes
and lines of the file), `feed` (rows as COPY text), `rejects`, `progress`, `snapshot` (the
import's transaction); its SQL is in `ptsp_gate.stores.enrolment_snapshots`.
"""

from ptsp_gate.enrolment_import.cells import LIST_SEPARATOR, parse_timestamp
from ptsp_gate.enrolment_import.errors import BadRow, BrokenFile, ImportFailed
from ptsp_gate.enrolment_import.progress import Progress
from ptsp_gate.enrolment_import.reading import MAX_RECORD_BYTES
from ptsp_gate.enrolment_import.rows import FIELDS, MAX_HEADER_CELLS, RowParser, read_header
from ptsp_gate.enrolment_import.snapshot import ImportResult, import_snapshot

__all__ = [
    "FIELDS",
    "LIST_SEPARATOR",
    "MAX_HEADER_CELLS",
    "MAX_RECORD_BYTES",
    "BadRow",
    "BrokenFile",
    "ImportFailed",
    "ImportResult",
    "Progress",
    "RowParser",
    "import_snapshot",
    "parse_timestamp",
    "read_header",
]
