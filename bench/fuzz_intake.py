"""Fuzz the intake of both input topics: every record must be accepted or get a dead-letter code.

Run by hand (CI runs the same properties at a few hundred examples in tests/unit):

    .venv/bin/python bench/fuzz_intake.py                      # 200,000 mutations + 20,000 examples
    .venv/bin/python bench/fuzz_intake.py --mutations 1000000 --examples 100000 --seed 7

Two generators:
- mutations: real events of both topics, in binary and structured mode, with bytes flipped,
  inserted, deleted and spliced, truncated, nested (a random span wrapped in up to 5,000
  brackets), numbers stretched, and headers dropped, duplicated or replaced with random bytes;
- the hypothesis property of tests/unit/test_intake_poison.py, at the given number of examples.

Prints one JSON line: counts per outcome, records per second, and the first failures (a record
for which reading raised, or returned a code outside the contract). Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.test_intake_poison import CODES, RECORDS, Rec, assert_answered

from ptsp_gate import demo
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_ENROLMENT, EnrolmentState
from ptsp_gate.contract.events import PermitApplication as Application
from ptsp_gate.runtime import intake

NOW = datetime(2026, 11, 1, tzinfo=UTC)
MAX_BYTES = 1_048_576


def _seeds() -> list[tuple[str, Rec]]:
    seeds: list[tuple[str, Rec]] = []
    for i in range(1, 21):
        _k, headers, value = demo.application_record(demo.application(i, now=NOW))
        seeds.append(("applications", Rec(value, list(headers))))
        attrs = {k[3:]: v.decode() for k, v in headers if k.startswith("ce_")}
        envelope = json.dumps({**attrs, "data": json.loads(value)}).encode()
        seeds.append(
            ("applications", Rec(envelope, [("content-type", b"application/cloudevents+json")]))
        )
        _k, enrolment_headers, enrolment_value = demo.enrolment_record(demo.enrolment(i, now=NOW))
        seeds.append(("enrolment", Rec(enrolment_value, list(enrolment_headers))))
    return seeds


def _mutate(rnd: random.Random, rec: Rec) -> Rec:
    value = bytearray(rec.value or b"")
    headers = list(rec.headers)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(9)
        at = rnd.randint(0, len(value))
        if kind == 0 and value:  # flip bytes
            for _ in range(rnd.randint(1, 8)):
                value[rnd.randrange(len(value))] = rnd.randrange(256)
        elif kind == 1:  # insert random bytes
            value[at:at] = rnd.randbytes(rnd.randint(1, 32))
        elif kind == 2 and value:  # delete a span
            del value[at : at + rnd.randint(1, 64)]
        elif kind == 3:  # truncate
            del value[at:]
        elif kind == 4:  # wrap a span in deep brackets
            depth = rnd.choice([2, 31, 32, 33, 1000, 5000])
            end = rnd.randint(at, len(value))
            opening, closing = rnd.choice([(b"[", b"]"), (b'{"a":', b"}")])
            value[at:end] = opening * depth + value[at:end] + closing * depth
        elif kind == 5:  # a long number
            value[at:at] = rnd.choice([b"", b"-"]) + b"9" * rnd.choice([39, 40, 41, 5000])
        elif kind == 6 and headers:  # drop or duplicate a header
            i = rnd.randrange(len(headers))
            if rnd.random() < 0.5:
                del headers[i]
            else:
                headers.insert(i, headers[i])
        elif kind == 7 and headers:  # a header's value replaced with random bytes
            i = rnd.randrange(len(headers))
            headers[i] = (headers[i][0], rnd.randbytes(rnd.randint(0, 40)))
        elif kind == 8:  # splice in a piece of JSON syntax
            value[at:at] = rnd.choice([b'"', b"\\", b"\\u0000", b"{", b"]", b"null", b"1e999"])
    return Rec(bytes(value) if rec.value is not None or value else None, headers)


def _read(topic: str, rec: Rec) -> intake.Valid[Any] | intake.Invalid:
    if topic == "applications":
        return intake.read(rec, Application, (CE_TYPE_APPLICATION,), MAX_BYTES)
    return intake.read(rec, EnrolmentState, (CE_TYPE_ENROLMENT,), MAX_BYTES)


def fuzz_mutations(n: int, seed: int) -> tuple[Counter[str], list[str], float]:
    rnd = random.Random(seed)
    seeds = _seeds()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for i in range(n):
        topic, base = seeds[i % len(seeds)]
        rec = _mutate(rnd, base)
        try:
            item = _read(topic, rec)
        except Exception as exc:  # the property under test: this must never happen
            failures.append(f"{topic}: raised {type(exc).__name__} on {rec.value[:80]!r}")
            continue
        code = "ACCEPTED" if isinstance(item, intake.Valid) else item.code
        outcomes[f"{topic}:{code}"] += 1
        if code not in CODES and code != "ACCEPTED":
            failures.append(f"{topic}: {code} ({item.message}) on {rec.value[:80]!r}")
    return outcomes, failures, time.perf_counter() - started


def fuzz_property(examples: int) -> tuple[list[str], float]:
    from hypothesis import HealthCheck, given, settings

    run = settings(max_examples=examples, database=None, suppress_health_check=list(HealthCheck))(
        given(RECORDS)(assert_answered)
    )
    started = time.perf_counter()
    try:
        run()
    except BaseException as exc:  # hypothesis reports the shrunk failing example
        return [f"property failed: {type(exc).__name__}: {str(exc)[:500]}"], 0.0
    return [], time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=200_000)
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    outcomes, failures, mutation_s = fuzz_mutations(args.mutations, args.seed)
    property_failures, property_s = fuzz_property(args.examples) if args.examples else ([], 0.0)
    failures += property_failures
    print(
        json.dumps(
            {
                "mutations": args.mutations,
                "mutations_per_s": round(args.mutations / mutation_s) if mutation_s else None,
                "seed": args.seed,
                "outcomes": dict(sorted(outcomes.items())),
                "property_examples": args.examples,
                "property_seconds": round(property_s, 1),
                "failures": len(failures),
                "first_failures": failures[:10],
            }
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
