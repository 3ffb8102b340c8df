"""NPWP and NIK never reach the logs whole (nor the other texts that share the masking)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsp_gate.observability.logging import configure, get_logger, mask_sensitive, mask_text


def test_npwp_and_nik_are_masked_in_fields_messages_and_foreign_logs(capsys) -> None:
    configure("INFO", "json")
    get_logger("t").warning(
        "mismatch for 0013000666091000",
        npwp="013000666091000",
        nik="7314015505900001",
        nib="9120000000001",
        detail="nik 7314015505900001 given",
    )
    logging.getLogger("aiokafka.other").warning("npwp %s refused", "013000666091000")
    lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    text = json.dumps(lines)
    for secret in ("013000666091000", "0013000666091000", "7314015505900001"):
        assert secret not in text
    assert [line["logger"] for line in lines] == ["t", "aiokafka.other"]
    first = lines[0]
    assert first["npwp"].endswith("1000")
    assert first["nib"] == "9120000000001"  # NIB is the public business id: kept for tracing
    assert first["level"] == "warning"
    assert "timestamp" in first


def test_log_level_comes_from_configuration(capsys) -> None:
    configure("WARNING", "json")
    get_logger("t").info("hidden")
    get_logger("t").warning("shown")
    out = capsys.readouterr().err
    assert "hidden" not in out
    assert "shown" in out


# --- the masking itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # NIB: 13 digits, the public business id, stays readable
        ("9120000000001", "9120000000001"),
        ("nib 9120000000001 blocked", "nib 9120000000001 blocked"),
        # digit runs of 14 to 17 (NPWP 15 or 16, NIK 16), and longer ones: all but the last 4
        ("12345678901234", "**********1234"),
        ("013000666091000", "***********1000"),
        ("0013000666091000", "************1000"),
        ("7314015505900001", "************0001"),
        ("73140155059000012", "*************0012"),
        ("91200000000019120000000002", "**********************0002"),
        ("npwp=013000666091000;", "npwp=***********1000;"),
        ("a0013000666091000b", "a************1000b"),
        # NPWP as printed, with and without the branch code, dots or hyphens
        ("01.234.567.8-901.000", "**.***.***.*-**1.000"),
        ("01.234.567.8-901", "**.***.***.8-901"),
        ("NPWP 01-234-567-8-901-000 salah", "NPWP **-***-***-*-**1-000 salah"),
        ("01.234.567.8.901.000", "**.***.***.*.**1.000"),
        # what is not an identifier
        ("", ""),
        ("1234567890123", "1234567890123"),
        ("1.2.3.4-5", "1.2.3.4-5"),
        ("2025-06-30T00:00:00+07:00", "2025-06-30T00:00:00+07:00"),
        ("offset 123456 of partition 2", "offset 123456 of partition 2"),
        ("12345678901 234", "12345678901 234"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def _processed(**fields: Any) -> dict[str, Any]:
    return dict(mask_sensitive(None, "info", {"event": "e", **fields}))


def test_mask_sensitive_walks_nested_dicts_and_lists_without_touching_the_callers_data() -> None:
    nested = {
        "employer": {"nib": "9120000000001", "npwp": "013000666091000", "nik": "x7314015505900001"},
        "seen": ["7314015505900001", ("01.234.567.8-901.000", 7)],
        "deep": [[[{"note": "NIK 7314015505900001"}]]],
        "count": 7314015505900001,
        "flag": None,
    }
    before = repr(nested)
    out = _processed(detail=nested)["detail"]
    assert repr(nested) == before  # the caller's objects are not modified
    assert out["employer"] == {
        "nib": "9120000000001",
        "npwp": "***********1000",
        "nik": "*************0001",
    }
    assert out["seen"] == ["************0001", ("**.***.***.*-**1.000", 7)]
    assert out["deep"] == [[[{"note": "NIK ************0001"}]]]
    assert out["count"] == 7314015505900001  # not a string: left as it is
    assert out["flag"] is None


def test_mask_sensitive_leaves_values_without_identifiers_as_they_are() -> None:
    clean = {"codes": ["ARREARS"], "region": "7314"}
    out = _processed(detail=clean, nib="9120000000001", n=12, ratio=0.5, ok=True)
    assert out["detail"] is clean  # nothing to mask: not even copied
    assert (out["nib"], out["n"], out["ratio"], out["ok"]) == ("9120000000001", 12, 0.5, True)


def test_very_deep_nesting_is_masked_as_text() -> None:
    deep: Any = "7314015505900001"
    for _ in range(200):
        deep = [deep]
    text = json.dumps(_processed(detail=deep)["detail"])
    assert "7314015505900001" not in text
    assert "0001" in text


def test_a_nik_in_the_nib_field_is_masked() -> None:
    assert _processed(nib="7314015505900001")["nib"] == "************0001"


_TEXT = st.text(alphabet=st.sampled_from("0123456789.-*: aZ٣"), max_size=80)
# Identifiers and pieces of them glued together, so that matches touch and overlap.
_PIECES = st.lists(
    st.sampled_from(
        [
            "01.234.567.8-901.000",
            "01-234-567-8-901",
            "7314015505900001",
            "9120000000001",
            "013000666091000",
            "0",
            "12",
            ".",
            "-",
            " ",
            "x",
        ]
    ),
    max_size=8,
).map("".join)


@given(_TEXT | _PIECES | st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_no_run_of_14_digits_survives_and_masking_is_idempotent(text: str) -> None:
    masked = mask_text(text)
    assert not re.search(r"\d{14}", masked)
    assert mask_text(masked) == masked
    assert len(masked) == len(text)
    # only digits are replaced, and only by stars
    assert all(a == b or (b == "*" and a.isdigit()) for a, b in zip(text, masked, strict=True))


@given(
    st.recursive(
        _TEXT | st.integers(-(10**6), 10**6) | st.none(),
        lambda kids: (
            st.lists(kids, max_size=4)
            | st.dictionaries(st.sampled_from(["a", "nik", "npwp", "b"]), kids, max_size=4)
        ),
        max_leaves=20,
    )
)
@settings(max_examples=200, deadline=None)
def test_nested_values_keep_no_run_of_14_digits(value: Any) -> None:
    out = _processed(detail=value)["detail"]
    assert not re.search(r"\d{14}", json.dumps(out, ensure_ascii=False))
