"""The episode walk: what each decision does to an employer's flagged episode, and that walking
the decisions batch by batch (as transactions store them) gives what one walk over all of them
gives (as `projection verify` recomputes them)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptsp_gate.episodes import NEW_APPLICATION, REDECISION, Step, walk

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def step(seq: int, outcome: str, *, nib: str = "A", supersedes: bool = False) -> Step:
    return Step(
        nib=nib,
        seq=seq,
        decided_at=T0 + timedelta(days=seq),
        decision_id=uuid.UUID(int=seq),
        region_code="7314",
        reason_codes=("ARREARS",) if outcome == "BLOCKED" else (),
        outcome=outcome,
        supersedes=supersedes,
    )


@pytest.mark.parametrize(
    ("before", "outcomes", "began", "ended_before", "flagged_after"),
    [
        (False, ["BLOCKED"], [(1, None)], None, True),
        (False, ["CLEARED"], [], None, False),
        (False, ["PENDING", "BLOCKED"], [(2, None)], None, True),
        (False, ["BLOCKED", "BLOCKED"], [(1, None)], None, True),  # still the same episode
        (False, ["BLOCKED", "CLEARED"], [(1, 2)], None, False),
        (False, ["BLOCKED", "PENDING", "BLOCKED"], [(1, 2), (3, None)], None, True),
        (False, ["BLOCKED", "REJECTED"], [(1, None)], None, True),  # REJECTED changes nothing
        (False, ["REJECTED"], [], None, False),
        (True, ["CLEARED"], [], 1, False),  # ends the episode open before the walk
        (True, ["BLOCKED"], [], None, True),
        (True, ["REJECTED", "PENDING", "BLOCKED"], [(3, None)], 2, True),
    ],
)
def test_each_decision_moves_the_episode(before, outcomes, began, ended_before, flagged_after):
    steps = [step(n, o) for n, o in enumerate(outcomes, start=1)]
    result = walk({"A": before}, steps)
    assert [(e.began_seq, e.end.seq if e.end else None) for e in result.began] == began
    assert (result.ended["A"].seq if "A" in result.ended else None) == ended_before
    assert result.flagged == (
        {"A": flagged_after} if any(o != "REJECTED" for o in outcomes) else {}
    )


def test_how_an_episode_ended_is_told_by_the_decision_that_ended_it():
    result = walk({}, [step(1, "BLOCKED"), step(2, "CLEARED", supersedes=True)])
    assert result.began[0].end is not None
    assert result.began[0].end.by == REDECISION
    result = walk({"A": True}, [step(5, "PENDING")])
    assert result.ended["A"].by == NEW_APPLICATION
    assert result.ended["A"].outcome == "PENDING"


def test_steps_are_walked_in_seq_order_per_employer():
    steps = [
        step(3, "CLEARED"),
        step(1, "BLOCKED", nib="B"),
        step(2, "BLOCKED"),
        step(4, "CLEARED", nib="B"),
    ]
    result = walk({}, steps)
    assert [(e.nib, e.began_seq, e.end.seq if e.end else None) for e in result.began] == [
        ("B", 1, 4),
        ("A", 2, 3),
    ]


histories = st.lists(
    st.tuples(
        st.sampled_from("ABC"),
        st.sampled_from(("BLOCKED", "CLEARED", "PENDING", "REJECTED")),
        st.booleans(),
    ),
    max_size=40,
)


def _episodes(result_walks: list) -> list[tuple]:
    """Whole episodes out of a sequence of walks, as the projection's rows end up."""
    rows: dict[tuple[str, int], tuple] = {}
    open_by_nib: dict[str, tuple[str, int]] = {}
    for result in result_walks:
        for nib, end in result.ended.items():
            key = open_by_nib.pop(nib)
            rows[key] = (*rows[key][:2], end)
        for e in result.began:
            rows[(e.nib, e.began_seq)] = (e.nib, e.began_seq, e.end)
            if e.end is None:
                open_by_nib[e.nib] = (e.nib, e.began_seq)
    return sorted(rows.values(), key=lambda r: (r[0], r[1]))


@given(history=histories, cuts=st.lists(st.integers(0, 40), max_size=6))
def test_walking_in_batches_gives_what_one_walk_gives(history, cuts):
    steps = [step(n, o, nib=nib, supersedes=s) for n, (nib, o, s) in enumerate(history, start=1)]
    whole = walk({}, steps)
    bounds = sorted({0, len(steps), *(c for c in cuts if c <= len(steps))})
    flagged: dict[str, bool] = {}
    walks = []
    for lo, hi in itertools.pairwise(bounds):
        result = walk(flagged, steps[lo:hi])
        flagged.update(result.flagged)
        walks.append(result)
    assert _episodes(walks) == _episodes([whole])
    assert flagged == whole.flagged
