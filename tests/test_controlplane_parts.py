"""Fast tier: the control-plane backend's pure parts (no binary, no server). The control plane itself is
tested in tests/controlplane (marker `controlplane`)."""

from __future__ import annotations

import base64

import pytest
import yaml

from testbed.backends.controlplane import build, charts, pki, prometheus, verify
from testbed.backends.controlplane.operators import KServe, KubeRay, drop_flag, set_flag
from testbed.backends.kind.pins import pins


def test_every_component_is_a_go_module_from_the_proxy():
    """Nothing is cloned from a code host: every component names a Go module and a version the proxy
    serves; what the proxy does not serve is declared unbuildable with the reason."""
    minimum, components = build.load()
    assert minimum == "1.26"
    names = {c.name for c in components}
    assert {"etcd", "kubernetes", "kwok", "helm", "kserve-controller", "kuberay-operator", "prometheus-operator",
            "prometheus"} <= names
    for c in components:
        assert c.binaries, c.name
        assert c.spec["module"] and c.spec["version"].startswith("v"), c.name
        assert not {"git", "tag", "commit", "subdir"} & set(c.spec), f"{c.name}: a code-host source"
    missing = build.unbuildable()
    assert set(missing) == {"seldon-core-operator"}
    assert "proxy" in missing["seldon-core-operator"]["why"] and not names & set(missing)


def test_build_recipe_has_no_route_to_a_code_host():
    import inspect

    source = inspect.getsource(build)
    assert "git clone" not in source and "TESTBED_GIT_MIRRORS" not in source and "_git_" not in source


def test_pins_agree_with_the_kind_path():
    """The control plane runs what the kind path installs: same Kubernetes, same chart versions, or a
    declared skew (with its reason) where the proxy does not serve the kind path's version."""
    _, components = build.load()
    by = {c.name: c for c in components}
    p = pins()
    assert by["kubernetes"].version == p.kubernetes
    assert by["kserve-controller"].version == p.chart("kserve-resources").version
    kuberay = by["kuberay-operator"]
    assert kuberay.version != "v" + p.chart("kuberay-operator").version.lstrip("v")
    assert kuberay.skew["kind_pin"].lstrip("v") == p.chart("kuberay-operator").version.lstrip("v")
    assert "403" in kuberay.skew["why"]
    assert build.unbuildable()["seldon-core-operator"]["kind_pin"] == p.chart("seldon-core").version
    assert by["helm"].version == p.tools["helm"].version
    images = [i for group in p.images_by_source.values() for i in group]
    assert f"quay.io/prometheus-operator/prometheus-operator:{by['prometheus-operator'].version}" in images
    assert any(i.endswith(":v" + by["prometheus"].spec["set_vars"]["github.com/prometheus/common/version.Version"])
               for i in images if "prometheus/prometheus:" in i)


def test_cache_key_changes_with_the_pin_and_the_go_version(tmp_path):
    c = build.Component("x", {"module": "example.com/x", "version": "v1.0.0", "binaries": {"x": "example.com/x"}})
    d = build.Component("x", {"module": "example.com/x", "version": "v1.0.1", "binaries": {"x": "example.com/x"}})
    assert c.key("go1.26.8") != d.key("go1.26.8") != c.key("go1.26.9")
    assert build.location(c, "go1.26.8", tmp_path).parent == tmp_path / "x"
    assert build.cached(c, "go1.26.8", tmp_path) is None


def test_go_version_comparison():
    assert build._version_at_least("1.26.8", "1.26")
    assert build._version_at_least("1.27", "1.26")
    assert not build._version_at_least("1.25.9", "1.26")


def test_flags_are_replaced_not_duplicated():
    args = ["--metrics-addr=:8080", "--webhook-port", "443", "--leader-elect"]
    out = set_flag(set_flag(args, "--metrics-addr", "127.0.0.1:1"), "--webhook-port", "2")
    assert out == ["--webhook-port=2", "--metrics-addr=127.0.0.1:1", "--leader-elect"]
    assert drop_flag(out, "--leader-elect") == ["--webhook-port=2", "--metrics-addr=127.0.0.1:1"]


def _deployment(container: dict, volumes=None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "op", "namespace": "ops"},
            "spec": {"template": {"spec": {"serviceAccountName": "op-sa", "containers": [container],
                                           "volumes": volumes or []}}}}


