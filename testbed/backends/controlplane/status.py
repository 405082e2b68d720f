"""`status --backend controlplane`: the recorded findings, with every process and resource re-checked."""

from __future__ import annotations

import httpx

from testbed import state as state_io
from testbed.backends.controlplane import processes as procs
from testbed.backends.controlplane import verify
from testbed.backends.controlplane.core import Layout

SCHEMA = "testbed.status/v1"


def status(lay: Layout) -> dict:
    doc = {"schema": SCHEMA, "backend": "controlplane", "state": "stopped", "model": None, "prometheus": None,
           "platforms": {}}
    recorded = state_io.load(lay.dir)
    if recorded is None:
        return doc
    records = recorded.get("processes") or {}
    doc["processes"] = {name: {"pid": r.get("pid"), "state": "running" if procs.running(r) else "exited",
                               "log": r.get("log"), "ports": r.get("ports")} for name, r in records.items()}
    api_up = procs.running(records.get("kube-apiserver") or {})
    kube = None
    if api_up:
        try:
            from testbed.backends.kind.kube import Kube

            kube = Kube(lay.kubeconfig())
        except Exception as exc:  # noqa: BLE001 - status reports, never fails
            doc["error"] = f"{type(exc).__name__}: {exc}"
    findings = recorded.get("findings") or {}
    readiness = findings.get("readiness") or {}
    for name, info in (recorded.get("platforms") or {}).items():
        doc["platforms"][name] = _platform(name, info, kube, readiness.get(name), findings)
    prom = records.get("prometheus")
    if prom:
        url = f"http://127.0.0.1:{(prom.get('ports') or {}).get('web')}"
        doc["prometheus"] = _prometheus(url, procs.running(prom))
    doc.update(model=recorded.get("model"), namespace=recorded.get("namespace"),
               namespaces=recorded.get("namespaces") or [], kind_path_at=recorded.get("kind_path_at"), api_server=recorded.get("api_server"),
               kubeconfig=recorded.get("kubeconfig"), versions=recorded.get("versions"),
               verified_at=recorded.get("verified_at"), findings=findings, operators=recorded.get("operators"),
               not_applied=recorded.get("not_applied"), timings=recorded.get("timings", {}))
    from testbed import kubernetes_path

    doc["kubernetes_path"] = kubernetes_path.levels(list(doc["platforms"]) or _all_platforms())
    doc["exposure"] = exposure(records, recorded.get("operators") or {})
    doc["skew"], doc["unverifiable"] = recorded.get("skew") or {}, recorded.get("unverifiable") or {}
    all_running = all(p["state"] == "running" for p in doc["processes"].values())
    doc["state"] = "running" if recorded.get("complete") and all_running and not verify.failed(findings) \
        else "degraded"
    doc["summary_lines"] = [f"api server: {recorded.get('api_server')}  kubeconfig {recorded.get('kubeconfig')}"] + [
        f"  {name:<24} {p['state']:<8} pid {p['pid']}" for name, p in doc["processes"].items()] + [
        "checks of what `up --backend kind` deploys" + (f" (verified {recorded['verified_at']}):"
                                                        if recorded.get("verified_at") else " (incomplete run):")] + [
        f"  {line}" for line in verify.summary_lines(findings)] + [
        f"VERSION SKEW {name}: {s['built']} runs here, the kind path pins {s['kind_pin']} ({s['why']})"
        for name, s in doc["skew"].items()] + [
        f"NOT RUN for {platform}: {u['operator']} {u['kind_pin']} ({u['why']})"
        for platform, u in doc["unverifiable"].items()] + [
        f"deviation {name}: {d['what']}: {d['why']}" for name, info in (recorded.get("operators") or {}).items()
        for d in info.get("deviations") or []] + kubernetes_path.lines(doc["kubernetes_path"])
    return doc


def exposure(records: dict, operators: dict) -> dict:
    """Listening sockets of the running processes beyond loopback, each with its cause where an operator
    binds every interface whatever its flags (operators.Operator.beyond_loopback)."""
    from testbed.backends.controlplane.operators import OPERATORS
    from testbed.backends.local import processes as lp

    causes = {op.component: op.beyond_loopback for op in (cls() for cls in OPERATORS)}
    exposed = []
    for name, record in records.items():
        if not procs.running(record):
            continue
        by_port = {port: pname for pname, port in (record.get("ports") or {}).items()}
        for pid, socks in lp.listening_sockets(lp.session_members(record["pid"])).items():
            for addr, port in socks:
                if lp.is_loopback(addr):
                    continue
                cause = (causes.get(name) or {}).get(by_port.get(port, ""))
                exposed.append({"owner": name, "platform": None, "pid": pid, "process": lp.command_name(pid),
                                "address": addr, "port": port, "port_name": by_port.get(port), "cause": cause})
    return {"non_loopback_sockets": exposed, "count": len(exposed),
            "unexplained": sum(1 for x in exposed if not x["cause"])}


def _all_platforms() -> list[str]:
    from testbed.kubernetes_path import kind_platforms

    return kind_platforms()


def _platform(name: str, info: dict, kube, readiness: dict | None, findings: dict) -> dict:
    from testbed.backends.kind.status import resource_state

    res = info.get("resource") or {}
    owned = (findings.get("owned") or {}).get(name) or {}
    state = (readiness or {}).get("state", "unknown")
    return {"state": {"pass": "verified", "fail": "FAILED"}.get(state, state), "resource": res,
            "resource_state": resource_state(name, res, kube), "readiness": readiness, "owned": owned.get("text"),
            "v2_base_url": None, "infer_url": None, "metrics_url": None,
            "note": "control plane only: no pod serves requests (kwok)"}


def _prometheus(url: str, running: bool) -> dict:
    from testbed.errors import PrometheusError
    from testbed.prometheus import PrometheusClient

    doc = {"url": url, "state": "unreachable", "targets": []}
    if not running:
        return doc
    client = PrometheusClient(url, timeout_s=3.0)
    if client.ready():
        doc["state"] = "ready"
        try:
            doc["targets"] = client.targets()
        except (PrometheusError, httpx.HTTPError) as exc:
            doc["error"] = str(exc)
    return doc
