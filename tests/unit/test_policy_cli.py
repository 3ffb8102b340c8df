"""`ptsp-gate policy check | show`, the argument errors of `policy simulate`, and the simulation's
counting and rendering (its database side is in tests/integration/test_policy_simulate.py)."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ptsp_gate import demo
from ptsp_gate.cli.main import main
from ptsp_gate.contract.events import EnrolmentState, PermitApplication
from ptsp_gate.policy import Policy, decide, load_policy_book
from ptsp_gate.reports.simulate import CHANGE_COLUMNS, Simulation, render

from ..cli_helpers import counts, usage_error, write

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_policy_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # The packaged default unless a test says otherwise, whatever the developer's shell has.
    monkeypatch.delenv("PTSP_GATE_POLICY_DIR", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


# --- policy check ------------------------------------------------------------------------------


def test_check_national_file(tmp_path, capsys) -> None:
    path = write(tmp_path, "candidate.toml", 'version = "strict-1"\narrears_tolerance_months = 0\n')
    code, out, err = run(capsys, "policy", "check", str(path))
    assert (code, err) == (0, [])
    assert out.splitlines()[0] == f"{path}: valid national policy"
    assert "version                   strict-1\n" in out
    assert "arrears_tolerance_months  0\n" in out
    # what the file leaves out is the design default, shown as such
    assert "max_enrolment_age_days    90\n" in out
    assert "MENENGAH: JKK, JKM, JHT, JP" in out


def test_check_region_file_merges_over_the_installed_national(tmp_path, capsys, monkeypatch):
    policy_dir = tmp_path / "policies"
    write(policy_dir, "national.toml", 'version = "nat-7"\nmax_enrolment_age_days = 30\n')
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(policy_dir))
    path = write(
        tmp_path,
        "try/7314.toml",
        'region = "7314"\nversion = "1"\nabsent_record = "NOT_REGISTERED"\n',
    )
    code, out, err = run(capsys, "policy", "check", str(path))
    assert (code, err) == (0, [])
    lines = out.splitlines()
    assert lines[0] == f"{path}: valid region policy for 7314"
    assert lines[1] == f"  merged over nat-7 from {policy_dir / 'national.toml'}"
    assert lines[2] == "  overrides: absent_record"
    assert "version                   nat-7+7314:1\n" in out
    assert "max_enrolment_age_days    30\n" in out  # from the installed national policy
    assert "absent_record             NOT_REGISTERED\n" in out


def test_check_repository_example_over_the_packaged_default(capsys) -> None:
    code, out, _ = run(capsys, "policy", "check", str(REPO_POLICIES / "regions" / "7314.toml"))
    assert code == 0
    assert "merged over national-2026.1 from packaged default (" in out
    assert "national-2026.1+7314:2026.1" in out


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("broken.toml", 'version = "1"\narrears_tolerance_months = \n', "not valid TOML"),
        ("unknown.toml", 'version = "1"\nsurprise = true\n', "unknown key 'surprise'"),
        ("7315.toml", 'region = "7314"\nversion = "1"\n', "does not match the file name"),
        ("7314.toml", 'region = "7314"\n', "missing key 'version'"),
        ("typed.toml", 'version = "1"\narrears_tolerance_months = "two"\n', "arrears_tolerance"),
        (
            "7314.toml",
            'region = "7314"\nversion = "1"\n[required_programs]\nMIKRO = ["JKK", "JKP"]\n',
            "JKP is never a requirement",
        ),
        (
            "pending.toml",
            'version = "1"\nblocking_codes = ["ENROLMENT_STALE"]\n',
            "ENROLMENT_STALE cannot block",
        ),
    ],
)
def test_check_refuses_a_bad_file_in_one_line(tmp_path, capsys, name, text, expected) -> None:
    path = write(tmp_path, name, text)
    code, out, err = run(capsys, "policy", "check", str(path))
    assert (code, out) == (1, "")
    assert len(err) == 1
    assert err[0].startswith(f"ptsp-gate policy: {path}: ")
    assert expected in err[0]


def test_check_missing_file_and_directory(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "policy", "check", str(tmp_path / "nope.toml"))
    assert (code, err) == (1, [f"ptsp-gate policy: {tmp_path / 'nope.toml'}: file not found"])
    code, _, err = run(capsys, "policy", "check", str(tmp_path))
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith(f"ptsp-gate policy: {tmp_path}: cannot read")


def test_check_unreadable_file(tmp_path, capsys) -> None:
    path = write(tmp_path, "secret.toml", 'version = "1"\n')
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with permission to read any file (root)")
        code, _, err = run(capsys, "policy", "check", str(path))
    finally:
        path.chmod(0o644)
    assert code == 1
    assert err == [f"ptsp-gate policy: {path}: cannot read: Permission denied"]


def test_check_region_file_with_a_broken_installed_policy_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(tmp_path / "missing"))
    path = write(tmp_path, "7314.toml", 'region = "7314"\nversion = "1"\n')
    code, _, err = run(capsys, "policy", "check", str(path))
    assert code == 1
    assert len(err) == 1
    assert "missing" in err[0]


# --- policy show -------------------------------------------------------------------------------


def test_show_packaged_national(capsys) -> None:
    code, out, err = run(capsys, "policy", "show")
    assert (code, err) == (0, [])
    assert out.startswith("National policy: packaged default (")
    assert "version                   national-2026.1\n" in out
    assert "arrears_tolerance_months  2\n" in out
    assert "absent_record             PENDING\n" in out
    # every blocking code, in the contract's order, wrapped under its label
    assert "blocking_codes            NOT_REGISTERED, EMPLOYER_INACTIVE, ARREARS," in out
    assert "IDENTITY_MISMATCH" in out


def test_show_region_override_and_region_without_one(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(REPO_POLICIES))
    code, out, _ = run(capsys, "policy", "show", "--region", "7314")
    assert code == 0
    assert out.splitlines()[0].startswith(
        f"Policy of region 7314: {REPO_POLICIES / 'regions' / '7314.toml'} over packaged default"
    )
    assert "version                   national-2026.1+7314:2026.1\n" in out
    assert "arrears_tolerance_months  1\n" in out
    code, out, _ = run(capsys, "policy", "show", "--region", "3201")
    assert code == 0
    assert out.startswith("Region 3201 has no override; the national policy applies")
    assert "version                   national-2026.1\n" in out


def test_show_json_is_complete_and_stable(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(REPO_POLICIES))
    code, out, _ = run(capsys, "policy", "show", "--region", "7314", "--format", "json")
    assert code == 0
    shown = json.loads(out)
    assert shown["region"] == "7314"
    assert shown["version"] == "national-2026.1+7314:2026.1"
    assert shown["region_override"] == str(REPO_POLICIES / "regions" / "7314.toml")
    assert shown["national_source"].startswith("packaged default")
    values = shown["values"]
    assert values["arrears_tolerance_months"] == 1
    assert values["absent_record"] == "NOT_REGISTERED"
    assert values["required_programs"]["KECIL"] == ["JKK", "JKM", "JHT"]
    # every field of the model is shown, and reads back as the very policy in force
    assert set(values) == set(Policy.model_fields)
    assert Policy.model_validate(values) == load_policy_book(REPO_POLICIES).for_region("7314")
    # sets come out in a fixed order, so two runs print the same bytes
    assert run(capsys, "policy", "show", "--region", "7314", "--format", "json")[1] == out


def test_show_with_a_broken_policy_dir_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    write(tmp_path, "national.toml", 'version = "1"\narrears_tolerance_months = -1\n')
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(tmp_path))
    code, _, err = run(capsys, "policy", "show")
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith(f"ptsp-gate policy: {tmp_path / 'national.toml'}: ")


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["policy"],
        ["policy", "nonsense"],
        ["policy", "check"],
        ["policy", "show", "--region", "73"],
        ["policy", "show", "--format", "yaml"],
        ["policy", "simulate"],
        ["policy", "simulate", "--policy", "x.toml", "--since", "yesterday"],
        ["policy", "simulate", "--policy", "x.toml", "--region", "7314x"],
        ["policy", "simulate", "--policy", "x.toml", "--format", "text"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys) -> None:
    usage_error(capsys, argv)


def test_simulate_checks_the_candidate_before_touching_the_database(
    tmp_path, capsys, monkeypatch
) -> None:
    # An unreachable database: reaching it would be a different error, so these prove the order.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _, err = run(capsys, "policy", "simulate", "--policy", str(tmp_path / "none.toml"))
    assert (code, err) == (1, [f"ptsp-gate policy: {tmp_path / 'none.toml'}: file not found"])

    path = write(tmp_path, "7314.toml", 'region = "7314"\nversion = "1"\n')
    code, _, err = run(capsys, "policy", "simulate", "--policy", str(path), "--region", "3201")
    assert code == 1
    assert err == [
        "ptsp-gate policy: the candidate is region 7314's policy; it changes nothing in "
        "--region 3201"
    ]


def test_simulate_on_an_unreachable_database_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    path = write(tmp_path, "strict.toml", 'version = "s"\n')
    code, _, err = run(capsys, "policy", "simulate", "--policy", str(path))
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate policy: cannot connect to PostgreSQL")


# --- counting and rendering --------------------------------------------------------------------

CURRENT = Policy(version="cur")
STRICT = Policy(version="strict", arrears_tolerance_months=0)


def application(n: int, *, region: str = "7314", workers: int = 3) -> PermitApplication:
    data = demo.application(n, now=NOW, region=region, workers=workers)
    return PermitApplication.model_validate_json(json.dumps(data))


def enrolment(n: int, **kwargs: object) -> EnrolmentState:
    return EnrolmentState.model_validate_json(json.dumps(demo.enrolment(n, now=NOW, **kwargs)))  # type: ignore[arg-type]


def add(sim: Simulation, app: PermitApplication, state: EnrolmentState | None, stored=None):
    current = decide(app, state, CURRENT, NOW)
    candidate = decide(app, state, STRICT, NOW)
    if stored is None:
        stored = (current.outcome.value, [r.code.value for r in current.reasons])
    sim.add(app, stored, current, candidate)


def sample() -> Simulation:
    sim = Simulation(now=NOW, region="7314")
    add(sim, application(1), enrolment(1, arrears=1))  # CLEARED -> BLOCKED
    add(sim, application(2), enrolment(2, arrears=2))  # CLEARED -> BLOCKED
    app3 = PermitApplication.model_validate_json(
        json.dumps({**demo.application(2, now=NOW), "application_id": "APP-7314-SECOND"})
    )
    add(sim, app3, enrolment(2, arrears=2))  # the same employer, a second application
    add(sim, application(3), enrolment(3, arrears=0))  # unchanged CLEARED
    add(sim, application(4), enrolment(4, arrears=4))  # unchanged BLOCKED
    add(sim, application(5, workers=5), None)  # unchanged PENDING
    # stored BLOCKED, but the data moved on: drift, not a policy change
    add(sim, application(6), enrolment(6), stored=("BLOCKED", ["ARREARS"]))
    sim.add(
        application(7),
        None,
        *(decide(application(7), enrolment(7), p, NOW) for p in (CURRENT, STRICT)),
    )
    # inactive and one month behind: BLOCKED under both, with ARREARS added by the candidate
    add(sim, application(8), enrolment(8, arrears=1, status="INACTIVE"))
    return sim


def test_counts_by_transition_and_employers() -> None:
    report = sample().report()
    assert report["applications"] == 9
    assert counts(report) == (
        "BLOCKED->BLOCKED 2, CLEARED->BLOCKED 3, CLEARED->CLEARED 3, PENDING->PENDING 1; "
        "changed 4: outcome 3, reasons only 1; "
        "drift 1, no stored decision 1: BLOCKED->CLEARED 1"
    )
    assert report["newly_blocked"] == [
        {
            "nib": demo.nib(1),
            "region_code": "7314",
            "applications": 1,
            "application_ids": ["APP-7314-000001"],
            "new_reason_codes": ["ARREARS"],
        },
        {
            "nib": demo.nib(2),
            "region_code": "7314",
            "applications": 2,
            "application_ids": ["APP-7314-000002", "APP-7314-SECOND"],
            "new_reason_codes": ["ARREARS"],
        },
    ]
    assert report["newly_cleared"] == []
    assert report["policy_versions"] == [
        {"current": "cur", "candidate": "strict", "applications": 9}
    ]


def test_loosening_lists_newly_cleared_with_lifted_codes() -> None:
    sim = Simulation(now=NOW)
    for app, state, lax in [
        (
            application(1),
            enrolment(1, arrears=3),
            Policy(version="lax", arrears_tolerance_months=6),
        ),
        (
            application(2),
            enrolment(2, age_days=100),
            Policy(version="lax", max_enrolment_age_days=365),
        ),
    ]:
        sim.add(app, None, decide(app, state, CURRENT, NOW), decide(app, state, lax, NOW))
    report = sim.report()
    assert report["newly_blocked"] == []
    assert [(e["nib"], e["lifted_reason_codes"]) for e in report["newly_cleared"]] == [
        (demo.nib(1), ["ARREARS"]),
        (demo.nib(2), ["ENROLMENT_STALE"]),
    ]


SAMPLE_TABLE = f"""\
Policy simulation over 9 stored application(s) (region 7314)
as of {NOW.isoformat()}; read only: nothing was written or published

