"""The project's pyproject files, as the tests of its dependencies read them: the core's and each
service's."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "pyproject.toml"
SERVICES = sorted((ROOT / "services").glob("*/pyproject.toml"))
ALL = [CORE, *SERVICES]


def table(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def dependencies(path: Path) -> list[Requirement]:
    return [Requirement(spec) for spec in table(path)["project"]["dependencies"]]


def extras(path: Path) -> dict[str, list[Requirement]]:
    declared = table(path)["project"].get("optional-dependencies", {})
    return {extra: [Requirement(spec) for spec in specs] for extra, specs in declared.items()}


def local_projects() -> dict[NormalizedName, Path]:
    """The projects of this repository, by name, with their folders."""
    return {canonicalize_name(table(path)["project"]["name"]): path.parent for path in ALL}
