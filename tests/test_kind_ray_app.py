"""The RayService's serveConfigV2 (a string the CRD cannot check) against Ray Serve itself.

In the rayserve runtime environment (Ray Serve, as the local backend runs it): the config must pass
Ray's own ServeDeploySchema, its import path must resolve with the head container's PYTHONPATH,
the application builder must accept its args, and the artifact it names must load. The pod's
/mnt/testbed is a temporary directory laid out as the artifacts volume is.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from deployers import rayserve
from testbed import artifact, detectors
from testbed.backends.kind import detection, templates
from testbed.backends.kind.context import stage_runtime_code
from testbed.backends.kind.deployment import Target
from testbed.backends.kind.pins import pins
from testbed.backends.local import envs
from testbed.settings import Settings

CHECK = r"""
import importlib, json, sys, yaml
from ray.serve.schema import ServeDeploySchema
schema = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
results = []
for text in json.loads(sys.stdin.read()):
    config = yaml.safe_load(text)
    schema(config)
    apps = []
    for app_cfg in config["applications"]:
        module_name, builder_name = app_cfg["import_path"].split(":")
        module = importlib.import_module(module_name)
        app = getattr(module, builder_name)(app_cfg["args"])
        model, metadata = module.load_verified(app_cfg["args"]["artifact_dir"])
        names = [d["name"] for d in app_cfg["deployments"]]
        apps.append({"name": app_cfg["name"], "app": type(app).__name__, "module": module.__file__,
                     "deployments": names, "replicas": [d["num_replicas"] for d in app_cfg["deployments"]],
                     "class_deployments": [getattr(module, n).name for n in names], "sha256": metadata["sha256"],
                     "sklearn": metadata["versions"]["scikit-learn"]})
    results.append(apps)
print(json.dumps(results))
"""

@pytest.mark.integration
def test_serve_config_builds_the_local_application(tmp_path):
    settings = Settings()
    python = envs.python_of(envs.ensure(rayserve.ENV, settings.envs_dir))
    volume = tmp_path / "mnt-testbed"  # stands for the pod's /mnt/testbed
    art = artifact.ensure(volume, settings.artifact_seed)
    code = stage_runtime_code(volume)
    target = Target(namespace="testbed", node_port=pins().node_port("rayserve"), model_name=art.name,
                    artifact_subpath=art.path.name, code_dir=code.name, serving=pins().serving["rayserve"],
                    model_sha256=art.sha256, n_features=len(art.feature_names),
                    detectors_subpath=detectors.dirname_for(art.path.name),
                    detector_service=detection.service_url("testbed"))
    variants = rayserve.RayServeKind.variants()
    services = [rayserve.RayServeKind(**variant).render_resource(target) for variant in variants]
    heads = {json.dumps(s["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"])
             for s in services}
    assert len(heads) == 1
    pythonpath = {e["name"]: e["value"] for e in json.loads(heads.pop())}["PYTHONPATH"]
    configs = [s["spec"]["serveConfigV2"].replace(templates.MOUNT_PATH, str(volume)) for s in services]
    proc = subprocess.run([str(python), "-c", CHECK], input=json.dumps(configs), capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": pythonpath.replace(templates.MOUNT_PATH, str(volume)),
                                            "RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(variants)
    for variant, apps in zip(variants, results):
        # `up` deploys the detected application beside the model (the detector service is in the namespace).
        assert [a["name"] for a in apps] == (["reference"] if variant.get("detection") is False
                                             else ["reference", "detected"])
        for result in apps:
            assert result["app"] == "Application"
            assert result["module"] == str(code / "ray_app.py")  # imported from the staged copy, as in the pod
            assert result["deployments"] == result["class_deployments"]  # the config's deployments exist in the app
            assert (result["sha256"], result["sklearn"]) == (art.sha256, pins().serving["rayserve"]["scikit_learn"])
        assert apps[0]["replicas"] == [variant.get("num_replicas", 1)]
