"""prometheus-operator and a real Prometheus with Kubernetes service discovery against this API server.

prometheus-operator (the version kube-prometheus-stack 83.4.0 ships) reconciles the Prometheus
resource the chart would create into its generated configuration (Secret prometheus-<name>,
prometheus.yaml.gz), from the PodMonitors the kind path applies. That configuration is run by a real
Prometheus (the chart's version, built from source) with three connection details changed, each
what a pod would have given it: every kubernetes_sd_config gets this API server's address and
client credentials (a pod uses its service account), and every scrape goes through a proxy on a
closed loopback port, so that nothing ever connects to the fake pod IPs kwok hands out. A target
that is discovered and down passes; a PodMonitor endpoint without a target fails.
"""

from __future__ import annotations

import gzip
import base64
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from testbed.backends.controlplane import pki as pki_mod
from testbed.backends.controlplane.charts import _Loader
from testbed.backends.controlplane.operators import Launch
from testbed.backends.controlplane.processes import Proc, free_port, start as start_proc, wait_healthy
from testbed.backends.kind.kube import wait_until
from testbed.settings import REPO_ROOT

NAMESPACE = "monitoring"
GROUP = "monitoring.coreos.com"
NAME = "kube-prometheus-stack-prometheus"
"""The chart's Prometheus resource (release kube-prometheus-stack): <fullname>-prometheus."""

VALUES = REPO_ROOT / "cluster" / "values" / "kube-prometheus-stack.yaml"
MISSING = ("prometheus: not built. Run `make controlplane` (it builds Prometheus at the version the kind "
           "path pins).")
CONFIG_TIMEOUT_S = 120.0
TARGETS_TIMEOUT_S = 90.0
PROXY_NOTE = "scrapes go through http://127.0.0.1:{port} (nothing listens): no packet reaches a fake pod IP"


def binary() -> Path | None:
    from testbed.backends.controlplane import build

    built = build.find(["prometheus"]).get("prometheus")
    return built.binary("prometheus") if built else None


def version(path: Path) -> str:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("prometheus, version") else out.strip()[:40]


def operator_crds(share: Path) -> list[dict]:
    crds = []
    for path in sorted((share / "example" / "prometheus-operator-crd").glob("*.yaml")):
        crds += [d for d in yaml.load_all(path.read_text(), Loader=_Loader)
                 if d and d.get("kind") == "CustomResourceDefinition"]
    return crds


def operator_launch(api_server: str, pki: pki_mod.Pki, ports: dict[str, int]) -> Launch:
    """kube-prometheus-stack's operator args for cluster/values (tls off, webhooks off, kubelet on)."""
    return Launch("prometheus-operator", NAMESPACE, None, [
        f"--apiserver={api_server}", f"--ca-file={pki.ca_cert}", f"--cert-file={pki.cert('admin')}",
        f"--key-file={pki.key('admin')}", f"--web.listen-address=127.0.0.1:{ports['web']}",
        "--kubelet-service=kube-system/kube-prometheus-stack-kubelet", "--kubelet-endpoints=true",
        "--kubelet-endpointslice=false", "--localhost=127.0.0.1",
        "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.90.1",
        "--config-reloader-cpu-request=10m", "--config-reloader-memory-request=32Mi",
        "--config-reloader-memory-limit=64Mi"], {})


def prometheus_resource(prom_version: str) -> list[dict]:
    """The chart's Prometheus resource, with the prometheusSpec of cluster/values/kube-prometheus-stack.yaml:
    *SelectorNilUsesHelmValues false -> empty selectors (every PodMonitor in every namespace)."""
    spec = (yaml.safe_load(VALUES.read_text()).get("prometheus") or {}).get("prometheusSpec") or {}
    body = {
        "version": prom_version, "serviceAccountName": NAME, "replicas": 1, "portName": "http-web",
        "scrapeInterval": spec.get("scrapeInterval", "30s"), "evaluationInterval": spec.get("evaluationInterval", "30s"),
        "retention": spec.get("retention", "10d"), "resources": spec.get("resources", {}),
        "podMonitorSelector": {} if spec.get("podMonitorSelectorNilUsesHelmValues") is False
        else {"matchLabels": {"release": "kube-prometheus-stack"}},
        "podMonitorNamespaceSelector": {},
        "serviceMonitorSelector": {} if spec.get("serviceMonitorSelectorNilUsesHelmValues") is False
        else {"matchLabels": {"release": "kube-prometheus-stack"}},
        "serviceMonitorNamespaceSelector": {},
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"release": "kube-prometheus-stack"}},
         "spec": body},
    ]


def apply_prometheus(kube, cp: dict) -> None:
    prom_version = "v" + cp["versions"]["prometheus"].lstrip("v")
    for obj in prometheus_resource(prom_version):
        kube.apply(obj)


def generated_config(kube) -> str:
    """prometheus-operator's generated configuration (its Secret), as text."""
    secret = kube.get("v1", "Secret", f"prometheus-{NAME}", NAMESPACE)
    data = (secret or {}).get("data") or {}
    if "prometheus.yaml.gz" not in data:
        return ""
    return gzip.decompress(base64.b64decode(data["prometheus.yaml.gz"])).decode()


RELOADER_ENV = {"SHARD": "0", "POD_NAME": f"prometheus-{NAME}-0"}
"""What prometheus-config-reloader substitutes for $(VAR) in the generated configuration before Prometheus
reads it (its --config-envsubst-file): the operator sets SHARD on the reloader container of shard 0
(pkg/operator/config_reloader.go ShardEnvVar), POD_NAME is the StatefulSet pod's name. The sharding keep
rule `regex: $(SHARD);|.+;.+` (pkg/prometheus/promcfg.go) drops every target until it is substituted."""


