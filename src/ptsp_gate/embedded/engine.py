"""What every embedded engine shares: ``with engine:`` stops it on the way out."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Engine"]


class Engine(abc.ABC):
    """Local infrastructure this process started, stopped by :meth:`stop` whatever happens in
    the ``with`` block."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop what was started. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
