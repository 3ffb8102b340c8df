"""`ptsp-gate policy check | show | simulate`: validate a policy file, show the policy in force,
and try a candidate against the stored applications before anyone signs a Perbup over it.

`check` and `show` only read files, never the database. `simulate` reads the database inside a
READ ONLY transaction and has no Kafka client at all (see `ptsp_gate.reports.simulate`).
"""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import (
    DATE,
    REGION,
    CommandError,
    checked_policy,
    on_database,
    policy_book,
    subcommands,
)
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import Outcome, Program, ReasonCode, Scale, Segment
from ptsp_gate.policy import Policy, PolicyBook, PolicyError, load_policy_file
from ptsp_gate.policy.files import read_policy_toml
from ptsp_gate.reports.render import to_json

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands

# Values print in the contract's enum order (not set order, which changes from run to run), so
# two `show` outputs can be diffed.
_ENUMS: tuple[type[StrEnum], ...] = (ReasonCode, Program, Scale, Segment, Outcome)
_RANK = {member.value: index for enum in _ENUMS for index, member in enumerate(enum)}


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("policy", help="validate, show and try out policies")
    parser.set_defaults(handler=run)
    actions = subcommands(parser, "action")
    check = actions.add_parser("check", help="validate a policy file")
    check.add_argument("file", metavar="FILE")
    show = actions.add_parser("show", help="the effective policy and its version")
    show.add_argument("--region", type=REGION)
    show.add_argument("--format", choices=("text", "json"), default="text")
    simulate = actions.add_parser(
        "simulate", help="re-run stored applications under a candidate policy (changes nothing)"
    )
    simulate.add_argument("--policy", required=True, metavar="FILE", help="candidate policy file")
    simulate.add_argument("--region", type=REGION, help="only applications of this region")
    simulate.add_argument("--since", type=DATE, help="only applications submitted on or after")
    simulate.add_argument("--format", choices=("table", "csv", "json"), default="table")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    handler = {"check": _check, "show": _show, "simulate": _simulate}[args.action]
    return await handler(args, settings)


# --- check ---------------------------------------------------------------------------------------


async def _check(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    data = _peek(path)
    if data is not None and "region" in data:
        # A region file means nothing alone: what the regency gets is the file over the national
        # policy this installation actually runs, so that is what is checked and shown.
        national = policy_book(settings).national
        policy = checked_policy(lambda: load_policy_file(path, base=national))
        overrides = sorted(k for k in data if k not in ("region", "version"))
        head = [
            f"{path}: valid region policy for {data['region']}",
            f"  merged over {national.version} from {_national_source(settings.policy_dir)}",
            f"  overrides: {', '.join(overrides) if overrides else 'nothing (version only)'}",
        ]
    else:
        policy = checked_policy(lambda: load_policy_file(path))
        head = [f"{path}: valid national policy"]
    sys.stdout.write("\n".join(head) + "\n\n" + _text(policy))
    return 0


def _peek(path: Path) -> dict[str, Any] | None:
    """The file's TOML table, only to tell a region file from a national one; None when it cannot
    be read, and `load_policy_file` then reports why in its own words."""
    try:
        return read_policy_toml(path)
    except PolicyError:
        return None


# --- show ----------------------------------------------------------------------------------------


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    book = policy_book(settings)
    region: str | None = args.region
    policy = book.for_region(region)
    national_source = _national_source(settings.policy_dir)
    override = (
        str(Path(settings.policy_dir) / "regions" / f"{region}.toml")
        if region is not None and region in book.regions and settings.policy_dir is not None
        else None
    )
    if args.format == "json":
        sys.stdout.write(
            to_json(
                {
                    "region": region,
                    "version": policy.version,
                    "national_source": national_source,
                    "region_override": override,
                    "values": _values(policy),
                }
            )
            + "\n"
        )
        return 0
    if region is None:
        head = f"National policy: {national_source}"
    elif override is None:
        head = f"Region {region} has no override; the national policy applies: {national_source}"
    else:
        head = f"Policy of region {region}: {override} over {national_source}"
    sys.stdout.write(head + "\n\n" + _text(policy))
    return 0


# --- simulate ------------------------------------------------------------------------------------


async def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.reports import simulate

    current = policy_book(settings)
    candidate, candidate_region = _candidate(Path(args.policy), current, settings.policy_dir)
    region: str | None = args.region
    if candidate_region is not None:
        if region is not None and region != candidate_region:
            raise CommandError(
                f"the candidate is region {candidate_region}'s policy; it changes nothing "
                f"in --region {region}"
            )
        # A region file can only change its own region's decisions; elsewhere every application
        # would read "unchanged" and drown the answer.
        region = candidate_region
    result = await on_database(
        settings,
        lambda conn: simulate.simulate(conn, current, candidate, region=region, since=args.since),
    )
    sys.stdout.write(simulate.render(result, args.format))
    return 0


def _candidate(
    path: Path, current: PolicyBook, policy_dir: Path | None
) -> tuple[PolicyBook, str | None]:
    """The book as it would be with `path` deployed, and the region the file is for (None for a
    national file)."""
    data = _peek(path)
    if data is not None and "region" in data:
        policy = checked_policy(lambda: load_policy_file(path, base=current.national))
        region = str(data["region"])
        book = PolicyBook(national=current.national, regions={**current.regions, region: policy})
        return book, region
    national = checked_policy(lambda: load_policy_file(path))
    # Region overrides merge over whichever national policy is in force, so a new national one
    # changes them too: re-merge each region file over the candidate, exactly as loading the
    # policy directory with the candidate as its national.toml would.
    regions: dict[str, Policy] = {}
    regions_dir = Path(policy_dir) / "regions" if policy_dir is not None else None
    if regions_dir is not None and regions_dir.is_dir():
        for region_path in sorted(regions_dir.glob("*.toml")):
            regions[region_path.stem] = checked_policy(
                functools.partial(load_policy_file, region_path, base=national)
            )
    return PolicyBook(national=national, regions=regions), None


# --- shared --------------------------------------------------------------------------------------


def _national_source(policy_dir: Path | None) -> str:
    if policy_dir is not None and (Path(policy_dir) / "national.toml").exists():
        return str(Path(policy_dir) / "national.toml")
    packaged = resources.files("ptsp_gate.policy") / "defaults" / "national.toml"
    return f"packaged default ({packaged})"


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value, key=_rank)}
    if isinstance(value, list):
        return sorted(value, key=_rank)
    return value


def _rank(value: Any) -> tuple[int, str]:
    return (_RANK.get(str(value), len(_RANK)), str(value))


def _values(policy: Policy) -> dict[str, Any]:
    """Every field of the policy, sets and tables in a stable order; a field added to the model
    shows up here without anyone remembering to list it."""
    return {k: _ordered(v) for k, v in policy.model_dump(mode="json").items()}


def _text(policy: Policy) -> str:
    values = _values(policy)
    width = max(len(k) for k in values) + 2
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            entries = [
                f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in value.items()
            ]
            entries = entries or ["(none)"]
        elif isinstance(value, list):
            joined = ", ".join(str(v) for v in value) or "(none)"
            entries = textwrap.wrap(joined, 100 - width, break_on_hyphens=False)
        else:
            entries = [str(value)]
        lines.append(f"{key:<{width}}{entries[0]}")
        lines += [" " * width + entry for entry in entries[1:]]
    return "\n".join(lines) + "\n"
