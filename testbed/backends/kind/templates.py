"""Render the manifest templates under manifests/ (data) into Kubernetes objects (dicts).

`${name}` placeholders take plain strings (quoted in the templates) or JSON values (marked
`(JSON)` in the templates, unquoted); the filled text is then parsed as YAML.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import yaml

from testbed.settings import REPO_ROOT

MANIFESTS_DIR = REPO_ROOT / "manifests"

# Names shared by every namespace the kind backend deploys into.
PVC_NAME = "testbed-artifacts"
MOUNT_PATH = "/mnt/testbed"
"""Where pods that read artifacts directly (Ray) mount the artifacts volume."""

PART_OF = {"app.kubernetes.io/part-of": "ml-deployment-testbed"}


def render(relpath: str, **values) -> dict:
    """One template -> one object. Every placeholder must be given, and every value used."""
    path = MANIFESTS_DIR / relpath
    template = string.Template(path.read_text())
    wanted = {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)} - {None}
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise ValueError(f"{path}: placeholders without a value {sorted(missing)}, values without a placeholder "
                         f"{sorted(unused)}")
    text = template.substitute({k: _fill(v) for k, v in values.items()})
    return yaml.safe_load(text)


def _fill(value) -> str:
    if isinstance(value, str):
        if '"' in value or "\\" in value or "\n" in value:
            raise ValueError(f"template value {value!r} would break its quoted YAML string")
        return value
    return json.dumps(value)


def pv_name(namespace: str) -> str:
    return f"testbed-artifacts-{namespace}"


def namespace_objects(namespace: str) -> list[dict]:
    """The namespace and the artifacts volume bound to its claim (apply in this order)."""
    pv = pv_name(namespace)
    return [
        render("common/namespace.yaml", namespace=namespace),
        render("common/artifacts-pv.yaml", pv_name=pv, namespace=namespace, pvc_name=PVC_NAME),
        render("common/artifacts-pvc.yaml", pv_name=pv, namespace=namespace, pvc_name=PVC_NAME),
    ]


def nodeport_service(platform: str, namespace: str, selector: dict, target_port: int, node_port: int) -> dict:
    return render("common/nodeport-service.yaml", name=f"testbed-{platform}-nodeport", namespace=namespace,
                  platform=platform, selector=selector, target_port=target_port, node_port=node_port)


def object_id(obj: dict) -> str:
    """'Kind namespace/name' (or 'Kind name' for cluster-scoped objects), for messages and file names."""
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "?")
    return f"{obj.get('kind', '?')} {where}"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a RayService's serveConfigV2) as readable `|` blocks."""


def _str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def template_path(relpath: str) -> Path:
    return MANIFESTS_DIR / relpath
