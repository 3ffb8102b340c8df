"""The console's pure parts: every label in both languages, the sign-in throttle, region scope,
NPWP masking, the server-drawn chart."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ptsp_gate.accounts.roles import Officer, Role, mask_npwp
from ptsp_gate_officer_console import charts, i18n
from ptsp_gate_officer_console.resources import TEMPLATES_DIR
from ptsp_gate_officer_console.security import Throttle


def test_every_label_exists_in_both_languages() -> None:
    assert not i18n.missing_translations()


def test_every_label_the_templates_use_is_translated() -> None:
    import re

    used = set()
    for template in TEMPLATES_DIR.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_A-Z]+)["']\)""", template.read_text()))
    assert used - i18n.keys() == set()


def test_the_throttle_counts_failures_per_address_within_its_window() -> None:
    now = [0.0]
    throttle = Throttle(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.allowed("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert not throttle.allowed("10.0.0.1")
    assert throttle.allowed("10.0.0.2")
    now[0] = 61
    assert throttle.allowed("10.0.0.1")


@given(st.from_regex(r"[0-9]{15,16}", fullmatch=True))
def test_a_masked_npwp_shows_only_its_last_three_digits(npwp: str) -> None:
    masked = mask_npwp(npwp)
    assert masked is not None
    assert len(masked) == len(npwp)
    assert masked.endswith(npwp[-3:])
    assert not any(c.isdigit() for c in masked[:-3])


def test_scope_by_role() -> None:
    officer = Officer(1, "ana", Role.OFFICER, ("7314",))
    admin = Officer(2, "dewi", Role.ADMIN, ())
    assert officer.covers("7314")
    assert not officer.covers("3319")
    assert not officer.covers(None)
    assert admin.covers("3319")
    assert admin.covers(None)
    assert admin.scope is None
    assert officer.may_ask_override
    assert not officer.may_decide_override
    assert not officer.sees_npwp
    assert not officer.may_read_audit
    assert Officer(3, "citra", Role.AUDITOR, ("7314",)).may_read_audit


def test_the_chart_is_plain_svg_with_one_bar_part_per_outcome_and_month() -> None:
    rows = [
        {
            "region_code": "7314",
            "period": datetime(2026, m, 1, tzinfo=UTC),
            "applications_cleared": m,
            "applications_blocked": 1,
            "applications_pending": 0,
            "applications_rejected": 0,
            "employers_flagged": 1,
            "flag_episodes": 1,
            "cleared": 1,
        }
        for m in (1, 2, 3)
    ]
    svg = charts.by_month(rows, "en")
    assert svg.startswith("<svg")
    assert "<script" not in svg
    assert "style=" not in svg
    assert svg.count('class="bar cleared"') == 3 + 1  # three months and the legend
    assert charts.totals(rows)["conversion"] == 1.0
    assert charts.by_month([], "id").startswith("<svg")


def test_figures_computed_ahead_are_filtered_by_region_and_dropped_when_stale() -> None:
    from datetime import UTC, datetime, timedelta

    from ptsp_gate_officer_console.figures import Figures, FiguresCache, months_back

    cache = FiguresCache(every_s=300, timezone="Asia/Jakarta", window_days=90)
    assert cache.rows(None) is None  # nothing computed yet: the caller computes
    rows = [{"region_code": "7314", "n": 1}, {"region_code": "3319", "n": 2}]
    cache._figures = Figures(rows, datetime.now(UTC))
    ready = cache.rows(["7314"])
    assert ready is not None
    assert ready.rows == [{"region_code": "7314", "n": 1}]
    assert cache.rows(None) is not None
    assert cache.rows([]) is not None
    cache._figures = Figures(rows, datetime.now(UTC) - timedelta(seconds=601))
    assert cache.rows(None) is None  # two refreshes missed: no longer served
    now = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert months_back(now, 12) == datetime(2025, 12, 1, tzinfo=UTC)
    assert months_back(now, 1) == datetime(2026, 11, 1, tzinfo=UTC)
