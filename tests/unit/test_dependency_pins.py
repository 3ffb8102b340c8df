"""Dependencies whose upgrade could change decisions or break the service silently.

* python-stdnum decides which NPWP / NIK numbers are valid, hence which events are accepted: it is
  pinned exactly, identifiers accepted (and refused) today must stay so, and upgrading it is a
  deliberate change of pyproject.toml that these tests then check.
* runtime/supervisor.py overrides `uvicorn.supervisors.Multiprocess.keep_subprocess_alive`, which
  uvicorn does not document: uvicorn is pinned to one minor version and the override's
  assumptions are checked here.
"""

from __future__ import annotations

import inspect
import threading
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from packaging.requirements import Requirement
from pydantic import TypeAdapter, ValidationError

from ptsp_gate.contract.identifiers import Nib, Npwp
from tests.unit import pyprojects


def requirements() -> dict[str, Requirement]:
    return {r.name.lower(): r for r in pyprojects.dependencies(pyprojects.CORE)}


# --- every pinned dependency ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["python-stdnum", "uvicorn", "structlog"])
def test_installed_version_is_within_its_bounds(name: str) -> None:
    requirement = requirements()[name]
    assert requirement.specifier, f"{name} has no version bound in pyproject.toml"
    installed = metadata.version(name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed but pyproject.toml says {requirement}"
    )


@pytest.mark.parametrize("name", ["python-stdnum", "uvicorn", "structlog"])
def test_has_an_upper_bound(name: str) -> None:
    operators = {spec.operator for spec in requirements()[name].specifier}
    assert operators & {"<", "<=", "==", "~="}, f"{name} has no upper bound"


# --- python-stdnum -------------------------------------------------------------------------------


def test_python_stdnum_is_pinned_exactly_to_the_installed_version() -> None:
    (spec,) = requirements()["python-stdnum"].specifier
    assert spec.operator == "=="
    assert metadata.version("python-stdnum") == spec.version, (
        "python-stdnum differs from its pin: re-run these tests against the new version and "
        "change the pin deliberately"
    )


# Identifiers the schemas accept today, as stored in applications and enrolment records.
ACCEPTED_NPWP = [
    # legacy 15 digits: Luhn check digit at position 9
    "010000016000000",
    "010000420000000",
    "011234564000000",
    "012345674123456",
    "098765431000000",
    "314159260000000",
    "027182815000000",
    # 16 digits: a legacy number with a leading 0 (PMK 112/2022)
    "0010000016000000",
    "0012345674123456",
    "0314159260000000",
    # 16 digits: a NIK (place of registration and birth date real; women's day + 40)
    "7314011508900001",
    "7314015508900001",
    "3171011201850003",
    "3273214506990002",
    "6471030101000001",
    "1101010101010001",
    "9171016002000001",
    "5171017112990001",
]

REFUSED_NPWP = [
    "010000017000000",  # wrong check digit
    "012345675123456",
    "0010000017000000",
    "012345670000000",
    "9999011508900001",  # NIK: no such place
    "7314013102900001",  # NIK: 31 February
    "7314011513900001",  # NIK: month 13
    "7314017208900001",  # NIK: day 72 (a woman's 32nd)
    "01234567400000",  # 14 digits
    "73140115089000012",  # 17 digits
    "01234567400000a",
    "٠١٢٣٤٥٦٧٤٠٠٠٠٠٠",  # Arabic-Indic digits
    "",
]

ACCEPTED_NIB = ["9120000000006", "0000000000000", "1234567890123"]
REFUSED_NIB = ["912000000000", "91200000000061", "912000000000a", "", "٩١٢٠٠٠٠٠٠٠٠٠٦"]


# NPWP and NIK numbers are one type, Npwp.
TYPES: dict[str, Any] = {"npwp": Npwp, "nib": Nib}
ACCEPTED = [("npwp", v) for v in ACCEPTED_NPWP] + [("nib", v) for v in ACCEPTED_NIB]
REFUSED = [("npwp", v) for v in REFUSED_NPWP] + [("nib", v) for v in REFUSED_NIB]


