"""`policy simulate`: the stored applications re-decided under the current policy and under a
candidate, and what would change between the two.

Both runs use the same enrolment state and the same clock, so every difference between them is the
policy's doing; differences between the stored decisions and the current-policy run (data that
arrived or aged since, or a policy deployed since) are reported apart, as context. Nothing is
written and nothing is emitted: the whole run is one READ ONLY transaction, and this module never
imports a Kafka client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from ptsp_gate.contract.events import Outcome, PermitApplication, ReasonCode
from ptsp_gate.policy import PolicyBook, Verdict, decide
from ptsp_gate.reports.render import to_csv, to_json, to_table
from ptsp_gate.stores import applications
from ptsp_gate.stores.enrolments import from_row

# Rows per round trip of the server-side cursor: memory stays flat however many applications a
# regency has, while round trips stay few.
BATCH_SIZE = 2000

_OUTCOME_ORDER = {outcome.value: index for index, outcome in enumerate(Outcome)}
_CODE_ORDER = {code.value: index for index, code in enumerate(ReasonCode)}


def _codes(verdict: Verdict, *effects: str) -> tuple[str, ...]:
    return tuple(
        r.code.value for r in verdict.reasons if not effects or r.details.get("effect") in effects
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One application whose outcome or reasons differ between the two policies."""

    application_id: str
    nib: str
    region_code: str
    submitted_at: datetime
    stored_outcome: str | None
    current_outcome: str
    candidate_outcome: str
    current_reason_codes: tuple[str, ...]
    candidate_reason_codes: tuple[str, ...]
    current_policy_version: str
    candidate_policy_version: str

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CHANGE_COLUMNS}


CHANGE_COLUMNS = (
    "application_id",
    "nib",
    "region_code",
    "submitted_at",
    "stored_outcome",
    "current_outcome",
    "candidate_outcome",
    "current_reason_codes",
    "candidate_reason_codes",
    "current_policy_version",
    "candidate_policy_version",
)


@dataclass(slots=True)
class _Employer:
    applications: list[str] = field(default_factory=list)
    codes: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Simulation:
    """What a run found, filled one application at a time: the counters stay small however
    many applications there are, and only the applications that would change are kept."""

    now: datetime
    region: str | None = None
    since: datetime | None = None
    applications: int = 0
    unreadable: list[str] = field(default_factory=list)
    no_stored_decision: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    drift: Counter[tuple[str, str]] = field(default_factory=Counter)
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)
    newly_blocked: dict[tuple[str, str], _Employer] = field(default_factory=dict)
    newly_cleared: dict[tuple[str, str], _Employer] = field(default_factory=dict)

    def add(
        self,
        application: PermitApplication,
        stored: tuple[str, Sequence[str]] | None,
        current: Verdict,
        candidate: Verdict,
    ) -> None:
        """Count one application; `stored` is its latest non-REJECTED decision (outcome, reason
        codes), None when it has none."""
        self.applications += 1
        now_out, new_out = current.outcome.value, candidate.outcome.value
        self.transitions[now_out, new_out] += 1
        self.versions[current.policy_version, candidate.policy_version] += 1
        now_codes, new_codes = _codes(current), _codes(candidate)
        if stored is None:
            self.no_stored_decision += 1
        elif (stored[0], sorted(stored[1])) != (now_out, sorted(now_codes)):
            self.drift[stored[0], now_out] += 1
        if (now_out, now_codes) == (new_out, new_codes):
            return
        employer = application.employer
        self.changes.append(
            Change(
                application_id=application.application_id,
                nib=employer.nib,
                region_code=application.region_code,
                submitted_at=application.submitted_at,
                stored_outcome=stored[0] if stored is not None else None,
                current_outcome=now_out,
                candidate_outcome=new_out,
                current_reason_codes=now_codes,
                candidate_reason_codes=new_codes,
                current_policy_version=current.policy_version,
                candidate_policy_version=candidate.policy_version,
            )
        )
        key = (employer.nib, application.region_code)
        if new_out == Outcome.BLOCKED and now_out != Outcome.BLOCKED:
            entry = self.newly_blocked.setdefault(key, _Employer())
            entry.applications.append(application.application_id)
            entry.codes.update(set(_codes(candidate, "block")) - set(_codes(current, "block")))
        elif new_out == Outcome.CLEARED and now_out != Outcome.CLEARED:
            # What used to hold the application back (a block or a deferral) and no longer does.
            holding = ("block", "pending")
            entry = self.newly_cleared.setdefault(key, _Employer())
            entry.applications.append(application.application_id)
            entry.codes.update(set(_codes(current, *holding)) - set(_codes(candidate, *holding)))

    @property
    def outcome_changes(self) -> int:
        return sum(1 for c in self.changes if c.current_outcome != c.candidate_outcome)

    def report(self) -> dict[str, Any]:
        """Everything, as plain data (the JSON format)."""
        return {
            "decided_at": self.now,
            "scope": {"region": self.region, "since": self.since},
            "applications": self.applications,
            "unreadable_applications": sorted(self.unreadable),
            "policy_versions": [
                {"current": cur, "candidate": cand, "applications": n}
                for (cur, cand), n in sorted(self.versions.items())
            ],
            "transitions": _pairs(self.transitions, "current", "candidate"),
            "changed": {
                "applications": len(self.changes),
                "outcome": self.outcome_changes,
                "reasons_only": len(self.changes) - self.outcome_changes,
            },
            "drift": {
                "applications": sum(self.drift.values()),
                "no_stored_decision": self.no_stored_decision,
                "transitions": _pairs(self.drift, "stored", "current"),
            },
            "newly_blocked": _employers(self.newly_blocked, "new_reason_codes"),
            "newly_cleared": _employers(self.newly_cleared, "lifted_reason_codes"),
            "changes": [c.as_row() for c in self.sorted_changes()],
        }

    def sorted_changes(self) -> list[Change]:
        return sorted(self.changes, key=lambda c: (c.region_code, c.nib, c.application_id))


