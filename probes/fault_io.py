"""I/O shared by the fault probes: load in the background while a fault is injected, and the Result."""

from __future__ import annotations

import threading

from testbed.errors import FaultAborted
from testbed.loadgen import LoadRun, LoadSpec, check_reachable, resolve_target, run_load


class BackgroundLoad:
    """run_load(spec) in a thread. The target is checked reachable first (EndpointUnreachable, no load)."""

    def __init__(self, spec: LoadSpec):
        host, port, _ = resolve_target(spec.url, spec.allow_non_loopback)
        check_reachable(spec.url, host, port)
        self.spec = spec
        self.run: LoadRun | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        try:
            self.run = run_load(self.spec)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by wait()
            self.error = exc

    def start(self) -> "BackgroundLoad":
        self._thread.start()
        return self

    def failed(self) -> bool:
        return self.error is not None or (not self._thread.is_alive() and self.run is None)

    def wait(self, probe: str, platform: str) -> LoadRun:
        self._thread.join(self.spec.duration_s + 2 * self.spec.timeout_s + 60)
        if self.run is None:
            raise FaultAborted(probe, platform, f"the load generator failed: {self.error}") \
                if self.error else FaultAborted(probe, platform, "the load generator did not finish")
        return self.run


def engine_ns(run: LoadRun, unix_ns: int) -> int:
    """A wall-clock time as ns on the run's record clock."""
    return int(unix_ns - run.engine["start_unix_ns"])
