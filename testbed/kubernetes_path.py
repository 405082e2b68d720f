"""How far each platform's Kubernetes path has been checked, in three levels:

1. schema-valid: its custom resource, as the kind path renders it, validates offline against the
   upstream CRD (testbed/backends/kind/crd_schema.py; computed when asked);
2. control-plane verified: `up --backend controlplane` passed every check concerning the platform
   against a real API server and the real operators (recorded with the date and the versions; an
   operator built at another version than the kind path pins is named beside it as a version skew);
   below it, control-plane partially verified: the platform's operator cannot run here, its objects
   were accepted by the API server and everything checkable without the operator passed, the rest
   is listed as not verifiable;
3. run on a real kind cluster: the kind e2e tests passed (recorded by the GitHub workflow's run).

A run that reaches level 2 or 3 writes results/kubernetes-path/<level>.json; `status` and the report
read the newest record. A level never shows as reached without its record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

LEVELS = (("schema", "schema-valid"), ("controlplane", "control-plane verified"), ("kind", "run on a real kind cluster"))
PARTIAL = "control-plane partially verified (API server only)"
"""Between schema-valid and control-plane verified: a controlplane record with partial true."""


def kind_platforms() -> list[str]:
    """The platforms that have a Kubernetes path (a kind deployment): only those get a level."""
    from deployers import PLATFORMS

    return sorted(name for name, p in PLATFORMS.items() if "kind" in p.deployments)


def verdict_word(verdict: dict) -> str:
    if verdict.get("reached"):
        return "verified" + (f" (VERSION SKEW: {skew_text(verdict['skew'])})" if verdict.get("skew") else "")
    return "partially verified (API server only)" if verdict.get("partial") else "NOT verified"


def skew_text(skew: dict) -> str:
    return f"{skew['component']} {skew['built']} ran, the kind path pins {skew['kind_pin']}: {skew['why']}"


def records_dir(results_dir: Path | None = None) -> Path:
    from testbed.results import RESULTS_DIR

    return Path(results_dir or RESULTS_DIR) / "kubernetes-path"


def record(level: str, platforms: dict[str, dict], versions: dict, results_dir: Path | None = None,
           detail: str = "") -> Path:
    """platforms: name -> {"reached": bool, "why": text, optionally "partial", "skew", "not_verifiable"}."""
    if level not in dict(LEVELS):
        raise ValueError(f"unknown level {level!r}; known: {', '.join(dict(LEVELS))}")
    path = records_dir(results_dir) / f"{level}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    from testbed.state import atomic_write_json

    atomic_write_json(path, {"level": level, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "versions": versions, "platforms": platforms, "detail": detail})
    return path


def load(level: str, results_dir: Path | None = None) -> dict | None:
    path = records_dir(results_dir) / f"{level}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def schema_valid(platform: str) -> dict:
    """The platform's kind custom resources (every option variant) against the upstream CRD, offline."""
    from deployers import get_platform
    from testbed.backends.kind import crd_schema
    from testbed.backends.kind.deployment import Target
    from testbed.backends.kind.pins import pins

    cls = type(get_platform(platform).deployment_for("kind"))
    checked, problems = 0, []
    for options in cls.variants():
        dep = cls(**options)
        target = Target(namespace="testbed", node_port=30000, model_name="m", artifact_subpath="a", code_dir="c",
                        serving=pins().serving[platform], model_sha256="0" * 64, n_features=4, detectors_subpath="d")
        try:
            obj = dep.render_resource(target)
        except Exception as exc:  # noqa: BLE001 - a variant that cannot render is not schema-valid
            problems.append(f"{options}: {type(exc).__name__}: {exc}")
            continue
        key = (obj["apiVersion"], obj["kind"])
        if key not in crd_schema.CRD_FILES:
            return {"reached": False, "why": f"CRD for {obj['kind']} not available offline"}
        errors = crd_schema.load(*key).errors(obj)
        checked += 1
        if errors:
            problems.append(f"{options}: {errors[0]}")
    if problems:
        return {"reached": False, "why": "; ".join(problems)}
    return {"reached": True, "why": f"{checked} variant(s) valid against the upstream CRD"}


def levels(platforms: list[str], results_dir: Path | None = None, with_schema: bool = True) -> dict[str, dict]:
    """platform -> {"level": the highest reached (or "none"), per level: record summary or None}."""
    recorded = {key: load(key, results_dir) for key, _ in LEVELS if key != "schema"}
    out = {}
    for name in platforms:
        entry: dict = {}
        if with_schema:
            try:
                entry["schema"] = schema_valid(name)
            except Exception as exc:  # noqa: BLE001
                entry["schema"] = {"reached": False, "why": f"{type(exc).__name__}: {exc}"}
        for key, rec in recorded.items():
            p = (rec or {}).get("platforms", {}).get(name)
            entry[key] = None if p is None else {**p, "at": rec["at"], "versions": rec.get("versions", {})}
        reached = []
        for key, label in LEVELS:
            e = entry.get(key) or {}
            if e.get("reached"):
                reached.append(label + (f" (VERSION SKEW: {skew_text(e['skew'])})" if e.get("skew") else ""))
            elif key == "controlplane" and e.get("partial"):
                reached.append(PARTIAL)
        entry["level"] = reached[-1] if reached else "none"
        out[name] = entry
    return out


def details(entry: dict) -> list[str]:
    """One line per level of a platform's entry (with the date and the versions of a recorded run), then
    its version skew and what was not verifiable: what `status` and the report show."""
    out = []
    for key, label in LEVELS:
        e = entry.get(key)
        if e is None:
            out.append(f"{label}: no record")
            continue
        word = "yes" if e["reached"] else "partially" if e.get("partial") else "no"
        versions = ", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items() if isinstance(v, str))
        out.append(f"{label}: {word}" + (f" ({e['at']})" if e.get("at") else "")
                   + (f" with {versions}" if versions else "") + f" - {e['why']}")
        if e.get("skew"):
            out.append(f"  VERSION SKEW: {skew_text(e['skew'])}")
        out += [f"  not verifiable: {item}" for item in e.get("not_verifiable") or []]
    return out


def lines(levels_doc: dict[str, dict]) -> list[str]:
    out = ["Kubernetes path (schema-valid < control-plane partially verified < control-plane verified < run on a real kind cluster):"]
    for name, entry in levels_doc.items():
        out.append(f"  {name:<9} {entry['level']}")
        out += [f"    {line}" for line in details(entry)]
    return out
