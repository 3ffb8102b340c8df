"""The console's roles and what each may do, and an officer's region scope.

* officer: reads its regions' lists, employers and figures, exports, asks for overrides;
* supervisor: an officer who also grants or refuses overrides (never its own request) and sees
  NPWPs unmasked;
* auditor: reads its regions' lists and the audit record of its regions; asks nothing;
* admin: every region and every right.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Officer:
    """A signed-in officer, as every request sees it."""

    officer_id: int
    username: str
    role: Role
    # Empty for an admin, whose scope is every region.
    regions: tuple[str, ...]

    @property
    def all_regions(self) -> bool:
        return self.role is Role.ADMIN

    def covers(self, region: str | None) -> bool:
        """Whether a record of `region` is within this officer's scope. A record without a region
        is seen by admins only."""
        return self.all_regions or (region is not None and region in self.regions)

    def covers_any(self, regions: Iterable[str | None]) -> bool:
        return any(self.covers(r) for r in regions)

    @property
    def scope(self) -> list[str] | None:
        """The regions a query is limited to; None for every region."""
        return None if self.all_regions else list(self.regions)

    @property
    def may_ask_override(self) -> bool:
        return self.role in (Role.OFFICER, Role.SUPERVISOR, Role.ADMIN)

    @property
    def may_decide_override(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)

    @property
    def may_read_audit(self) -> bool:
        return self.role in (Role.AUDITOR, Role.ADMIN)

    @property
    def sees_npwp(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN)


def mask_npwp(npwp: str | None) -> str | None:
    """An NPWP as an officer without the right to read it sees it: the last three digits, so that
    two numbers on a page can be told apart, and nothing that identifies the taxpayer."""
    if npwp is None:
        return None
    return "•" * (len(npwp) - 3) + npwp[-3:]
