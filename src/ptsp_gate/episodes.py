"""How stored decisions move employers in and out of flagged episodes.

An employer's standing is its latest non-REJECTED decision. It is flagged while that decision is
BLOCKED: an episode begins at the decision that makes it BLOCKED and ends at the next one that
does not. The decision that ends it says how: a re-decision (it supersedes another decision) or a
new application's first decision. An episode still open when its blocked applications leave the
re-decision window ends by expiry; that needs no stored change and is computed where reported.

The same rule is written once more, in SQL, as the `recomputed_compliance_episode` view that
`ptsp-gate projection verify` compares against: the two are kept apart on purpose, so that each
checks the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

BLOCKED = "BLOCKED"
REJECTED = "REJECTED"
REDECISION = "REDECISION"
NEW_APPLICATION = "NEW_APPLICATION"


@dataclass(frozen=True, slots=True)
class Step:
    """A stored decision, as the projection sees it."""

    nib: str
    seq: int
    decided_at: datetime
    decision_id: UUID
    region_code: str | None
    reason_codes: tuple[str, ...]
    outcome: str
    supersedes: bool


@dataclass(frozen=True, slots=True)
class End:
    seq: int
    at: datetime
    decision_id: UUID
    outcome: str
    by: str


@dataclass(frozen=True, slots=True)
class Episode:
    """An episode that began in the walked steps (and may have ended in them too)."""

    nib: str
    began_seq: int
    began_at: datetime
    began_decision_id: UUID
    region_code: str | None
    reason_codes: tuple[str, ...]
    end: End | None


@dataclass(frozen=True, slots=True)
class Walk:
    began: list[Episode]
    # Episodes open before the walk that it ended, by employer (at most one is open per employer).
    ended: dict[str, End]
    # Whether each walked employer is flagged after the walk.
    flagged: dict[str, bool]


def walk(flagged_before: Mapping[str, bool], steps: Iterable[Step]) -> Walk:
    """Apply `steps` in their `seq` order to employers flagged (or not) as `flagged_before` says
    (an employer not in it is not flagged). REJECTED decisions do not change a standing."""
    flagged: dict[str, bool] = {}
    open_here: dict[str, int] = {}  # employer -> its episode's index in `began`
    began: list[Episode] = []
    ended: dict[str, End] = {}
    for step in sorted(steps, key=lambda s: s.seq):
        if step.outcome == REJECTED:
            continue
        was = flagged.get(step.nib, flagged_before.get(step.nib, False))
        now = step.outcome == BLOCKED
        flagged[step.nib] = now
        if now and not was:
            episode = Episode(
                step.nib,
                step.seq,
                step.decided_at,
                step.decision_id,
                step.region_code,
                step.reason_codes,
                None,
            )
            open_here[step.nib] = len(began)
            began.append(episode)
        elif was and not now:
            end = End(
                step.seq,
                step.decided_at,
                step.decision_id,
                step.outcome,
                REDECISION if step.supersedes else NEW_APPLICATION,
            )
            index = open_here.pop(step.nib, None)
            if index is None:
                ended[step.nib] = end
            else:
                began[index] = replace(began[index], end=end)
    return Walk(began, ended, flagged)
