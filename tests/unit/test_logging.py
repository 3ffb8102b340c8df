"""NPWP and NIK never reach the logs whole."""

from __future__ import annotations

import json
import logging

from ptsp_gate.observability.logging import configure, get_logger


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
