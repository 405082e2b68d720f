"""Validate a custom resource offline against its upstream CRD, the way the API server would.

The CRD's structural OpenAPI v3 schema (storage version) becomes a JSON Schema:
- `nullable: true` allows null (`type: [t, "null"]`, null added to any enum);
- `x-kubernetes-int-or-string` allows an integer or a string;
- an object without `x-kubernetes-preserve-unknown-fields` rejects fields its schema does not
  list, as `kubectl apply --validate=strict` (server-side field validation Strict) does;
- `x-kubernetes-embedded-resource` objects also accept apiVersion/kind/metadata;
- top-level `metadata` is checked as ObjectMeta (the API server's, not the CRD's, schema).
Not checked offline: CEL rules (`x-kubernetes-validations`), `format`, defaults, admission webhooks.

The CRDs are vendored upstream files in cluster/crds (see its SOURCES.md for repository, tag, path
and sha256 of each). The Seldon v1 CRD gets the graph-children patch its Helm chart applies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from testbed.errors import SchemaViolation
from testbed.settings import REPO_ROOT

try:  # libyaml parses the 2.5 MB CRDs ~10x faster than pure Python
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader

# (apiVersion, kind) -> CRD file under cluster/crds, and JSON6902 patches applied before use.
CRD_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): ("kserve/serving.kserve.io_inferenceservices.yaml", ()),
    ("machinelearning.seldon.io/v1", "SeldonDeployment"): (
        "seldon-core-v1/machinelearning.seldon.io_seldondeployments.yaml", ("seldon-core-v1/patch_graph_children.yaml",)),
    ("ray.io/v1", "RayService"): ("kuberay/ray.io_rayservices.yaml", ()),
    ("mlops.seldon.io/v1alpha1", "Model"): ("seldon-core-v2/mlops.seldon.io_models.yaml", ()),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("prometheus-operator/monitoring.coreos.com_podmonitors.yaml", ()),
}
MAX_ERRORS = 20

# ObjectMeta fields a client may set (the API server owns uid, resourceVersion, ...).
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


CRDS_DIR = REPO_ROOT / "cluster" / "crds"
"""The vendored upstream CRDs (part of the repository, never fetched at run time)."""


def crd_path(api_version: str, kind: str) -> Path:
    return CRDS_DIR / CRD_FILES[(api_version, kind)][0]


@dataclass(frozen=True)
class CrdSchema:
    api_version: str
    kind: str
    source: Path
    version: str
    """The CRD version whose schema this is (the storage version)."""

    schema: dict
    """The JSON Schema (converted)."""

    def errors(self, obj: dict) -> list[str]:
        validator = jsonschema.Draft202012Validator(self.schema)
        found = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        out = []
        for error in found[:MAX_ERRORS]:
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            out.append(f"{path}: {error.message}")
        if len(found) > MAX_ERRORS:
            out.append(f"... and {len(found) - MAX_ERRORS} more")
        if obj.get("apiVersion") != self.api_version or obj.get("kind") != self.kind:
            out.append(f"(root): apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} is not "
                       f"{self.api_version}/{self.kind}")
        return out

    def validate(self, obj: dict) -> None:
        errors = self.errors(obj)
        if errors:
            meta = obj.get("metadata") or {}
            raise SchemaViolation(f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '?')}", errors,
                                  str(self.source))


@lru_cache(maxsize=None)
def load(api_version: str, kind: str) -> CrdSchema:
    """The converted schema of the storage version of the CRD for (apiVersion, kind)."""
    relpath, patches = CRD_FILES[(api_version, kind)]
    base = CRDS_DIR
    crd = _read_crd(base / relpath)
    for patch in patches:
        apply_json_patch(crd, yaml.load((base / patch).read_text(), Loader=_Loader))
    group, _, version = api_version.rpartition("/")
    if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != kind:
        raise ValueError(f"{base / relpath} defines {crd['spec']['group']}/{crd['spec']['names']['kind']}, "
                         f"not {group}/{kind}")
    storage = [v for v in crd["spec"]["versions"] if v.get("storage")]
    if len(storage) != 1 or storage[0]["name"] != version:
        raise ValueError(f"{base / relpath}: the storage version is {[v['name'] for v in storage]}, the testbed "
                         f"writes {version}")
    root = copy.deepcopy(storage[0]["schema"]["openAPIV3Schema"])
    root.setdefault("properties", {})["metadata"] = OBJECT_META
    schema = to_json_schema(root)
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return CrdSchema(api_version, kind, base / relpath, version, schema)


def _read_crd(path: Path) -> dict:
    docs = [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        raise ValueError(f"{path}: expected one CustomResourceDefinition, found {len(crds)}")
    return crds[0]


def apply_json_patch(doc: dict, ops: list[dict]) -> None:
    """The subset of RFC 6902 the upstream patches use: replace and add, with JSON pointers."""
    for op in ops:
        if op["op"] not in ("replace", "add"):
            raise ValueError(f"unsupported JSON patch op {op['op']!r}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            if op["op"] == "add":
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[int(last)] = op["value"]
        else:
            if op["op"] == "replace" and last not in parent:
                raise KeyError(f"JSON patch replace: {op['path']} does not exist")
            parent[last] = op["value"]


# Keywords with the same meaning in OpenAPI v3 (structural schemas) and JSON Schema.
_KEEP = {"type", "enum", "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
         "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
         "required", "description", "multipleOf"}


def to_json_schema(node: dict) -> dict:
    """Convert one OpenAPI v3 schema node (recursively) into JSON Schema; see the module docstring."""
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if k in _KEEP}
    out.pop("format", None)  # OpenAPI formats (int32, date-time, ...) are not JSON Schema assertions
    out.pop("description", None)
    if isinstance(out.get("exclusiveMinimum"), bool) or isinstance(out.get("exclusiveMaximum"), bool):
        # OpenAPI 3.0 booleans modify minimum/maximum; JSON Schema 2020-12 wants numbers.
        if out.pop("exclusiveMinimum", False) is True and "minimum" in out:
            out["exclusiveMinimum"] = out.pop("minimum")
        if out.pop("exclusiveMaximum", False) is True and "maximum" in out:
            out["exclusiveMaximum"] = out.pop("maximum")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(s) for s in node[key]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"])
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        # Kubernetes only lets int-or-string carry anyOf/allOf of [integer, string]; it means either.
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if "items" in node:
        out["items"] = to_json_schema(node["items"]) if isinstance(node["items"], dict) else node["items"]
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    properties = dict(node.get("properties") or {})
    if node.get("x-kubernetes-embedded-resource"):
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if properties:
        out["properties"] = {k: to_json_schema(v) for k, v in properties.items()}
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional)
    elif additional is not None:
        out["additionalProperties"] = additional
    elif not preserve and _is_object(node):
        # What strict field validation does: an object's fields are exactly those it lists.
        out["additionalProperties"] = False
    if node.get("nullable"):
        _allow_null(out)
    return out


def _is_object(node: dict) -> bool:
    return node.get("type") == "object" or ("properties" in node and "type" not in node)


def _allow_null(out: dict) -> None:
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [*out[key], {"type": "null"}]
