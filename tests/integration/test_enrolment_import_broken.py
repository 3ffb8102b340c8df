"""`ptsp-gate enrolment import` of files it cannot read: exit 1, one line, nothing changed."""

from __future__ import annotations

import gzip

import pytest

from ptsp_gate.embedded import harness
from ptsp_gate.enrolment_import import BrokenFile

from .import_support import acli, csv_text, everything, record, run_import, write

pytestmark = pytest.mark.integration


def _good() -> bytes:
    return csv_text([record(n) for n in range(1, 3001)]).encode()


BROKEN: list[tuple[str, bytes, str]] = [
    (
        "wrong header",
        _good().replace(b"workers_enrolled", b"workers", 1),
        "wrong header: unknown column(s) 'workers'; missing column(s) workers_enrolled",
    ),
    ("unknown column", _good().replace(b"version\n", b"version,region\n", 1), "'region'"),
    ("no header", _good().split(b"\n", 1)[1], "wrong header"),
    ("truncated gzip", gzip.compress(_good())[:-2000], "damaged or truncated gzip"),
    ("corrupt gzip", gzip.compress(_good())[:5000] + b"\x00" * 64, "damaged or truncated gzip"),
    (
        "latin-1 bytes",
        _good()[:200_000] + "PT Maju Jaya Perkasa Tbk, café\n".encode("latin-1"),
        "not UTF-8 text (byte 0xe9)",
    ),
    ("empty file", b"", "is empty"),
    ("header only", csv_text([]).encode(), "has a header but no rows"),
    ("zip archive", b"PK\x03\x04" + _good()[:100], "is a zip archive"),
    (
        "header of 40,000 cells",
        b",".join([b"col"] * 40_000) + b"\n" + _good().split(b"\n", 1)[1],
        "wrong header: 40000 columns, more than the 64 a header may have",
    ),
    (
        "header over 1 MiB",
        b"nib," + b"x" * (2 << 20) + b"\n" + _good().split(b"\n", 1)[1],
        "line 1: the header is longer than 1 MiB (1048576 bytes)",
    ),
]


@pytest.mark.parametrize(
    ("content", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
async def test_a_broken_file_fails_in_one_line_and_changes_nothing(
    db, db_dsn, tmp_path, content: bytes, message: str
) -> None:
    # Some earlier state, which a broken file must leave exactly as it was.
    await run_import(db, write(tmp_path / "before.csv", [record(1, 0), record(5000)]))
    before = await everything(db)
    path = tmp_path / "broken.csv"
    path.write_bytes(content)

    out = await acli(db_dsn, str(path), "--progress", "none")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ptsp-gate enrolment: ")
    assert message in lines[0]
    assert lines[0].endswith("; nothing was imported")
    assert await everything(db) == before
    assert not (tmp_path / "broken.csv.rejects.csv").exists()


async def test_a_latin1_file_names_the_line(db, tmp_path) -> None:
    rows = [record(n) for n in range(1, 6)]
    rows[3]["npp"] = "NPP-é"
    path = tmp_path / "latin.csv"
    path.write_bytes(csv_text(rows).encode("latin-1"))
    with pytest.raises(BrokenFile, match=r"^line 5: not UTF-8 text \(byte 0xe9\)"):
        await run_import(db, path)
    assert await db.fetchval("SELECT count(*) FROM employer_enrolment") == 0


async def test_a_broken_file_keeps_an_earlier_rejects_file(db, tmp_path) -> None:
    earlier = tmp_path / "s.csv.rejects.csv"
    earlier.write_text("from an earlier run\n")
    good = csv_text([record(1, status="X"), *[record(n) for n in range(2, 3000)]]).encode()
    path = tmp_path / "s.csv"
    path.write_bytes(gzip.compress(good)[:-100])
    with pytest.raises(BrokenFile):
        await run_import(db, path)
    assert earlier.read_text() == "from an earlier run\n"
    assert {p.name for p in tmp_path.iterdir()} == {"s.csv", "s.csv.rejects.csv"}


async def test_missing_file_and_unmigrated_database(server_dsn, db_dsn, tmp_path) -> None:
    missing = tmp_path / "nope.csv"
    out = await acli(db_dsn, str(missing))
    assert (out.returncode, out.stderr) == (1, f"ptsp-gate enrolment: {missing}: no such file\n")

    bare = await harness.create_database(server_dsn, "ptsp_gate_bare")
    try:
        path = write(tmp_path / "s.csv", [record(1)])
        out = await acli(bare, str(path))
        assert out.returncode == 1
        assert out.stderr == (
            "ptsp-gate enrolment: database schema is behind: run `ptsp-gate migrate`\n"
        )
    finally:
        await harness.drop_database(server_dsn, bare)
