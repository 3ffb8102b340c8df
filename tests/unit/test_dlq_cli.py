"""`ptsp-gate dlq`: argument parsing and validation, and the pure rules behind list and replay."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from ptsp_gate.cli import dlq_list, dlq_replay
from ptsp_gate.cli.main import build_parser, main
from ptsp_gate.config import Settings
from ptsp_gate.contract.cloudevents import binary_headers
from ptsp_gate.dlq import records
from ptsp_gate.dlq.records import (
    REPLAYED_FROM,
    AddressRange,
    DeadLetter,
    offset_range,
    refusal,
    target_partition,
)
from ptsp_gate.runtime import intake

from ..cli_helpers import usage_error

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
NIK = "7314015505900001"
SETTINGS = Settings(topic_applications="apps", topic_enrolment="enrol")


@pytest.fixture(autouse=True)
def _configuration(monkeypatch) -> None:
    monkeypatch.setenv("PTSP_GATE_TOPIC_APPLICATIONS", "apps")
    monkeypatch.setenv("PTSP_GATE_TOPIC_ENROLMENT", "enrol")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")


@dataclass
class Rec:
    value: bytes | None
    headers: list[tuple[str, bytes]]
    key: bytes | None = b"9120000000001"
    topic: str = "apps"
    partition: int = 2
    offset: int = 41
    timestamp: int = int(NOW.timestamp() * 1000)
    extra: dict[str, str] = field(default_factory=dict)


def _original() -> Rec:
    headers = binary_headers(
        event_id="evt-1", source="urn:test", ce_type="id.go.ptsp.permit.x.v1", time=NOW
    )
    return Rec(b'{"application_id": "A-1"}', [*headers, ("x-binary", b"\xff")])


def _dead(original: Rec | None = None, code: str = "SCHEMA_VIOLATION", **at: object) -> DeadLetter:
    """The DLQ record the services would write for `original`."""
    original = original or _original()
    invalid = intake.Invalid(original, code, f"npwp {NIK} is wrong", [], "evt-1", None)
    record = Rec(
        intake.dlq_value(invalid),
        intake.dlq_headers(invalid, NOW),
        original.key,
        topic=str(at.get("topic", "apps.dlq")),
        partition=int(at.get("partition", 0)),  # type: ignore[call-overload]
        offset=int(at.get("offset", 7)),  # type: ignore[call-overload]
    )
    return DeadLetter.from_record(record)


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq"],
        ["dlq", "purge"],
        ["dlq", "list", "--since", "2026-13-01"],
        ["dlq", "list", "--since", "yesterday"],
        ["dlq", "list", "--error", "NOT_A_CODE"],
        ["dlq", "list", "--limit", "0"],
        ["dlq", "list", "--limit", "many"],
        ["dlq", "list", "--format", "xml"],
        ["dlq", "list", "--timeout", "0"],
        ["dlq", "replay", "--partition", "-1", "--offset", "0", "--topic", "apps"],
        ["dlq", "replay", "--partition", "0", "--offset", "-5", "--topic", "apps"],
        ["dlq", "replay", "--partition", "0", "--offset", "9-3", "--topic", "apps"],
        ["dlq", "replay", "--partition", "0", "--offset", "3-", "--topic", "apps"],
        ["dlq", "replay", "--partition", "0", "--offset", "٣", "--topic", "apps"],
        ["dlq", "replay", "apps.dlq/0"],
        ["dlq", "replay", "apps.dlq/x/1"],
        ["dlq", "replay", "apps.dlq/0/-1"],
        ["dlq", "replay", "apps dlq/0/1"],
        ["dlq", "replay", "apps.dlq/99999999999/1"],
        ["dlq", "replay", "--all", "--since", "2026-02-30"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys) -> None:
    usage_error(capsys, argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay"], "say which records to replay: addresses, --error CODE or --all"),
        (["replay", "--since", "2026-01-01"], "say which records to replay"),
        (["replay", "--offset", "3"], "--offset needs --partition and --topic"),
        (["replay", "--partition", "1", "--topic", "apps"], "--partition needs --offset"),
        (["replay", "--partition", "1", "--offset", "2"], "--partition and --offset need --topic"),
        (
            ["replay", "apps.dlq/0/1", "--topic", "apps", "--partition", "0", "--offset", "2"],
            "not both",
        ),
        (["replay", "apps.dlq/0/1", "--topic", "apps"], "an address names its own"),
        (["replay", "apps.dlq/0/1", "--all"], "--all selects every record"),
        (["replay", "other.dlq/0/1"], "unknown topic 'other.dlq'"),
        (["replay", "--all", "--topic", "decisions"], "unknown topic 'decisions'"),
        (["list", "--topic", "apps.dlq.dlq"], "unknown topic 'apps.dlq.dlq'"),
    ],
)
def test_selections_that_mean_nothing_exit_2_before_contacting_anything(
    argv, message, capsys
) -> None:
    assert main(["dlq", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate dlq: ")
    assert message in err[0]
    assert err[0].endswith("(see --help)")


def test_unknown_topic_names_the_known_ones(capsys) -> None:
    assert main(["dlq", "list", "--topic", "nope"]) == 2
    err = capsys.readouterr().err
    assert "apps, apps.dlq, enrol, enrol.dlq" in err


def test_without_a_cluster_address_it_says_so_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    assert main(["dlq", "list"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "ptsp-gate dlq: KAFKA_BOOTSTRAP_SERVERS must be set (the dead-letter topics are on the "
        "services' cluster)"
    ]


def _selection(*argv: str) -> dlq_replay.Selection:
    args = build_parser().parse_args(["dlq", "replay", *argv])
    return dlq_replay.selection(args, SETTINGS)


def test_addresses_name_a_source_or_a_dlq_topic_and_may_be_ranges() -> None:
    chosen = _selection("apps/0/3", "apps.dlq/1/5-9", "enrol/2/0")
    assert chosen.ranges == (
        AddressRange("apps.dlq", 0, 3, 3),
        AddressRange("apps.dlq", 1, 5, 9),
        AddressRange("enrol.dlq", 2, 0, 0),
    )
    assert chosen.topics == ("apps.dlq", "enrol.dlq")
    chosen = _selection("--topic", "apps", "--partition", "2", "--offset", "4", "--offset", "6-8")
    assert chosen.ranges == (AddressRange("apps.dlq", 2, 4, 4), AddressRange("apps.dlq", 2, 6, 8))
    assert chosen.topics == ("apps.dlq",)


def test_filters_select_within_a_topic_or_every_dlq() -> None:
    chosen = _selection("--error", "PROCESSING_FAILED", "--since", "2026-03-01")
    assert chosen.ranges == ()
    assert chosen.topics == ("apps.dlq", "enrol.dlq")
    assert chosen.error == "PROCESSING_FAILED"
    assert chosen.since == datetime(2026, 3, 1, tzinfo=UTC)
    assert _selection("--all", "--topic", "enrol.dlq").topics == ("enrol.dlq",)
    # Filters narrow addresses too.
    assert _selection("apps/0/0-100", "--error", "OVERSIZED").error == "OVERSIZED"


def test_offsets_and_addresses() -> None:
    assert offset_range("7") == (7, 7)
    assert offset_range("7-9") == (7, 9)
    for bad in ("", "-1", "1-", "a", "3-2", "1-2-3", "+1"):
        with pytest.raises(ValueError, match=r"is not an offset|ends before it starts"):
            offset_range(bad)
    assert AddressRange.parse("ptsp.permit-applications.v1.dlq/2/17") == AddressRange(
        "ptsp.permit-applications.v1.dlq", 2, 17, 17
    )


# --- what a replay publishes ---------------------------------------------------------------------


def test_the_headers_dead_lettering_adds_are_the_ones_a_replay_takes_off() -> None:
    original = _original()
    big = Rec(b"x" * (intake.OVERSIZED_KEEP_BYTES + 10), original.headers)
    invalid = intake.Invalid(big, "OVERSIZED", "too big", [], None, None)
    added = {k for k, _ in intake.dlq_headers(invalid, NOW)[len(original.headers) :]}
    assert added <= records.ADDED_HEADERS
    assert records.ADDED_HEADERS - added == {REPLAYED_FROM}


def test_a_replay_carries_the_original_headers_and_where_it_came_from() -> None:
    dead = _dead(partition=1, offset=12)
    assert dead.replay_headers() == [*_original().headers, (REPLAYED_FROM, b"apps.dlq/1/12")]
    assert dead.value == _original().value
    # A replay that failed again and is replayed once more names only its latest DLQ record.
    again = Rec(dead.value, dead.replay_headers(), dead.key)
    second = _dead(again, offset=30)
    assert [v for k, v in second.replay_headers() if k == REPLAYED_FROM] == [b"apps.dlq/0/30"]
    assert second.replayed_from == "apps.dlq/1/12"


def test_what_the_dlq_record_says() -> None:
    dead = _dead()
    assert dead.error_code == "SCHEMA_VIOLATION"
    assert (dead.source_topic, dead.source_partition, dead.source_offset) == ("apps", 2, 41)
    assert dead.failed_at == NOW
    assert dead.event_id == "evt-1"
    assert dead.size == len(_original().value or b"")
    assert not dead.truncated
    no_time = DeadLetter(dead.address, dead.key, dead.value, (), 1_700_000_000_000)
    assert no_time.failed_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert no_time.event_id is None  # no ce_ headers left: unreadable, as the service sees it


def test_the_digest_tells_records_at_the_same_address_apart() -> None:
    dead = _dead()
    other = DeadLetter(dead.address, dead.key, b"other", dead.headers, dead.timestamp_ms)
    tombstone = DeadLetter(dead.address, dead.key, None, dead.headers, dead.timestamp_ms)
    empty = DeadLetter(dead.address, dead.key, b"", dead.headers, dead.timestamp_ms)
    assert len({dead.digest, other.digest, tombstone.digest, empty.digest}) == 4
    assert _dead().digest == dead.digest


SOURCES = {"apps.dlq": "apps", "enrol.dlq": "enrol"}
ON_CLUSTER = {"apps": 3, "apps.dlq": 3, "enrol": 3, "enrol.dlq": 3}


def _with(dead: DeadLetter, **headers: bytes | None) -> DeadLetter:
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    kept = [(k, v) for k, v in dead.headers if k not in names]
    kept += [(k, v) for k, v in names.items() if v is not None]
    return DeadLetter(dead.address, dead.key, dead.value, tuple(kept), dead.timestamp_ms)


def test_records_that_cannot_be_replayed_say_why() -> None:
    dead = _dead()
    assert refusal(dead, sources=SOURCES, partitions=ON_CLUSTER) is None

    def why(d: DeadLetter, partitions: dict[str, int] = ON_CLUSTER) -> str:
        reason = refusal(d, sources=SOURCES, partitions=partitions)
        assert reason is not None
        assert "\n" not in reason
        return reason

    assert "no ptsp-gate-source-topic header" in why(_with(dead, ptsp_gate_source_topic=None))
    assert "'elsewhere' is not an input topic" in why(
        _with(dead, ptsp_gate_source_topic=b"elsewhere")
    )
    assert "does not dead-letter to apps.dlq" in why(_with(dead, ptsp_gate_source_topic=b"enrol"))
    assert "does not exist on the cluster" in why(dead, {"apps.dlq": 3})
    cut = _with(dead, ptsp_gate_original_size=b"2000000")
    assert cut.truncated
    assert "OVERSIZED" in why(cut)
    tombstone = DeadLetter(dead.address, dead.key, None, dead.headers, dead.timestamp_ms)
    assert "tombstone" in why(tombstone)
    headers_cut = _with(dead, ptsp_gate_truncated=b"header:x-junk")
    assert headers_cut.truncated
    assert "header:x-junk" in why(headers_cut)
    assert "new ce_id" in why(_with(dead, ptsp_gate_error_code=b"ID_CONFLICT"))


def test_a_replay_goes_back_to_its_partition_while_it_exists() -> None:
    dead = _dead()  # source partition 2
    assert target_partition(dead, 3) == 2
    assert target_partition(dead, 2) is None  # partitioned by key instead
    assert target_partition(_with(dead, ptsp_gate_source_partition=None), 3) is None


# --- list output ---------------------------------------------------------------------------------


def _rows() -> list[dict[str, object]]:
    nik_keyed = Rec(b"{", _original().headers, key=NIK.encode())
    long_message = _with(_dead(offset=8), ptsp_gate_error_message=b"x" * 300)
    return [
        dlq_list.list_row(_dead(nik_keyed, "MALFORMED_JSON"), None),
        dlq_list.list_row(long_message, None),
    ]


def test_list_masks_nik_and_npwp_like_digits_in_every_format() -> None:
    rows = _rows()
    for fmt in ("table", "csv", "json"):
        out = dlq_list.render_list(rows, fmt, None, filtered=False)
        assert NIK not in out, fmt
        assert "*" * 12 + NIK[-4:] in out, fmt
    assert rows[0]["key"] == "*" * 12 + NIK[-4:]
    assert "9120000000001" in dlq_list.render_list(rows, "table", None, filtered=False)


def test_list_formats() -> None:
    rows = _rows()
    table = dlq_list.render_list(rows, "table", None, filtered=False)
    assert table.splitlines()[0].split() == [c for c in dlq_list.TABLE_COLUMNS]
    assert "apps.dlq/0/7" in table
    assert "apps/2/41" in table
    assert "x" * 300 not in table  # the table cuts messages; CSV and JSON keep them whole
    assert "x" * (dlq_list.TABLE_MESSAGE_CHARS - 1) + "…" in table
    assert table.rstrip().endswith("2 dead-lettered record(s), 0 replayed")
    parsed = list(csv.DictReader(io.StringIO(dlq_list.render_list(rows, "csv", None, False))))
    assert parsed[1]["error_message"] == "x" * 300
    assert parsed[0]["failed_at"] == NOW.isoformat()
    data = json.loads(dlq_list.render_list(rows, "json", None, filtered=False))
    assert list(data[0]) == list(dlq_list.LIST_COLUMNS)
    assert data[0]["replay_state"] is None
    limited = dlq_list.render_list(rows, "table", 1, filtered=False)
    assert "showing the oldest 1 (--limit)" in limited
    assert len(json.loads(dlq_list.render_list(rows, "json", 1, filtered=False))) == 1
    assert dlq_list.render_list([], "table", None, filtered=True) == (
        "No dead-lettered records match.\n"
    )
    assert dlq_list.render_list([], "json", None, filtered=False) == "[]\n"
