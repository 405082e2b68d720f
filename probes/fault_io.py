"""I/O shared by the fault probes: the request they send, the backend's Faults, the load in the background
while a fault is injected (or its description in a dry run), and polling for a success."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx

from testbed import v2
from testbed.errors import FaultAborted
from testbed.loadgen import LoadRun, LoadSpec, check_reachable, resolve_target, run_load

if TYPE_CHECKING:
    from testbed.faults import Faults


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


def fault_request(ctx, endpoint, detected: bool = False) -> bytes:
    """The one request every fault probe sends (the artifact's first probe row, in the model's layout), as the
    endpoint's platform takes it (its protocol; `detected`: for its detection path), encoded before any load
    starts."""
    from deployers import protocol_of

    return protocol_of(endpoint).request_bytes(
        v2.request_body(ctx.artifact.probe_rows()[:1], request_id="fault-probe", wire=v2.wire_for(ctx.artifact)),
        detected)


def infer_url(endpoint) -> str:
    """Where the endpoint's platform takes inference requests (its protocol's route)."""
    from deployers import protocol_of

    return protocol_of(endpoint).infer_url(endpoint)


def faults_for(ctx) -> "Faults":
    """The running backend's fault implementation (testbed.faults); ctx.options["dry_run"] plans only."""
    from testbed.backends import get_backend
    from testbed.settings import Settings

    return get_backend(ctx.backend).faults(Settings(backend=ctx.backend), dry_run=bool(ctx.options.get("dry_run")),
                                           out=ctx.options.get("plan_out"))


def start_load(faults, spec: LoadSpec) -> BackgroundLoad | None:
    """The probe's steady load in the background; in a dry run, only its description (None)."""
    if faults.dry_run:
        d = spec.describe()
        faults.note(f"load: {d['method']} {d['url']} at {d['rate']} req/s for {d['duration_s']} s (at most "
                    f"{d['max_requests']} requests, {d['concurrency']} connections, timeout {d['timeout_s']} s), "
                    f"loopback only, one record per request")
        return None
    return BackgroundLoad(spec).start()


def wait_ok(url: str, timeout_s: float, method: str = "GET", body: bytes | None = None) -> float | None:
    """Seconds until url answers 200 (polled), or None after timeout_s."""
    started = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - started < timeout_s:
            try:
                resp = client.request(method, url, content=body,
                                      headers={"content-type": "application/json"} if body else None)
                if resp.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return None
