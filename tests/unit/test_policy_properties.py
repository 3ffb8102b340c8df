"""Properties of `decide` over generated applications, enrolment records and policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.id import npwp as stdnum_npwp

from ptsp_gate.contract.events import (
    Action,
    EnrolmentState,
    EnrolmentStatus,
    Outcome,
    PdsFlag,
    PermitApplication,
    PermitType,
    Program,
    ReasonCode,
    RiskLevel,
    Scale,
    Segment,
)
from ptsp_gate.contract.identifiers import canonical_npwp
from ptsp_gate.policy import Policy, Verdict, decide, decision_id
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES, PENDING_TYPE_CODES, effect_of
from tests import policy_builders

PROPERTY = settings(max_examples=200, deadline=None)
REQUIRABLE = [Program.JKK, Program.JKM, Program.JHT, Program.JP]
ZONES = [
    UTC,
    timezone(timedelta(hours=7)),
    timezone(timedelta(hours=8)),
    timezone(timedelta(hours=9)),
]
ORDER = list(ReasonCode)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


@st.composite
def npwps(draw: st.DrawFn) -> str:
    """A legacy 15-digit NPWP (Luhn check digit over the first 9) or its 16-digit "0" form."""
    head = draw(digits(8))
    legacy = head + luhn.calc_check_digit(head) + draw(digits(6))
    return draw(st.sampled_from([legacy, "0" + legacy]))


def other_form(npwp: str) -> str:
    return npwp[1:] if len(npwp) == 16 else "0" + npwp


instants = st.datetimes(
    min_value=datetime(2021, 1, 1),
    max_value=datetime(2030, 12, 31),
    timezones=st.sampled_from(ZONES),
)


applications = st.builds(
    policy_builders.application,
    application_id=st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1),
    action=st.sampled_from(Action),
    submitted_at=instants,
    region_code=digits(4),
    permit_type=st.sampled_from(PermitType),
    kbli=digits(5),
    risk_level=st.sampled_from(RiskLevel),
    nib=digits(13),
    npwp=npwps(),
    scale=st.sampled_from(Scale),
    workers=st.integers(0, 60),
)


def records_for(application: PermitApplication) -> st.SearchStrategy[EnrolmentState]:
    """A record of the same employer; its NPWP is usually the application's in either form."""
    npwp = application.employer.npwp
    return st.builds(
        policy_builders.enrolment,
        nib=st.just(application.employer.nib),
        npwp=st.one_of(st.sampled_from([npwp, other_form(npwp)]), npwps()),
        npp=st.just("NPP-1"),
        status=st.sampled_from(EnrolmentStatus),
        segment=st.sampled_from(Segment),
        programs=st.frozensets(st.sampled_from(Program)),
        workers_enrolled=st.integers(0, 80),
        arrears_months=st.integers(0, 12),
        pds_flags=st.frozensets(st.sampled_from(PdsFlag)),
        sanction_requested=st.booleans(),
        as_of=instants,
        version=st.integers(0, 2**40),
    )


requirements = st.frozensets(st.sampled_from(REQUIRABLE))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    if draw(st.booleans()):
        return Policy(version="national-prop")
    return Policy(
        version=draw(st.sampled_from(["national-prop", "national-prop+7314:1"])),
        arrears_tolerance_months=draw(st.integers(0, 6)),
        max_enrolment_age_days=draw(st.integers(0, 200)),
        blocking_codes=draw(st.frozensets(st.sampled_from(sorted(BLOCK_TYPE_CODES)))),
        absent_record=draw(st.sampled_from(["PENDING", "NOT_REGISTERED"])),
        required_programs={scale: draw(requirements) for scale in Scale},
        segment_program_caps=draw(st.dictionaries(st.sampled_from(Segment), requirements)),
    )


