"""Child processes of the embedded engines and the harness: started with their output in a file,
stopped with SIGTERM and, when they take too long, SIGKILL."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["Process", "stop_all"]

# Often enough to see when each of several processes stopped, to a few hundredths of a second.
_POLL_S = 0.02


class Process(subprocess.Popen[bytes]):
    """A child process whose stdout and stderr go to a file: ``log``, opened by ``open_log``
    (written from scratch by default), or else a temporary file. A file, not a pipe: a busy
    service logs a line per decision and would fill a pipe that nobody reads until the end, then
    block on it.

    ``popen`` goes to :class:`subprocess.Popen` as it is (``preexec_fn``,
    ``start_new_session``, ...); stdin is /dev/null.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        log: Path | None = None,
        open_log: Callable[[Path], IO[bytes]] | None = None,
        **popen: Any,
    ) -> None:
        self.name = name
        self.log = log
        self.terminated_at: float | None = None  # time.monotonic() of the SIGTERM
        self.exited_at: float | None = None  # time.monotonic() its exit was first seen
        self.killed = False  # it outlived its stop timeout
        # Without a log the file is ours to keep: output() reads it back.
        self._output: IO[bytes] | None = None
        out: IO[bytes]
        if log is None:
            self._output = out = tempfile.TemporaryFile()  # noqa: SIM115
        else:
            out = log.open("wb") if open_log is None else open_log(log)
        try:
            super().__init__(
                list(argv),
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                **popen,
            )
        finally:
            if out is not self._output:
                out.close()  # the child has its own copy

    def running(self) -> bool:
        """Whether it still runs; notes the time it is first seen to have exited."""
        if self.poll() is None:
            return True
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return False

    def output(self) -> str:
        """Everything it has written so far (stdout and stderr)."""
        if self._output is None:
            assert self.log is not None
            try:
                return self.log.read_text(errors="replace")
            except OSError:
                return ""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def tail(self, lines: int = 5) -> str:
        """Its last `lines` lines of output, or "(no output)"."""
        return "\n".join(self.output().strip().splitlines()[-lines:]) or "(no output)"

    def shutdown(self) -> None:
        """SIGTERM, once: a second one makes uvicorn give up its graceful shutdown."""
        if self.terminated_at is None and self.running():
            self.terminated_at = time.monotonic()
            self.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float) -> int:
        """SIGTERM (unless sent already), SIGKILL when it has not exited `timeout_s` after it;
        returns the exit code."""
        return stop_all([self], timeout_s)[0]

    @property
    def stop_seconds(self) -> float:
        """From the SIGTERM to the exit (0 when it had exited before)."""
        assert self.exited_at is not None
        return self.exited_at - (self.terminated_at or self.exited_at)

    def _reap(self, timeout_s: float) -> None:
        if not self.running():
            return
        started = self.terminated_at if self.terminated_at is not None else time.monotonic()
        try:
            self.wait(max(0.0, started + timeout_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                self.kill()
            self.wait()
        self.running()


def stop_all(processes: Sequence[Process], timeout_s: float) -> list[int]:
    """SIGTERM to every one at once (service instances stopped one by one would hand their
    partitions to the others in a rebalance), then wait for all; any still running `timeout_s`
    after its SIGTERM is killed. Returns their exit codes, in order."""
    for process in processes:
        process.shutdown()
    deadline = time.monotonic() + timeout_s
    while any(p.running() for p in processes) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    for process in processes:
        process._reap(timeout_s)
    return [p.returncode for p in processes]
