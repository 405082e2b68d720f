"""A platform, described in one place.

A Platform (KServe, Seldon, Ray Serve, ...) is one module in `deployers/` that exports `PLATFORM`:
a `Platform` built from the typed parts below, carrying everything the rest of the testbed asks
about it. Probes, experiments, faults, the report and the pipeline ask `deployers.get_platform(name)`;
none of them keeps a table keyed by a platform's name.

Two kinds of knowledge, two places:
- what holds on every backend (its protocol, metric catalogue, explain route, batching, formats,
  the files a user writes, documented facts) is data on the `Platform`;
- what depends on where it runs (how to start it, its detection wiring and label, what a kill
  fault kills) is on its Deployment classes, one per backend (testbed.steps.Deployment; bases in
  testbed/backends/<backend>/deployment.py). A platform without a class for a backend is simply
  not offered there (`Platform.offered_on`).

Adding a platform = one module in deployers/, its runtime file(s) under deployers/runtimes/, one
line in deployers/__init__.py, its tests (README: "Adding a platform").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import httpx

from testbed.endpoint import Endpoint
from testbed.steps import Deployment

if TYPE_CHECKING:
    from deployers.formats import FormatServer

V2_WHERE = ("native", "user code", "client-side adapter")
"""Where the Open Inference Protocol (V2) the probes speak is spoken (WireProtocol.where)."""


@dataclass(frozen=True)
class WireProtocol:
    """How the platform's inference route speaks, and how a probe reaches it. Probes build Open Inference
    Protocol (V2) requests and read V2 answers; they send every request through the platform's protocol
    (`deployers.protocol_of(endpoint)`), never straight to a URL of their own making.

    This base class is the identity: the platform (or our code inside it) serves V2 at the Endpoint's routes.
    A platform with its own JSON subclasses it in its module as a client-side adapter: the V2 request is
    converted *before* it is sent and the platform's answer converted back *after* it arrives, so a probe
    times the platform's own route; the conversion runs in the probe's process and its cost is measured
    apart (testbed.adapters.conversion_cost; docs/platform-adapters.md)."""

    protocol: str = "v2"
    """Name of the wire protocol the platform's route speaks, recorded in results."""

    where: str = "native"
    """Where V2 is spoken (V2_WHERE): "native" (the platform's own server), "user code" (our code inside
    the platform's extension point, e.g. a Ray Serve ingress), or "client-side adapter" (the platform
    speaks `protocol`; the adapter converts before sending and after answering, and its cost is
    measured apart)."""

    validation: str = ""
    """Who decodes and validates a request body: "native" or "user code" (the robustness probe's label).
    Every platform module says it (no default: an unknown decoder is not "native")."""

    validation_note: str = ""
    """One line on where decoding and validation happen, recorded with robustness results."""

    @property
    def mechanism(self) -> str:
        """The label of a result that measures the V2 route itself (parity): native only if the platform's."""
        return "native" if self.where == "native" else "user code"

    @property
    def converts(self) -> bool:
        """True when requests are converted on the client side (their cost is not the platform's)."""
        return self.where == "client-side adapter"

    def describe(self) -> dict:
        return {"protocol": self.protocol, "v2_spoken_by": self.where, "validation": self.validation,
                "note": self.validation_note}

    # --- routes (the platform's own; Endpoint's V2 properties where it serves V2) --------------------
    def infer_url(self, endpoint: Endpoint) -> str:
        """Where an inference request is POSTed."""
        return endpoint.infer_url

    def model_infer_url(self, endpoint: Endpoint, model: str) -> str | None:
        """The inference route of another model name (robustness: an unknown model); None when the
        protocol names no model in its route."""
        return f"{endpoint.base_url}/v2/models/{model}/infer"

    def ready_url(self, endpoint: Endpoint) -> str:
        """The route that says the model serves (Endpoint.ready_url where the platform has no V2 one)."""
        return endpoint.ready_url or endpoint.model_ready_url

    def live_url(self, endpoint: Endpoint) -> str:
        """The route that says the server is alive."""
        return endpoint.server_live_url

    def is_ready(self, client: httpx.Client, endpoint: Endpoint) -> bool:
        """One readiness check from outside (status, probes, restores): GET ready_url answers 200."""
        return client.get(self.ready_url(endpoint)).status_code == 200

    # --- bodies -----------------------------------------------------------------------------------
    def encode_infer(self, v2_body: dict) -> Any:
        """The body to POST to infer_url (JSON-serialisable); AdapterError when the V2 request cannot be
        expressed in the platform's protocol (refused on the client side: nothing is sent)."""
        return v2_body

    def decode_infer(self, answer: Any, v2_body: dict, model_name: str) -> dict:
        """The platform's JSON answer as a V2 response."""
        return answer

    def example_answer(self, labels: list, v2_body: dict, model_name: str) -> Any:
        """What the platform answers to v2_body when it predicts `labels` (to time decode_infer apart)."""
        return {"model_name": model_name, "id": v2_body.get("id"),
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [len(labels)], "data": list(labels)}]}

    def encode_detected(self, v2_body: dict) -> Any:
        """The body for the platform's detection path (Endpoint.detection[kind]["url"]); it carries the V2
        request id, which names the request in the verdict log."""
        return self.encode_infer(v2_body)

    def request_bytes(self, v2_body: dict, detected: bool = False) -> bytes:
        """The encoded body as bytes (what the load generator sends, encoded before any clock starts)."""
        return json.dumps(self.encode_detected(v2_body) if detected else self.encode_infer(v2_body)).encode()

    def post(self, client: httpx.Client, url: str, v2_body: dict, detected: bool = False) -> httpx.Response:
        """POST one V2 request to url the platform's way; the raw answer (status, body)."""
        return client.post(url, content=self.request_bytes(v2_body, detected),
                           headers={"content-type": "application/json"})

    def infer(self, client: httpx.Client, endpoint: Endpoint, v2_body: dict, url: str | None = None,
              detected: bool = False) -> dict:
        """POST one V2 request the platform's way and return its V2 response; InvalidPayload on HTTP errors."""
        from testbed.errors import InvalidPayload

        url = url or self.infer_url(endpoint)
        resp = self.post(client, url, v2_body, detected)
        if resp.status_code != 200:
            raise InvalidPayload(f"{endpoint.platform} at {url}", f"HTTP {resp.status_code}: {resp.text[:300]}")
        return self.decode_infer(resp.json(), v2_body, endpoint.model_name)


