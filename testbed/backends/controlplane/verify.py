"""What the control plane checks in what the kind path generates, each as a finding:
{"state": "pass" | "fail" | "not verifiable", "text": one line, ...details}.

- admission: every object was applied with field validation Strict (a rejection stops `up` at its
  step), and every admission webhook whose rules match an applied object was called (the operator's
  controller_runtime_webhook_requests_total);
- owned: each operator reconciled its custom resource into objects it owns (names, labels);
- endpoints: every Service in the testbed's namespace selects ready pods (its EndpointSlices);
- ports: every PodMonitor endpoint names a port that each pod it selects declares;
- scrape (prometheus.py): every PodMonitor endpoint has a target in a real Prometheus running
  prometheus-operator's configuration, and every metrics port a generated pod announces is scraped;
- readiness: each platform's own readiness rule (deployers/*.py) reached, or why it cannot be here.
"""

from __future__ import annotations

import re

import httpx

from testbed.errors import TestbedError

PASS, FAIL, NOT_VERIFIABLE = "pass", "fail", "not verifiable"
PLATFORM_LABEL = "testbed.io/platform"
"""The label the kind path's PodMonitors and NodePort Services carry (manifests/)."""

ALWAYS_NOT_VERIFIABLE = [
    ("image pulls and image architecture", "kwok runs no container: no image is pulled"),
    ("model loading and prediction parity", "nothing runs in a pod; kwok pod IPs answer nothing"),
    ("NodePort to 127.0.0.1 (kind extraPortMappings)", "no kube-proxy and no Docker port mapping here"),
    ("hostPath permissions of the artifacts volume", "no kubelet mounts volumes"),
    ("metrics content (series names, values)", "targets are discovered but nothing answers a scrape"),
]

