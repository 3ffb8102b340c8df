"""A national-scale history, built the way the services build it: enrolment states applied with
`Store.apply_enrolments`, applications stored with `Store.add_applications`, decided by the policy
(`decisions.for_application`) and stored with `Store.add_decisions` (which keeps the compliance
projection), and employers that fix their enrolment re-decided by the `Redecider`. Events are
handled in time order, a thousand to a transaction, as a consumer batch would."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from ptsp_gate import decisions, demo
from ptsp_gate.contract.cloudevents import CloudEvent
from ptsp_gate.contract.events import (
    CE_TYPE_APPLICATION,
    Action,
    EnrolmentState,
    Permit,
    PermitApplication,
    PermitType,
    RiskLevel,
    Scale,
)
from ptsp_gate.contract.events import Employer as EmployerData
from ptsp_gate.policy import PolicyBook, load_policy_book
from ptsp_gate.redecide import Redecider
from ptsp_gate.runtime.in_memory import Record
from ptsp_gate.runtime.intake import Valid
from ptsp_gate.stores.unit_of_work import PostgresStore

END = datetime(2026, 11, 30, tzinfo=UTC)  # the history's last day; it spans the year before
# fmt: off
REGIONS = (
    "1101", "1271", "1371", "1471", "1571", "1671", "1771", "1871", "3171", "3273",
    "3319", "3374", "3471", "3578", "5171", "6171", "6471", "7314", "7371", "9471",
)
_WORDS = (
    "Maju", "Jaya", "Sejahtera", "Abadi", "Makmur", "Sentosa", "Mandiri", "Berkah",
    "Lestari", "Utama", "Karya", "Bersama", "Nusantara", "Sumber", "Rejeki", "Indah",
)
# fmt: on
BATCH = 1000


@dataclass(frozen=True)
class Employer:
    n: int
    region: str
    name: str
    compliant: bool  # its first enrolment state; False: a state that blocks
    known: bool  # False: BPJS TK has no record (decisions are PENDING)


def policies(workdir: Path) -> PolicyBook:
    """The national policy with enrolment data never too old: the history spans a year, and a
    real feed would have refreshed every state within it; the bench loads each state once."""
    from importlib import resources

    text = (resources.files("ptsp_gate.policy") / "defaults" / "national.toml").read_text()
    text = text.replace("max_enrolment_age_days = 90", "max_enrolment_age_days = 3650")
    text = text.replace('version = "national-2026.1"', 'version = "bench-2026.1"')
    (workdir / "national.toml").write_text(text)
    return load_policy_book(workdir)


def employers(count: int, rnd: random.Random, blocked_share: float) -> list[Employer]:
    made = []
    for n in range(count):
        roll = rnd.random()
        name = f"{rnd.choice(('CV', 'PT', 'UD'))} {rnd.choice(_WORDS)} {rnd.choice(_WORDS)} {n}"
        made.append(
            Employer(n, REGIONS[n % len(REGIONS)], name, roll >= blocked_share, roll < 0.97)
        )
    return made


def state(e: Employer, version: int, as_of: datetime, compliant: bool) -> EnrolmentState:
    """A state that clears a micro employer, or one that blocks it for one of three reasons."""
    kind = "ok" if compliant else ("arrears", "inactive", "programs")[e.n % 3]
    fields = demo.enrolment(
        e.n,
        status="INACTIVE" if kind == "inactive" else "ACTIVE",
        programs=("JKK",) if kind == "programs" else ("JKK", "JKM", "JHT", "JP"),
        arrears=4 if kind == "arrears" else 0,
        now=as_of,
        age_days=0,
        version=version,
    )
    return EnrolmentState.model_validate_json(json.dumps(fields))


def application(e: Employer, n: int, submitted: datetime) -> Valid[PermitApplication]:
    app = PermitApplication(
        application_id=f"OSS-B-{n:08d}",
        action=Action.NEW,
        submitted_at=submitted,
        region_code=e.region,
        permit=Permit(type=PermitType.IZIN, kbli="47111", risk_level=RiskLevel.RENDAH),
        employer=EmployerData(
            nib=demo.nib(e.n),
            npwp=demo.npwp15(e.n),
            name=e.name,
            scale=Scale.MIKRO,
            workers_declared=2,
        ),
    )
    event_id = f"bench-{n:08d}"
    value = app.model_dump_json().encode()
    record = Record("bench", 0, n, demo.nib(e.n).encode(), value, ())
    event = CloudEvent(event_id, "urn:bench", CE_TYPE_APPLICATION, submitted, None)
    return Valid(record=record, event=event, payload=app)


async def build(
    conn: asyncpg.Connection,
    *,
    applications: int,
    employer_count: int,
    blocked_share: float,
    fixed_share: float,
    book: PolicyBook,
    seed: int,
    say: Callable[[str], None],
) -> dict[str, float]:
    rnd = random.Random(seed)
    people = employers(employer_count, rnd, blocked_share)
    start = END - timedelta(days=365)
    started = time.perf_counter()
    # The enrolment states as the first bulk load left them.
    for i in range(0, len(people), 5000):
        chunk = [e for e in people[i : i + 5000] if e.known]
        async with conn.transaction():
            await PostgresStore(conn).apply_enrolments(
                [state(e, 1, start, e.compliant) for e in chunk], "bench", [None] * len(chunk)
            )
    # Applications over the year; an employer's first is when it meets the gate.
    timeline: list[tuple[datetime, int, int]] = []  # (when, 0 = apply / 1 = fix, who)
    first: dict[int, datetime] = {}
    for _ in range(applications):
        who = min(int(employer_count * rnd.random() ** 1.6), employer_count - 1)
        when = start + timedelta(seconds=rnd.uniform(0, 365 * 86400))
        timeline.append((when, 0, who))
        first[who] = min(first.get(who, when), when)
    # Of the employers blocked when they applied, a share fix their enrolment within 80 days.
    for who, when in first.items():
        e = people[who]
        if e.known and not e.compliant and rnd.random() < fixed_share:
            fix = when + timedelta(days=rnd.uniform(1, 80))
            if fix < END:
                timeline.append((fix, 1, who))
    timeline.sort()
    redecider = Redecider(book, window_days=90, decisions_topic="decisions", event_source="bench")
    version = 1
    compliant = {e.n: e.compliant for e in people}
    counts = {"applications": 0, "redecisions": 0}
    for i in range(0, len(timeline), BATCH):
        chunk = timeline[i : i + BATCH]
        async with conn.transaction():
            store = PostgresStore(conn)
            fixes = [who for _, kind, who in chunk if kind == 1]
            if fixes:
                version += 1
                now = chunk[-1][0]
                for who in fixes:
                    compliant[who] = True
                fixed = [state(people[w], version, now, True) for w in fixes]
                await store.apply_enrolments(fixed, "bench", [None] * len(fixes))
                changes = await redecider.employers(store, [demo.nib(w) for w in fixes], now)
                counts["redecisions"] += len(changes)
            apps = [
                application(people[who], i + k, when)
                for k, (when, kind, who) in enumerate(chunk)
                if kind == 0
            ]
            if not apps:
                continue
            states = await store.enrolments(a.payload.employer.nib for a in apps)
            await store.add_applications(apps)
            made = [
                decisions.for_application(
                    a.event.id,
                    a.payload,
                    states.get(a.payload.employer.nib),
                    policies=book,
                    complete_regions=set(),
                    now=a.payload.submitted_at + timedelta(seconds=2),
                )
                for a in apps
            ]
            versions = [
                s.version if (s := states.get(a.payload.employer.nib)) else None for a in apps
            ]
            await store.add_decisions(
                [(d, a.event.id, v) for d, a, v in zip(made, apps, versions, strict=True)],
                "decisions",
                "bench",
            )
            counts["applications"] += len(apps)
        if (i // BATCH) % 100 == 0:
            say(f"history: {i + len(chunk):,} of {len(timeline):,} events")
    await conn.execute("DELETE FROM outbox")  # nothing publishes in the bench
    await conn.execute("VACUUM ANALYZE")
    return {**counts, "seconds": time.perf_counter() - started}