# --- monitoring -------------------------------------------------------------------------------------
ALL, OK, FAILED = "all", "ok", "failed"
"""What a count signal counts, so the monitoring probe can derive its expected value from the traffic."""


@dataclass(frozen=True)
class Signal:
    """Where one monitoring signal is read in Prometheus (never what it should read: the probe derives
    that from the traffic it sends)."""

    query: str | None
    """PromQL template; $platform and $model are filled in. None: the platform has no such metric."""

    counts: str | None = None
    """ALL / OK / FAILED: the query's increase must equal that many requests. None: presence only."""

    note: str = ""
    """What the metric really counts, read off the runtime's /metrics page."""


@dataclass(frozen=True)
class MetricsCatalogue:
    """The platform's own metrics: which series answer each of the monitoring probe's signals
    (probes/monitoring.py SIGNALS), read off the real runtime's /metrics page after known traffic.
    The scrape target itself is the Endpoint's metrics_url (None: the platform exposes no metrics)."""

    signals: dict[str, Signal]
    """Signal name (probes/monitoring.py SIGNALS) -> where to read it."""

    export_lag_s: float = 0.0
    """Extra delay between a request and its count on the metrics page (e.g. Ray exports periodically)."""

    infer_requests_promql: str = ""
    """PromQL counting the V2 infer requests the platform served successfully, as it reports them itself
    (job label = platform name). Used by `up`'s checks and tests."""

    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    """backend -> {metric name prefix: which process exports those series and where Prometheus scrapes them}.
    Where a platform's pod has more than one metrics source (Seldon on kind: MLServer and the executor)."""


# --- explanations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExplainPath:
    """The platform's route to an explanation (Endpoint.explain_url), and what it takes and returns."""

    request: str
    """Body the route takes: "v1-instances" ({"instances": rows}), "v2" (an Open Inference request) or
    "platform-json" (the platform's own JSON, built by `encode`)."""

    response: str
    """"alibi-json" (the Explanation document), "v2-bytes" (V2 response whose first output holds it) or
    "platform-json" (the platform's own JSON, unwrapped by `decode`)."""

    mechanism: str
    """"native" (the platform's own explainer runtime) or "user code"."""

    route: str
    """The route and what serves it, in words (recorded with every explain result)."""

    methods_offered: dict = field(default_factory=dict)
    """What the platform offers besides the path measured: built-in methods, extension points."""

    encode: Callable[[Any], Any] | None = None
    """With request "platform-json": rows (numpy, 2-D) -> the body the route takes."""

    decode: Callable[[Any], dict] | None = None
    """With response "platform-json": the route's JSON answer -> the alibi Explanation document."""


# --- batching ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchingRun:
    """What the batching evidence hook gets after the throughput curve with batching on."""

    endpoint: Endpoint
    workdir: Path
    """The platform's run directory (state_dir/run/<platform>): its generated configuration."""

    model_name: str
    before: Any
    """What `BatchingSupport.snapshot` returned before the load (None without a snapshot hook)."""

    requests_ok: int
    """Successful requests sent with batching on."""

    body: bytes | None = None
    """The one-row request the load sent, encoded as the platform takes it (a hook may send it again)."""


@dataclass(frozen=True)
class OfflineJob:
    """What the offline batch hook gets: score `rows` with the platform's own batch mechanism."""

    endpoint: Endpoint
    envs_dir: Path
    """The runtime virtual environments (state_dir/envs): the hook runs its platform's tools from there."""

    artifact_dir: Path
    rows: Any
    """numpy array of rows to score."""

    chunk_rows: int
    """Rows per large V2 request of the V2 path (the hook may derive its own chunking from it)."""


