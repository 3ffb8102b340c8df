"""Loading policy files: the packaged national default and per-region overrides, read from TOML.

A policy directory holds an optional `national.toml` (replacing the packaged default) and
`regions/<code>.toml` files, each naming its `region`, its own `version` and only the fields it
overrides. Anything unusable stops loading with a `PolicyError`: a gate that silently fell back
to a default would clear or block permits under rules nobody chose.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ptsp_gate.policy.model import Policy

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "PolicyBook",
    "PolicyError",
    "load_policy_book",
    "load_policy_file",
    "read_policy_toml",
]

_REGION_CODE = re.compile(r"\d{4}")
# Versions written in files are one plain token so "+" and ":" stay unambiguous separators in
# the effective version "<national>+<region>:<region version>".
_FILE_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
# Mappings a region usually adjusts for one key only (e.g. MIKRO), so they merge key by key.
_MERGED_MAPPINGS = ("required_programs", "segment_program_caps")
_MAX_PROBLEMS = 3
# Bounds on what a policy file may be; a real one is a few hundred bytes, three levels deep
# (file, table, array). Deeper nesting would otherwise end in a RecursionError in the TOML
# parser or while a problem is described.
MAX_FILE_BYTES = 1_048_576
MAX_NESTING = 10


class PolicyError(ValueError):
    """A policy file or directory is unusable; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """The national policy and the effective (already merged) policy of each overriding region."""

    national: Policy
    regions: dict[str, Policy] = field(default_factory=dict)

    def for_region(self, region_code: str | None) -> Policy:
        if region_code is None:
            return self.national
        return self.regions.get(region_code, self.national)


def load_policy_book(directory: Path | None = None) -> PolicyBook:
    """The book for a policy directory; without one, the packaged national default alone."""
    if directory is None:
        return PolicyBook(national=packaged_national())
    directory = Path(directory)  # settings may hand over a plain string
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy directory does not exist or is not a directory")
    national_path = directory / "national.toml"
    national = (
        _national(national_path, read_policy_toml(national_path))
        if national_path.exists()
        else packaged_national()
    )
    regions_dir = directory / "regions"
    if not regions_dir.exists():
        return PolicyBook(national=national)
    if not regions_dir.is_dir():
        raise PolicyError(f"{regions_dir}: expected a directory of <region code>.toml files")
    regions = {
        path.stem: _region(path, read_policy_toml(path), national)
        for path in sorted(regions_dir.glob("*.toml"))
    }
    return PolicyBook(national=national, regions=regions)


def load_policy_file(path: Path, base: Policy | None = None) -> Policy:
    """One file's effective policy. A file naming a `region` is merged over `base` (by default
    the packaged national policy); a file without one is a complete national policy."""
    data = read_policy_toml(path)
    if base is None and "region" not in data:
        return _national(path, data)
    return _region(path, data, base if base is not None else packaged_national())


@cache
def packaged_national() -> Policy:
    resource = resources.files(__package__) / "defaults" / "national.toml"
    label = Path(str(resource))
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{label}: packaged default unreadable: {exc}") from None
    return _national(label, data)


def _national(path: Path, data: dict[str, Any]) -> Policy:
    if "region" in data:
        raise PolicyError(f"{path}: the national policy must not name a region")
    _check_file_version(path, data)
    return _validate(path, data)


def _region(path: Path, data: dict[str, Any], base: Policy) -> Policy:
    overrides = dict(data)
    region = overrides.pop("region", None)
    if region is None:
        raise PolicyError(f"{path}: missing key 'region' (the 4-digit region code)")
    if not isinstance(region, str) or not _REGION_CODE.fullmatch(region):
        raise PolicyError(f"{path}: region must be a 4-digit code string, got {region!r}")
    if path.stem != region:
        raise PolicyError(f"{path}: region {region!r} does not match the file name {path.name!r}")
    _check_file_version(path, overrides)
    merged = base.model_dump(mode="json")
    for key, value in overrides.items():
        if key in _MERGED_MAPPINGS and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged["version"] = f"{base.version}+{region}:{overrides['version']}"
    return _validate(path, merged)


def _check_file_version(path: Path, data: dict[str, Any]) -> None:
    version = data.get("version")
    if version is None:
        raise PolicyError(f"{path}: missing key 'version'")
    if not isinstance(version, str) or not _FILE_VERSION.fullmatch(version):
        raise PolicyError(
            f"{path}: version must be one token of letters, digits, '.', '_' or '-' "
            f"(at most 64), got {version!r}"
        )


def read_policy_toml(path: Path) -> dict[str, Any]:
    """A policy file's TOML table, or a PolicyError saying in one line why there is none."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a policy file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise _too_deep(path) from None
    _check_nesting(path, data)
    return data


def _check_nesting(path: Path, data: dict[str, Any]) -> None:
    # Iterative: a recursive walk would fail on exactly the files it is meant to refuse.
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_NESTING:
            raise _too_deep(path)
        children = value.values() if isinstance(value, dict) else value
        pending.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _too_deep(path: Path) -> PolicyError:
    return PolicyError(
        f"{path}: tables and arrays nested deeper than {MAX_NESTING} levels; "
        "a policy needs at most 3"
    )


def _validate(path: Path, data: dict[str, Any]) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    problems = [_problem(error) for error in exc.errors(include_url=False)]
    text = "; ".join(problems[:_MAX_PROBLEMS])
    if len(problems) > _MAX_PROBLEMS:
        text += f" (and {len(problems) - _MAX_PROBLEMS} more)"
    return " ".join(text.split())  # one line, whatever pydantic's messages contain


def _problem(error: ErrorDetails) -> str:
    # pydantic marks a bad mapping key with a "[key]" step; the key itself already names it.
    where = ".".join(str(part) for part in error["loc"] if part != "[key]")
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "value_error":
        return f"{where}: {message}"
    shown = repr(error["input"])
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{where}: {message}, got {shown}"