OWNED_KINDS = [("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("apps/v1", "StatefulSet"), ("v1", "Pod"),
               ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"), ("policy/v1", "PodDisruptionBudget"),
               ("autoscaling/v2", "HorizontalPodAutoscaler"), ("ray.io/v1", "RayCluster")]


class ChecksFailed(TestbedError):
    def __init__(self, failed: list[str], state_path):
        super().__init__("The control plane found problems in what `up --backend kind` would deploy:\n"
                         + "\n".join(f"  - {f}" for f in failed)
                         + f"\nEverything is left running for inspection (state: {state_path}); "
                           f"`python -m testbed status --backend controlplane` shows every finding.")


# --- readiness -------------------------------------------------------------------------------------
def ready_reachable(dep) -> bool:
    return not getattr(dep, "readiness_needs_pod", None)


def unreachable_readiness(kube, dep, target) -> dict:
    """What the platform's readiness needs that kwok cannot give, and how far its operator got."""
    obj = kube.get(dep.api_version, dep.kind, target.model_name, target.namespace) or {}
    conditions = [f"{c.get('type')}={c.get('status')}" for c in (obj.get("status") or {}).get("conditions") or []]
    return {"state": NOT_VERIFIABLE,
            "text": f"{dep.kind} {target.namespace}/{target.model_name} {dep._ready_text()}: not verifiable here "
                    f"({dep.readiness_needs_pod}); conditions reached: {', '.join(conditions) or 'none'}"}


# --- checks --------------------------------------------------------------------------------------
def run_checks(ctx, cp: dict) -> dict:
    run = ctx.extra["kind"]
    kube, ns = run.kube, run.namespace
    pods = kube.list("v1", "Pod", ns)
    unverifiable = {name: not_run_text(u) for name, u in (cp.get("unverifiable") or {}).items()}
    serving_labels = {name: (dict(dep.labels_set_when_serving), dep.labels_set_when_serving_why)
                      for name, dep in ctx.deployments.items() if dep.labels_set_when_serving}
    return {
        "admission": admission(kube, run.plan.manifests(), cp),
        "owned": {name: (owned(kube, dep.api_version, dep.kind, dep.target(ctx).model_name, ns)
                         if name not in unverifiable else
                         accepted_only(kube, dep.api_version, dep.kind, dep.target(ctx).model_name, ns,
                                       unverifiable[name]))
                  for name, dep in ctx.deployments.items()},
        "endpoints": endpoints(kube, ns, pods, unverifiable, serving_labels),
        "ports": ports([o for o in run.plan.manifests() if o["kind"] == "PodMonitor"], pods, unverifiable),
        "pod_model": {name: (pod_model(dep, dep.target(ctx), pods) if name not in unverifiable else
                             {"state": NOT_VERIFIABLE, "text": f"no pods to compare the model with: {unverifiable[name]}"})
                      for name, dep in ctx.deployments.items() if hasattr(dep, "generated_pods")},
        "not_verifiable": [{"what": w, "why": y} for w, y in ALWAYS_NOT_VERIFIABLE] + [
            {"what": f"{name}: its operator's reconciliation, readiness, generated pods and admission webhooks",
             "why": text} for name, text in unverifiable.items()],
    }


def not_run_text(u: dict) -> str:
    return f"its operator ({u['operator']} {u['kind_pin']}) is not run here: {u['why']}"


def accepted_only(kube, api_version: str, kind: str, name: str, namespace: str, why: str) -> dict:
    """For a platform whose operator cannot run here: the API server stored its resource, nothing more."""
    if kube.get(api_version, kind, name, namespace) is None:
        return {"state": FAIL, "text": f"{kind} {namespace}/{name} is absent", "objects": []}
    return {"state": NOT_VERIFIABLE, "objects": [],
            "text": f"{kind} {namespace}/{name} accepted by the API server (strict field validation); what its "
                    f"operator makes of it is not verifiable: {why}"}


def admission(kube, applied: list[dict], cp: dict) -> dict:
    hooks = []
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for config in kube.list("admissionregistration.k8s.io/v1", kind):
            for hook in config.get("webhooks") or []:
                url = (hook.get("clientConfig") or {}).get("url") or ""
                if url.startswith("https://127.0.0.1:"):
                    hooks.append((config["metadata"]["name"], hook, url))
    counts = _webhook_counts(cp)
    items, problems = [], []
    for config_name, hook, url in hooks:
        matched = [o for o in applied if _rule_matches(kube, hook, o)]
        path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        calls = counts.get(path, 0)
        item = {"webhook": f"{config_name}/{hook['name']}", "url": url, "calls": calls,
                "matches": [_id(o) for o in matched]}
        if matched and calls == 0:
            problems.append(f"{item['webhook']} matches {item['matches']} but was never called")
        items.append(item)
    called = ", ".join(f"{i['webhook']} x{i['calls']:.0f}" for i in items if i["calls"])
    return {"state": FAIL if problems else PASS,
            "text": ("; ".join(problems) if problems else
                     f"{len(applied)} objects accepted with field validation Strict; admission webhooks on "
                     f"loopback called: {called or 'none matched'}"),
            "applied": [_id(o) for o in applied], "webhooks": items}


def _webhook_counts(cp: dict) -> dict[str, float]:
    """controller_runtime_webhook_requests_total by webhook path, from each operator's metrics endpoint."""
    counts: dict[str, float] = {}
    pattern = re.compile(r'^controller_runtime_webhook_requests_total\{[^}]*webhook="([^"]+)"[^}]*\}\s+(\S+)', re.M)
    for info in (cp.get("operators") or {}).values():
        port = (info.get("ports") or {}).get("metrics")
        if not port:
            continue
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        except httpx.HTTPError:
            continue
        for path, value in pattern.findall(text):
            counts[path] = counts.get(path, 0) + float(value)
    return counts


def _rule_matches(kube, hook: dict, obj: dict) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    try:
        plural = kube.resource(obj["apiVersion"], obj["kind"]).name
    except Exception:
        return False
    for rule in hook.get("rules") or []:
        if not {"CREATE", "*"} & set(rule.get("operations") or []):
            continue
        if not ({group, "*"} & set(rule.get("apiGroups") or [])):
            continue
        if not ({version, "*"} & set(rule.get("apiVersions") or [])):
            continue
        if not ({plural, "*"} & set(rule.get("resources") or [])):
            continue
        return _selector_matches(hook.get("objectSelector"), (obj.get("metadata") or {}).get("labels") or {})
    return False


def _selector_matches(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values or op == "NotIn" and labels.get(key) in values \
                or op == "Exists" and key not in labels or op == "DoesNotExist" and key in labels:
            return False
    return True


def owned(kube, api_version: str, kind: str, name: str, namespace: str) -> dict:
    """Everything in the namespace whose owner chain leads to the custom resource."""
    root = kube.get(api_version, kind, name, namespace)
    if root is None:
        return {"state": FAIL, "text": f"{kind} {namespace}/{name} is absent", "objects": []}
    by_owner: dict[str, list[dict]] = {}
    for av, k in OWNED_KINDS:
        try:
            items = kube.list(av, k, namespace)
        except Exception:
            continue
        for item in items:
            for ref in item["metadata"].get("ownerReferences") or []:
                by_owner.setdefault(ref["uid"], []).append(item)
    found, queue = [], [root["metadata"]["uid"]]
    while queue:
        for child in by_owner.get(queue.pop(), []):
            found.append(child)
            queue.append(child["metadata"]["uid"])
    objects = [{"kind": o["kind"], "name": o["metadata"]["name"], "labels": o["metadata"].get("labels") or {},
                **({"phase": (o.get("status") or {}).get("phase"), "node": (o.get("spec") or {}).get("nodeName"),
                    "containers": [{"name": c["name"], "ports": c.get("ports") or []}
                                   for c in (o.get("spec") or {}).get("containers") or []]}
                   if o["kind"] == "Pod" else {})} for o in found]
    pods = [o for o in objects if o["kind"] == "Pod"]
    state = PASS if pods else FAIL
    kinds = {}
    for o in objects:
        kinds.setdefault(o["kind"], []).append(o["name"])
    text = (f"{kind} {name} -> " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items())
            if objects else f"{kind} {name} owns nothing: its operator did not reconcile it")
    if objects and not pods:
        text += " (no pod)"
    return {"state": state, "text": text, "objects": objects}


def pod_model(dep, target, pods: list[dict]) -> dict:
    """The kind path's own model of the pods an operator generates (deployment.generated_pods, written
    from the operator's source and used offline to predict scrape targets) against the pods the real
    operator made: same containers, same declared ports."""
    try:
        model = dep.generated_pods(target)
    except NotImplementedError:
        return {"state": NOT_VERIFIABLE, "text": "no model of its generated pods"}
    problems, seen = [], []
    for m in model:
        real = [p for p in pods if _selector_matches({"matchLabels": m.labels}, p["metadata"].get("labels") or {})]
        if not real:
            problems.append(f"{m.what}: no pod has its labels {m.labels}")
            continue
        declared = {c["name"]: sorted((pt.get("name"), pt["containerPort"]) for pt in c.get("ports") or [])
                    for c in real[0]["spec"]["containers"]}
        modelled = {name: sorted((pt.name, pt.number) for pt in ports) for name, ports in m.containers.items()}
        for name in sorted(set(declared) | set(modelled)):
            if declared.get(name) != modelled.get(name):
                problems.append(f"{m.what} container {name}: model {modelled.get(name, 'absent')}, "
                                f"operator made {declared.get(name, 'absent')}")
        seen.append(f"{m.what} ({real[0]['metadata']['name']})")
    return {"state": FAIL if problems else PASS,
            "text": "; ".join(problems) if problems else f"the model matches the operator's pods: {', '.join(seen)}"}


def endpoints(kube, namespace: str, pods: list[dict], unverifiable: dict[str, str] | None = None,
              serving_labels: dict[str, tuple[dict, str]] | None = None) -> dict:
    """Every Service with a selector has ready endpoints. Two cases are not verifiable here, each only
    when it explains the missing endpoints: the platform's operator is not run (no pods at all), and
    labels the operator sets only on a serving pod (serving_labels: platform -> (labels, why)), when the
    rest of the selector does select pods."""
    unverifiable, serving_labels = unverifiable or {}, serving_labels or {}
    items, problems = [], []
    for svc in kube.list("v1", "Service", namespace):
        name, spec = svc["metadata"]["name"], svc.get("spec") or {}
        labels = svc["metadata"].get("labels") or {}
        selector = spec.get("selector")
        if not selector:
            items.append({"service": name, "state": NOT_VERIFIABLE, "text": "no selector (endpoints managed elsewhere)"})
            continue
        slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                           label_selector=f"kubernetes.io/service-name={name}")
        ready = [ep for s in slices for ep in s.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready")]
        selected = _selected(pods, selector)
        node_ports = [p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")]
        platform = labels.get(PLATFORM_LABEL) or _owner_platform(svc, serving_labels)
        item = {"service": name, "type": spec.get("type"), "selector": selector, "pods": selected,
                "platform": platform, "ready_endpoints": len(ready), "node_ports": node_ports,
                "state": PASS if ready else FAIL,
                "text": f"{len(ready)} ready endpoint(s) ({', '.join(selected) or 'selects no pod'})"}
        if not ready:
            later = _set_when_serving(selector, serving_labels)
            rest = {k: v for k, v in selector.items() if k not in (later or (None, {}))[1]}
            if platform in unverifiable and not selected:
                item.update(state=NOT_VERIFIABLE, text=f"selects no pod: {unverifiable[platform]}")
            elif later and not selected and _selected(pods, rest):
                labels_later, why = later[1], later[2]
                item.update(state=NOT_VERIFIABLE,
                            text=f"no endpoint: the rest of its selector {rest} selects {_selected(pods, rest)}; "
                                 f"{labels_later} is not verifiable here ({why})")
            else:
                problems.append(f"Service {namespace}/{name} (selector {selector}) has no ready endpoint: "
                                + ("it selects no pod" if not selected else f"pods {selected} not ready"))
        items.append(item)
    nv = [i for i in items if i["state"] == NOT_VERIFIABLE and i.get("selector")]
    return {"state": FAIL if problems else PASS,
            "text": "; ".join(problems) if problems else
            f"{sum(1 for i in items if i['state'] == PASS)} Services in {namespace} with ready endpoints"
            + (f"; {len(nv)} not verifiable ({', '.join(i['service'] for i in nv)})" if nv else ""),
            "services": items}


def _selected(pods: list[dict], selector: dict) -> list[str]:
    return [p["metadata"]["name"] for p in pods
            if _selector_matches({"matchLabels": selector}, p["metadata"].get("labels") or {})]


def _set_when_serving(selector: dict, serving_labels: dict) -> tuple[str, dict, str] | None:
    """(platform, labels, why) when the selector requires labels a platform's operator sets only on a serving pod."""
    for platform, (labels, why) in serving_labels.items():
        if labels and all(selector.get(k) == v for k, v in labels.items()):
            return platform, labels, why
    return None


def _owner_platform(svc: dict, serving_labels: dict) -> str | None:
    later = _set_when_serving((svc.get("spec") or {}).get("selector") or {}, serving_labels)
    return later[0] if later else None


def ports(monitors: list[dict], pods: list[dict], unverifiable: dict[str, str] | None = None) -> dict:
    unverifiable = unverifiable or {}
    items, problems = [], []
    for pm in monitors:
        meta, spec = pm["metadata"], pm["spec"]
        namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [meta["namespace"]]
        selected = [p for p in pods if p["metadata"]["namespace"] in namespaces
                    and _selector_matches(spec.get("selector"), p["metadata"].get("labels") or {})]
        for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
            wanted = (f"port {ep['port']!r}" if ep.get("port") else f"portNumber {ep.get('portNumber')}"
                      if ep.get("portNumber") else f"targetPort {ep.get('targetPort')}")
            missing = [p["metadata"]["name"] for p in selected if not _declares(p, ep)]
            where = f"PodMonitor {meta['namespace']}/{meta['name']} endpoint {i} ({wanted})"
            platform = (meta.get("labels") or {}).get(PLATFORM_LABEL)
            if not selected and platform in unverifiable:
                state, text = NOT_VERIFIABLE, f"{where}: selects no pod: {unverifiable[platform]}"
            elif not selected:
                state, text = FAIL, f"{where}: selects no pod"
            elif missing:
                state, text = FAIL, (f"{where}: not declared by any container of {missing} "
                                     f"(declared: {_declared(selected[0])})")
            else:
                state, text = PASS, f"{where}: declared by {[p['metadata']['name'] for p in selected]}"
            if state == FAIL:
                problems.append(text)
            items.append({"podmonitor": f"{meta['namespace']}/{meta['name']}", "endpoint": i, "wanted": wanted,
                          "platform": (meta.get("labels") or {}).get(PLATFORM_LABEL),
                          "pods": [p["metadata"]["name"] for p in selected], "state": state, "text": text})
    checked = sum(1 for i in items if i["state"] == PASS)
    nv = [i["podmonitor"] for i in items if i["state"] == NOT_VERIFIABLE]
    return {"state": FAIL if problems else PASS,
            "text": "; ".join(problems) if problems else f"{checked} PodMonitor endpoints, each a declared port"
            + (f"; not verifiable: {', '.join(nv)} (no pods)" if nv else ""),
            "endpoints": items}


def _declares(pod: dict, ep: dict) -> bool:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for port in c.get("ports") or []:
            if ep.get("port") and port.get("name") == ep["port"]:
                return True
            if ep.get("portNumber") and port.get("containerPort") == ep["portNumber"]:
                return True
            target = ep.get("targetPort")
            if target is not None and (port.get("containerPort") == target or port.get("name") == target):
                return True
    return False


def _declared(pod: dict) -> str:
    return ", ".join(f"{c['name']}:{[(p.get('name'), p.get('containerPort')) for p in c.get('ports') or []]}"
                     for c in (pod.get("spec") or {}).get("containers") or [])


# --- scrape ----------------------------------------------------------------------------------------
METRICS_PORT_ENV = ("MLSERVER_METRICS_PORT",)
"""Container env that announces a metrics port the container serves without declaring it (MLServer,
the runtime Seldon v1 runs for SKLEARN_SERVER under protocol v2, sets its metrics server's port so)."""


def announced_metrics(pods: list[dict]) -> list[dict]:
    """(pod, container, ip:port) of every metrics endpoint a pod's containers announce: declared ports
    named `metrics` or `*-metrics`, and METRICS_PORT_ENV."""
    out = []
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        for c in (pod.get("spec") or {}).get("containers") or []:
            found = {p["containerPort"]: f"declared port {p.get('name')}" for p in c.get("ports") or []
                     if (p.get("name") or "") == "metrics" or (p.get("name") or "").endswith("-metrics")}
            for env in c.get("env") or []:
                if env.get("name") in METRICS_PORT_ENV and str(env.get("value", "")).isdigit():
                    found.setdefault(int(env["value"]), f"env {env['name']}")
            for port, why in found.items():
                out.append({"pod": pod["metadata"]["name"], "container": c["name"], "address": f"{ip}:{port}",
                            "announced_by": why})
    return out


def scrape_findings(kube, expected: dict, data: dict, namespace: str, pools_configured: list[str] | None = None,
                    unverifiable: dict[str, str] | None = None) -> dict:
    """expected: scrape pool -> its PodMonitor; data: Prometheus /api/v1/targets?state=any;
    pools_configured: /api/v1/scrape_pools (the jobs prometheus-operator generated, with or without targets)."""
    unverifiable = unverifiable or {}
    active = data.get("activeTargets") or []
    dropped = data.get("droppedTargetCounts") or {}
    items, problems = [], []
    for pool, pm in expected.items():
        platform = ((pm.get("metadata") or {}).get("labels") or {}).get(PLATFORM_LABEL)
        hits = [t for t in active if t["scrapePool"] == pool]
        configured = pools_configured is None or pool in pools_configured
        if not configured:
            state, text = FAIL, f"{pool}: prometheus-operator generated no scrape job for it"
        elif hits:
            health = sorted({t["health"] for t in hits})
            state, text = PASS, (f"{pool}: {len(hits)} target(s) discovered, health {'/'.join(health)} "
                                 f"({hits[0]['scrapeUrl']}; {hits[0].get('lastError') or 'no scrape yet'})")
        elif platform in unverifiable:
            state, text = NOT_VERIFIABLE, (f"{pool}: scrape job generated; no pod to discover "
                                           f"({unverifiable[platform]})")
        else:
            state, text = FAIL, (f"{pool}: no target (Prometheus dropped every discovered pod port: "
                                 f"{dropped.get(pool, 0)} dropped)")
        if state == FAIL:
            problems.append(text)
        items.append({"pool": pool, "state": state, "text": text, "platform": platform, "configured": configured,
                      "dropped": dropped.get(pool),
                      "targets": [{"url": t["scrapeUrl"], "health": t["health"], "labels": t.get("labels", {})}
                                  for t in hits]})
    scraped = {t["scrapeUrl"].split("/")[2] for t in active if t.get("scrapeUrl")}
    announced = announced_metrics(kube.list("v1", "Pod", namespace))
    for a in announced:
        a["state"] = PASS if a["address"] in scraped else FAIL
        if a["state"] == FAIL:
            problems.append(f"pod {a['pod']} container {a['container']} announces metrics at {a['address']} "
                            f"({a['announced_by']}), but no target scrapes it")
    ok_pools = sum(1 for i in items if i["state"] == PASS)
    nv = [i["pool"] for i in items if i["state"] == NOT_VERIFIABLE]
    return {"state": FAIL if problems else PASS,
            "text": "; ".join(problems) if problems else
            f"{ok_pools} PodMonitor endpoints discovered by Prometheus (down: kwok pods answer nothing); "
            f"{len(announced)} announced metrics ports scraped" + (f"; not verifiable: {', '.join(nv)}" if nv else ""),
            "pools": items, "announced": announced}


# --- summary -----------------------------------------------------------------------------------------
def _id(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name")
    return f"{obj.get('kind')} {where}"


def flatten(findings: dict) -> list[tuple[str, dict]]:
    """(name, finding) of every finding, nested ones (per platform) named check/platform."""
    out = []
    for key, value in findings.items():
        if key == "not_verifiable":
            continue
        if isinstance(value, dict) and "state" in value:
            out.append((key, value))
        elif isinstance(value, dict):
            out += [(f"{key}/{k}", v) for k, v in value.items() if isinstance(v, dict) and "state" in v]
    return out


def failed(findings: dict) -> list[str]:
    return [f"{name}: {f['text']}" for name, f in flatten(findings) if f["state"] == FAIL]


def summary_lines(findings: dict) -> list[str]:
    lines = [f"{f['state'].upper():<14} {name}: {f['text']}" for name, f in flatten(findings)]
    lines += [f"{NOT_VERIFIABLE.upper():<14} {n['what']}: {n['why']}" for n in findings.get("not_verifiable") or []]
    return lines


def platform_verdict(findings: dict, platform: str, unverifiable: dict | None = None,
                     skew: dict | None = None) -> dict:
    """{"reached", "partial", "why", "not_verifiable", "skew"} for the platform's control-plane level.

    reached: every check concerning the platform ran and passed (some may be not verifiable, each with
    its reason). partial: its operator could not run here (unverifiable), and everything that could be
    checked without it passed: the level stays below "control-plane verified". skew: the operator that
    ran is another version than the kind path's (component, built, kind_pin, why)."""
    owned = (findings.get("owned") or {}).get(platform) or {}
    pods = {o["name"] for o in owned.get("objects") or [] if o["kind"] == "Pod"}
    services = {o["name"] for o in owned.get("objects") or [] if o["kind"] == "Service"}
    concerned = [("owned", owned), ("readiness", (findings.get("readiness") or {}).get(platform) or {})]
    if platform in (findings.get("pod_model") or {}):
        concerned.append(("pod_model", findings["pod_model"][platform]))
    concerned += [("admission", findings.get("admission") or {})]
    concerned += [("ports", e) for e in (findings.get("ports") or {}).get("endpoints") or [] if e.get("platform") == platform]
    concerned += [("endpoints", e) for e in (findings.get("endpoints") or {}).get("services") or []
                  if e.get("platform") == platform or e.get("service") in services]
    concerned += [("scrape", e) for e in (findings.get("scrape") or {}).get("pools") or [] if e.get("platform") == platform]
    concerned += [("scrape", a) for a in (findings.get("scrape") or {}).get("announced") or [] if a.get("pod") in pods]
    missing = [name for name, f in concerned if not f]
    bad = [f"{name}: {f.get('text') or f.get('address')}" for name, f in concerned if f and f.get("state") == FAIL]
    nv = [f"{name}: {f['text']}" for name, f in concerned if f and f.get("state") == NOT_VERIFIABLE]
    out = {"not_verifiable": nv, **({"skew": skew} if skew else {})}
    if missing or bad or "scrape" not in findings:
        return {**out, "reached": False, "partial": False,
                "why": "; ".join(bad + [f"{m}: not checked" for m in missing]
                                 + ([] if "scrape" in findings else ["scrape: not checked"]))}
    passed = sum(1 for _, f in concerned if f.get("state") == PASS)
    if unverifiable:
        return {**out, "reached": False, "partial": True,
                "why": f"API server only: {passed} checks passed, {len(nv)} not verifiable because "
                       f"{not_run_text(unverifiable)}"}
    return {**out, "reached": True, "partial": False,
            "why": f"{passed} checks passed" + (f", {len(nv)} not verifiable (listed)" if nv else "")}
