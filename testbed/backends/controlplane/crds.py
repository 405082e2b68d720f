"""Which CRDs the control plane installs, and whether the vendored ones (cluster/crds) are what the
kind path's charts install.

The kind path installs each operator's CRDs with its chart; so does this backend (rendered by helm),
and it installs the vendored files for what no rendered chart carries (prometheus-operator's, which
kube-prometheus-stack installs). Every vendored CRD the testbed validates against offline
(testbed/backends/kind/crd_schema.py, patches applied) is compared with the chart's, schema by
schema: a difference means the offline checks test something the cluster never runs.
"""

from __future__ import annotations

import copy

import yaml

from testbed.backends.kind import crd_schema

from testbed.backends.controlplane.charts import _Loader


def vendored() -> dict[str, dict]:
    """CRD name -> the vendored CRD with its patches applied (as crd_schema reads it)."""
    patches = {relpath: p for relpath, p in crd_schema.CRD_FILES.values()}
    out = {}
    for path in sorted(crd_schema.CRDS_DIR.glob("*/*.yaml")):
        crd = yaml.load(path.read_text(), Loader=_Loader)
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue  # JSON6902 patch files
        for patch in patches.get(str(path.relative_to(crd_schema.CRDS_DIR)), ()):
            crd_schema.apply_json_patch(crd, yaml.load((crd_schema.CRDS_DIR / patch).read_text(), Loader=_Loader))
        out[crd["metadata"]["name"]] = crd
    return out


def _schemas(crd: dict) -> dict[str, dict]:
    return {v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") for v in crd["spec"].get("versions") or []}


def plan(chart_crds: list[dict], extra_crds: list[dict], vendored_groups: tuple[str, ...]) -> tuple[list[dict], dict]:
    """(CRDs to apply, the `crds` finding). extra_crds: shipped with an operator's module (prometheus-operator),
    used where nothing vendored covers them; vendored_groups: groups whose vendored CRDs are installed as is."""
    from testbed.backends.controlplane.verify import FAIL, PASS

    by_name = {c["metadata"]["name"]: c for c in chart_crds}
    ours = vendored()
    items, problems = [], []
    for name, crd in sorted(ours.items()):
        group = crd["spec"]["group"]
        if name in by_name:
            chart_schemas, our_schemas = _schemas(by_name[name]), _schemas(crd)
            differ = sorted(v for v in set(chart_schemas) | set(our_schemas)
                            if chart_schemas.get(v) != our_schemas.get(v))
            state = FAIL if differ else PASS
            text = (f"{name}: vendored schema differs from the chart's in version(s) {differ}" if differ
                    else f"{name}: vendored = chart's ({', '.join(sorted(our_schemas))})")
            if differ:
                problems.append(text)
            items.append({"crd": name, "state": state, "text": text, "installed_from": "chart"})
        elif group in vendored_groups:
            by_name[name] = copy.deepcopy(crd)
            items.append({"crd": name, "state": PASS, "text": f"{name}: installed from cluster/crds",
                          "installed_from": "cluster/crds"})
    for crd in extra_crds:
        by_name.setdefault(crd["metadata"]["name"], crd)
    for crd in by_name.values():
        crd.get("metadata", {}).pop("namespace", None)
        (crd.get("metadata") or {}).pop("creationTimestamp", None)
        crd.pop("status", None)
    finding = {"state": FAIL if problems else PASS,
               "text": "; ".join(problems) if problems else
               f"{sum(1 for i in items if i['installed_from'] == 'chart')} vendored CRDs equal what the charts install; "
               f"{sum(1 for i in items if i['installed_from'] == 'cluster/crds')} installed from cluster/crds",
               "crds": items}
    return list(by_name.values()), finding
