"""Officer overrides in the decision: which grant applies, and what it does to a verdict. Table
cases for the choice, properties over every situation `decide` can meet."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptsp_gate import decisions
from ptsp_gate.contract.events import Outcome, ReasonCode
from ptsp_gate.policy import decide, load_policy_book
from ptsp_gate.policy.overrides import Grant, Scope, applicable, cited, overridden
from tests import policy_builders as pb
from tests.unit.test_policy_properties import PROPERTY, Situation, situations

APP = pb.application()
NOW = pb.NOW


def grant(**changes: object) -> Grant:
    base = Grant(
        override_id=uuid.UUID(int=1),
        scope=Scope.APPLICATION,
        application_id=APP.application_id,
        nib=APP.employer.nib,
        region_code=APP.region_code,
        legal_basis="Perbup 12/2026 pasal 4",
        document_ref="SK-001/2026",
        asked_by="ana",
        granted_by="budi",
        granted_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(days=30),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


EMPLOYER = grant(override_id=uuid.UUID(int=2), scope=Scope.EMPLOYER, application_id=None)

CHOICES = {
    "no grant": ([], None),
    "the application's own": ([grant()], 1),
    "the employer's": ([EMPLOYER], 2),
    "the application's before the employer's": ([EMPLOYER, grant()], 1),
    "another application's is not this one's": ([grant(application_id="OSS-OTHER")], None),
    "this application's, granted on another employer": ([grant(nib="8120009999999")], None),
    "another employer's is not this one's": ([replace(EMPLOYER, nib="8120009999999")], None),
    "another region's does not apply here": ([replace(EMPLOYER, region_code="3319")], None),
    "an expired one does not apply": ([grant(expires_at=NOW)], None),
    "the one lasting longest": (
        [
            grant(override_id=uuid.UUID(int=3), expires_at=NOW + timedelta(days=2)),
            grant(override_id=uuid.UUID(int=4), expires_at=NOW + timedelta(days=9)),
        ],
        4,
    ),
    "equal ends: the latest granted": (
        [
            grant(override_id=uuid.UUID(int=5), granted_at=NOW - timedelta(days=1)),
            grant(override_id=uuid.UUID(int=6)),
        ],
        6,
    ),
}


@pytest.mark.parametrize(("grants", "expected"), CHOICES.values(), ids=CHOICES.keys())
def test_which_grant_applies(grants: list[Grant], expected: int | None) -> None:
    for order in (grants, list(reversed(grants))):
        chosen = applicable(order, APP, NOW)
        assert (chosen.override_id.int if chosen else None) == expected


def test_an_override_clears_a_block_and_names_what_it_set_aside() -> None:
    verdict = decide(APP, pb.enrolment(arrears_months=5), pb.NATIONAL, NOW)
    assert verdict.outcome is Outcome.BLOCKED
    cleared = overridden(verdict, grant())
    assert cleared.outcome is Outcome.CLEARED
    assert [r.code for r in cleared.reasons] == [ReasonCode.OFFICER_OVERRIDE]
    details = cleared.reasons[0].details
    assert details["effect"] == "advisory"
    assert details["overridden"] == [{"code": "ARREARS", "effect": "block"}]
    assert details["approved_by"] == ["budi"]
    assert details["asked_by"] == "ana"
    assert details["expires_at"] == grant().expires_at.isoformat()
    assert details["legal_basis"] == "Perbup 12/2026 pasal 4"
    assert details["document_ref"] == "SK-001/2026"
    assert cleared.enrolment_as_of == verdict.enrolment_as_of
    assert cleared.policy_version == verdict.policy_version


def test_a_decision_under_an_override_says_which_and_gets_its_own_id() -> None:
    book = load_policy_book(None)
    record = pb.enrolment(arrears_months=5)
    plain = decisions.for_application(
        "ev-1", APP, record, policies=book, complete_regions=set(), now=NOW
    )
    under = decisions.for_application(
        "ev-1", APP, record, policies=book, complete_regions=set(), now=NOW, grants=[grant()]
    )
    assert cited(plain) is None
    assert cited(under) == str(uuid.UUID(int=1))
    assert under.decision_id != plain.decision_id
    assert under.outcome is Outcome.CLEARED


def test_two_overrides_clearing_one_decision_give_two_decision_ids() -> None:
    book = load_policy_book(None)
    record = pb.enrolment(arrears_months=5)

    def under(g: Grant) -> uuid.UUID:
        return decisions.for_application(
            "ev-1", APP, record, policies=book, complete_regions=set(), now=NOW, grants=[g]
        ).decision_id

    assert under(grant()) != under(grant(override_id=uuid.UUID(int=9)))
    assert under(grant()) == under(grant())


@PROPERTY
@given(situation=situations(), scope=st.sampled_from(Scope))
def test_an_override_clears_exactly_what_blocks_or_defers(
    situation: Situation, scope: Scope
) -> None:
    verdict = situation.verdict()
    after = overridden(verdict, grant(scope=scope))
    set_aside = [r for r in verdict.reasons if r.details["effect"] in ("block", "pending")]
    if verdict.outcome is Outcome.CLEARED:
        assert after == verdict
        return
    assert after.outcome is Outcome.CLEARED
    assert {r.details["effect"] for r in after.reasons} == {"advisory"}
    override = [r for r in after.reasons if r.code is ReasonCode.OFFICER_OVERRIDE]
    assert len(override) == 1
    assert [o["code"] for o in override[0].details["overridden"]] == [
        r.code.value for r in set_aside
    ]
    # Advisory reasons stay, in the contract's order, and nothing else is added.
    kept = [r for r in verdict.reasons if r not in set_aside]
    assert [r for r in after.reasons if r.code is not ReasonCode.OFFICER_OVERRIDE] == kept
    order = list(ReasonCode)
    assert [order.index(r.code) for r in after.reasons] == sorted(
        order.index(r.code) for r in after.reasons
    )
    assert overridden(verdict, grant(scope=scope)) == after  # deterministic


@PROPERTY
@given(situation=situations())
def test_decide_itself_never_gives_the_override_reason(situation: Situation) -> None:
    assert ReasonCode.OFFICER_OVERRIDE not in {r.code for r in situation.verdict().reasons}
