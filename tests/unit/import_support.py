"""Rows and files for the bulk import's unit tests: a good row to vary, and a file fed through
the reader without a database."""

from __future__ import annotations

from pathlib import Path

from ptsp_gate.enrolment_import import FIELDS, RowParser
from ptsp_gate.enrolment_import.feed import Feed
from ptsp_gate.enrolment_import.reading import Source
from ptsp_gate.enrolment_import.rejects import Rejects

NPWP_15 = "013000666091000"
NPWP_16 = "0013000666091000"
NIK = "7314011508900001"
GOOD: dict[str, str] = {
    "nib": "9120001234567",
    "npwp": NPWP_15,
    "npp": "NPP19000123",
    "status": "ACTIVE",
    "segment": "PU",
    "programs": "JKK|JKM|JHT",
    "workers_enrolled": "12",
    "arrears_months": "0",
    "pds_flags": "",
    "sanction_requested": "false",
    "as_of": "2025-06-30T00:00:00+07:00",
    "version": "7",
}
PARSER = RowParser(FIELDS)


def cells(**changes: str) -> list[str]:
    row = {**GOOD, **changes}
    return [row[f] for f in FIELDS]


def bad_check_digit(npwp: str, position: int) -> str:
    return npwp[:position] + str((int(npwp[position]) + 1) % 10) + npwp[position + 1 :]


class Recorder:
    def __init__(self) -> None:
        self.bad: list[tuple[int, str]] = []

    def reading(self, rows: int, done_bytes: int, total_bytes: int) -> None:
        assert 0 <= done_bytes <= total_bytes

    def rejected(self, line: int, reason: str) -> None:
        self.bad.append((line, reason))

    def merging(self, rows: int) -> None:
        pass


def feed(tmp_path: Path, content: bytes) -> tuple[list[str], Recorder]:
    path = tmp_path / "snapshot.csv"
    path.write_bytes(content)
    recorder = Recorder()
    source = Source(path)
    rejects = Rejects(tmp_path / "rejects.csv")
    try:
        data = b"".join(Feed(source, path, rejects, recorder))
    finally:
        source.close()
        rejects.discard()
    return data.decode().splitlines(), recorder


def csv_bytes(*rows: list[str], header: tuple[str, ...] = FIELDS) -> bytes:
    return ("\r\n".join(",".join(r) for r in [list(header), *rows]) + "\r\n").encode()
