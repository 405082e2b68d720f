"""Typed settings for one testbed. CLI flags and environment variables fill them; nothing else."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Batching:
    """Server-side request batching: concurrent requests merged into one model call.

    Carried to each platform's local deployment: MLServer adaptive batching (`max_batch_size`,
    `max_batch_time` in model-settings.json) and Ray Serve `@serve.batch`. The KServe Python
    ModelServer has no batcher (KServe's batcher is the Go agent sidecar, on kind only), so on the
    local backend KServe ignores this and results say "not available".
    """

    enabled: bool = False
    """Off: each platform's default (one model call per request)."""

    max_batch_size: int = 32
    """Most requests merged into one model call."""

    max_batch_time_ms: float = 5.0
    """Longest a request waits for others to fill its batch."""

    def describe(self) -> dict:
        return {"enabled": self.enabled, "max_batch_size": self.max_batch_size,
                "max_batch_time_ms": self.max_batch_time_ms}


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    """Where platforms run: `local` (processes on loopback) or `kind` (a kind cluster)."""

    platforms: tuple[str, ...] = None  # type: ignore[assignment]  (filled in by __post_init__)
    """Platforms to bring up, by registry name (see `deployers/`). Not given: the registry's default
    platforms that this backend offers (deployers.default_platforms)."""

    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("TESTBED_STATE_DIR", REPO_ROOT / ".testbed")))
    """Pids, ports, logs, runtime environments, artifacts and Prometheus data live here.
    Environment variable: TESTBED_STATE_DIR."""

    shared_envs_dir: Path | None = field(
        default_factory=lambda: Path(os.environ["TESTBED_ENVS_DIR"]) if os.environ.get("TESTBED_ENVS_DIR") else None)
    """Runtime environments somewhere else than `<state dir>/envs`. They are immutable and named by their
    pins (testbed/backends/local/envs.py), so several state directories can share them: the tests' own
    state directory uses the user's. Environment variable: TESTBED_ENVS_DIR."""

    ready_timeout_s: float = field(default_factory=lambda: float(os.environ.get("TESTBED_READY_TIMEOUT_S", 180)))
    """How long `up` waits for each runtime to answer its readiness route (`up --timeout`). Environment
    variable: TESTBED_READY_TIMEOUT_S (a loaded machine: Ray Serve took 150 s at a load average of 35 on
    2 cores, and more than 180 s at 50)."""

    scrape_interval_s: float = 2.0
    """Prometheus scrape interval; short so probes see traffic within seconds."""

    prometheus_bin: str | None = field(default_factory=lambda: os.environ.get("TESTBED_PROMETHEUS"))
    """Path of the Prometheus server binary; None means search PATH.
    Environment variable: TESTBED_PROMETHEUS."""

    prometheus_port: int | None = None
    """Fixed loopback port for Prometheus; None picks a free one."""

    detection: bool = field(default_factory=lambda: os.environ.get("TESTBED_DETECTION", "1") != "0")
    """Fit/load the outlier and drift detectors and start each platform's detection path during `up`.
    Environment variable: TESTBED_DETECTION=0 turns it off (a leaner `up`; detection probes then
    report that no path exists)."""

    artifact_seed: int = 20261125
    """Seed of the reference model's synthetic training data and of its training."""

    batching: Batching = field(default_factory=Batching)
    """Request batching on the platforms that support it (`up --batching on|off`); off by default."""

    model: Any = None
    """A user's model and reference (`up --model PATH --reference REF.csv`, a testbed.usermodel.Request) to serve
    instead of the testbed's own reference classifier; None serves the testbed's own."""
    def __post_init__(self):
        if self.platforms is None:
            # Imported here: the registry imports the platform modules, which import these settings.
            from deployers import default_platforms

            object.__setattr__(self, "platforms", default_platforms(self.backend))
        else:
            object.__setattr__(self, "platforms", tuple(self.platforms))

    @property
    def envs_dir(self) -> Path:
        """Runtime virtual environments, one per runtime and spec, reused while their spec is unchanged."""
        return self.shared_envs_dir or self.state_dir / "envs"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def run_dir(self) -> Path:
        """The running testbed's pids, ports, logs and generated configs (removed by `down`)."""
        return self.state_dir / "run"
