"""What a deployed platform gives the rest of the system. Probes only ever see Endpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# How a platform's outlier/drift detection is wired, recorded in every result.
DETECTION_LABELS = ("native", "add-on", "user code", "probe tee", "none")


@dataclass(frozen=True)
class Endpoint:
    platform: str
    """Registry name of the platform (deployers.PLATFORMS)."""

    backend: str
    """local or kind."""

    base_url: str
    """Root of the platform's routes, e.g. http://127.0.0.1:8085 (the V2 routes, where it serves V2)."""

    model_name: str
    """Name under /v2/models/<name>."""

    metrics_url: str | None = None
    """Where Prometheus scrapes this platform's own metrics."""

    explain_url: str | None = None
    """Explanation route, if the platform offers one."""

    explain_unavailable: str | None = None
    """Why there is no explanation route for this model although the platform has one (recorded in results)."""

    detection: dict = field(default_factory=dict)
    """Detection path per kind ("outlier", "drift"): {"url": ..., "label": one of DETECTION_LABELS}."""

    notes: tuple[str, ...] = ()
    """Facts a reader of results needs, e.g. 'V2 routes are user code'."""

    ready_url: str | None = None
    """The route that says the model serves, where the platform has no V2 model-ready route (BentoML's
    /readyz, MLflow's /ping, TorchServe's management API); None: model_ready_url. Its platform's
    WireProtocol.is_ready reads it."""

    @property
    def infer_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.model_name}/infer"

    @property
    def model_ready_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.model_name}/ready"

    @property
    def server_ready_url(self) -> str:
        return f"{self.base_url}/v2/health/ready"

    @property
    def server_live_url(self) -> str:
        return f"{self.base_url}/v2/health/live"

    def to_json(self) -> dict:
        data = asdict(self)
        data["infer_url"] = self.infer_url
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Endpoint":
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["notes"] = tuple(fields.get("notes", ()))
        return cls(**fields)
