"""Every custom resource the testbed can produce, validated against the real upstream CRD schemas.

The CRDs are the upstream files vendored in cluster/crds (see its SOURCES.md). Validation is strict: unknown fields are rejected wherever the schema does not
preserve them, as `kubectl apply --validate=strict` would. The negative tests prove the validator
rejects what the API server would reject.
"""

from __future__ import annotations

import copy
import inspect

import pytest

from deployers import PLATFORMS, offered_on
from testbed.backends.kind import crd_schema
from testbed.backends.kind.context import runtime_code_dirname
from testbed.backends.kind.deployment import KindDeployment, Target
from testbed.backends.kind.pins import pins
from testbed.errors import SchemaViolation

PINS = pins()
CUSTOM_RESOURCES = {("serving.kserve.io/v1beta1", "InferenceService"), ("machinelearning.seldon.io/v1", "SeldonDeployment"),
                    ("ray.io/v1", "RayService")}
PODMONITOR = ("monitoring.coreos.com/v1", "PodMonitor")



KIND = {name: PLATFORMS[name] for name in offered_on("kind")}
"""The platforms the kind backend offers (those with a kind Deployment class)."""


def target(platform: str, namespace: str = "testbed") -> Target:
    return Target(namespace=namespace, node_port=PINS.node_port(platform), model_name="reference-classifier",
                  artifact_subpath="reference-classifier-0123456789ab", code_dir=runtime_code_dirname(),
                  serving=PINS.serving[platform], model_sha256="0123456789ab" + "0" * 52, n_features=7,
                  detectors_subpath="reference-classifier-0123456789ab-detectors")


def every_object():
    """(id, object) for every platform, every kind-deployment option variant, every object it applies."""
    for name, platform in sorted(KIND.items()):
        cls = platform.deployments["kind"]
        for i, variant in enumerate(cls.variants()):
            for obj in cls(**variant).manifests(target(name)):
                label = ",".join(f"{k}" for k in variant) or "defaults"
                yield pytest.param(obj, id=f"{name}-{i}-{label}-{obj['kind']}")


ALL = list(every_object())
CRS = [p for p in ALL if (p.values[0]["apiVersion"], p.values[0]["kind"]) in CUSTOM_RESOURCES]
MONITORS = [p for p in ALL if (p.values[0]["apiVersion"], p.values[0]["kind"]) == PODMONITOR]


@pytest.fixture(scope="module")
def schemas():
    return {key: crd_schema.load(*key) for key in CUSTOM_RESOURCES}


@pytest.mark.parametrize("obj", CRS)
def test_custom_resource_matches_upstream_crd(obj, schemas):
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    assert schema.errors(obj) == []


@pytest.mark.parametrize("obj", MONITORS)
def test_podmonitor_matches_prometheus_operator_crd(obj):
    assert crd_schema.load(*PODMONITOR).errors(obj) == []


def test_every_kind_deployment_renders_every_option():
    assert {"kserve", "seldon", "rayserve"} <= set(KIND)  # the platforms whose CRDs are vendored
    for name, platform in KIND.items():
        cls = platform.deployments["kind"]
        assert issubclass(cls, KindDeployment) and cls.platform == name
        options = set(inspect.signature(cls.__init__).parameters) - {"self", "namespace", "node_port"}
        covered = {k for variant in cls.variants() for k in variant}
        assert options == covered, f"{cls.__name__}: options never rendered by variants(): {options - covered}"
    assert len(CRS) == sum(len(p.deployments["kind"].variants()) for p in KIND.values())


def test_quantities_are_strings():
    """Resource quantities written as strings, so YAML never turns "1" into 1 or 0.5 into a float."""
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("requests", "limits") and isinstance(value, dict):
                    for resource, quantity in value.items():
                        assert isinstance(quantity, str), f"{path}.{key}.{resource} = {quantity!r}"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
    for param in CRS:
        walk(param.values[0], param.id)


def test_other_namespace_renders_valid_resources(schemas):
    for name, platform in KIND.items():
        obj = platform.deployments["kind"](namespace="e2e-x1", node_port=PINS.spare_ports[0]).manifests(
            target(name, "e2e-x1"))[0]
        assert obj["metadata"]["namespace"] == "e2e-x1"
        assert schemas[(obj["apiVersion"], obj["kind"])].errors(obj) == []


# --- the validator can fail: what the API server would reject --------------------------------


def rendered(kind: str) -> dict:
    for param in CRS:
        if param.values[0]["kind"] == kind and "-0-defaults-" in param.id:
            return copy.deepcopy(param.values[0])
    raise LookupError(kind)


def test_unknown_field_is_rejected(schemas):
    isvc = rendered("InferenceService")
    isvc["spec"]["predictor"]["model"]["modelFromat"] = {"name": "sklearn"}  # a typo
    errors = schemas[("serving.kserve.io/v1beta1", "InferenceService")].errors(isvc)
    assert len(errors) == 1 and "spec.predictor.model" in errors[0] and "modelFromat" in errors[0]


def test_unknown_top_level_and_metadata_fields_are_rejected(schemas):
    ray = rendered("RayService")
    ray["specs"] = {}
    ray["metadata"]["label"] = {"a": "b"}
    errors = schemas[("ray.io/v1", "RayService")].errors(ray)
    assert any("specs" in e for e in errors) and any(e.startswith("metadata:") and "label" in e for e in errors)


