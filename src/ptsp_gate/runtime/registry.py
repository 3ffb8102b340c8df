"""The services `ptsp-gate run NAME` can start: whichever service packages are installed, found
through the `ptsp_gate.services` entry point group, so the core never imports a service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ptsp_gate.config import Settings
    from ptsp_gate.policy import PolicyBook
    from ptsp_gate.runtime.service import ServiceSpec
    from ptsp_gate.runtime.web import WebService

ENTRY_POINT_GROUP = "ptsp_gate.services"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """What a service package announces: its name, its default HTTP port, where its wiring
    lives ("module:function", imported only when the service is started), and its kind: a
    `consumer` of a Kafka topic (the wiring returns a ServiceSpec) or a `web` application over
    PostgreSQL alone (the wiring returns a WebService)."""

    name: str
    default_port: int
    wiring: str
    kind: Literal["consumer", "web"] = "consumer"

    def _wiring(self) -> Callable[..., Any]:
        module, _, function = self.wiring.partition(":")
        found: Callable[..., Any] = getattr(import_module(module), function)
        return found

    def spec(self, settings: Settings, policies: PolicyBook) -> ServiceSpec:
        if self.kind != "consumer":
            raise ValueError(f"{self.name} is not a consumer service")
        spec: ServiceSpec = self._wiring()(settings, policies)
        return spec

    def web(self, settings: Settings, policies: PolicyBook) -> WebService:
        if self.kind != "web":
            raise ValueError(f"{self.name} is not a web service")
        service: WebService = self._wiring()(settings, policies)
        return service


@cache
def installed() -> dict[str, ServiceEntry]:
    """The installed services by name, in name order."""
    found: dict[str, ServiceEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        entry = ep.load()
        if not isinstance(entry, ServiceEntry) or entry.name != ep.name:
            raise RuntimeError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP} is not a service")
        found[entry.name] = entry
    return dict(sorted(found.items()))


def entry_for(name: str) -> ServiceEntry:
    services = installed()
    if name not in services:
        known = ", ".join(services) or "none is installed"
        raise ValueError(f"unknown service {name!r}; expected one of {known}")
    return services[name]


def spec_for(name: str, settings: Settings, policies: PolicyBook) -> ServiceSpec:
    return entry_for(name).spec(settings, policies)