def test_launch_from_expands_env_like_the_kubelet_and_writes_configmap_mounts():
    container = {"name": "manager", "args": ["--log-level=$(LEVEL)", "--config=/etc/cfg/config.yaml", "--keep=$(NOPE)"],
                 "env": [{"name": "LEVEL", "value": "info"},
                         {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                         {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                         {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                 "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}
    config = [{"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v", "config.yaml": "a: 1"}},
              {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": base64.b64encode(b"secret").decode()}}]
    launch = KServe().launch_from(_deployment(container, [{"name": "cfg", "configMap": {"name": "cm"}}]), config)
    assert launch.namespace == "ops" and launch.service_account == "op-sa"
    assert launch.env == {"LEVEL": "info", "POD_NAMESPACE": "ops", "FROM_CM": "v", "FROM_SECRET": "secret"}
    assert launch.args[0] == "--log-level=info" and launch.args[2] == "--keep=$(NOPE)"  # unknown refs stay, as in k8s
    assert launch.files["mounts/etc/cfg/config.yaml"] == "a: 1"


def test_operator_process_listens_on_loopback_only(tmp_path):
    container = {"name": "manager", "args": ["--metrics-addr=:8080", "--webhook-port=443", "--leader-elect"]}
    op = KServe()
    launch = op.launch_from(_deployment(container), [])
    ports = {"metrics": 1001, "health": 1002, "webhook": 1003, "egress_trap": 1004}
    p = op.process(launch, tmp_path / "bin", tmp_path / "work", tmp_path / "kc", tmp_path / "log", ports)
    assert "--metrics-addr=127.0.0.1:1001" in p.argv and "--webhook-port=1003" in p.argv
    assert "--health-probe-addr=127.0.0.1:1002" in p.argv and "--leader-elect" not in p.argv
    assert not any(a.endswith("=:8080") for a in p.argv)
    assert p.env["KUBECONFIG"] == str(tmp_path / "kc")
    # Every HTTP request to a non-loopback host (kwok's fake pod IPs) goes to a closed loopback port.
    assert p.env["HTTP_PROXY"] == p.env["HTTPS_PROXY"] == "http://127.0.0.1:1004"
    assert "127.0.0.1" in p.env["NO_PROXY"]
    assert op.webhook_cert_dir(tmp_path / "work") == tmp_path / "work" / "tmp" / "k8s-webhook-server" / "serving-certs"


def test_chart_objects_split_into_applied_and_done_by_the_backend():
    docs = [
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "certs"}, "type": "kubernetes.io/tls",
         "data": {"tls.crt": "", "tls.key": ""}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "op"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "op-webhook"}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "v"}},
        {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": {"name": "rt"}},
    ]
    r = charts.split("rel", docs, "ns")
    assert [o["kind"] for o in r.crds] == ["CustomResourceDefinition"]
    assert [o["metadata"]["name"] for o in r.config] == ["cfg"] and r.config[0]["metadata"]["namespace"] == "ns"
    assert [o["kind"] for o in r.rbac] == ["ServiceAccount"]
    assert [o["kind"] for o in r.webhooks] == ["ValidatingWebhookConfiguration"]
    assert "namespace" not in r.webhooks[0]["metadata"]
    assert [o["kind"] for o in r.resources] == ["ClusterServingRuntime"]
    assert "namespace" not in r.resources[0]["metadata"]
    skipped = dict(r.not_applied)
    assert set(skipped) == {"Secret ns/certs", "Deployment ns/op", "Service ns/op-webhook", "Certificate ns/c"}


def test_webhook_configuration_points_at_loopback_with_our_ca():
    config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
              "metadata": {"name": "m", "annotations": {"cert-manager.io/inject-ca-from": "x/y"}},
              "webhooks": [{"name": "a", "clientConfig": {"service": {"name": "svc", "namespace": "ns",
                                                                      "path": "/mutate-x"}, "caBundle": "old"}},
                           {"name": "b", "clientConfig": {"service": {"name": "svc", "namespace": "ns"}}}]}
    out = charts.webhooks_to_loopback(config, 9443, "Q0E=")
    assert [h["clientConfig"] for h in out["webhooks"]] == [
        {"url": "https://127.0.0.1:9443/mutate-x", "caBundle": "Q0E="},
        {"url": "https://127.0.0.1:9443/", "caBundle": "Q0E="}]
    assert "annotations" not in out["metadata"]
    assert config["webhooks"][0]["clientConfig"]["service"]["path"] == "/mutate-x"  # input untouched


def test_pki_issues_loopback_serving_and_client_certificates(tmp_path):
    from cryptography import x509

    p = pki.ensure(tmp_path / "pki")
    api = x509.load_pem_x509_certificate(p.cert("apiserver").read_bytes())
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate(p.cert("admin").read_bytes())
    assert admin.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    before = p.ca_cert.read_bytes()
    assert pki.ensure(tmp_path / "pki").ca_cert.read_bytes() == before  # reused, not re-issued
    kc = yaml.safe_load(pki.kubeconfig(p, "https://127.0.0.1:1", "admin"))
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_prometheus_config_keeps_discovery_and_relabelling_and_never_reaches_pod_ips(tmp_path):
    p = pki.ensure(tmp_path / "pki")
    generated = yaml.safe_dump({
        "global": {"scrape_interval": "5s"}, "rule_files": ["/etc/prometheus/rules/*.yaml"],
        "scrape_configs": [{"job_name": "podMonitor/testbed/testbed-kserve/0",
                            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": ["testbed"]}}],
                            "relabel_configs": [{"action": "keep", "source_labels":
                                                 ["__meta_kubernetes_pod_container_port_number"], "regex": "8080"}]}]})
    out = prometheus.for_this_host(generated, "https://127.0.0.1:6443", p, 4242)
    job = out["scrape_configs"][0]
    assert job["relabel_configs"][0]["regex"] == "8080"
    assert job["kubernetes_sd_configs"][0]["api_server"] == "https://127.0.0.1:6443"
    assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["testbed"]}
    assert job["proxy_url"] == "http://127.0.0.1:4242"
    assert "rule_files" not in out


def test_generated_config_gets_the_config_reloaders_substitutions(tmp_path):
    """prometheus-operator's sharding rule keeps nothing until $(SHARD) is substituted (the reloader does
    it in a pod); the control plane's first Prometheus run dropped every target for want of it."""
    generated = yaml.safe_dump({
        "global": {"external_labels": {"prometheus_replica": "$(POD_NAME)"}},
        "scrape_configs": [{"job_name": "j", "relabel_configs": [
            {"source_labels": ["__tmp_hash", "__tmp_disable_sharding"], "regex": "$(SHARD);|.+;.+", "action": "keep"}]}]})
    out = prometheus.for_this_host(generated, "https://127.0.0.1:6443", pki.ensure(tmp_path / "pki"), 1)
    assert out["scrape_configs"][0]["relabel_configs"][0]["regex"] == "0;|.+;.+"
    assert out["global"]["external_labels"]["prometheus_replica"] == "prometheus-kube-prometheus-stack-prometheus-0"
    assert prometheus.envsubst("$(UNKNOWN) $(SHARD)") == "$(UNKNOWN) 0"


def test_prometheus_resource_follows_the_chart_values():
    sa, prom = prometheus.prometheus_resource("v3.11.1")
    assert prom["spec"]["podMonitorSelector"] == {}  # podMonitorSelectorNilUsesHelmValues: false
    assert prom["spec"]["scrapeInterval"] == "5s" and prom["spec"]["version"] == "v3.11.1"
    assert sa["metadata"]["name"] == prom["spec"]["serviceAccountName"]


def _pod(name, labels, containers, ip="10.244.0.5"):
    return {"metadata": {"name": name, "namespace": "testbed", "labels": labels},
            "spec": {"containers": containers}, "status": {"podIP": ip}}


def test_podmonitor_port_check_fails_on_an_undeclared_port_number():
    """The KServe defect (kind-audit #1): portNumber 8080 on a pod whose containers declare no 8080."""
    pods = [_pod("isvc-1", {"app": "isvc"}, [{"name": "kserve-container"},
                                             {"name": "agent", "ports": [{"name": "agent-port", "containerPort": 9081}]}])]
    pm = {"metadata": {"name": "testbed-kserve", "namespace": "testbed"},
          "spec": {"selector": {"matchLabels": {"app": "isvc"}}, "podMetricsEndpoints": [{"portNumber": 8080}]}}
    result = verify.ports([pm], pods)
    assert result["state"] == "fail" and "not declared" in result["text"]
    pods[0]["spec"]["containers"][0]["ports"] = [{"name": "http1", "containerPort": 8080}]
    assert verify.ports([pm], pods)["state"] == "pass"
    pm["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert "selects no pod" in verify.ports([pm], pods)["text"]


def test_announced_metrics_ports_include_mlserver_env():
    """The Seldon defect (kind-audit #3): MLServer's metrics port is set by env, not declared."""
    pods = [_pod("sdep-1", {}, [
        {"name": "model", "env": [{"name": "MLSERVER_METRICS_PORT", "value": "6000"}],
         "ports": [{"name": "http", "containerPort": 9000}]},
        {"name": "seldon-container-engine", "ports": [{"name": "metrics", "containerPort": 8000}]}])]
    announced = verify.announced_metrics(pods)
    assert {(a["container"], a["address"]) for a in announced} == {("model", "10.244.0.5:6000"),
                                                                   ("seldon-container-engine", "10.244.0.5:8000")}


def test_scrape_findings_pass_on_down_targets_and_fail_without_target():
    class Kube:
        def list(self, *a, **k):
            return []
    data = {"activeTargets": [{"scrapePool": "podMonitor/testbed/a/0", "health": "down", "scrapeUrl":
                               "http://10.244.0.5:8000/prometheus", "lastError": "connection refused"}]}
    expected = {"podMonitor/testbed/a/0": {}, "podMonitor/testbed/b/0": {}}
    result = verify.scrape_findings(Kube(), expected, data, "testbed")
    assert [p["state"] for p in result["pools"]] == ["pass", "fail"]
    assert result["state"] == "fail"


def test_failed_and_not_verifiable_are_reported_apart():
    findings = {"ports": {"state": "fail", "text": "x"}, "readiness": {"rayserve": {"state": "not verifiable",
                                                                                   "text": "y"}},
                "not_verifiable": [{"what": "image pulls", "why": "kwok"}]}
    assert verify.failed(findings) == ["ports: x"]
    lines = verify.summary_lines(findings)
    assert any(line.startswith("NOT VERIFIABLE") and "rayserve" in line for line in lines)
    assert any("image pulls" in line for line in lines)


@pytest.mark.parametrize("selector,labels,ok", [
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": "x"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["y"]}]}, {"a": "x"}, False),
    (None, {}, True),
])
def test_label_selector(selector, labels, ok):
    assert verify._selector_matches(selector, labels) is ok


def test_levels_need_their_record_and_show_the_highest_reached(tmp_path):
    from testbed import kubernetes_path

    doc = kubernetes_path.levels(["seldon"], results_dir=tmp_path, with_schema=False)
    assert doc["seldon"]["level"] == "none" and doc["seldon"]["controlplane"] is None
    kubernetes_path.record("controlplane", {"seldon": {"reached": True, "why": "9 checks passed"}},
                           {"kubernetes": "v1.33.1"}, results_dir=tmp_path)
    doc = kubernetes_path.levels(["seldon", "kserve"], results_dir=tmp_path, with_schema=False)
    assert doc["seldon"]["level"] == "control-plane verified"
    assert doc["seldon"]["controlplane"]["versions"] == {"kubernetes": "v1.33.1"}
    assert doc["kserve"]["level"] == "none"  # no record for it: never shown as reached
    kubernetes_path.record("controlplane", {"seldon": {"reached": False, "why": "ports: x"}}, {}, results_dir=tmp_path)
    assert kubernetes_path.levels(["seldon"], results_dir=tmp_path, with_schema=False)["seldon"]["level"] == "none"
    with pytest.raises(ValueError):
        kubernetes_path.record("nope", {}, {}, results_dir=tmp_path)


def test_platform_verdict_counts_only_its_own_findings():
    findings = {
        "admission": {"state": "pass", "text": "ok"},
        "owned": {"kserve": {"state": "pass", "text": "x", "objects": [{"kind": "Pod", "name": "k-1"}]},
                  "seldon": {"state": "pass", "text": "y", "objects": [{"kind": "Pod", "name": "s-1"}]}},
        "readiness": {"kserve": {"state": "pass", "text": "Ready"}, "seldon": {"state": "pass", "text": "Available"}},
        "ports": {"endpoints": [{"platform": "kserve", "state": "fail", "text": "8080 not declared"},
                               {"platform": "seldon", "state": "pass", "text": "ok"}]},
        "endpoints": {"services": []},
        "scrape": {"pools": [], "announced": [{"pod": "s-1", "state": "fail", "address": "10.244.0.9:6000"}]},
    }
    kserve = verify.platform_verdict(findings, "kserve")
    assert (kserve["reached"], kserve["partial"], kserve["why"]) == (False, False, "ports: 8080 not declared")
    assert not verify.platform_verdict(findings, "seldon")["reached"]
    findings["scrape"]["announced"][0]["state"] = "pass"
    assert verify.platform_verdict(findings, "seldon")["reached"]
    del findings["scrape"]
    assert "scrape: not checked" in verify.platform_verdict(findings, "seldon")["why"]


def test_vendored_crds_compared_with_the_charts_and_prometheus_ones_installed_as_vendored():
    from testbed.backends.controlplane import crds

    ours = crds.vendored()
    isvc = ours["inferenceservices.serving.kserve.io"]
    other = yaml.safe_load(yaml.safe_dump(isvc))
    other["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "changed"
    module_prom = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "alertmanagers.monitoring.coreos.com"}, "spec": {"group": "monitoring.coreos.com"}}
    apply, finding = crds.plan([isvc], [module_prom], vendored_groups=("monitoring.coreos.com",))
    names = {c["metadata"]["name"] for c in apply}
    assert {"inferenceservices.serving.kserve.io", "podmonitors.monitoring.coreos.com",
            "alertmanagers.monitoring.coreos.com"} <= names
    assert "rayservices.ray.io" not in names  # vendored but installed by its chart, not here
    assert finding["state"] == "pass"
    _, finding = crds.plan([other], [], vendored_groups=())
    assert finding["state"] == "fail" and "differs" in finding["text"]


def _kuberay_share(tmp_path, gates=("RayClusterStatusConditions", "RayJobDeletionPolicy", "RayMultiHostIndexing",
                                    "RayServiceIncrementalUpgrade", "RayCronJob")):
    share = tmp_path / "share"
    (share / "pkg" / "features").mkdir(parents=True)
    (share / "pkg" / "features" / "features.go").write_text(
        "const (\n" + "".join(f'\t{g} featuregate.Feature = "{g}"\n' for g in gates) + ")\n")
    (share / "pkg" / "features" / "x_test.go").write_text('\tTestOnly featuregate.Feature = "TestOnly"\n')
    rbac = share / "config" / "rbac"
    rbac.mkdir(parents=True)
    (rbac / "kustomization.yaml").write_text("resources:\n- service_account.yaml\n- role_binding.yaml\n")
    (rbac / "service_account.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: kuberay-operator\n")
    (rbac / "role_binding.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: kuberay-operator\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kuberay-operator}\n"
        "subjects:\n- kind: ServiceAccount\n  name: kuberay-operator\n")
    (rbac / "unlisted.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: not-listed\n")
    return share


def test_kuberay_launch_from_its_module_with_the_charts_args(tmp_path):
    """KubeRay's module has no chart: RBAC from its kustomize base (namespaced like the chart installs it),
    args the kind chart's defaults; gates the built version does not know are dropped and said so."""
    op = KubeRay()
    launch, rbac, deviations = op.launch_from_module(_kuberay_share(tmp_path), "kuberay-system")
    assert launch.namespace == "kuberay-system" and launch.service_account == "kuberay-operator"
    assert [o["kind"] for o in rbac] == ["ServiceAccount", "ClusterRoleBinding"]  # only what kustomization lists
    assert rbac[0]["metadata"]["namespace"] == "kuberay-system"
    assert "namespace" not in rbac[1]["metadata"] and rbac[1]["subjects"][0]["namespace"] == "kuberay-system"
    gates = next(a for a in launch.args if a.startswith("--feature-gates="))
    assert "RayServiceIncrementalUpgrade=true" in gates and "RayCronJob=false" in gates
    assert "RayClusterMTLS" not in gates and "TestOnly" not in gates
    assert "--enable-leader-election=false" in launch.args and "--enable-leader-election=true" not in launch.args
    assert "--qps=100" in launch.args and "--enable-metrics=true" in launch.args
    whats = " ".join(d[0] for d in deviations)
    assert "leader-election" in whats and "RayClusterMTLS" in whats
    assert any("no effect" in d[1] for d in deviations)  # the dropped gates are false in the chart
    p = op.process(launch, tmp_path / "bin", tmp_path / "w", tmp_path / "kc", tmp_path / "log",
                   {"metrics": 11, "health": 12, "egress_trap": 13})
    assert "--metrics-addr=127.0.0.1:11" in p.argv and "--health-probe-bind-address=127.0.0.1:12" in p.argv


def test_kuberay_dropping_a_gate_the_chart_enables_is_called_out(tmp_path):
    _, _, deviations = KubeRay().launch_from_module(_kuberay_share(tmp_path, gates=("RayCronJob",)), "ns")
    assert any("ENABLES" in why and "RayServiceIncrementalUpgrade" in why for _, why in deviations)


def _svc(name, selector, platform=None):
    return {"metadata": {"name": name, "labels": {"testbed.io/platform": platform} if platform else {}},
            "spec": {"type": "NodePort", "selector": selector, "ports": [{"nodePort": 30001}]}}


class _Kube:
    def __init__(self, services, slices=None, objects=None):
        self.services, self.slices, self.objects = services, slices or {}, objects or {}

    def list(self, api_version, kind, namespace=None, label_selector=None):
        if kind == "Service":
            return self.services
        if kind == "EndpointSlice":
            return self.slices.get(label_selector.split("=", 1)[1], [])
        return []

    def get(self, api_version, kind, name, namespace=None):
        return self.objects.get((kind, name))


def _labelled_pod(name, labels):
    return {"metadata": {"name": name, "namespace": "testbed", "labels": labels}, "spec": {"containers": []}}


def test_a_selector_label_set_only_when_serving_is_not_verifiable_only_when_the_rest_selects_pods():
    serving = {"rayserve": ({"ray.io/serve": "true"}, "needs a running Ray head")}
    head = _labelled_pod("head", {"testbed.io/rayservice": "m", "ray.io/node-type": "head"})
    kube = _Kube([_svc("rs", {"testbed.io/rayservice": "m", "ray.io/serve": "true"}, "rayserve")])
    result = verify.endpoints(kube, "testbed", [head], serving_labels=serving)
    item = result["services"][0]
    assert item["state"] == "not verifiable" and "needs a running Ray head" in item["text"] and "head" in item["text"]
    assert result["state"] == "pass"
    # The rest of the selector selects nothing: a real mismatch, not excused.
    other = _labelled_pod("head", {"testbed.io/rayservice": "other"})
    assert verify.endpoints(kube, "testbed", [other], serving_labels=serving)["state"] == "fail"
    # Without the declaration, no endpoint is a failure.
    assert verify.endpoints(kube, "testbed", [head])["state"] == "fail"


def test_a_platform_whose_operator_is_not_run_is_not_verifiable_never_passed():
    why = "its operator (seldon-core-operator 1.18.2) is not run here: no module"
    kube = _Kube([_svc("sd", {"seldon-deployment-id": "m"}, "seldon"), _svc("ks", {"app": "k"}, "kserve")],
                 objects={("SeldonDeployment", "m"): {"metadata": {"name": "m"}}})
    result = verify.endpoints(kube, "testbed", [], unverifiable={"seldon": why})
    states = {i["service"]: i["state"] for i in result["services"]}
    assert states == {"sd": "not verifiable", "ks": "fail"}  # the unverifiable excuse is the platform's only
    owned = verify.accepted_only(kube, "machinelearning.seldon.io/v1", "SeldonDeployment", "m", "testbed", why)
    assert owned["state"] == "not verifiable" and "accepted by the API server" in owned["text"]
    assert verify.accepted_only(kube, "v1", "SeldonDeployment", "absent", "testbed", why)["state"] == "fail"
    pm = {"metadata": {"name": "p", "namespace": "testbed", "labels": {"testbed.io/platform": "seldon"}},
          "spec": {"selector": {"matchLabels": {"x": "y"}}, "podMetricsEndpoints": [{"port": "metrics"}]}}
    assert verify.ports([pm], [], {"seldon": why})["endpoints"][0]["state"] == "not verifiable"
    assert verify.ports([pm], [])["state"] == "fail"


def test_scrape_pool_without_a_generated_job_fails_even_when_unverifiable():
    expected = {"podMonitor/testbed/s/0": {"metadata": {"labels": {"testbed.io/platform": "seldon"}}}}
    kube = _Kube([])
    nv = verify.scrape_findings(kube, expected, {"activeTargets": []}, "testbed", ["podMonitor/testbed/s/0"],
                                {"seldon": "not run"})
    assert nv["pools"][0]["state"] == "not verifiable" and nv["state"] == "pass"
    missing = verify.scrape_findings(kube, expected, {"activeTargets": []}, "testbed", [], {"seldon": "not run"})
    assert missing["pools"][0]["state"] == "fail" and "no scrape job" in missing["text"]


def test_partial_verification_stays_below_control_plane_verified_and_skew_is_shown(tmp_path):
    from testbed import kubernetes_path

    findings = {"admission": {"state": "pass", "text": "ok"},
                "owned": {"seldon": {"state": "not verifiable", "text": "accepted", "objects": []},
                          "rayserve": {"state": "pass", "text": "x", "objects": [{"kind": "Pod", "name": "h"}]}},
                "readiness": {"seldon": {"state": "not verifiable", "text": "no operator"},
                              "rayserve": {"state": "not verifiable", "text": "needs a pod"}},
                "ports": {"endpoints": []}, "endpoints": {"services": []}, "scrape": {"pools": [], "announced": []}}
    u = {"operator": "seldon-core-operator", "kind_pin": "1.18.2", "why": "no module"}
    seldon = verify.platform_verdict(findings, "seldon", unverifiable=u)
    assert seldon["reached"] is False and seldon["partial"] is True and "API server only" in seldon["why"]
    skew = {"component": "kuberay-operator", "built": "v1.6.2", "kind_pin": "v1.7.0", "why": "403"}
    ray = verify.platform_verdict(findings, "rayserve", skew=skew)
    assert ray["reached"] and ray["skew"] == skew and ray["not_verifiable"]
    findings["admission"]["state"] = "fail"
    assert not verify.platform_verdict(findings, "seldon", unverifiable=u)["partial"]  # a failure is a failure
    kubernetes_path.record("controlplane", {"seldon": seldon, "rayserve": ray}, {}, results_dir=tmp_path)
    doc = kubernetes_path.levels(["seldon", "rayserve"], results_dir=tmp_path, with_schema=False)
    assert doc["seldon"]["level"] == kubernetes_path.PARTIAL
    assert doc["rayserve"]["level"].startswith("control-plane verified (VERSION SKEW: kuberay-operator v1.6.2")
    text = "\n".join(kubernetes_path.lines(doc))
    assert "partially" in text and "VERSION SKEW" in text and "not verifiable: readiness" in text
    assert kubernetes_path.verdict_word(seldon).startswith("partially")


def _kind_target(name: str):
    from testbed.backends.kind import detection
    from testbed.backends.kind.deployment import Target
    from testbed.backends.kind.context import runtime_code_dirname

    p = pins()
    return Target(namespace="testbed", node_port=p.node_port(name), model_name="reference-classifier",
                  artifact_subpath="reference-classifier-0123456789ab", code_dir=runtime_code_dirname(),
                  serving=p.serving[name], model_sha256="0123456789ab" + "0" * 52, n_features=7,
                  detectors_subpath="reference-classifier-0123456789ab-detectors",
                  detector_service=detection.service_url("testbed"))


def test_another_checkout_renders_the_same_objects_as_this_one_when_it_is_this_one():
    """TESTBED_KIND_PATH_AT renders in a separate process with that checkout's code; pointed at this
    checkout it must give exactly what the in-process deployment gives (so a difference on an older
    checkout is the older code's, not the mechanism's)."""
    from deployers import get_platform
    from testbed.backends.controlplane import elsewhere
    from testbed.kubernetes_path import kind_platforms
    from testbed.settings import REPO_ROOT

    for name in kind_platforms():
        target = _kind_target(name)
        assert elsewhere.render(REPO_ROOT, name, target) == get_platform(name).deployment_for("kind").manifests(target)


def test_another_checkout_replaces_only_the_rendered_objects(monkeypatch):
    from deployers import get_platform
    from testbed.backends.controlplane import elsewhere
    from testbed.settings import REPO_ROOT

    monkeypatch.setenv(elsewhere.ENV, str(REPO_ROOT))
    assert elsewhere.checkout() == REPO_ROOT.resolve()
    dep = get_platform("kserve").deployment_for("kind")
    said = []
    elsewhere.use({"kserve": dep}, elsewhere.checkout(), said.append)
    target = _kind_target("kserve")
    assert [o["kind"] for o in dep.manifests(target)] == [
        o["kind"] for o in get_platform("kserve").deployment_for("kind").manifests(target)]
    assert "objects rendered by the checkout" in dep.scrape_plan(target)[0]
    assert elsewhere.ENV in said[0]


def test_a_kind_path_checkout_that_is_not_one_is_refused_with_the_fix(monkeypatch, tmp_path):
    from testbed.backends.controlplane import elsewhere
    from testbed.errors import TestbedError

    monkeypatch.setenv(elsewhere.ENV, str(tmp_path))
    with pytest.raises(TestbedError, match="git worktree add"):
        elsewhere.checkout()
    monkeypatch.delenv(elsewhere.ENV)
    assert elsewhere.checkout() is None


def test_a_listener_beyond_loopback_is_shown_with_its_process_and_cause(tmp_path):
    """status.exposure's entries carry what the CLI's exposure section prints (owner, process, pid):
    a real process bound to every interface, once under an operator's name with a known cause, once
    under another name (unexplained)."""
    import sys
    import time

    from testbed.backends.controlplane import processes as cp_procs
    from testbed.backends.controlplane.status import exposure
    from testbed.cli import render_status

    port = cp_procs.free_port()
    code = (f"import socket,time; s=socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            f"s.bind(('::', {port})); s.listen(); time.sleep(60)")
    p = cp_procs.start(cp_procs.Proc("listener", [sys.executable, "-c", code], tmp_path / "l.log"))
    try:
        record = {**p.record(), "ports": {"webhook": port}}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            doc = exposure({"kserve-controller": record}, {})
            if doc["count"]:
                break
            time.sleep(0.2)
        assert doc["count"] == 1 and doc["unexplained"] == 0, doc
        x = doc["non_loopback_sockets"][0]
        assert x["owner"] == "kserve-controller" and x["port"] == port and x["process"].startswith("python")
        assert "binds every interface" in x["cause"]
        text = render_status({"backend": "controlplane", "state": "running", "exposure": doc})
        assert f":{port}" in text and f"pid {x['pid']}" in text and "[1]" in text
        other = exposure({"someone": record}, {})
        assert other["unexplained"] == 1
        assert "UNEXPLAINED" in render_status({"backend": "controlplane", "state": "running", "exposure": other})
    finally:
        cp_procs.stop(p.record(), grace_s=2)


def test_status_and_report_show_each_level_with_its_date_and_versions(tmp_path):
    from testbed import kubernetes_path
    from testbed.report import kubernetes_path_rows

    kubernetes_path.record("controlplane", {"kserve": {"reached": True, "why": "8 checks passed"}},
                           {"kubernetes": "v1.33.1", "kserve": "v0.20.0"}, results_dir=tmp_path)
    kubernetes_path.record("kind", {"kserve": {"reached": True, "why": "tests/e2e passed"}}, {"kind": "v0.29.0"},
                           results_dir=tmp_path)
    doc = kubernetes_path.levels(["kserve", "rayserve"], results_dir=tmp_path, with_schema=False)
    assert doc["kserve"]["level"] == "run on a real kind cluster" and doc["rayserve"]["level"] == "none"
    at = doc["kserve"]["controlplane"]["at"]
    text = "\n".join(kubernetes_path.lines(doc))
    assert f"control-plane verified: yes ({at}) with kubernetes v1.33.1, kserve v0.20.0 - 8 checks passed" in text
    assert "run on a real kind cluster: yes" in text and "kind v0.29.0" in text
    assert "rayserve  none" in text and "control-plane verified: no record" in text
    rows = {name: (level, details) for name, level, details in kubernetes_path_rows(_report_with(doc))}
    assert rows["kserve"][0] == "run on a real kind cluster"
    assert any(d.startswith(f"control-plane verified: yes ({at}) with kubernetes v1.33.1") for d in rows["kserve"][1])


def _report_with(levels_doc):
    import types

    return types.SimpleNamespace(kubernetes_path=levels_doc)


def test_kind_status_shows_how_far_the_kind_path_was_checked(tmp_path, monkeypatch):
    """`status --backend kind` of a recorded cluster (here one that is gone: no kubeconfig) carries each
    platform's Kubernetes-path level and prints it."""
    from testbed import kubernetes_path
    from testbed.backends.kind.cluster import ClusterFiles
    from testbed.backends.kind.status import cluster_status
    from testbed.cli import render_status
    from testbed.state import atomic_write_json

    results = tmp_path / "results"
    monkeypatch.setattr("testbed.results.RESULTS_DIR", results)
    kubernetes_path.record("controlplane", {"kserve": {"reached": True, "why": "8 checks passed"}},
                           {"kubernetes": "v1.33.1"})
    cf = ClusterFiles(name="testbed", dir=tmp_path / "kind")
    cf.dir.mkdir()
    atomic_write_json(cf.state, {"complete": True, "platforms": {"kserve": {"resource": {}}}})
    doc = cluster_status(cf, pins())
    assert doc["kubernetes_path"]["kserve"]["level"] == "control-plane verified"
    assert doc["kubernetes_path"]["kserve"]["schema"]["reached"]
    assert "kserve    control-plane verified" in render_status(doc)


def test_the_report_shows_each_kind_platforms_level_from_the_results_it_reads(tmp_path):
    """The report's Kubernetes path section reads the level records among the results it is built from,
    lists only platforms with a kind deployment, and shows a partial level with its reason."""
    from testbed import kubernetes_path, report

    root = tmp_path / "results"
    kubernetes_path.record("controlplane", {
        "kserve": {"reached": True, "why": "8 checks passed"},
        "seldon": {"reached": False, "partial": True, "why": "API server only: operator not run",
                   "not_verifiable": ["readiness: no operator"]}}, {"kubernetes": "v1.33.1"}, results_dir=root)
    md = report.build(root, [], tmp_path / "out")["markdown"].read_text()
    section = md[md.index("## Kubernetes path"):]
    assert "- **kserve**: control-plane verified" in section
    assert f"- **seldon**: {kubernetes_path.PARTIAL}" in section and "not verifiable: readiness: no operator" in section
    assert "with kubernetes v1.33.1" in section
    for name in kubernetes_path.kind_platforms():
        assert f"- **{name}**:" in section
    from deployers import PLATFORMS

    for name in set(PLATFORMS) - set(kubernetes_path.kind_platforms()):
        assert f"- **{name}**:" not in section