def envsubst(text: str, env: dict[str, str] = RELOADER_ENV) -> str:
    import re

    return re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def for_this_host(config_text: str, api_server: str, pki: pki_mod.Pki, proxy_port: int) -> dict:
    """The generated configuration as the config reloader hands it to Prometheus (envsubst), with this API
    server's address and credentials in each kubernetes_sd_config, and a closed loopback proxy on each
    scrape (see the module docstring)."""
    config = yaml.safe_load(envsubst(config_text)) or {}
    config.pop("rule_files", None)  # paths inside the pod; the chart's values create no rules
    config.pop("alerting", None)
    for scrape in config.get("scrape_configs") or []:
        for sd in scrape.get("kubernetes_sd_configs") or []:
            sd["api_server"] = api_server
            sd["tls_config"] = {"ca_file": str(pki.ca_cert), "cert_file": str(pki.cert("admin")),
                                "key_file": str(pki.key("admin"))}
        scrape["proxy_url"] = f"http://127.0.0.1:{proxy_port}"
        for key in ("bearer_token_file", "authorization", "tls_config"):  # pod-local files
            scrape.pop(key, None)
    return config


def start(ctx, cp: dict) -> Proc:
    run = ctx.extra["kind"]
    lay = cp["layout"]
    text_box = {}

    def probe():
        text = generated_config(run.kube)
        text_box["text"] = text
        jobs = text.count("job_name:")
        return bool(text) and jobs > 0, f"Secret {NAMESPACE}/prometheus-{NAME}: {jobs} scrape jobs"

    wait_until(f"prometheus-operator's generated configuration (Secret {NAMESPACE}/prometheus-{NAME})",
               CONFIG_TIMEOUT_S, probe)
    pdir = lay.dir / "prometheus"
    shutil.rmtree(pdir, ignore_errors=True)
    pdir.mkdir(parents=True)
    (pdir / "generated.yaml").write_text(text_box["text"])
    proxy_port = free_port()
    config = for_this_host(text_box["text"], cp["api_server"], cp["pki"], proxy_port)
    (pdir / "prometheus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    prom = Proc("prometheus", [str(cp["built"]["prometheus"].binary("prometheus")),
                               f"--config.file={pdir / 'prometheus.yaml'}", f"--storage.tsdb.path={pdir / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                lay.logs / "prometheus.log", health=f"http://127.0.0.1:{port}/-/ready", ports={"web": port,
                                                                                               "proxy": proxy_port})
    start_proc(prom)
    wait_healthy(prom, 60)
    cp["prometheus_url"] = f"http://127.0.0.1:{port}"
    ctx.say(f"  Prometheus {cp['versions']['prometheus']} at {cp['prometheus_url']}: "
            f"{config.get('scrape_configs') and len(config['scrape_configs'])} scrape jobs from prometheus-operator "
            f"({pdir / 'generated.yaml'}); {PROXY_NOTE.format(port=proxy_port)}")
    return prom


def targets(url: str) -> dict:
    resp = httpx.get(f"{url}/api/v1/targets", params={"state": "any"}, timeout=5.0)
    resp.raise_for_status()
    return resp.json()["data"]


def scrape_pools(url: str) -> list[str]:
    """The scrape jobs of the running configuration, with or without targets (Prometheus >= 2.42)."""
    resp = httpx.get(f"{url}/api/v1/scrape_pools", timeout=5.0)
    resp.raise_for_status()
    return list(resp.json()["data"]["scrapePools"])


def check_targets(ctx, cp: dict) -> dict:
    """Each PodMonitor endpoint the kind path applied has a scrape job in prometheus-operator's generated
    configuration and a discovered target (any health), and each metrics endpoint a generated pod
    announces is among them (verify.announced_metrics). A platform whose operator is not run has no
    pod: its pools are waited for as jobs only."""
    from testbed.backends.controlplane import verify

    run = ctx.extra["kind"]
    unverifiable = {name: verify.not_run_text(u) for name, u in (cp.get("unverifiable") or {}).items()}
    monitors = [o for o in run.plan.manifests() if o["kind"] == "PodMonitor"]
    url = cp["prometheus_url"]
    expected = {f"podMonitor/{m['metadata']['namespace']}/{m['metadata']['name']}/{i}": m
                for m in monitors for i, _ in enumerate(m["spec"].get("podMetricsEndpoints") or [])}
    needs_target = [p for p, m in expected.items()
                    if ((m.get("metadata") or {}).get("labels") or {}).get(verify.PLATFORM_LABEL) not in unverifiable]
    seen: dict = {}

    def probe():
        data, configured = targets(url), scrape_pools(url)
        seen.update(data=data, configured=configured)
        pools = {t["scrapePool"] for t in data.get("activeTargets") or []}
        missing = [p for p in needs_target if p not in pools] + [p for p in expected if p not in configured]
        return not missing, f"no target or job yet for {sorted(set(missing))}"

    try:
        wait_until("Prometheus discovering a target for every PodMonitor endpoint", TARGETS_TIMEOUT_S, probe)
    except Exception:  # noqa: BLE001 - the findings below say which have none
        pass
    data = seen.get("data") or targets(url)
    configured = seen.get("configured") or scrape_pools(url)
    return verify.scrape_findings(run.kube, expected, data, run.namespace, configured, unverifiable)
