"""Indonesian identifiers as pydantic types.

Validation follows the public rules (see the project's domain notes): NIB has no published check
digit, NPWP and NIK checks come from python-stdnum rather than being re-implemented here.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.id import npwp as stdnum_npwp

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: `\d` also matches other scripts' digits


def _check_npwp(value: str) -> str:
    if len(value) not in (15, 16) or not _DIGITS.fullmatch(value):
        raise ValueError("NPWP must be 15 or 16 digits")
    _check_npwp_digits(value)
    return value


@functools.lru_cache(maxsize=65_536)
def _check_npwp_digits(value: str) -> None:
    # The same employers apply again and again; only valid numbers are cached (errors raise).
    try:
        stdnum_npwp.validate(value)
    except StdnumError as exc:
        kind = "NIK" if len(value) == 16 and not value.startswith("0") else "NPWP"
        raise ValueError(f"{kind} fails its check: {exc}") from exc


def canonical_npwp(value: str) -> str:
    """The 16-digit form (PMK 112/2022): a legacy 15-digit NPWP gains a leading 0."""
    return "0" + value if len(value) == 15 else value


def mask(value: str | None, keep: int = 4) -> str | None:
    """Mask an identifier for logs: only the last `keep` characters stay readable."""
    if value is None:
        return None
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


Nib = Annotated[str, StringConstraints(pattern=r"^[0-9]{13}$")]
"""Nomor Induk Berusaha: 13 digits, no public check digit."""

Npwp = Annotated[
    str,
    StringConstraints(min_length=15, max_length=16, pattern=r"^[0-9]{15,16}$"),
    AfterValidator(_check_npwp),
]
"""NPWP: 15 digits with Luhn check digit, or 16 digits (leading 0 + legacy, or a NIK)."""

Kbli = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]
"""KBLI 2020 at the 5-digit level used by OSS."""

RegionCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
"""Kabupaten/kota code (BPS/Kemendagri), 4 digits, e.g. 7314 Sidenreng Rappang."""
