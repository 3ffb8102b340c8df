"""What `ptsp-gate run` needs of a web service (one over PostgreSQL alone, with no Kafka
consumer): check that it can start, then serve its ASGI application, whose lifespan opens and
closes its connections."""

from __future__ import annotations

from typing import Any, Protocol


class WebService(Protocol):
    name: str

    async def open(self) -> None:
        """Connect and check the schema; raise runtime.service.StartupError in one line if not."""

    async def release(self) -> None:
        """Undo open(), for a process that only checked that the service can start."""

    def asgi_app(self) -> Any:
        """The ASGI application, its lifespan opening the service (again, if released)."""