def test_wrong_types_are_rejected(schemas):
    isvc = rendered("InferenceService")
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    ray = rendered("RayService")
    ray["spec"]["serveConfigV2"] = {"applications": []}  # must be a YAML string
    ray["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1  # map of strings
    isvc_errors = schemas[("serving.kserve.io/v1beta1", "InferenceService")].errors(isvc)
    ray_errors = schemas[("ray.io/v1", "RayService")].errors(ray)
    assert isvc_errors == ["spec.predictor.minReplicas: 'one' is not of type 'integer'"]
    assert {e.split(":")[0] for e in ray_errors} == {"spec.serveConfigV2",
                                                     "spec.rayClusterConfig.headGroupSpec.rayStartParams.num-cpus"}


def test_enum_and_missing_required_are_rejected(schemas):
    isvc = rendered("InferenceService")
    isvc["spec"]["predictor"]["logger"] = {"mode": "everything"}
    sdep = rendered("SeldonDeployment")
    del sdep["spec"]["predictors"][0]["graph"]["name"]
    assert any("spec.predictor.logger.mode" in e for e in schemas[("serving.kserve.io/v1beta1", "InferenceService")].errors(isvc))
    assert any("'name' is a required property" in e
               for e in schemas[("machinelearning.seldon.io/v1", "SeldonDeployment")].errors(sdep))


def test_int_or_string_quantities(schemas):
    schema = schemas[("serving.kserve.io/v1beta1", "InferenceService")]
    for value, ok in (("500m", True), (1, True), ("1Gi", True), ([1], False), (1.5, False), (None, False)):
        isvc = rendered("InferenceService")
        isvc["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] = value
        assert (schema.errors(isvc) == []) is ok, value


def test_nullable_allows_null_only_where_declared(schemas):
    schema = schemas[("machinelearning.seldon.io/v1", "SeldonDeployment")]
    sdep = rendered("SeldonDeployment")
    sdep["spec"]["predictors"][0]["componentSpecs"][0]["metadata"] = {"creationTimestamp": None}  # nullable: true
    assert schema.errors(sdep) == []
    sdep["spec"]["predictors"][0]["componentSpecs"][0]["metadata"] = {"name": None}  # not nullable
    assert any("None is not of type 'string'" in e for e in schema.errors(sdep))


def test_preserve_unknown_fields_is_honoured(schemas):
    isvc = rendered("InferenceService")
    isvc["status"] = {"anything": {"the": "controller writes"}}  # status: x-kubernetes-preserve-unknown-fields
    assert schemas[("serving.kserve.io/v1beta1", "InferenceService")].errors(isvc) == []


def test_seldon_nested_graph_is_checked_with_the_children_patch(schemas):
    """Upstream's Helm chart patches graph.children so nested nodes are validated (SOURCES.md)."""
    schema = schemas[("machinelearning.seldon.io/v1", "SeldonDeployment")]
    sdep = rendered("SeldonDeployment")
    graph = sdep["spec"]["predictors"][0]["graph"]
    graph["children"] = [{"name": "child", "type": "MODEL", "children": [{"name": "grandchild"}]}]
    assert schema.errors(sdep) == []
    graph["children"][0]["children"][0]["modelURI"] = "pvc://x"  # wrong case, two levels down
    errors = schema.errors(sdep)
    assert len(errors) == 1 and "spec.predictors.0.graph.children.0.children.0" in errors[0] and "modelURI" in errors[0]


def test_wrong_api_version_is_rejected_and_validate_raises(schemas):
    schema = schemas[("ray.io/v1", "RayService")]
    ray = rendered("RayService")
    ray["apiVersion"] = "ray.io/v1alpha1"
    assert any("ray.io/v1alpha1/RayService is not ray.io/v1/RayService" in e for e in schema.errors(ray))
    ray["apiVersion"] = "ray.io/v1"
    ray["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(SchemaViolation, match=r"containers\.0: Additional properties are not allowed \('imagee'"):
        schema.validate(ray)


# --- the converter, on small schemas ---------------------------------------------------------


def test_converter_semantics():
    import jsonschema

    node = {"type": "object", "properties": {
        "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
        "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "embedded": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
        "bounded": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
    }}
    v = jsonschema.Draft202012Validator(crd_schema.to_json_schema(node))
    ok = {"mode": None, "port": "http", "free": {"x": 1}, "map": {"k": "v"},
          "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}, "bounded": 1}
    assert list(v.iter_errors(ok)) == []
    for bad in ({"mode": "c"}, {"port": 1.5}, {"map": {"k": 1}}, {"embedded": {"status": {}}}, {"bounded": 0},
                {"extra": 1}, {"embedded": {"spec": {"x": 1}}}):
        assert list(v.iter_errors(bad)), bad




# --- the vendored files ----------------------------------------------------------------------


def test_vendored_files_match_sources():
    """Every file in cluster/crds is listed in its SOURCES.md with the sha256 it has, and every CRD the
    validator knows is there: a hand-edited or missing CRD fails here, not as a puzzling schema error."""
    import hashlib
    import re

    sources = (crd_schema.CRDS_DIR / "SOURCES.md").read_text()
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", sources, re.M))
    present = {str(p.relative_to(crd_schema.CRDS_DIR)) for p in crd_schema.CRDS_DIR.rglob("*")
               if p.is_file() and p.name != "SOURCES.md"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((crd_schema.CRDS_DIR / name).read_bytes()).hexdigest() == digest, name
    for relpath, patches in crd_schema.CRD_FILES.values():
        assert {relpath, *patches} <= present
    # Each upstream project's licence travels with its files.
    assert {name.split("/")[0] for name in present} == {name.split("/")[0] for name in present if
                                                         f"{name.split('/')[0]}/LICENSE" in present}
    assert "Business Source License" in (crd_schema.CRDS_DIR / "seldon-core-v1" / "LICENSE").read_text()