current policy cur  ->  candidate strict  (9 application(s))

Outcomes, current policy -> candidate policy:
current  candidate  applications
-------  ---------  ------------
CLEARED  CLEARED    3
CLEARED  BLOCKED    3
BLOCKED  BLOCKED    2
PENDING  PENDING    1

Would change: 4 application(s), 3 in outcome and 1 in reasons only.
Context: 1 stored decision(s) differ from a re-run under the current policy
(enrolment data, the clock or the policy in force has moved on since they were made); \
1 application(s) have no stored decision.

Newly blocked employers: 2
nib            region_code  applications  new_reason_codes
-------------  -----------  ------------  ----------------
{demo.nib(1)}  7314         1             ARREARS
{demo.nib(2)}  7314         2             ARREARS

Newly cleared employers: 0
"""


def test_render_formats() -> None:
    sim = sample()
    assert render(sim, "table") == SAMPLE_TABLE

    rows = list(csv.DictReader(io.StringIO(render(sim, "csv"))))
    assert list(rows[0]) == list(CHANGE_COLUMNS)
    assert len(rows) == 4
    by_id = {r["application_id"]: r for r in rows}
    assert by_id["APP-7314-000001"]["current_outcome"] == "CLEARED"
    assert by_id["APP-7314-000001"]["candidate_outcome"] == "BLOCKED"
    assert by_id["APP-7314-000001"]["candidate_reason_codes"] == "ARREARS"
    assert by_id["APP-7314-000008"]["candidate_reason_codes"] == "EMPLOYER_INACTIVE,ARREARS"

    report = json.loads(render(sim, "json"))
    assert report["scope"] == {"region": "7314", "since": None}
    assert report["decided_at"] == NOW.isoformat()
    assert len(report["changes"]) == 4


def test_render_nothing_in_scope() -> None:
    sim = Simulation(now=NOW, since=datetime(2026, 1, 1, tzinfo=UTC))
    table = render(sim, "table")
    assert "over 0 stored application(s) (submitted since 2026-01-01T00:00:00+00:00)" in table
    assert table.endswith("No stored applications in scope.\n")
    assert render(sim, "csv") == ",".join(CHANGE_COLUMNS) + "\n"
    assert json.loads(render(sim, "json"))["transitions"] == []