@pytest.mark.parametrize(("kind", "value"), ACCEPTED)
def test_identifiers_accepted_today_still_validate(kind: str, value: str) -> None:
    assert TypeAdapter(TYPES[kind]).validate_python(value) == value


@pytest.mark.parametrize(("kind", "value"), REFUSED)
def test_identifiers_refused_today_are_still_refused(kind: str, value: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(TYPES[kind]).validate_python(value)


# --- uvicorn -------------------------------------------------------------------------------------


def test_uvicorn_is_pinned_to_one_minor_version() -> None:
    specifier = requirements()["uvicorn"].specifier
    installed = metadata.version("uvicorn")
    major, minor = (int(part) for part in installed.split(".")[:2])
    assert specifier.contains(f"{major}.{minor}.99")
    assert not specifier.contains(f"{major}.{minor + 1}.0")


def test_uvicorn_still_has_the_overridden_supervisor_method() -> None:
    from uvicorn.supervisors import Multiprocess

    method = getattr(Multiprocess, "keep_subprocess_alive", None)
    assert callable(method), (
        "uvicorn.supervisors.Multiprocess.keep_subprocess_alive is gone: "
        "runtime/supervisor.py overrides it and must be adapted"
    )
    assert list(inspect.signature(method).parameters) == ["self"]
    # The supervisor's loop must still be what calls it.
    assert "self.keep_subprocess_alive()" in inspect.getsource(Multiprocess.run)


def test_uvicorn_still_has_what_the_override_reads() -> None:
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Process

    assert isinstance(STARTUP_FAILURE, int)
    assert isinstance(inspect.getattr_static(Process, "pid"), property)
    assert isinstance(inspect.getattr_static(Process, "exitcode"), property)


class _DeadWorker:
    """Stands in for uvicorn's Process: a worker that exited with `exitcode`."""

    def __init__(self, pid: int, exitcode: int) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.killed = False

    def is_alive(self, timeout: float = 5) -> bool:
        return False

    def kill(self) -> None:
        self.killed = True

    def join(self) -> None:
        pass


def test_the_override_sees_a_worker_that_could_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs uvicorn's own keep_subprocess_alive under the override."""
    from uvicorn.config import STARTUP_FAILURE

    from ptsp_gate.runtime import supervisor as supervisor_module

    dead: list[int] = []
    monkeypatch.setattr(supervisor_module, "mark_process_dead", dead.append)
    cls = supervisor_module.supervisor_class()
    supervisor = cls.__new__(cls)  # no __init__: it would install signal handlers
    supervisor.config = SimpleNamespace(timeout_worker_healthcheck=0.1)
    supervisor.sockets = []
    supervisor.should_exit = threading.Event()
    worker = _DeadWorker(pid=4242, exitcode=STARTUP_FAILURE)
    supervisor.processes = [worker]

    supervisor.keep_subprocess_alive()

    assert worker.killed
    assert dead == [4242]  # its gauges leave the merged metrics
    assert supervisor.failed  # `run --workers N` exits non-zero
    assert supervisor.should_exit.is_set()  # uvicorn itself gives up on a start failure


def test_a_port_in_use_leaves_no_metrics_directory_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    from ptsp_gate.observability.metrics import MULTIPROC_ENV
    from ptsp_gate.runtime import supervisor

    # serve() sets both variables for its workers; monkeypatch puts them back afterwards.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    monkeypatch.setenv(supervisor.SERVICE_ENV, "")
    made = tmp_path / "metrics"

    def mkdtemp(prefix: str) -> str:
        made.mkdir()
        return str(made)

    def port_in_use(self: object) -> None:
        raise SystemExit(1)  # what uvicorn does when it cannot bind

    monkeypatch.setattr(supervisor.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(uvicorn.Config, "bind_socket", port_in_use)
    with pytest.raises(SystemExit):
        supervisor.serve("permit-checker", "127.0.0.1", 9101, 2)
    assert not made.exists()