@dataclass(frozen=True)
class BatchingSupport:
    """Server-side request batching on the local backend (concurrent requests merged into one model
    call; its knobs come from settings.Batching through the local Deployment's command) and offline
    batch scoring. Read by the performance experiment."""

    mechanism: str = "none"
    """Request batching on the local backend: "native", "user code" or "none" (not available)."""

    detail: str = ""
    """What the mechanism is and which knobs it uses; for "none", why it is not available."""

    offline: str = "none"
    """Offline batch scoring with the platform's own tool: "native" or "none"."""

    snapshot: Callable[[Endpoint], Any] | None = None
    """Read before the batched load (e.g. a batch-size histogram); passed on as BatchingRun.before."""

    evidence: Callable[[BatchingRun], dict] | None = None
    """What shows batching was on (the applied configuration, observed batch sizes)."""

    offline_job: Callable[[OfflineJob], dict] | None = None
    """Run the offline batch job: {"path", "rows", "seconds", "rows_per_s", "labels", ...}."""

    @property
    def available(self) -> bool:
        return self.mechanism != "none"


# --- ease of deployment -----------------------------------------------------------------------------
@dataclass(frozen=True)
class UserFile:
    """A file a user writes to serve the model on this platform (counted by the ease probe)."""

    kind: str
    """"code" (lines without comments and docstrings are counted) or "config" (non-blank lines)."""

    path: Path | str
    """A file of this repository (absolute Path), or "run:<path under the run directory>", where
    {model} is the model's name (configuration the testbed generates when it deploys)."""


# --- documented facts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Documented:
    """What the platform's own documentation says about one criterion."""

    text: str
    sources: tuple[str, ...] = ()
    """URLs the text was read from."""


@dataclass(frozen=True)
class DocumentedRow:
    """The platform's row in the report's comparison matrix where nothing was measured yet."""

    system: str
    """Name of the system in the matrix (e.g. "Seldon Core" for the platform served by MLServer)."""

    cells: dict[str, Documented]
    """Criterion key (testbed/report/criteria.py) -> documented fact."""

    def as_system(self, platform: str) -> dict:
        """The shape of a testbed/report/documented.yaml system entry, measured as `platform`."""
        return {"id": platform, "name": self.system, "measured_platform": platform,
                "cells": {k: {"text": c.text, "sources": list(c.sources)} for k, c in self.cells.items()}}


# --- the platform -----------------------------------------------------------------------------------
DEPLOYS = {"controlplane": "kind"}
"""Backends that deploy another backend's Deployment: the control-plane backend applies each platform's
kind deployment, unchanged, to a real API server (testbed/backends/controlplane)."""


@dataclass(frozen=True)
class Platform:
    name: str
    """Registry name used on the command line, in results and as the Prometheus job."""

    display_name: str

    deployments: dict[str, Callable[[], Deployment]]
    """Deployment class per backend name, e.g. {"local": KServeLocal, "kind": KServeKind}. A backend
    with no entry does not offer the platform (`kind` is optional)."""

    protocol: WireProtocol
    """Who answers the V2 routes the probes speak, and who validates payloads."""

    metrics: MetricsCatalogue | None = None
    """Where each monitoring signal is read; None: no catalogue (the monitoring probe says so)."""

    explain: ExplainPath | None = None
    """The explanation route's shape; None: the platform serves no explanations."""

    batching: BatchingSupport = field(default_factory=BatchingSupport)

    formats: Callable[[], "FormatServer"] | None = None
    """The server of the formats experiment (deployers/formats.py FormatServer subclass); None: not measured."""

    user_files: tuple[UserFile, ...] = ()
    """What a user writes to serve the model on the local backend (the ease probe counts its lines)."""

    documented: DocumentedRow | None = None
    """Documented facts with sources, shown in the report where no measurement exists yet."""

    facts: dict = field(default_factory=dict)
    """Short documented mechanisms (runtime, licence, batching), for people reading the module."""

    default: bool = True
    """Started by `up` without --platforms (and where a backend offers it)."""

    # --- questions ---------------------------------------------------------------------------------
    def offered_on(self, backend: str) -> bool:
        return DEPLOYS.get(backend, backend) in self.deployments

    def deployment_for(self, backend: str) -> Deployment:
        try:
            factory = self.deployments[DEPLOYS.get(backend, backend)]
        except KeyError:
            from testbed.errors import TestbedError

            raise TestbedError(
                f"Platform {self.name!r} has no implementation for the {backend!r} backend "
                f"(it has: {', '.join(self.deployments)}); leave it out of --platforms on that backend."
            ) from None
        return factory()

    @property
    def ease_mechanism(self) -> str:
        """"config" when a user writes configuration only, "user code" when any file is code."""
        return "config" if self.user_files and all(f.kind == "config" for f in self.user_files) else "user code"