@dataclass(frozen=True)
class Situation:
    application: PermitApplication
    enrolment: EnrolmentState | None
    policy: Policy
    now: datetime
    snapshot_complete: bool

    def verdict(
        self, enrolment: EnrolmentState | None = None, policy: Policy | None = None
    ) -> Verdict:
        return decide(
            self.application,
            enrolment if enrolment is not None else self.enrolment,
            policy if policy is not None else self.policy,
            self.now,
            snapshot_complete=self.snapshot_complete,
        )


@st.composite
def situations(draw: st.DrawFn, *, with_record: bool | None = None) -> Situation:
    application = draw(applications)
    has_record = draw(st.booleans()) if with_record is None else with_record
    enrolment = draw(records_for(application)) if has_record else None
    # Mostly around the record's as_of so both fresh and stale data come up.
    if enrolment is not None and draw(st.integers(0, 4)):
        now = enrolment.as_of + draw(st.timedeltas(timedelta(days=-3), timedelta(days=300)))
        now = now.astimezone(draw(st.sampled_from(ZONES)))
    else:
        now = draw(instants)
    return Situation(application, enrolment, draw(policies()), now, draw(st.booleans()))


def codes(verdict: Verdict) -> set[ReasonCode]:
    return {reason.code for reason in verdict.reasons}


def record(situation: Situation) -> EnrolmentState:
    assert situation.enrolment is not None
    return situation.enrolment


