"""The kind backend's detection path: detector service manifests, the platforms' loggers and Ray's
`detected` application, their order in the plan, Endpoint.detection, and the service's contract.

No cluster: the dry run (as a user runs it, with nothing on PATH), the upstream CRD schemas, the
Kubernetes API types of the official client for built-in kinds, and the real detector service
(started on loopback with the saved detectors) receiving what the payload loggers send.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deployers import PLATFORMS, offered_on
from testbed import artifact as artifact_mod
from testbed import detectors
from testbed.backends.kind import crd_schema, detection, preflight
from testbed.backends.kind.context import KindRun, runtime_code_dirname
from testbed.backends.kind.deployment import Target
from testbed.backends.kind.pins import pins
from testbed.backends.kind.plan import Plan
from testbed.backends.local import detection as local_detection
from testbed.backends.local import envs, processes
from testbed.settings import Settings
from testbed.steps import UpContext

REPO = Path(__file__).resolve().parent.parent
PINS = pins()
SETTINGS = Settings()
SERVICE = "http://detector-service.testbed.svc.cluster.local:8080"
SHA = "0123456789ab" + "0" * 52
DETECTORS_SUBPATH = "reference-classifier-0123456789ab-detectors"


def dry_run(tmp: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, Path, Path]:
    state, out, empty = tmp / "state", tmp / "plan", tmp / "empty-path"
    empty.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "testbed", "up", "--backend", "kind", "--dry-run", "--out", str(out),
                           *extra], cwd=REPO, env={**os.environ, "TESTBED_STATE_DIR": str(state), "PATH": str(empty),
                                                   **(env or {})},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dry run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc, state, out


def written(out: Path) -> list[dict]:
    return [yaml.safe_load(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    proc, state, out = dry_run(tmp_path_factory.mktemp("kind-detection"))
    artifact_dir = next((state / "artifacts").glob("reference-classifier-*"))
    return proc, written(out), artifact_dir


def by_kind(objects: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def target(platform: str, **fields) -> Target:
    return Target(**{"namespace": "testbed", "node_port": PINS.node_port(platform), "model_name": "reference-classifier",
                     "artifact_subpath": "reference-classifier-0123456789ab", "code_dir": runtime_code_dirname(),
                     "serving": PINS.serving[platform], "model_sha256": SHA, "n_features": 7,
                     "detectors_subpath": DETECTORS_SUBPATH, **fields})


# --- the plan ----------------------------------------------------------------------------------------
def test_detector_service_is_applied_and_waited_for_before_the_platforms(plan):
    proc, objects, _ = plan
    steps = re.findall(r"^## (.+)$", proc.stdout, flags=re.M)
    assert steps.index("model artifact") < steps.index("detectors") < steps.index("kind cluster")
    assert steps.index("namespace and model volume") + 1 == steps.index("detector service") == \
        steps.index("deploy platforms") - 1
    ids = [(o["kind"], o["metadata"]["name"]) for o in objects]
    service_ids = [("Deployment", "detector-service"), ("Service", "detector-service"), ("PodMonitor", "detector-service")]
    first_platform = min(ids.index((kind, "reference-classifier"))
                         for kind in ("InferenceService", "SeldonDeployment", "RayService"))
    assert [ids.index(i) for i in service_ids] == [3, 4, 5] and first_platform > 5
    section = proc.stdout.split("## detector service", 1)[1].split("\n## ", 1)[0]
    assert "~ wait: Deployment testbed/detector-service: condition Available" in section
    assert "~ wait: GET http://127.0.0.1:30106/ready answers 200" in section
    assert 'up{job="detectors",namespace="testbed"} == 1' in proc.stdout
    assert "and the detector service:" in proc.stdout  # the resource budget counts it


def test_deployment_installs_exactly_the_detectors_env_and_serves_on_port_http(plan):
    _, objects, artifact_dir = plan
    dep = by_kind(objects, "Deployment", detection.DEPLOYMENT_NAME)
    assert dep["metadata"]["namespace"] == "testbed"
    labels = {"app.kubernetes.io/name": "detector-service", "app.kubernetes.io/part-of": "ml-deployment-testbed"}
    assert dep["metadata"]["labels"] == dep["spec"]["selector"]["matchLabels"] == \
        dep["spec"]["template"]["metadata"]["labels"] == labels
    pod = dep["spec"]["template"]["spec"]
    (init,), (main,) = pod["initContainers"], pod["containers"]
    assert init["image"] == main["image"] == PINS.detection["image"] and PINS.detection["image"] in PINS.images()
    deps = detection.DEPS_DIR
    assert init["command"][:4] == ["python", "-m", "pip", "install"]
    assert init["command"][init["command"].index("--target") + 1] == deps
    assert init["command"][-len(detectors.ENV.requirements):] == list(detectors.ENV.requirements)
    assert [a for a in init["command"] if "==" in a] == list(detectors.ENV.requirements)
    args = main["command"]
    assert args[:2] == ["python", f"/mnt/testbed/{runtime_code_dirname()}/detector_service.py"]
    opts = dict(zip(args[2::2], args[3::2]))
    assert opts == {"--detectors": f"/mnt/testbed/{detectors.dirname_for(artifact_dir.name)}", "--host": "0.0.0.0",
                    "--port": "8080", "--model-sha256": artifact_mod.ensure(artifact_dir.parent, SETTINGS.artifact_seed).sha256,
                    "--n-features": "7"}
    assert {"name": "PYTHONPATH", "value": deps} in main["env"]
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["artifacts"]["mountPath"] == "/mnt/testbed" and mounts["artifacts"]["readOnly"] is True
    assert mounts["deps"]["mountPath"] == deps and init["volumeMounts"] == [{"name": "deps", "mountPath": deps}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "testbed-artifacts"
    assert volumes["deps"] == {"name": "deps", "emptyDir": {}}
    for container in (init, main):
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}


def test_service_is_a_nodeport_on_the_detection_port_and_prometheus_selects_the_pod(plan):
    _, objects, _ = plan
    svc = by_kind(objects, "Service", "detector-service")
    dep = by_kind(objects, "Deployment", "detector-service")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http",
                                     "nodePort": PINS.detection_port}]
    assert PINS.detection_port == 30106
    mon = by_kind(objects, "PodMonitor", "detector-service")
    assert mon["spec"]["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"]
    assert mon["spec"]["namespaceSelector"] == {"matchNames": ["testbed"]}
    (endpoint,) = mon["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    relabel = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
    # job as on the local backend; no `platform` target label (the series carry their own).
    assert relabel == {"job": "detectors", "backend": "kind"}
    # The platforms' PodMonitors follow the same conventions (labels, namespaceSelector, interval).
    platform_mon = by_kind(objects, "PodMonitor", "testbed-kserve")
    assert mon["metadata"]["labels"]["app.kubernetes.io/part-of"] == platform_mon["metadata"]["labels"]["app.kubernetes.io/part-of"]
    assert endpoint["interval"] == platform_mon["spec"]["podMetricsEndpoints"][0]["interval"]


def test_platform_loggers_send_requests_to_the_in_cluster_service(plan):
    proc, objects, _ = plan
    isvc = by_kind(objects, "InferenceService")
    assert isvc["spec"]["predictor"]["logger"] == {
        "mode": "request", "url": f"{SERVICE}/events?platform=kserve&mechanism=payload+logger"}
    sdep = by_kind(objects, "SeldonDeployment")
    assert sdep["spec"]["predictors"][0]["graph"]["logger"] == {
        "mode": "request", "url": f"{SERVICE}/events?platform=seldon&mechanism=payload+logger"}
    assert re.search(r"^# kserve detection path \(add-on, mechanism 'payload logger'\): "
                     r"http://127\.0\.0\.1:30100/v2/models/reference-classifier/infer -> ", proc.stdout, flags=re.M)


def test_rayservice_serves_the_detected_application_beside_the_model(plan):
    proc, objects, artifact_dir = plan
    ray = by_kind(objects, "RayService")
    apps = yaml.safe_load(ray["spec"]["serveConfigV2"])["applications"]
    assert [a["name"] for a in apps] == ["reference", "detected"]
    app = apps[1]
    assert (app["route_prefix"], app["import_path"]) == ("/detected", "ray_app:build_detected_app")
    sha = artifact_mod.ensure(artifact_dir.parent, SETTINGS.artifact_seed).sha256
    assert app["args"] == {"artifact_dir": f"/mnt/testbed/{artifact_dir.name}",
                           "detectors_dir": f"/mnt/testbed/{detectors.dirname_for(artifact_dir.name)}",
                           "model_sha256": sha, "n_features": 7,
                           "sink": f"{SERVICE}/verdicts?platform=rayserve&mechanism=user+code",
                           "platform": "rayserve", "model_name": "reference-classifier"}
    pip = app["runtime_env"]["pip"]
    assert set(PINS.serving["rayserve"]["pip"]) <= set(pip)
    assert set(pip) == set(PINS.serving["rayserve"]["pip"]) | {
        r for r in detectors.ENV.requirements if not r.startswith("prometheus-client")}
    assert {d["name"]: d["num_replicas"] for d in app["deployments"]} == {"DetectedModel": 1, "Detector": 1}
    # The head's single CPU holds every replica of both applications.
    cpus = sum(d["ray_actor_options"]["num_cpus"] * d["num_replicas"] for a in apps for d in a["deployments"])
    assert cpus <= float(ray["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"])
    assert "http://127.0.0.1:30102/detected/v2/models/reference-classifier/infer" in proc.stdout


def test_detection_off_deploys_no_service_and_no_loggers(tmp_path):
    proc, _, out = dry_run(tmp_path, env={"TESTBED_DETECTION": "0"})
    objects = written(out)
    assert not [o for o in objects if o["metadata"]["name"] == "detector-service"]
    assert "logger" not in by_kind(objects, "InferenceService")["spec"]["predictor"]
    assert "logger" not in by_kind(objects, "SeldonDeployment")["spec"]["predictors"][0]["graph"]
    assert [a["name"] for a in yaml.safe_load(by_kind(objects, "RayService")["spec"]["serveConfigV2"])["applications"]] \
        == ["reference"]
    assert 'job="detectors"' not in proc.stdout


# --- options and schemas ---------------------------------------------------------------------------
def logger_of(obj: dict):
    if obj["kind"] == "InferenceService":
        return obj["spec"]["predictor"].get("logger")
    if obj["kind"] == "SeldonDeployment":
        return obj["spec"]["predictors"][0]["graph"].get("logger")
    return [a["name"] for a in yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"]][1:] or None


@pytest.mark.parametrize("platform", sorted(offered_on("kind")))
def test_detection_option_with_and_without_a_service_validates_against_the_crd(platform):
    cls = PLATFORMS[platform].deployments["kind"]
    schema = crd_schema.load(cls.api_version, cls.kind)
    with_service = target(platform, detector_service=SERVICE)
    cases = {  # (option, target) -> detection path rendered?
        "auto, up's namespace": (None, with_service, True),
        "auto, e2e namespace": (None, target(platform), False),
        "on, no service recorded": (True, target(platform), True),
        "off": (False, with_service, False),
    }
    for name, (option, tgt, expected) in cases.items():
        obj = cls(detection=option).render_resource(tgt)
        assert schema.errors(obj) == [], name
        assert (logger_of(obj) is not None) is expected, name
        if expected and platform != "rayserve":
            assert logger_of(obj)["mode"] == "request"
            assert logger_of(obj)["url"].startswith(f"{SERVICE}/events?platform={platform}&"), name


def test_kserve_crd_logger_mode_enum_has_request():
    schema = crd_schema.load("serving.kserve.io/v1beta1", "InferenceService")
    obj = PLATFORMS["kserve"].deployments["kind"](detection=True).render_resource(target("kserve"))
    assert schema.errors(obj) == []
    obj["spec"]["predictor"]["logger"]["mode"] = "requests"
    assert any("spec.predictor.logger.mode" in e for e in schema.errors(obj))


def test_a_logger_url_and_detection_exclude_each_other():
    for platform in ("kserve", "seldon"):
        cls = PLATFORMS[platform].deployments["kind"]
        with pytest.raises(ValueError, match="logger_url and detection"):
            cls(logger_url="http://sink/", detection=True)
        # An explicit logger keeps the slot; automatic detection then stays off.
        obj = cls(logger_url="http://sink/").render_resource(target(platform, detector_service=SERVICE))
        assert logger_of(obj) == {"mode": "all", "url": "http://sink/"}


def test_ray_pins_and_detector_pins_must_agree():
    assert detection.ray_pip(["scikit-learn==1.5.2"]) == [
        "scikit-learn==1.5.2", *[r for r in detectors.ENV.requirements if r.split("==")[0] not in
                                 ("scikit-learn", "prometheus-client")]]
    with pytest.raises(ValueError, match="scikit-learn==1.4.0"):
        detection.ray_pip(["scikit-learn==1.4.0"])


def test_ray_detection_needs_fitted_detectors_in_the_target():
    bare = Target(namespace="testbed", node_port=30102, model_name="m", artifact_subpath="m-1", code_dir="c",
                  serving=PINS.serving["rayserve"])
    with pytest.raises(ValueError, match="no fitted detectors"):
        PLATFORMS["rayserve"].deployments["kind"](detection=True).render_resource(bare)


def builtin_errors(obj, type_name: str, path: str = "") -> list[str]:
    """Unknown fields and wrong scalar types against the official client's API types (Kubernetes' OpenAPI)."""
    import kubernetes.client as k8s

    errors = []
    if type_name.startswith("list["):
        if not isinstance(obj, list):
            return [f"{path}: not a list"]
        return [e for i, item in enumerate(obj) for e in builtin_errors(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in obj.items() for e in builtin_errors(v, inner, f"{path}.{k}")]
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if type_name in scalars:
        ok = isinstance(obj, scalars[type_name]) and not (type_name == "int" and isinstance(obj, bool))
        return [] if ok else [f"{path}: {obj!r} is not {type_name}"]
    model = getattr(k8s, type_name)
    by_json = {json_key: model.openapi_types[attr] for attr, json_key in model.attribute_map.items()}
    for key, value in obj.items():
        if key not in by_json:
            errors.append(f"{path}: unknown field {key!r} in {type_name}")
        else:
            errors += builtin_errors(value, by_json[key], f"{path}.{key}" if path else key)
    return errors


def test_deployment_and_service_are_valid_kubernetes_objects():
    from kubernetes.client import ApiClient

    objs = detection.objects("testbed", PINS, code_dir=runtime_code_dirname(), detectors_subpath=DETECTORS_SUBPATH,
                             model_sha256=SHA, n_features=7)
    deployment, service, _ = objs
    for obj, type_name in ((deployment, "V1Deployment"), (service, "V1Service")):
        assert builtin_errors(obj, type_name) == []
        # Required fields (client-side validation raises on a missing container name or image).
        ApiClient()._ApiClient__deserialize(obj, type_name)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert builtin_errors(broken, "V1Deployment") == [
        "spec.template.spec.containers[0]: unknown field 'readinesProbe' in V1Container"]


def test_podmonitor_matches_the_prometheus_operator_crd():
    key = ("monitoring.coreos.com/v1", "PodMonitor")
    mon = detection.objects("testbed", PINS, code_dir="c", detectors_subpath="d", model_sha256=SHA, n_features=7)[2]
    assert crd_schema.load(*key).errors(mon) == []


# --- ports -----------------------------------------------------------------------------------------
def test_detection_port_is_mapped_and_checked_by_the_preflight():
    config = yaml.safe_load((REPO / "cluster" / "kind-config.yaml").read_text())
    mapped = {m["hostPort"]: m for node in config["nodes"] for m in node.get("extraPortMappings", [])}
    assert mapped[PINS.detection_port]["listenAddress"] == "127.0.0.1"
    assert detection.host_url(PINS) == f"http://127.0.0.1:{PINS.detection_port}"
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", PINS.detection_port))
        except OSError:
            pytest.skip(f"127.0.0.1:{PINS.detection_port} is in use on this machine")
        busy.listen(1)
        report = preflight.Report()
        preflight._check_ports(PINS, report)
    assert any(str(PINS.detection_port) in p for p in report.problems)


# --- Endpoint.detection and the service's contract (real detectors) -------------------------------
@pytest.fixture(scope="module")
def fitted():
    art = artifact_mod.ensure(SETTINGS.artifacts_dir, SETTINGS.artifact_seed)
    return art, detectors.ensure(art, SETTINGS.envs_dir)


def kind_ctx(art, fitted_detectors) -> UpContext:
    run = KindRun(pins=PINS, files=None, plan=Plan(dry_run=True, out=io.StringIO()), namespace="testbed")
    run.artifact_subpath, run.code_dir = art.path.name, runtime_code_dirname()
    run.detectors_subpath, run.detector_service = fitted_detectors.path.name, detection.service_url("testbed")
    ctx = UpContext(settings=SETTINGS, artifact=art, extra={"kind": run, "detectors": fitted_detectors})
    return ctx


@pytest.mark.integration  # `fitted` builds the detectors' runtime environment
def test_kind_endpoints_publish_detection_in_the_local_shape(fitted):
    art, fitted_detectors = fitted
    ctx = kind_ctx(art, fitted_detectors)
    host = f"http://127.0.0.1:{PINS.detection_port}"
    local = local_detection.path_info(ctx, "kserve", "http://127.0.0.1:1/v2/models/m/infer", "add-on",
                                      "http://127.0.0.1:2")
    expected = {"kserve": ("add-on", "payload logger", "/v2/models/{m}/infer"),
                "seldon": ("add-on", "payload logger", "/v2/models/{m}/infer"),
                "rayserve": ("user code", "user code", "/detected/v2/models/{m}/infer")}
    for name, (label, mechanism, route) in expected.items():
        dep = PLATFORMS[name].deployments["kind"]()
        ep = dep.endpoint(ctx)
        assert set(ep.detection) == {"outlier", "drift"}
        for kind in ("outlier", "drift"):
            info = ep.detection[kind]
            assert set(local[kind]) <= set(info), name  # every key the probes read locally
            assert info["url"] == f"http://127.0.0.1:{PINS.node_port(name)}" + route.format(m=art.name)
            assert info["label"] == label
            assert info["verdicts_url"] == f"{host}/verdicts?platform={name}"
            assert info["metrics_url"] == f"{host}/metrics"
            assert info["prometheus_labels"] == {"platform": name, "mechanism": mechanism, "job": "detectors",
                                                 "namespace": "testbed"}
            assert info["detector"] == local[kind]["detector"]
            assert info["detector_service"]["in_cluster_url"] == SERVICE
        assert ep.detection["drift"]["window_rows"] == fitted_detectors.window_rows
        assert ep.detection["drift"]["request_rows"] == fitted_detectors.request_rows
    # Deployed elsewhere (e2e namespaces) with detection left to the backend: no path.
    assert PLATFORMS["kserve"].deployments["kind"](namespace="e2e-x").endpoint(ctx).detection == {}


@pytest.mark.integration  # `fitted` builds the detectors' runtime environment
def test_state_entry_names_the_service_and_its_deployment(fitted):
    art, fitted_detectors = fitted
    run = kind_ctx(art, fitted_detectors).extra["kind"]
    state = detection.state_of(run)
    assert state["service_url"] == "http://127.0.0.1:30106"
    assert state["deployment"] == {"name": "detector-service", "namespace": "testbed"}
    assert state["in_cluster_url"] == SERVICE


def test_status_reports_an_unreachable_service():
    with httpx.Client(timeout=1.0) as client:
        port = processes.free_port()
        doc = detection.status({"service_url": f"http://127.0.0.1:{port}",
                                "deployment": {"name": "detector-service", "namespace": "testbed"}}, None, client)
    assert doc["state"] == "unreachable" and doc["resource_state"] == "unknown"
    assert detection.status(None, None, None) is None


def test_pod_problems_that_end_the_wait():
    pip_failing = {"status": {"initContainerStatuses": [{"name": "pip-install", "restartCount": 3}]}}
    assert "does the pod reach PyPI" in detection.pod_problem([pip_failing])
    pull = {"status": {"containerStatuses": [{"name": "detector-service",
                                              "state": {"waiting": {"reason": "ImagePullBackOff", "message": "x"}}}]}}
    assert "ImagePullBackOff" in detection.pod_problem([pull])
    starting = {"status": {"initContainerStatuses": [{"name": "pip-install", "restartCount": 0,
                                                       "state": {"running": {}}}]}}
    assert detection.pod_problem([starting]) is None


def metric(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.integration  # `fitted` builds the detectors' runtime environment
def test_service_accepts_what_the_payload_loggers_send(fitted, tmp_path):
    """The real detector service, started as the pod starts it (on loopback here), receiving a KServe
    and a Seldon CloudEvent (binary mode) at the exact path and query the loggers are given."""
    art, fitted_detectors = fitted
    python = envs.python_of(envs.ensure(detectors.ENV, SETTINGS.envs_dir))
    port = processes.free_port()
    log = tmp_path / "service.log"
    pid = processes.start([str(python), str(detectors.RUNTIMES_DIR / "detector_service.py"), "--detectors",
                           str(fitted_detectors.path), "--host", "127.0.0.1", "--port", str(port), "--model-sha256",
                           art.sha256, "--n-features", str(len(art.feature_names))], log, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=5.0) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(f"{base}/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and processes.alive(pid), processes.log_tail(log)
                time.sleep(0.5)
            rows = [[0.1] * len(art.feature_names)] * 3
            body = {"id": "probe-1", "inputs": [{"name": "input-0", "shape": [3, len(art.feature_names)],
                                                 "datatype": "FP64", "data": [v for r in rows for v in r]}]}
            for platform, ce_type in (("kserve", "org.kubeflow.serving.inference.request"),
                                      ("seldon", "io.seldon.serving.inference.request")):
                path = detection.events_url(base, platform)[len(base):]
                assert path == f"/events?platform={platform}&mechanism=payload+logger"
                resp = client.post(base + path, content=json.dumps(body),
                                   headers={"content-type": "application/json", "ce-specversion": "1.0",
                                            "ce-id": "5f0c", "ce-type": ce_type, "ce-source": "http://x/"})
                assert resp.status_code == 202, resp.text
            text = client.get(f"{base}/metrics").text
            verdicts = client.get(f"{base}/verdicts", params={"platform": "kserve"}).json()["records"]
    finally:
        processes.stop_session(pid)
    for platform in ("kserve", "seldon"):
        assert metric(text, "testbed_detector_events_total", platform=platform, mechanism="payload logger") == 1
        assert metric(text, "testbed_detector_rows_total", platform=platform, mechanism="payload logger") == 3
    assert [(v["kind"], v["request_id"], v["mechanism"]) for v in verdicts] == [("outlier", "probe-1", "payload logger")]


@pytest.mark.integration  # `fitted` builds the detectors' runtime environment
def test_state_file_entry_carries_each_published_path(fitted):
    from testbed.backends.kind.backend import KindBackend

    art, fitted_detectors = fitted
    ctx = kind_ctx(art, fitted_detectors)
    ctx.extra["kind_detection"] = detection.state_of(ctx.extra["kind"])
    ctx.deployments = {name: PLATFORMS[name].deployments["kind"]() for name in offered_on("kind")}
    for dep in ctx.deployments.values():
        dep.started_at = time.monotonic()  # deployed (what _save records)
    recorded = KindBackend()._detection_state(ctx)
    assert recorded["service_url"] == "http://127.0.0.1:30106"
    assert recorded["deployment"] == {"name": "detector-service", "namespace": "testbed"}
    assert set(recorded["paths"]) == set(offered_on("kind"))
    assert recorded["paths"]["rayserve"]["outlier"]["url"].endswith("/detected/v2/models/reference-classifier/infer")
    assert recorded["detectors"] == fitted_detectors.summary()
    json.dumps(recorded)  # the state file is JSON


def test_status_text_shows_the_detector_service():
    from testbed.cli import render_status

    text = render_status({"backend": "kind", "state": "degraded", "platforms": {},
                          "detection": {"service_url": "http://127.0.0.1:30106", "state": "unreachable",
                                        "resource_state": "absent"}})
    assert "detection: http://127.0.0.1:30106  unreachable  (Deployment absent)" in text


@pytest.mark.parametrize("option,expected_port", [
    ({}, 8080), ({"detection": False}, 8080), ({"detection": True}, 9081),
    ({"logger_url": "http://payload-sink.testbed.svc.cluster.local:8080/"}, 9081),
    ({"batcher": {"maxBatchSize": 32, "maxLatency": 50}}, 9081)])
def test_kserve_node_port_enters_through_the_agent_when_it_logs_or_batches(option, expected_port):
    """Requests sent to the model server's port would bypass the agent: nothing logged, nothing batched."""
    dep = PLATFORMS["kserve"].deployments["kind"](**option)
    tgt = target("kserve")
    service = next(o for o in dep.manifests(tgt) if o["kind"] == "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [expected_port]