def _pairs(counts: Counter[tuple[str, str]], first: str, second: str) -> list[dict[str, Any]]:
    def order(pair: tuple[str, str]) -> tuple[int, int]:
        return (_OUTCOME_ORDER.get(pair[0], 99), _OUTCOME_ORDER.get(pair[1], 99))

    return [
        {first: a, second: b, "applications": counts[a, b]} for a, b in sorted(counts, key=order)
    ]


def _employers(found: dict[tuple[str, str], _Employer], codes_name: str) -> list[dict[str, Any]]:
    return [
        {
            "nib": nib,
            "region_code": region,
            "applications": len(entry.applications),
            "application_ids": sorted(entry.applications),
            codes_name: _code_order(entry.codes),
        }
        for (nib, region), entry in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def _code_order(codes: Iterable[str]) -> list[str]:
    # The contract's order, as on decisions, so the same codes always read the same.
    return sorted(codes, key=lambda c: (_CODE_ORDER.get(c, len(_CODE_ORDER)), c))


async def simulate(
    conn: asyncpg.Connection,
    current: PolicyBook,
    candidate: PolicyBook,
    *,
    region: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> Simulation:
    """Re-decide every stored application in scope under both books, without writing."""
    result = Simulation(now=now or datetime.now(UTC), region=region, since=since)
    async with applications.read_only(conn):
        async for rows in applications.latest_with_state(conn, region, since, batch_size):
            for row in rows:
                _decide_row(result, row, current, candidate)
    return result


def _decide_row(
    result: Simulation, row: asyncpg.Record, current: PolicyBook, candidate: PolicyBook
) -> None:
    try:
        application = PermitApplication.model_validate_json(row["payload"])
    except ValidationError:
        # Accepted once, unreadable now (the contract tightened since): not decidable by either
        # policy, so it is listed rather than guessed at.
        result.unreadable.append(row["application_id"])
        return
    enrolment = from_row(row) if row["nib"] is not None else None
    complete = bool(row["snapshot_complete"])
    region = application.region_code
    verdicts = [
        decide(
            application, enrolment, book.for_region(region), result.now, snapshot_complete=complete
        )
        for book in (current, candidate)
    ]
    stored = (
        (row["stored_outcome"], list(row["stored_reason_codes"]))
        if row["stored_outcome"] is not None
        else None
    )
    result.add(application, stored, verdicts[0], verdicts[1])


# --- rendering ----------------------------------------------------------------------------------

_TRANSITION_COLUMNS = ("current", "candidate", "applications")
_BLOCKED_COLUMNS = ("nib", "region_code", "applications", "new_reason_codes")
_CLEARED_COLUMNS = ("nib", "region_code", "applications", "lifted_reason_codes")


def render(result: Simulation, fmt: str) -> str:
    if fmt == "json":
        return to_json(result.report()) + "\n"
    if fmt == "csv":
        # One parseable table: the applications that would change. The summary is in the other
        # formats; a spreadsheet wants rows, and the counts follow from them.
        return to_csv([c.as_row() for c in result.sorted_changes()], CHANGE_COLUMNS)
    return _table(result)


def _table(result: Simulation) -> str:
    report = result.report()
    scope = []
    if result.region:
        scope.append(f"region {result.region}")
    if result.since:
        scope.append(f"submitted since {result.since.isoformat()}")
    head = f"Policy simulation over {result.applications} stored application(s)"
    head += f" ({', '.join(scope)})" if scope else " (all regions)"
    when = result.now.isoformat(timespec="seconds")
    lines = [head, f"as of {when}; read only: nothing was written or published", ""]
    for pair in report["policy_versions"]:
        lines.append(
            f"current policy {pair['current']}  ->  candidate {pair['candidate']}"
            f"  ({pair['applications']} application(s))"
        )
    if not result.applications:
        lines += ["", "No stored applications in scope."]
        return "\n".join(lines) + "\n"
    lines += ["", "Outcomes, current policy -> candidate policy:"]
    lines.append(to_table(report["transitions"], _TRANSITION_COLUMNS).rstrip("\n"))
    changed = report["changed"]
    lines += [
        "",
        f"Would change: {changed['applications']} application(s), {changed['outcome']} in "
        f"outcome and {changed['reasons_only']} in reasons only.",
    ]
    drift = report["drift"]
    missing = drift["no_stored_decision"]
    lines += [
        f"Context: {drift['applications']} stored decision(s) differ from a re-run under the "
        "current policy",
        "(enrolment data, the clock or the policy in force has moved on since they were made)"
        + (f"; {missing} application(s) have no stored decision." if missing else "."),
    ]
    if result.unreadable:
        lines.append(
            f"Skipped: {len(result.unreadable)} stored application(s) no longer readable: "
            + ", ".join(sorted(result.unreadable)[:5])
            + (" ..." if len(result.unreadable) > 5 else "")
        )
    for title, rows, columns in (
        ("Newly blocked employers", report["newly_blocked"], _BLOCKED_COLUMNS),
        ("Newly cleared employers", report["newly_cleared"], _CLEARED_COLUMNS),
    ):
        lines += ["", f"{title}: {len(rows)}"]
        if rows:
            lines.append(to_table(rows, columns).rstrip("\n"))
    return "\n".join(lines) + "\n"