# --- monotonicity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A change to the employer's record by a drawn amount: one that `improves` it can only take
    reasons away, one that does not can only add them."""

    amounts: st.SearchStrategy[Any]
    update: Callable[[EnrolmentState, Any], dict[str, Any]]
    improves: bool


RECORD_CHANGES = {
    "adding a programme": Change(
        st.sampled_from(Program),
        lambda e, programme: {"programs": e.programs | {programme}},
        improves=True,
    ),
    "more arrears": Change(
        st.integers(1, 24),
        lambda e, more: {"arrears_months": e.arrears_months + more},
        improves=False,
    ),
    "more enrolled workers": Change(
        st.integers(1, 50),
        lambda e, more: {"workers_enrolled": e.workers_enrolled + more},
        improves=True,
    ),
    "fresher data": Change(
        st.timedeltas(timedelta(seconds=1), timedelta(days=400)),
        lambda e, fresher: {"as_of": e.as_of + fresher},
        improves=True,
    ),
}


@pytest.mark.parametrize("change", RECORD_CHANGES.values(), ids=RECORD_CHANGES.keys())
@PROPERTY
@given(situation=situations(with_record=True), data=st.data())
def test_a_better_record_never_has_more_reasons_or_a_worse_outcome(
    change: Change, situation: Situation, data: st.DataObject
) -> None:
    enrolment = record(situation)
    update = change.update(enrolment, data.draw(change.amounts))
    before, after = situation.verdict(), situation.verdict(enrolment.model_copy(update=update))
    better, worse = (after, before) if change.improves else (before, after)
    # Under one policy each code has one effect, so fewer reasons can never mean a worse outcome.
    assert codes(better) <= codes(worse)
    if worse.outcome is Outcome.CLEARED:
        assert better.outcome is Outcome.CLEARED
    if better.outcome is Outcome.BLOCKED:
        assert worse.outcome is Outcome.BLOCKED


@PROPERTY
@given(situations(), st.sampled_from(sorted(BLOCK_TYPE_CODES)))
def test_demoting_a_code_never_turns_cleared_into_blocked(
    situation: Situation, demoted: ReasonCode
) -> None:
    before = situation.verdict()
    lenient = situation.policy.model_copy(
        update={"blocking_codes": situation.policy.blocking_codes - {demoted}}
    )
    after = situation.verdict(policy=lenient)
    assert not (before.outcome is Outcome.CLEARED and after.outcome is Outcome.BLOCKED)
    assert codes(after) == codes(before)


# --- how outcomes follow from reasons ----------------------------------------------------------


@PROPERTY
@given(situations())
def test_blocked_iff_some_reason_blocks(situation: Situation) -> None:
    verdict = situation.verdict()
    effects = [reason.details["effect"] for reason in verdict.reasons]
    assert (verdict.outcome is Outcome.BLOCKED) == ("block" in effects)
    assert (verdict.outcome is Outcome.PENDING) == ("block" not in effects and "pending" in effects)


@PROPERTY
@given(situations())
def test_reasons_are_unique_ordered_and_labelled(situation: Situation) -> None:
    verdict = situation.verdict()
    listed = [reason.code for reason in verdict.reasons]
    assert listed == sorted(set(listed), key=ORDER.index)
    for reason in verdict.reasons:
        assert reason.details["effect"] == effect_of(reason.code, situation.policy.blocking_codes)
        assert reason.message
        if reason.code in PENDING_TYPE_CODES:
            assert reason.details["effect"] == "pending"


@PROPERTY
@given(situations())
def test_decide_never_rejects(situation: Situation) -> None:
    verdict = situation.verdict()
    assert verdict.outcome is not Outcome.REJECTED
    assert ReasonCode.INVALID_EVENT not in codes(verdict)


@PROPERTY
@given(situations())
def test_decide_is_deterministic(situation: Situation) -> None:
    first, second = situation.verdict(), situation.verdict()
    assert first == second
    version = None if situation.enrolment is None else situation.enrolment.version
    assert decision_id("ce-1", first, version) == decision_id("ce-1", second, version)


@PROPERTY
@given(situations())
def test_verdict_records_its_inputs(situation: Situation) -> None:
    verdict = situation.verdict()
    assert verdict.policy_version == situation.policy.version
    expected = None if situation.enrolment is None else situation.enrolment.as_of
    assert verdict.enrolment_as_of == expected


# --- identity and privacy ----------------------------------------------------------------------


@PROPERTY
@given(situations(with_record=True))
def test_npwp_form_never_changes_the_verdict(situation: Situation) -> None:
    before = situation.verdict()
    employer = situation.application.employer
    swapped = situation.application.model_copy(
        update={"employer": employer.model_copy(update={"npwp": other_form(employer.npwp)})}
    )
    after = decide(
        swapped,
        situation.enrolment,
        situation.policy,
        situation.now,
        snapshot_complete=situation.snapshot_complete,
    )
    assert after.outcome is before.outcome
    assert codes(after) == codes(before)
    same_taxpayer = canonical_npwp(employer.npwp) == canonical_npwp(record(situation).npwp)
    assert (ReasonCode.IDENTITY_MISMATCH in codes(before)) == (not same_taxpayer)


@PROPERTY
@given(situations(with_record=True))
def test_reasons_never_carry_a_full_npwp(situation: Situation) -> None:
    rendered = json.dumps(
        [reason.model_dump(mode="json") for reason in situation.verdict().reasons]
    )
    for npwp in (situation.application.employer.npwp, record(situation).npwp):
        assert canonical_npwp(npwp)[1:] not in rendered


@PROPERTY
@given(npwps())
def test_generated_npwps_are_valid(npwp: str) -> None:
    assert stdnum_npwp.is_valid(npwp)


# --- absence of a record -----------------------------------------------------------------------


@PROPERTY
@given(situations(with_record=True))
def test_snapshot_completeness_only_matters_without_a_record(situation: Situation) -> None:
    app, enrolment, policy, now = (
        situation.application,
        situation.enrolment,
        situation.policy,
        situation.now,
    )
    assert decide(app, enrolment, policy, now, snapshot_complete=True) == decide(
        app, enrolment, policy, now, snapshot_complete=False
    )


@PROPERTY
@given(situations(with_record=False))
def test_without_a_record_exactly_one_reason(situation: Situation) -> None:
    verdict = situation.verdict()
    assert len(verdict.reasons) == 1
    employer = situation.application.employer
    if employer.scale is Scale.MIKRO and employer.workers_declared == 0:
        assert verdict.outcome is Outcome.CLEARED
    elif situation.policy.absent_record == "NOT_REGISTERED" and situation.snapshot_complete:
        assert codes(verdict) == {ReasonCode.NOT_REGISTERED}
    else:
        assert verdict.outcome is Outcome.PENDING
